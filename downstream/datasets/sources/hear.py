"""A HEAR task directory (hear-preprocess layout): `task_metadata.json`, `labelvocabulary.csv`, `<split>.json`
and `16000/<split>/<file>` (the 16 kHz copies; 48000/ and others are not read).

Scene tasks only (clip-level labels); event tasks (timestamped labels) are frame-level and belong to `sed`.
`split_mode` "trainvaltest" gives train/valid/test; the k-fold modes give fold00, fold01, ...
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from atst.audio_io import SAMPLE_RATE

from ..types import Clip, LabelSpace, Task, check_unique_keys, fold_names

KFOLD_MODES = ("new_split_kfold", "presplit_kfold")


def is_hear_task(path: Path) -> bool:
    return (Path(path) / "task_metadata.json").is_file()


def _vocabulary(task_dir: Path) -> tuple[str, ...]:
    path = task_dir / "labelvocabulary.csv"
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or "label" not in rows[0] or "idx" not in rows[0]:
        raise ValueError(f"{path}: expected a CSV with columns idx,label")
    return tuple(row["label"] for row in sorted(rows, key=lambda r: int(r["idx"])))


def load_hear_task(task_dir: Path) -> Task:
    """Read a HEAR scene task into a Task (see the module docstring)."""
    task_dir = Path(task_dir)
    metadata = json.loads((task_dir / "task_metadata.json").read_text(encoding="utf-8"))
    if metadata.get("embedding_type") != "scene":
        raise ValueError(f"{task_dir} is a HEAR {metadata.get('embedding_type')!r} task; clip-level training takes "
                         f"scene tasks (event tasks are frame-level: use `sed`)")
    mode = metadata.get("split_mode", "trainvaltest")
    num_folds = int(metadata.get("nfolds", 0)) if mode in KFOLD_MODES else 1
    split_names = fold_names(num_folds) if mode in KFOLD_MODES else ("train", "valid", "test")
    labels = LabelSpace(_vocabulary(task_dir), multi_label=metadata.get("prediction_type") == "multilabel")
    splits: dict[str, tuple[Clip, ...]] = {}
    skipped: list[str] = []
    for split in split_names:
        listing = task_dir / f"{split}.json"
        if not listing.is_file():
            raise FileNotFoundError(f"{task_dir}: {listing.name} is missing (split_mode {mode!r})")
        clips = []
        for filename, names in sorted(json.loads(listing.read_text(encoding="utf-8")).items()):
            path = task_dir / str(SAMPLE_RATE) / split / filename
            if not path.is_file():
                skipped.append(f"{path}: missing")
                continue
            clips.append(Clip(f"{split}/{filename}", str(path), labels.encode([str(n) for n in names], str(path))))
        splits[split] = tuple(clips)
    check_unique_keys([c for clips in splits.values() for c in clips], str(task_dir))
    return Task(name=str(metadata.get("task_name", task_dir.name)), labels=labels, splits=splits,
                num_folds=max(num_folds, 1), skipped=skipped, source=f"HEAR task {task_dir}")
