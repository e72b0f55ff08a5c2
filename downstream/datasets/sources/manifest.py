"""A CSV (`.csv`, comma) or TSV (`.tsv`, tab) manifest with a header line naming its columns:

    path,label[,split][,fold]        or        path,labels[,split][,fold]

* `path`: an audio file, relative to the manifest's folder or absolute. Keys are the paths as written.
* `label`: one class name; several, separated by `;`, make the task multi-label. `labels`: always multi-label
  (`;`-separated, possibly empty). Classes are the names found, sorted.
* `split` (optional): `train`, `valid` or `test` on every row.
* `fold` (optional, instead of `split`): an integer per row; the distinct values, sorted, are folds fold00,
  fold01, ... (k-fold: each run tests on one fold, see `types.fold_plan`).
* neither: each clip's split is drawn from its key (80 / 10 / 10, `splitting.split_of`).

Any other column is an error naming it and the accepted ones (a typo must not silently drop the labels). Rows
whose file is not on disk are skipped and named.
"""
from __future__ import annotations

import csv
from pathlib import Path

from ..splitting import split_of
from ..types import LabelSpace, Task, fold_names
from .common import ClipCollector, read_table

PATH, LABEL, LABELS, SPLIT, FOLD = "path", "label", "labels", "split", "fold"
ACCEPTED = (PATH, LABEL, LABELS, SPLIT, FOLD)
SPLITS = ("train", "valid", "test")
SEPARATOR = ";"


def _columns(path: Path, delimiter: str) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        header = next(csv.reader(handle, delimiter=delimiter), [])
    columns = [name.strip() for name in header]
    unknown = [name for name in columns if name not in ACCEPTED]
    if unknown:
        raise ValueError(f"manifest {path}: unknown column(s) {unknown}; accepted: path, label or labels (class "
                         f"names, ';' between several), split (train/valid/test) or fold (an integer)")
    if PATH not in columns or (LABEL in columns) == (LABELS in columns):
        raise ValueError(f"manifest {path}: the header must name `path` and one of `label` / `labels`, got {columns}")
    if SPLIT in columns and FOLD in columns:
        raise ValueError(f"manifest {path}: give `split` or `fold`, not both")
    return columns


def load_manifest(path: Path) -> Task:
    """Read a manifest into a Task (see the module docstring)."""
    path = Path(path)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    columns = _columns(path, delimiter)
    label_column = LABEL if LABEL in columns else LABELS
    rows = read_table(path, columns, delimiter)
    if not rows:
        raise ValueError(f"manifest {path} lists no clips")
    names = [[n.strip() for n in row[label_column].split(SEPARATOR) if n.strip()] for row in rows]
    multi_label = label_column == LABELS or any(len(row_names) > 1 for row_names in names)
    labels = LabelSpace(tuple(sorted({n for row_names in names for n in row_names})), multi_label=multi_label)
    folds: list[str] = []
    if FOLD in columns:
        values = []
        for line, row in enumerate(rows, start=2):
            if not row[FOLD].lstrip("-").isdigit():
                raise ValueError(f"{path}:{line}: fold must be an integer, got {row[FOLD]!r}")
            values.append(int(row[FOLD]))
        distinct = sorted(set(values))
        folds = list(fold_names(len(distinct)))
        fold_of = {value: folds[i] for i, value in enumerate(distinct)}
    collector = ClipCollector(path.stem, path.parent)
    for line, (row, row_names) in enumerate(zip(rows, names), start=2):
        where = f"{path}:{line}"
        if not row[PATH]:
            raise ValueError(f"{where}: empty path")
        if SPLIT in columns:
            split = row[SPLIT]
            if split not in SPLITS:
                raise ValueError(f"{where}: split must be one of {SPLITS}, got {split!r}")
        elif FOLD in columns:
            split = fold_of[int(row[FOLD])]
        else:
            split = split_of(row[PATH])
        audio = Path(row[PATH]).expanduser()
        collector.add(split, audio if audio.is_absolute() else path.parent / audio, labels.encode(row_names, where),
                      key=row[PATH], listed_in=path.name)
    if folds:
        return collector.task(labels, folds, num_folds=len(folds))
    return collector.task(labels, SPLITS)
