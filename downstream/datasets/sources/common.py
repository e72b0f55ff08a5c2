"""What the native-layout sources share: required files named with the layout they belong to, CSV tables checked
for their columns, and a collector that stats each listed clip (never decodes it) and records the missing ones.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable, Optional, Sequence

from ..types import Clip, LabelSpace, Task, check_unique_keys


def require_file(path: Path, dataset: str, layout: str) -> Path:
    """`path` if it is a file; else FileNotFoundError naming it, the dataset and the layout it reads."""
    if not path.is_file():
        raise FileNotFoundError(f"dataset {dataset}: {path} is missing; expected {layout}")
    return path


def read_table(path: Path, columns: Sequence[str], delimiter: str = ",",
               comment: Optional[str] = None) -> list[dict[str, str]]:
    """Rows of a CSV/TSV with a header line, as {column: stripped text}; lines starting with `comment` are
    skipped. A missing column is a ValueError naming the file, the missing columns and the ones it has."""
    with open(path, newline="", encoding="utf-8-sig") as handle:  # -sig: spreadsheets start CSVs with a BOM
        lines: Iterable[str] = (line for line in handle if not (comment and line.startswith(comment)))
        reader = csv.DictReader(lines, delimiter=delimiter, skipinitialspace=True)
        header = [name.strip() for name in reader.fieldnames or []]
        missing = [name for name in columns if name not in header]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; it has {header}")
        return [{(k or "").strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]


def check_label_count(labels: Sequence[str], expected: int, dataset: str, where: Path) -> None:
    """A registered dataset has a fixed number of classes: another count means another file or version."""
    if len(labels) != expected:
        raise ValueError(f"dataset {dataset}: {where} gives {len(labels)} classes; {dataset} has {expected}")


class ClipCollector:
    """Gathers a task's clips split by split; a listed file that is absent or empty is skipped and named."""

    def __init__(self, dataset: str, root: Path) -> None:
        self.dataset = dataset
        self.root = root
        self.splits: dict[str, list[Clip]] = {}
        self.skipped: list[str] = []
        self.listed: dict[str, int] = {}

    def add(self, split: str, path: Path, target: tuple[int, ...], key: Optional[str] = None,
            listed_in: str = "") -> bool:
        """Add the clip at `path` (key: its path relative to the root unless given) if the file exists and is
        not empty; returns whether it was added."""
        self.listed[split] = self.listed.get(split, 0) + 1
        clips = self.splits.setdefault(split, [])
        try:
            size = path.stat().st_size
        except OSError:
            size = -1
        if size <= 0:
            where = f" (listed in {listed_in})" if listed_in else ""
            self.skipped.append(f"{path}: {'missing' if size < 0 else 'empty file'}{where}")
            return False
        clips.append(Clip(key if key is not None else path.relative_to(self.root).as_posix(), str(path), target))
        return True

    def skip(self, reason: str) -> None:
        self.skipped.append(reason)

    def task(self, labels: LabelSpace, split_names: Sequence[str], num_folds: int = 1,
             official_validates_on_test: bool = False) -> Task:
        """The Task; a split with no usable clip is a ValueError (most often the wrong folder was given)."""
        for name in split_names:
            if not self.splits.get(name):
                first = f"; first skipped: {self.skipped[0]}" if self.skipped else ""
                raise ValueError(f"dataset {self.dataset} at {self.root}: split {name!r} holds no usable clip "
                                 f"({self.listed.get(name, 0)} listed, {len(self.skipped)} skipped in all{first})")
        splits = {name: tuple(self.splits[name]) for name in split_names}
        check_unique_keys([clip for clips in splits.values() for clip in clips], f"dataset {self.dataset}")
        return Task(name=self.dataset, labels=labels, splits=splits, num_folds=num_folds, skipped=self.skipped,
                    source=f"{self.dataset} at {self.root}", official_validates_on_test=official_validates_on_test)
