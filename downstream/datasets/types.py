"""What every dataset source of the `downstream` door yields: clips, a label space, splits or folds.

A source (a registered dataset in its native layout, a HEAR task, a manifest, a folder of class folders) reads its
metadata into a `Task`; nothing is decoded then. Training and evaluation code sees only these types, so every source
works with linear evaluation, fine-tuning and prediction alike.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
from torch import Tensor

PROTOCOLS = ("hear", "official")
METRICS = ("top1_acc", "mAP")


@dataclass(frozen=True)
class Clip:
    """One labelled recording.

    `key`: unique within its task (the path relative to the dataset root, never a bare basename: Speech Commands
    repeats file names across word folders). `path`: the audio file. `target`: class indices (exactly one for a
    single-label task, any number, possibly none, for a multi-label task).
    """

    key: str
    path: str
    target: tuple[int, ...]


@dataclass(frozen=True)
class LabelSpace:
    """The classes of a task, in index order, and whether a clip may carry several."""

    names: tuple[str, ...]
    multi_label: bool

    def __post_init__(self) -> None:
        if not self.names:
            raise ValueError("a task needs at least one class")
        if len(set(self.names)) != len(self.names):
            duplicates = sorted({n for n in self.names if self.names.count(n) > 1})
            raise ValueError(f"class names must be unique, got duplicates {duplicates}")

    @property
    def num_labels(self) -> int:
        return len(self.names)

    def encode(self, labels: Sequence[str], where: str = "") -> tuple[int, ...]:
        """Class indices of label names; an unknown name is a ValueError naming it, `where` it came from and the
        known classes. A single-label task takes exactly one name."""
        index = {name: i for i, name in enumerate(self.names)}
        unknown = [label for label in labels if label not in index]
        if unknown:
            shown = ", ".join(self.names[:20]) + (" ..." if len(self.names) > 20 else "")
            raise ValueError(f"{where + ': ' if where else ''}unknown label(s) {unknown}; the classes are: {shown}")
        if not self.multi_label and len(labels) != 1:
            raise ValueError(f"{where + ': ' if where else ''}a single-label task needs exactly one label per clip, "
                             f"got {list(labels)}")
        return tuple(sorted({index[label] for label in labels}))

    def target_tensor(self, target: tuple[int, ...]) -> Tensor:
        """Single-label: the class index (int64 scalar). Multi-label: a multi-hot float32 `[num_labels]`."""
        if not self.multi_label:
            return torch.tensor(target[0], dtype=torch.long)
        out = torch.zeros(self.num_labels, dtype=torch.float32)
        out[list(target)] = 1.0
        return out


@dataclass(frozen=True)
class FoldSplits:
    """The clips one training run sees: train, valid (model selection) and test, with how valid was chosen."""

    name: str
    train: tuple[Clip, ...]
    valid: tuple[Clip, ...]
    test: tuple[Clip, ...]
    note: str = ""


@dataclass(frozen=True)
class FoldPlan:
    """Which splits of a task make up train, valid and test in one run (split names, see `Task.splits`)."""

    name: str
    train: tuple[str, ...]
    valid: tuple[str, ...]
    test: tuple[str, ...]
    note: str = ""


def fold_plan(task: str, num_folds: int, index: int, protocol: str = "hear",
              official_validates_on_test: bool = False) -> FoldPlan:
    """The one place where the protocols differ: the splits each part of fold `index` is made of.

    Fixed-split tasks: train / valid / test, except that the `official` protocol of a task with
    `official_validates_on_test` (AudioSet: the official valid set is a copy of eval) trains on train + valid and
    validates on the test split. k-fold tasks test on fold `index`; `hear` validates on the next fold and trains on
    the rest; `official` validates on the test fold itself, as the official linear evaluation does for US8K.
    Both official choices are optimistic (the model is selected on the test data), kept only to reproduce
    published numbers.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if num_folds == 1:
        if index != 0:
            raise ValueError(f"task {task} has fixed splits (one fold); got fold {index}")
        if protocol == "official" and official_validates_on_test:
            return FoldPlan("fold00", ("train", "valid"), ("test",), ("test",),
                            note="official protocol: trained on train + valid, validated on the test set "
                                 "(optimistic)")
        return FoldPlan("fold00", ("train",), ("valid",), ("test",))
    if not 0 <= index < num_folds:
        raise ValueError(f"task {task} has folds 0..{num_folds - 1}; got fold {index}")
    names = fold_names(num_folds)
    test = names[index]
    if protocol == "official":
        return FoldPlan(test, tuple(name for name in names if name != test), (test,), (test,),
                        note="official protocol: validated on the test fold (optimistic)")
    if num_folds < 3:
        raise ValueError(f"task {task} has {num_folds} folds: the hear protocol needs at least 3 "
                         f"(one to test, one to validate, the rest to train)")
    valid = names[(index + 1) % num_folds]
    return FoldPlan(test, tuple(name for name in names if name not in (test, valid)), (valid,), (test,),
                    note=f"validated on {valid}")


