"""What the strong-label sources share: strong and weak label tables read and checked, and a collector that checks
each listed recording (exists, not empty, a readable audio header) and names the ones it skips.

Strong table: a TSV with a header and the columns `filename onset offset event_label` (seconds). A row whose onset,
offset and label are all empty lists a recording without events (the DCASE convention). Weak table: a TSV with
`filename event_labels`, the labels comma-separated.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import soundfile

from ..strong import STRONG_SPLITS, Event, StrongClip, StrongTask, merge_events
from ..types import LabelSpace
from .common import read_table

STRONG_COLUMNS = ("filename", "onset", "offset", "event_label")
WEAK_COLUMNS = ("filename", "event_labels")
DURATION_COLUMNS = ("filename", "duration")


@dataclass
class StrongRows:
    """A strong table read: {filename: [(onset, offset, label), ...]} in file order; a file listed only with an
    empty row has an empty list."""

    path: Path
    events: dict[str, list[tuple[float, float, str]]] = field(default_factory=dict)

    @property
    def labels(self) -> set[str]:
        return {label for events in self.events.values() for _, _, label in events}


def _seconds(text: str, column: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: {column} must be a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{where}: {column} must be a finite number of seconds >= 0, got {text!r}")
    return value


def read_strong_table(path: Path) -> StrongRows:
    """Read a strong table (see the module docstring); a missing column, a bad number, onset >= offset or a row
    with only some of onset/offset/label is a ValueError naming the file and line."""
    rows = StrongRows(path)
    for line, row in enumerate(read_table(path, STRONG_COLUMNS, delimiter="\t"), start=2):
        where = f"{path}:{line}"
        name = row["filename"]
        if not name:
            raise ValueError(f"{where}: empty filename; columns are {' '.join(STRONG_COLUMNS)}")
        cells = [row["onset"], row["offset"], row["event_label"]]
        events = rows.events.setdefault(name, [])
        if not any(cells) or all(cell.lower() == "nan" for cell in cells):
            continue  # a recording without events
        if not all(cells):
            raise ValueError(f"{where}: onset, offset and event_label must all be given (or all empty for a "
                             f"recording without events), got {cells}")
        onset = _seconds(row["onset"], "onset", where)
        offset = _seconds(row["offset"], "offset", where)
        if offset <= onset:
            raise ValueError(f"{where}: onset {onset} must be before offset {offset} (seconds)")
        events.append((onset, offset, row["event_label"]))
    return rows


def read_weak_table(path: Path, labels: Optional[LabelSpace] = None) -> dict[str, list[str]]:
    """{filename: [label, ...]} of a weak table; with `labels`, an unknown label is a ValueError naming the file,
    line and the accepted classes."""
    weak: dict[str, list[str]] = {}
    for line, row in enumerate(read_table(path, WEAK_COLUMNS, delimiter="\t"), start=2):
        where = f"{path}:{line}"
        if not row["filename"]:
            raise ValueError(f"{where}: empty filename; columns are {' '.join(WEAK_COLUMNS)}")
        names = [name.strip() for name in row["event_labels"].split(",") if name.strip()]
        if labels is not None:
            labels.encode(names, where)
        weak.setdefault(row["filename"], []).extend(names)
    return weak


def read_durations(path: Path) -> dict[str, float]:
    """{filename: seconds} of a durations table (`filename duration`)."""
    durations = {}
    for line, row in enumerate(read_table(path, DURATION_COLUMNS, delimiter="\t"), start=2):
        value = _seconds(row["duration"], "duration", f"{path}:{line}")
        if value <= 0:
            raise ValueError(f"{path}:{line}: duration must be > 0 seconds, got {row['duration']!r}")
        durations[row["filename"]] = value
    return durations


def check_audio_file(path: Path) -> Optional[str]:
    """Why `path` cannot be used (missing, empty, unreadable header), or None when it can."""
    try:
        size = path.stat().st_size
    except OSError:
        return "missing"
    if size <= 0:
        return "empty file"
    try:
        info = soundfile.info(str(path))
    except Exception as error:  # libsndfile raises several types
        return f"unreadable audio ({type(error).__name__}: {str(error).strip()[:120]})"
    if info.frames <= 0:
        return "no audio samples"
    return None


def strong_events(events: Sequence[tuple[float, float, str]], labels: LabelSpace, where: str) -> tuple[Event, ...]:
    """`Event`s of (onset, offset, label name) rows, same-class overlaps merged; unknown labels name `where`."""
    index = {name: i for i, name in enumerate(labels.names)}
    unknown = sorted({label for _, _, label in events if label not in index})
    if unknown:
        labels.encode(unknown, where)  # raises, naming the classes
    return merge_events([Event(onset, offset, index[label]) for onset, offset, label in events])


class StrongCollector:
    """Gathers a strong task's clips split by split; a recording that cannot be used is skipped and named."""

    def __init__(self, name: str, root: Path, check: Callable[[Path], Optional[str]] = check_audio_file) -> None:
        self.name = name
        self.root = root
        self.check = check
        self.splits: dict[str, list[StrongClip]] = {}
        self.skipped: list[str] = []
        self.listed: dict[str, int] = {}

    def key(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.as_posix()

    def add(self, split: str, path: Path, events: Optional[tuple[Event, ...]] = None,
            weak: Optional[tuple[int, ...]] = None, duration: Optional[float] = None, listed_in: str = "") -> bool:
        """Add the recording at `path` to `split` if it is usable (see `check_audio_file`); for a strong clip
        `weak` defaults to the set of its event labels. Returns whether it was added."""
        if split not in STRONG_SPLITS:
            raise ValueError(f"unknown split {split!r}; accepted: {STRONG_SPLITS}")
        self.listed[split] = self.listed.get(split, 0) + 1
        self.splits.setdefault(split, [])
        problem = self.check(path)
        if problem:
            self.skipped.append(f"{path}: {problem}" + (f" (listed in {listed_in})" if listed_in else ""))
            return False
        if events is not None and weak is None:
            weak = tuple(sorted({event.label for event in events}))
        self.splits[split].append(StrongClip(self.key(path), str(path), events, weak, duration))
        return True

    def skip(self, reason: str) -> None:
        self.skipped.append(reason)

    def task(self, labels: LabelSpace, required: Sequence[str] = ("valid", "test"),
             official_selects_on_test: bool = False, source: str = "") -> StrongTask:
        """The StrongTask; a required split (or both training splits) without a usable clip is a ValueError
        naming how many were listed and skipped (most often the wrong folder was given)."""
        train = [name for name in ("train_strong", "train_weak") if self.splits.get(name)]
        empty = [name for name in required if not self.splits.get(name)] + ([] if train else ["train_strong"])
        if empty:
            first = f"; first skipped: {self.skipped[0]}" if self.skipped else ""
            counts = ", ".join(f"{name} {self.listed.get(name, 0)} listed" for name in empty)
            raise ValueError(f"{self.name} at {self.root}: split(s) {empty} hold no usable recording ({counts}, "
                             f"{len(self.skipped)} skipped in all{first})")
        splits = {name: tuple(clips) for name, clips in self.splits.items() if clips or name in required}
        keys: dict[str, str] = {}
        for clip in (clip for clips in splits.values() for clip in clips):
            if clip.key in keys and keys[clip.key] != clip.path:
                raise ValueError(f"{self.name}: clip key {clip.key!r} names both {keys[clip.key]} and {clip.path}")
            keys[clip.key] = clip.path
        return StrongTask(name=self.name, labels=labels, splits=splits, skipped=self.skipped,
                          source=source or f"{self.name} at {self.root}",
                          official_selects_on_test=official_selects_on_test)


__all__ = ["DURATION_COLUMNS", "STRONG_COLUMNS", "StrongCollector", "StrongRows", "WEAK_COLUMNS",
           "check_audio_file", "read_durations", "read_strong_table", "read_weak_table", "strong_events"]
