"""What every strong-label (sound event detection) source of the `downstream` door yields.

A strong-label source (DESED, AudioSet-strong, a HEAR event task, a generic events TSV) reads its metadata into a
`StrongTask`; nothing is decoded then. `sed` training, evaluation and `detect` see only these types.

Times are in seconds everywhere in this module; labels are encoded at the ATST-Frame token rate, one label frame per
40 ms token (`TOKEN_SECONDS`), onset frame = floor(onset / 0.04), offset frame = ceil(offset / 0.04), as the official
`ManyHotEncoder` encodes them (spec `downstream_frame_spec.md` 1.3).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence, TypeVar

import torch
from torch import Tensor

from downstream.datasets.types import LabelSpace

TOKEN_SECONDS = 0.04
L = TypeVar("L")
# the split names of a StrongTask; only "train_strong" or "train_weak" (at least one), "valid" and "test" are required
STRONG_SPLITS = ("train_strong", "train_weak", "train_unlabelled", "valid", "test")


@dataclass(frozen=True)
class Event:
    """One labelled event: `onset` < `offset` in seconds from the start of the recording, `label` a class index."""

    onset: float
    offset: float
    label: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.onset) and math.isfinite(self.offset)) or self.onset < 0 or self.offset <= self.onset:
            raise ValueError(f"an event needs 0 <= onset < offset (seconds), got onset {self.onset}, "
                             f"offset {self.offset}")


@dataclass(frozen=True)
class StrongClip:
    """One recording of a strong-label task.

    `events`: the strong labels (possibly empty: a clip with no event), or None when the clip has none (weak-only or
    unlabelled). `weak`: the clip-level class indices, or None for an unlabelled clip; for a strongly labelled clip it
    is the set of its event labels. `duration`: seconds when the source states it (DESED's durations file, HEAR),
    else None (read from the file when needed).
    """

    key: str
    path: str
    events: Optional[tuple[Event, ...]] = None
    weak: Optional[tuple[int, ...]] = None
    duration: Optional[float] = None

    @property
    def is_strong(self) -> bool:
        return self.events is not None

    @property
    def is_weak_only(self) -> bool:
        return self.events is None and self.weak is not None


@dataclass
class StrongTask:
    """A strong-label task read from its source.

    `splits`: keys from `STRONG_SPLITS`. "train_strong" (strong labels), "train_weak" (clip labels only) and
    "train_unlabelled" (no labels) make up the training data; "valid" selects the model; "test" is reported.
    `official_selects_on_test`: the official protocol of this task validates on the test set (AudioSet-strong);
    `sed --protocol official` reproduces that, the default does not.
    `unscored_test_durations`: {key: seconds} of test recordings the protocol leaves out of the test split whose
    durations still count in the PSDS false-positive-rate denominator (DESED under `protocol="official"`: its
    files without events, as the official test code counts them).
    """

    name: str
    labels: LabelSpace
    splits: dict[str, tuple[StrongClip, ...]]
    skipped: list[str] = field(default_factory=list)
    source: str = ""
    official_selects_on_test: bool = False
    unscored_test_durations: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = [name for name in self.splits if name not in STRONG_SPLITS]
        if unknown:
            raise ValueError(f"task {self.name}: unknown split(s) {unknown}; accepted: {STRONG_SPLITS}")
        if not (self.splits.get("train_strong") or self.splits.get("train_weak")):
            raise ValueError(f"task {self.name}: no training clips (needs train_strong or train_weak)")
        missing = [name for name in ("valid", "test") if name not in self.splits]
        if missing:
            raise ValueError(f"task {self.name}: missing split(s) {missing}; it has {sorted(self.splits)}")

    def split(self, name: str) -> tuple[StrongClip, ...]:
        return self.splits.get(name, ())


def seconds_to_frame_range(onset: float, offset: float, num_frames: int,
                           frame_seconds: float = TOKEN_SECONDS) -> tuple[int, int]:
    """The label frames `[start, stop)` an event covers: start = floor(onset / frame), stop = ceil(offset / frame),
    both clipped to [0, num_frames].

    Computed in the official order (`t * 16000 / 160 / pooling`, pooling = frame / 10 ms) so that float rounding
    lands on the same frames as the official encoder (0.12 s / 0.04 s is 2.9999999999999996 in floats; the official
    0.12 * 16000 / 160 / 4 is 3.0).
    """
    pooling = round(frame_seconds / 0.01)

    def to_frame(seconds: float) -> float:
        return seconds * 16000 / 160 / pooling

    start = min(max(math.floor(to_frame(onset)), 0), num_frames)
    stop = min(max(math.ceil(to_frame(offset)), 0), num_frames)
    return start, stop


def encode_events(events: Sequence[Event], num_frames: int, num_classes: int,
                  frame_seconds: float = TOKEN_SECONDS) -> Tensor:
    """Frame targets of a clip: float32 `[num_frames, num_classes]`, 1 where an event of that class is active."""
    target = torch.zeros(num_frames, num_classes, dtype=torch.float32)
    for event in events:
        start, stop = seconds_to_frame_range(event.onset, event.offset, num_frames, frame_seconds)
        target[start:stop, event.label] = 1.0
    return target


def merge_same_class_events(events: Iterable[tuple[float, float, L]],
                            touching: bool = True) -> list[tuple[float, float, L]]:
    """Events `(onset, offset, label)` with overlapping events of one label merged into one, sorted by onset.

    Both evaluation libraries reject overlapping same-class ground truth (spec 2.1), and sed_scores_eval also
    rejects touching ones (offset == next onset): `touching=True` merges those too (frame targets are the same
    either way). Sorting comes first: the official merge assumed sorted rows and missed overlaps otherwise."""
    merged: list[tuple[float, float, L]] = []
    by_label: dict = {}
    for onset, offset, label in sorted(events, key=lambda e: (str(e[2]), e[0], e[1])):
        last = by_label.get(label)
        if last is not None and (onset < merged[last][1] or (touching and onset == merged[last][1])):
            merged[last] = (merged[last][0], max(merged[last][1], offset), label)
            continue
        by_label[label] = len(merged)
        merged.append((onset, offset, label))
    return sorted(merged, key=lambda e: (e[0], e[1], str(e[2])))


def merge_events(events: Sequence[Event], touching: bool = True) -> tuple[Event, ...]:
    """`merge_same_class_events` on `Event`s."""
    return tuple(Event(onset, offset, label) for onset, offset, label in
                 merge_same_class_events(((e.onset, e.offset, e.label) for e in events), touching))


def frame_to_seconds(frame: int | float, frame_seconds: float = TOKEN_SECONDS) -> float:
    """The time in seconds at which label frame `frame` starts."""
    return float(frame) * frame_seconds


__all__ = ["Event", "STRONG_SPLITS", "StrongClip", "StrongTask", "TOKEN_SECONDS", "encode_events",
           "frame_to_seconds", "merge_events", "merge_same_class_events", "seconds_to_frame_range"]
