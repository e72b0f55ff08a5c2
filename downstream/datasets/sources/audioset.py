"""AudioSet (`audioset` = AS-2M, `audioset_b` = the balanced AS-20K; multi-label, 527 classes).

    ROOT/class_labels_indices.csv        index,mid,display_name (the ontology's 527 classes)
    ROOT/balanced_train_segments.csv     `# ...` comment lines, then `YTID, start_seconds, end_seconds,
    ROOT/unbalanced_train_segments.csv    "positive_labels"` (labels: comma-separated mids)
    ROOT/eval_segments.csv
    ROOT/**/<clip>                       the downloaded clips, anywhere under ROOT (one folder or several)

A clip file is found by its YouTube id: `<YTID>.<ext>`, `Y<YTID>.<ext>`, or either followed by `_` and anything
(`Y<YTID>_30.000_40.000.wav`), with any suffix of `atst.audio_io.AUDIO_SUFFIXES`. Segments without a file (most
downloads miss some) are skipped and named; so is a YouTube id listed again in a later CSV.

Splits. test = eval. `audioset_b` trains on the balanced set, `audioset` on balanced + unbalanced. valid: ours is
a held-out part of the balanced set, 10 % of its clips chosen by YouTube id (`splitting.split_of`: the same clips
whatever the download's file names, and the same for both datasets), never trained on. The official protocol
validated on eval (its "valid" set is a copy of eval), so it chose the best epoch on the test data:
`Task.official_validates_on_test` is set, and the `official` protocol (`types.fold_plan`) trains on train + valid
(the whole training set) and validates on eval, to reproduce published numbers. Labels: class_labels_indices.csv
order, named by display_name (the segment CSVs list mids).
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

from atst.audio_io import is_audio_path

from ..registry import register_dataset
from ..splitting import split_of
from ..types import LabelSpace, Task
from .common import ClipCollector, check_label_count, read_table, require_file

LAYOUT = ("a folder with class_labels_indices.csv, balanced_train_segments.csv, unbalanced_train_segments.csv, "
          "eval_segments.csv and the clips named by YouTube id (<YTID>.wav or Y<YTID>...) anywhere below it")
NUM_CLASSES = 527
VALID_FRACTION = 0.1
BALANCED, UNBALANCED, EVAL = "balanced_train_segments.csv", "unbalanced_train_segments.csv", "eval_segments.csv"
YTID_LENGTH = 11
LAYOUT_B = LAYOUT.replace("unbalanced_train_segments.csv, ", "")


def _file_ids(name: str) -> list[str]:
    """The YouTube ids a clip file name may stand for, most specific first."""
    stem = name[: -len(Path(name).suffix)]
    ids = [stem]
    if len(stem) > YTID_LENGTH and stem[YTID_LENGTH] == "_":
        ids.append(stem[:YTID_LENGTH])
    if stem.startswith("Y"):
        ids.append(stem[1:])
        if len(stem) > YTID_LENGTH + 1 and stem[YTID_LENGTH + 1] == "_":
            ids.append(stem[1:YTID_LENGTH + 1])
    return ids


def index_clips(root: Path) -> dict[str, Path]:
    """{YouTube id: file} of every audio file under `root` (one walk; an exact `<YTID>.<ext>` name wins)."""
    exact: dict[str, Path] = {}
    loose: dict[str, Path] = {}
    for folder, subfolders, files in os.walk(root):
        subfolders.sort()
        for name in sorted(files):
            if not is_audio_path(name):
                continue
            ids = _file_ids(name)
            exact.setdefault(ids[0], Path(folder) / name)
            for ytid in ids[1:]:
                loose.setdefault(ytid, Path(folder) / name)
    return {**loose, **exact}


def read_segments(path: Path, mids: dict[str, int]) -> list[tuple[str, tuple[int, ...]]]:
    """(YouTube id, class indices) of each segment row, `mids` mapping mid -> class index; an unknown mid is a
    ValueError naming the row."""
    with open(path, encoding="utf-8") as handle:
        lines = [line for line in handle if line.strip() and not line.startswith("#")]
    rows = []
    for number, row in enumerate(csv.reader(lines, skipinitialspace=True), start=1):
        if len(row) < 4:
            raise ValueError(f"{path}: segment row {number} is {row}; expected YTID, start_seconds, "
                             f"end_seconds, \"positive_labels\"")
        listed = [mid.strip() for mid in row[3].split(",") if mid.strip()]
        unknown = [mid for mid in listed if mid not in mids]
        if unknown:
            raise ValueError(f"{path}: segment {row[0].strip()} has label(s) {unknown} that are not in "
                             f"class_labels_indices.csv")
        rows.append((row[0].strip(), tuple(sorted({mids[mid] for mid in listed}))))
    return rows


def _label_space(root: Path, name: str, layout: str) -> tuple[LabelSpace, dict[str, int]]:
    """The classes named by their display names in index order, and {mid: class index}."""
    path = require_file(root / "class_labels_indices.csv", name, layout)
    rows = read_table(path, ("index", "mid", "display_name"))
    if [row["index"] for row in rows] != [str(i) for i in range(len(rows))]:
        raise ValueError(f"{path}: index must run 0..{len(rows) - 1} in order")
    check_label_count(rows, NUM_CLASSES, name, path)
    labels = LabelSpace(tuple(row["display_name"] for row in rows), multi_label=True)
    return labels, {row["mid"]: int(row["index"]) for row in rows}


def load_audioset_task(root: Path, name: str, train_lists: tuple[str, ...], layout: str) -> Task:
    """Read AudioSet with the training segments of `train_lists` (see the module docstring)."""
    labels, mids = _label_space(root, name, layout)
    lists = {csv_name: require_file(root / csv_name, name, layout) for csv_name in train_lists + (EVAL,)}
    clips = index_clips(root)
    collector = ClipCollector(name, root)
    listed_in: dict[str, str] = {}
    for csv_name, path in lists.items():
        for ytid, target in read_segments(path, mids):
            if ytid in listed_in:
                collector.skip(f"{ytid}: listed in {csv_name} after {listed_in[ytid]}; the first is used")
                continue
            listed_in[ytid] = csv_name
            if ytid not in clips:
                collector.skip(f"{ytid}: missing (listed in {csv_name}; no <YTID>.* or Y<YTID>* file under {root})")
                continue
            key = clips[ytid].relative_to(root).as_posix()
            if csv_name == EVAL:
                split = "test"
            elif csv_name == BALANCED and split_of(ytid, (("valid", VALID_FRACTION),)) == "valid":
                split = "valid"
            else:
                split = "train"
            collector.add(split, clips[ytid], target, key, listed_in=csv_name)
    return collector.task(labels, ("train", "valid", "test"), official_validates_on_test=True)


@register_dataset("audioset", multi_label=True, num_labels=NUM_CLASSES, num_folds=1, layout=LAYOUT)
def load_audioset(root: Path) -> Task:
    """AS-2M: balanced + unbalanced training segments (see the module docstring)."""
    return load_audioset_task(root, "audioset", (BALANCED, UNBALANCED), LAYOUT)


@register_dataset("audioset_b", multi_label=True, num_labels=NUM_CLASSES, num_folds=1, layout=LAYOUT_B)
def load_audioset_b(root: Path) -> Task:
    """AS-20K: the balanced training segments (see the module docstring)."""
    return load_audioset_task(root, "audioset_b", (BALANCED,), LAYOUT_B)
