"""AudioSet strong labels (`as_strong`): Google's strong-label release with the clips; ROOT holds both.

    ROOT/audioset_train_strong.tsv     segment_id start_time_seconds end_time_seconds label   (label: a MID)
    ROOT/audioset_eval_strong.tsv      (also accepted under ROOT/meta/source/, as the official scripts keep them)
    ROOT/**/<segment_id>.<ext>         the clips, anywhere under ROOT (`Y<segment_id>` also found), any rate

Classes (spec `downstream_frame_spec.md` 2.1): the MIDs that occur in both the train and the eval table, in sorted
(string) order -- 407 on the full release. The official preparation wrote them in Python set order (it changes
with string-hash randomisation); its released checkpoint uses a sorted list. Class names are the MIDs.
Every clip with a label outside that set is dropped entirely (not just the row), as the official preparation does.
Overlapping (and touching) events of one class in a clip are merged after sorting by onset (the official merge
assumed sorted rows); both evaluation libraries refuse overlapping ground truth.

Splits: train_strong = the train table; test = the eval table. valid: by default a held-out 10 % of the train
clips, chosen by the hash of the segment id (`splitting.split_of`: the same clips on every machine, whatever is
downloaded), never trained on. The official code validated (early stopping, best checkpoint) on the eval set:
`protocol="official"` trains on the whole train table and sets valid = the eval clips, and the task carries
`official_selects_on_test = True` either way so that results can say so. Rows whose clip is not on disk are
dropped (the official preparation keeps only existing files); clips that are empty or unreadable are skipped and
named.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from atst.audio_io import is_audio_path

from ..registry import register_dataset
from ..splitting import split_of
from ..strong import StrongTask
from ..types import LabelSpace
from .common import read_table
from .strong_common import StrongCollector, strong_events

NAME = "as_strong"
TABLES = {"train": "audioset_train_strong.tsv", "eval": "audioset_eval_strong.tsv"}
TABLE_FOLDERS = ("", "meta/source", "metadata")
COLUMNS = ("segment_id", "start_time_seconds", "end_time_seconds", "label")
LAYOUT = ("a folder with audioset_train_strong.tsv and audioset_eval_strong.tsv (Google's strong labels, MIDs) "
          "and the clips named <segment_id>.wav (or Y<segment_id>...) anywhere below it")
NUM_COMMON_CLASSES = 407  # on the full release; the count is computed from the tables
VALID_FRACTION = 0.1

Rows = dict[str, list[tuple[float, float, str]]]


def find_table(root: Path, name: str) -> Path:
    for folder in TABLE_FOLDERS:
        path = root / folder / name
        if path.is_file():
            return path
    raise FileNotFoundError(f"dataset {NAME}: {name} is missing under {root} (looked in "
                            f"{', '.join(repr(f or '.') for f in TABLE_FOLDERS)}); expected {LAYOUT}")


def read_as_strong_table(path: Path) -> Rows:
    """{segment_id: [(onset, offset, MID), ...]}; a bad number or onset >= offset names the file and line."""
    rows: Rows = {}
    for line, row in enumerate(read_table(path, COLUMNS, delimiter="\t"), start=2):
        where = f"{path}:{line}"
        try:
            onset, offset = float(row["start_time_seconds"]), float(row["end_time_seconds"])
        except ValueError:
            raise ValueError(f"{where}: start_time_seconds and end_time_seconds must be numbers, got "
                             f"{row['start_time_seconds']!r}, {row['end_time_seconds']!r}") from None
        if not (0 <= onset < offset):
            raise ValueError(f"{where}: an event needs 0 <= start < end (seconds), got {onset}, {offset}")
        if not row["segment_id"] or not row["label"]:
            raise ValueError(f"{where}: segment_id and label must not be empty")
        rows.setdefault(row["segment_id"], []).append((onset, offset, row["label"]))
    return rows


def common_classes(train: Rows, evaluation: Rows) -> tuple[str, ...]:
    """The labels present in both tables, sorted."""
    def labels(rows: Rows) -> set[str]:
        return {label for events in rows.values() for _, _, label in events}

    return tuple(sorted(labels(train) & labels(evaluation)))


def keep_common(rows: Rows, classes: tuple[str, ...]) -> Rows:
    """The clips whose every label is a common class (a clip with any other label is dropped whole)."""
    allowed = set(classes)
    return {segment: events for segment, events in rows.items() if all(label in allowed for *_, label in events)}


def index_audio(root: Path) -> dict[str, Path]:
    """{file stem: path} of every audio file under `root` (first in sorted walk order wins)."""
    found: dict[str, Path] = {}
    for folder, subfolders, files in os.walk(root):
        subfolders.sort()
        for name in sorted(files):
            if is_audio_path(name):
                found.setdefault(name[: -len(Path(name).suffix)], Path(folder) / name)
    return found


def _clip_path(index: dict[str, Path], segment: str) -> Optional[Path]:
    return index.get(segment) or index.get("Y" + segment)


@register_dataset(NAME, multi_label=True, num_labels=NUM_COMMON_CLASSES, layout=LAYOUT, kind="strong")
def load_as_strong(root: Path, protocol: str = "hear") -> StrongTask:
    """Read AudioSet-strong (see the module docstring)."""
    train_table, eval_table = find_table(root, TABLES["train"]), find_table(root, TABLES["eval"])
    train, evaluation = read_as_strong_table(train_table), read_as_strong_table(eval_table)
    classes = common_classes(train, evaluation)
    if not classes:
        raise ValueError(f"dataset {NAME}: {train_table.name} and {eval_table.name} share no label")
    labels = LabelSpace(classes, multi_label=True)
    index = index_audio(root)
    collector = StrongCollector(NAME, root)
    absent = 0
    for table, rows, part in ((train_table, train, "train"), (eval_table, evaluation, "eval")):
        for segment, events in keep_common(rows, classes).items():
            path = _clip_path(index, segment)
            if path is None:
                absent += 1
                collector.skip(f"{root}: segment {segment} (listed in {table.name}) has no audio file")
                continue
            clip_events = strong_events(events, labels, f"{table} ({segment})")
            if part == "eval":
                collector.add("test", path, clip_events, listed_in=table.name)
                if protocol == "official":
                    collector.add("valid", path, clip_events, listed_in=table.name)
            elif protocol != "official" and split_of(segment, (("valid", VALID_FRACTION),)) == "valid":
                collector.add("valid", path, clip_events, listed_in=table.name)
            else:
                collector.add("train_strong", path, clip_events, listed_in=table.name)
    dropped = {part: len(rows) - len(keep_common(rows, classes)) for part, rows in (("train", train),
                                                                                      ("eval", evaluation))}
    source = (f"{NAME} at {root} (protocol {protocol}; {len(classes)} common classes; clips with other labels "
              f"dropped: {dropped['train']} train, {dropped['eval']} eval; {absent} listed clips not on disk"
              + ("; validated on the eval set, as the official code" if protocol == "official" else "") + ")")
    return collector.task(labels, official_selects_on_test=True, source=source)
