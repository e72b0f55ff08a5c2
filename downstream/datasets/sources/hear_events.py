"""A HEAR event task directory (hear-preprocess layout, `embedding_type` "event") as a strong-label task.

    task_metadata.json   embedding_type "event", split_mode, sample_duration (seconds), nfolds (k-fold modes)
    labelvocabulary.csv  idx,label
    <split>.json         {filename: [{"label", "start", "end"}, ...]}  start/end in milliseconds
    16000/<split>/<filename>

Splits: "trainvaltest" gives train_strong / valid / test from train / valid / test. The k-fold modes test on
fold `fold` (0-based), validate on the next fold and train on the rest (HEAR's own protocol trains one model per
fold; run one per fold). Every clip's duration is the task's `sample_duration` (hear-preprocess pads or trims
every clip to it). Missing or unreadable audio files are skipped and named.
"""
from __future__ import annotations

import json
from pathlib import Path

from atst.audio_io import SAMPLE_RATE

from ..strong import StrongTask
from ..types import LabelSpace, fold_names
from .hear import KFOLD_MODES, _vocabulary
from .strong_common import StrongCollector, strong_events


def is_hear_event_task(path: Path) -> bool:
    metadata = Path(path) / "task_metadata.json"
    if not metadata.is_file():
        return False
    return json.loads(metadata.read_text(encoding="utf-8")).get("embedding_type") == "event"


def _split_plan(task_dir: Path, metadata: dict, fold: int) -> dict[str, str]:
    """{listing split name: strong split name}."""
    mode = metadata.get("split_mode", "trainvaltest")
    if mode not in KFOLD_MODES:
        return {"train": "train_strong", "valid": "valid", "test": "test"}
    num_folds = int(metadata.get("nfolds", 0))
    if num_folds < 3:
        raise ValueError(f"{task_dir}: a k-fold event task needs >= 3 folds to train, validate and test; it has "
                         f"{num_folds}")
    if not 0 <= fold < num_folds:
        raise ValueError(f"{task_dir}: fold must be in [0, {num_folds - 1}], got {fold}")
    names = fold_names(num_folds)
    plan = {name: "train_strong" for name in names}
    plan[names[fold]] = "test"
    plan[names[(fold + 1) % num_folds]] = "valid"
    return plan


def load_hear_event_task(task_dir: Path, protocol: str = "hear", fold: int = 0) -> StrongTask:
    """Read a HEAR event task into a StrongTask (see the module docstring); `protocol` changes nothing here."""
    task_dir = Path(task_dir)
    metadata = json.loads((task_dir / "task_metadata.json").read_text(encoding="utf-8"))
    if metadata.get("embedding_type") != "event":
        raise ValueError(f"{task_dir} is a HEAR {metadata.get('embedding_type')!r} task; sound event detection "
                         f"takes event tasks (embedding_type 'event'); scene tasks train with linear/finetune")
    labels = LabelSpace(_vocabulary(task_dir), multi_label=True)
    duration = metadata.get("sample_duration")
    duration = float(duration) if duration else None
    collector = StrongCollector(str(metadata.get("task_name", task_dir.name)), task_dir)
    for listing_name, split in _split_plan(task_dir, metadata, fold).items():
        listing = task_dir / f"{listing_name}.json"
        if not listing.is_file():
            raise FileNotFoundError(f"{task_dir}: {listing.name} is missing (split_mode "
                                    f"{metadata.get('split_mode', 'trainvaltest')!r})")
        for filename, events in sorted(json.loads(listing.read_text(encoding="utf-8")).items()):
            where = f"{listing} ({filename})"
            rows = []
            for event in events:
                try:
                    rows.append((float(event["start"]) / 1000.0, float(event["end"]) / 1000.0, str(event["label"])))
                except (KeyError, TypeError, ValueError):
                    raise ValueError(f"{where}: events are {{\"label\", \"start\", \"end\"}} with times in ms, got "
                                     f"{event!r}") from None
            bad = [row for row in rows if not 0 <= row[0] < row[1]]
            if bad:
                raise ValueError(f"{where}: an event needs 0 <= start < end, got {bad[0][0] * 1000:g} ms to "
                                 f"{bad[0][1] * 1000:g} ms")
            collector.add(split, task_dir / str(SAMPLE_RATE) / listing_name / filename,
                          strong_events(rows, labels, where), duration=duration, listed_in=listing.name)
    return collector.task(labels, source=f"HEAR event task {task_dir}")