@dataclass
class Task:
    """A labelled task read from its source.

    `splits`: for a fixed-split task the keys "train", "valid", "test"; for a k-fold task "fold00", "fold01", ...
    (`num_folds` > 1), each fold in turn the test set. `metric`: "top1_acc" (single-label) or "mAP" (multi-label) as
    the official protocol reports it. `skipped`: files the source could not use, each named with the reason.
    `official_validates_on_test`: the official protocol selects the model on the test split (see `fold_plan`).
    """

    name: str
    labels: LabelSpace
    splits: dict[str, tuple[Clip, ...]]
    num_folds: int = 1
    metric: str = ""
    skipped: list[str] = field(default_factory=list)
    source: str = ""
    official_validates_on_test: bool = False

    def __post_init__(self) -> None:
        if not self.metric:
            self.metric = "mAP" if self.labels.multi_label else "top1_acc"
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {self.metric!r}")
        expected = fold_names(self.num_folds) if self.num_folds > 1 else ("train", "valid", "test")
        missing = [name for name in expected if name not in self.splits]
        if missing:
            raise ValueError(f"task {self.name}: missing split(s) {missing}; it has {sorted(self.splits)}")

    def plan(self, index: int, protocol: str = "hear") -> FoldPlan:
        """The split names of fold `index` under `protocol` (`fold_plan`)."""
        return fold_plan(self.name, self.num_folds, index, protocol, self.official_validates_on_test)

    def fold(self, index: int, protocol: str = "hear") -> FoldSplits:
        """The train/valid/test clips of fold `index` (0 for a fixed-split task) under `protocol` (`fold_plan`)."""
        plan = self.plan(index, protocol)
        return FoldSplits(plan.name, _join(self.splits, plan.train), _join(self.splits, plan.valid),
                          _join(self.splits, plan.test), note=plan.note)


def fold_names(num_folds: int) -> tuple[str, ...]:
    return tuple(f"fold{k:02d}" for k in range(num_folds))


def _join(splits: dict[str, tuple[Clip, ...]], names: Sequence[str]) -> tuple[Clip, ...]:
    return tuple(clip for name in names for clip in splits[name])


def check_unique_keys(clips: Sequence[Clip], where: str) -> None:
    """Two clips with one key would share cached embeddings: refuse, naming the first repeated key."""
    seen: dict[str, str] = {}
    for clip in clips:
        if clip.key in seen:
            raise ValueError(f"{where}: clip key {clip.key!r} names both {seen[clip.key]} and {clip.path}; keys must "
                             f"be unique (use paths relative to the dataset root)")
        seen[clip.key] = clip.path


__all__ = ["Clip", "FoldPlan", "FoldSplits", "LabelSpace", "METRICS", "PROTOCOLS", "Task", "check_unique_keys",
           "fold_names", "fold_plan"]
