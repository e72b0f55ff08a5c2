"""Read a packed task (`atst-downstream pack`, `pack.py`): its folds, and a streaming dataset over its shards.

    packed = load_packed("as2m_shards")                  # labels, folds and protocol flag as the source had them
    train, valid, test = packed.datasets(fold=0, protocol="hear")   # ShardClipDatasets, items as ClipDataset's

Shards are streamed member by member (never a whole shard in memory). With several consumers (DDP ranks x
data-loader workers) each reads its own shards when there are at least as many shards as consumers, otherwise
every consumer reads all shards and keeps every n-th clip; so each clip is read once per pass either way.
Training order: the shard order is reshuffled each pass (`set_epoch`, seeded) and clips go through a shuffle
buffer of `shuffle_buffer` encoded clips. An unreadable shard or clip yields an item with its error (like
`ClipDataset`), so `collate_clips` drops it and the consumer reports it.
"""
from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence, Union

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from atst.audio_io import AudioDecodeError

from .codec import FORMATS, decode_audio
from .pack import PACK_FILE, PACK_VERSION
from .types import METRICS, FoldPlan, LabelSpace, fold_names, fold_plan


@dataclass(frozen=True)
class Shard:
    """One tar shard and the number of clips it holds."""

    path: str
    clips: int


@dataclass
class PackedTask:
    """A task read from `pack.json`: like `types.Task`, but its splits are lists of shards."""

    name: str
    labels: LabelSpace
    splits: dict[str, tuple[Shard, ...]]
    num_folds: int = 1
    metric: str = ""
    official_validates_on_test: bool = False
    skipped: list[str] = field(default_factory=list)
    source: str = ""

    def plan(self, index: int, protocol: str = "hear") -> FoldPlan:
        """The split names of fold `index` under `protocol` (`types.fold_plan`, the same rule as a Task)."""
        return fold_plan(self.name, self.num_folds, index, protocol, self.official_validates_on_test)

    def datasets(self, fold: int = 0, protocol: str = "hear", transforms: Sequence[Optional[Callable]] = (None,) * 3,
                 target_transforms: Sequence[Optional[Callable]] = (None,) * 3, seed: int = 0,
                 shuffle_buffer: int = 256) -> tuple["ShardClipDataset", ...]:
        """(train, valid, test) streaming datasets of fold `fold`; train is shuffled, valid and test are not."""
        plan = self.plan(fold, protocol)
        parts = (plan.train, plan.valid, plan.test)
        return tuple(ShardClipDataset([s for name in names for s in self.splits[name]], self.labels, transform,
                                      target_transform, shuffle=i == 0, seed=seed,
                                      shuffle_buffer=shuffle_buffer if i == 0 else 0)
                     for i, (names, transform, target_transform) in enumerate(zip(parts, transforms,
                                                                                  target_transforms)))


def is_packed(path: Union[str, Path]) -> bool:
    """Whether `path` is a folder written by `atst-downstream pack`."""
    return (Path(path) / PACK_FILE).is_file()


