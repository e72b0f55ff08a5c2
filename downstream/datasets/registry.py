"""The dataset registry: the names `NAME=PATH` accepts, and the audiossl interface on top of them.

    from downstream.datasets import get_dataset, list_all_datasets
    info = get_dataset("us8k")          # .multi_label, .num_labels, .num_folds, .layout, .load(path) -> Task
    info.creator(path, split="train")   # audiossl's creator interface: a torch Dataset of (waveform, label)

A registered source is a function `load(root: Path) -> Task` that reads the dataset's metadata in its native layout;
a strong-label (sound event detection) source, registered with `kind="strong"`, is a function
`load(root: Path, protocol: str) -> StrongTask` (`downstream.datasets.strong`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Union

from .types import PROTOCOLS, Task

Loader = Callable[..., object]
KINDS = ("clip", "strong")  # clip-level labels (Task) or timestamped events (StrongTask)


@dataclass(frozen=True)
class DatasetInfo:
    """A registered dataset: its name, label structure, folds, the layout it reads, and its loader."""

    name: str
    multi_label: bool
    num_labels: int
    num_folds: int
    layout: str
    loader: Loader
    kind: str = "clip"

    def load(self, root: Union[str, Path], protocol: str = "hear"):
        """Read the dataset's metadata under `root` (its native layout): a Task, or for a strong-label dataset a
        StrongTask whose splits follow `protocol` ("hear" or "official")."""
        root = Path(root)
        if not root.exists():
            raise FileNotFoundError(f"dataset {self.name}: {root} does not exist; expected {self.layout}")
        if self.kind == "strong":
            if protocol not in PROTOCOLS:
                raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
            return self.loader(root, protocol)
        return self.loader(root)

    def creator(self, data_path: Union[str, Path], split: str = "train", fold: int = 0, transform=None,
                target_transform=None, protocol: str = "hear", cache="default"):
        """audiossl's interface: a `ClipDataset` of the split (`train`, `valid`, `test`) of fold `fold` (0-based)
        under `protocol`; `transform` applies to the 16 kHz mono waveform, `target_transform` to the label tensor.
        `cache`: see `audio_cache.resolve_cache` (default: the per-user audio cache)."""
        from .audio_cache import resolve_cache
        from .clip_dataset import ClipDataset

        if self.kind != "clip":
            raise ValueError(f"dataset {self.name} has {self.kind} labels (timestamped events): it trains with "
                             f"`atst-downstream sed`, not as a clip dataset")
        if split not in ("train", "valid", "test"):
            raise ValueError(f"split must be train, valid or test, got {split!r}")
        if isinstance(fold, bool) or not isinstance(fold, int):
            raise TypeError(f"fold must be an int (0-based), got {type(fold).__name__}; audiossl's one-fold "
                            f"creators took transform third: pass transform= and target_transform= by keyword")
        task = self.load(data_path)
        splits = task.fold(fold, protocol)
        return ClipDataset(getattr(splits, split), task.labels, transform, target_transform, resolve_cache(cache))


_REGISTRY: dict[str, DatasetInfo] = {}


def register_dataset(name: str, multi_label: bool, num_labels: int, num_folds: int = 1,
                     layout: str = "", kind: str = "clip") -> Callable[[Loader], Loader]:
    """Decorator registering a loader under `name`; registering one name twice with another loader raises.
    `kind`: "clip" (the loader returns a Task) or "strong" (it takes a protocol and returns a StrongTask)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")

    def decorate(loader: Loader) -> Loader:
        info = DatasetInfo(name, multi_label, num_labels, num_folds, layout or (loader.__doc__ or "").strip(),
                           loader, kind)
        existing = _REGISTRY.get(name)
        if existing is not None and existing.loader is not loader:
            raise ValueError(f"dataset {name!r} is already registered (by {existing.loader.__module__})")
        _REGISTRY[name] = info
        return loader

    return decorate


def get_dataset(name: str) -> DatasetInfo:
    """The registered dataset `name`; an unknown name is a KeyError listing the registered ones."""
    _load_builtin_sources()
    if name not in _REGISTRY:
        raise KeyError(f"dataset {name!r} is not registered; registered: {', '.join(sorted(_REGISTRY)) or 'none'}")
    return _REGISTRY[name]


def list_all_datasets() -> list[DatasetInfo]:
    """Every registered dataset, sorted by name."""
    _load_builtin_sources()
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def _load_builtin_sources() -> None:
    """Import the modules that register the built-in datasets (each registers itself on import)."""
    from . import sources  # noqa: F401


__all__ = ["DatasetInfo", "KINDS", "get_dataset", "list_all_datasets", "register_dataset"]
