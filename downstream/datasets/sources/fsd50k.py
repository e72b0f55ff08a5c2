"""FSD50K (`fsd50k`, multi-label), read in its distributed layout: ROOT holds the extracted archives.

    ROOT/FSD50K.ground_truth/vocabulary.csv   index,label,mid (no header line in the release; one is accepted)
    ROOT/FSD50K.ground_truth/dev.csv          fname,labels,mids,split   (labels: comma-separated names)
    ROOT/FSD50K.ground_truth/eval.csv         fname,labels,mids
    ROOT/FSD50K.dev_audio/<fname>.wav, ROOT/FSD50K.eval_audio/<fname>.wav

Splits: dev.csv rows with split `train` are train, `val` valid; eval.csv is test (both protocols). Labels: the
200 classes in vocabulary.csv's index order. Rows whose file is not on disk are skipped and named.
"""
from __future__ import annotations

import csv
from pathlib import Path

from ..registry import register_dataset
from ..types import LabelSpace, Task
from .common import ClipCollector, check_label_count, read_table, require_file

NAME = "fsd50k"
LAYOUT = ("a folder with FSD50K.ground_truth/ (vocabulary.csv, dev.csv, eval.csv), FSD50K.dev_audio/ and "
          "FSD50K.eval_audio/")
NUM_CLASSES = 200
DEV_SPLITS = {"train": "train", "val": "valid"}


def read_vocabulary(path: Path) -> tuple[str, ...]:
    """Class names in index order from `index,label,mid` rows (an `index,...` header line is passed over)."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.reader(handle) if row]
    if rows and not rows[0][0].strip().isdigit():
        rows = rows[1:]
    indexed = []
    for number, row in enumerate(rows, start=1):
        if len(row) < 2 or not row[0].strip().isdigit():
            raise ValueError(f"{path}: row {number} is {row}; expected index,label,mid")
        indexed.append((int(row[0]), row[1].strip()))
    indices = sorted(index for index, _ in indexed)
    if indices != list(range(len(indexed))):
        raise ValueError(f"{path}: indices must run 0..{len(indexed) - 1} without gaps or repeats")
    return tuple(name for _, name in sorted(indexed))


def _target(labels: LabelSpace, text: str, where: str) -> tuple[int, ...]:
    return labels.encode([name.strip() for name in text.split(",") if name.strip()], where)


@register_dataset(NAME, multi_label=True, num_labels=NUM_CLASSES, num_folds=1, layout=LAYOUT)
def load_fsd50k(root: Path) -> Task:
    """Read FSD50K (see the module docstring)."""
    truth = root / "FSD50K.ground_truth"
    vocabulary = require_file(truth / "vocabulary.csv", NAME, LAYOUT)
    names = read_vocabulary(vocabulary)
    check_label_count(names, NUM_CLASSES, NAME, vocabulary)
    labels = LabelSpace(names, multi_label=True)
    collector = ClipCollector(NAME, root)
    dev = require_file(truth / "dev.csv", NAME, LAYOUT)
    for line, row in enumerate(read_table(dev, ("fname", "labels", "split")), start=2):
        if row["split"] not in DEV_SPLITS:
            raise ValueError(f"{dev}:{line}: split must be one of {sorted(DEV_SPLITS)}, got {row['split']!r}")
        path = root / "FSD50K.dev_audio" / f"{row['fname']}.wav"
        collector.add(DEV_SPLITS[row["split"]], path, _target(labels, row["labels"], f"{dev}:{line}"),
                      listed_in=dev.name)
    test = require_file(truth / "eval.csv", NAME, LAYOUT)
    for line, row in enumerate(read_table(test, ("fname", "labels")), start=2):
        path = root / "FSD50K.eval_audio" / f"{row['fname']}.wav"
        collector.add("test", path, _target(labels, row["labels"], f"{test}:{line}"), listed_in=test.name)
    return collector.task(labels, ("train", "valid", "test"))