def load_packed(root: Union[str, Path]) -> PackedTask:
    """Read `root/pack.json`; a missing or malformed file or a listed shard that is absent is an error naming it."""
    root = Path(root)
    path = root / PACK_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{root} is not a packed task: {PACK_FILE} is missing (write one with "
                                f"`atst-downstream pack TASK --out {root}`)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        if meta.get("format_version") != PACK_VERSION:
            raise ValueError(f"format_version {meta.get('format_version')!r}, expected {PACK_VERSION}")
        labels = LabelSpace(tuple(meta["labels"]), bool(meta["multi_label"]))
        num_folds = int(meta["num_folds"])
        splits = {str(name): tuple(Shard(str(root / entry["path"]), int(entry["clips"])) for entry in entries)
                  for name, entries in meta["splits"].items()}
        metric = str(meta["metric"])
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ValueError(f"{path} is not a pack manifest this version reads ({type(error).__name__}: {error}); "
                         f"re-run `atst-downstream pack`") from None
    if metric not in METRICS:
        raise ValueError(f"{path}: metric {metric!r} is not one of {METRICS}")
    expected = fold_names(num_folds) if num_folds > 1 else ("train", "valid", "test")
    missing_splits = [name for name in expected if name not in splits]
    if missing_splits:
        raise ValueError(f"{path}: missing split(s) {missing_splits}; it has {sorted(splits)}")
    absent = [shard.path for shards in splits.values() for shard in shards if not Path(shard.path).is_file()]
    if absent:
        raise FileNotFoundError(f"{root}: {len(absent)} shard(s) listed in {PACK_FILE} are missing (first: "
                                f"{absent[0]}); re-run `atst-downstream pack` to write them")
    return PackedTask(name=str(meta.get("name", root.name)), labels=labels, splits=splits, num_folds=num_folds,
                      metric=metric, official_validates_on_test=bool(meta.get("official_validates_on_test")),
                      skipped=list(meta.get("skipped", [])), source=f"packed {root}")


def _consumer() -> tuple[int, int]:
    """(index, count) of this reader among all DDP ranks x data-loader workers."""
    rank, world = 0, 1
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    info = get_worker_info()
    workers, worker = (info.num_workers, info.id) if info else (1, 0)
    return rank * workers + worker, world * workers


def iter_shard(path: str) -> Iterator[dict[str, Any]]:
    """The samples of one shard (`{"__key__", "<suffix>": bytes, ...}`), streamed member by member."""
    from webdataset.tariterators import group_by_keys, tar_file_expander

    with open(path, "rb") as handle:  # opened here: webdataset's own opener would run `pipe:` URLs
        yield from group_by_keys(tar_file_expander([{"url": path, "stream": handle}]))


class ShardClipDataset(IterableDataset):
    """Items `{"audio", "target", "key", "error"}` from shards, as `ClipDataset` yields them (see the module
    docstring). `len()` is the number of clips this process's rank reads per pass."""

    def __init__(self, shards: Sequence[Shard], labels: LabelSpace, transform: Optional[Callable] = None,
                 target_transform: Optional[Callable] = None, shuffle: bool = False, seed: int = 0,
                 shuffle_buffer: int = 0) -> None:
        self.shards = tuple(shards)
        self.labels = labels
        self.transform = transform
        self.target_transform = target_transform
        self.shuffle = shuffle
        self.seed = seed
        self.shuffle_buffer = shuffle_buffer
        self.epoch = 0

    def __len__(self) -> int:
        world = torch.distributed.get_world_size() if (torch.distributed.is_available()
                                                       and torch.distributed.is_initialized()) else 1
        return math.ceil(sum(shard.clips for shard in self.shards) / world)

    def set_epoch(self, epoch: int) -> None:
        """The pass number: it seeds the shard order and the shuffle buffer of a shuffled dataset."""
        self.epoch = epoch

    def _raw(self) -> Iterator[tuple[str, dict[str, Any]]]:
        consumer, consumers = _consumer()
        order = list(self.shards)
        if self.shuffle:
            random.Random(self.seed * 100003 + self.epoch).shuffle(order)  # the same order in every consumer
        per_shard = len(order) >= consumers
        counter = 0
        for shard in order[consumer::consumers] if per_shard else order:
            try:
                for sample in iter_shard(shard.path):
                    counter += 1
                    if per_shard or (counter - 1) % consumers == consumer:
                        yield shard.path, sample
            except Exception as error:  # tarfile, OSError, webdataset's ValueError for a corrupt shard
                yield shard.path, {"__error__": f"{shard.path}: unreadable shard ({type(error).__name__}: {error})"}

    def _item(self, shard: str, sample: dict[str, Any]) -> dict[str, Any]:
        if "__error__" in sample:
            return {"audio": None, "target": None, "key": shard, "error": sample["__error__"]}
        name = f"{shard}:{sample.get('__key__')}"
        try:
            meta = json.loads(sample["json"])
            key, target = str(meta["key"]), tuple(int(i) for i in meta["target"])
            suffix = next(s for s in FORMATS if s in sample)
            audio = decode_audio(suffix, sample[suffix], f"{name} ({key})")
        except (KeyError, ValueError, TypeError, StopIteration) as error:
            message = str(error) if isinstance(error, AudioDecodeError) else \
                f"{name}: malformed packed clip ({type(error).__name__}: {error})"
            return {"audio": None, "target": None, "key": name, "error": message}
        label = self.labels.target_tensor(target)
        if self.target_transform is not None:
            label = self.target_transform(label)
        if self.transform is not None:
            audio = self.transform(audio)
        return {"audio": audio, "target": label, "key": key, "error": None}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if not self.shuffle or self.shuffle_buffer < 2:
            for shard, sample in self._raw():
                yield self._item(shard, sample)
            return
        consumer, _ = _consumer()
        rng = random.Random(self.seed * 7919 + self.epoch * 131 + consumer)
        buffer: list[tuple[str, dict[str, Any]]] = []
        for entry in self._raw():
            buffer.append(entry)
            if len(buffer) >= self.shuffle_buffer:
                yield self._item(*buffer.pop(rng.randrange(len(buffer))))
        rng.shuffle(buffer)
        for entry in buffer:
            yield self._item(*entry)


class EpochLoader(DataLoader):
    """A DataLoader that tells its `ShardClipDataset` the pass number before each pass (Lightning sets the epoch
    of samplers only), so every epoch sees another shard order. Use without persistent workers."""

    def __init__(self, dataset: ShardClipDataset, **kwargs: Any) -> None:
        super().__init__(dataset, **kwargs)
        self._passes = 0

    def __iter__(self):
        self.dataset.set_epoch(self._passes)
        self._passes += 1
        return super().__iter__()


__all__ = ["EpochLoader", "PackedTask", "Shard", "ShardClipDataset", "is_packed", "iter_shard", "load_packed"]
