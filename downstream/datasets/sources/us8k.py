"""UrbanSound8K (`us8k`), read in its distributed layout: ROOT is the `UrbanSound8K` folder.

    ROOT/metadata/UrbanSound8K.csv   slice_file_name,fsID,start,end,salience,fold,classID,class
    ROOT/audio/fold<k>/<slice_file_name>   k = 1..10; any rate and channel count (44.1/48/96 kHz, stereo)

Folds: the CSV's `fold` column; folder fold<k> is our fold index k - 1 (split names fold00..fold09). Each run
tests on one fold; the `hear` protocol validates on the next fold, the `official` protocol on the test fold itself
(`types.fold_plan`). Labels: the dataset's own `classID` order (0 air_conditioner ... 9 street_music), checked
against the `class` column. The official code used another order (dog_bark = 0, from its BYOL-A metadata copy),
which changes no score. Rows whose file is not on disk are skipped and named. Files are resampled to 16 kHz mono
when read (once, through the audio cache), never converted beforehand.
"""
from __future__ import annotations

from pathlib import Path

from ..registry import register_dataset
from ..types import LabelSpace, Task, fold_names
from .common import ClipCollector, read_table, require_file

NAME = "us8k"
LAYOUT = "the UrbanSound8K folder: metadata/UrbanSound8K.csv and audio/fold1..fold10/"
CLASSES = ("air_conditioner", "car_horn", "children_playing", "dog_bark", "drilling", "engine_idling", "gun_shot",
           "jackhammer", "siren", "street_music")
NUM_FOLDS = 10


def _int(row: dict[str, str], column: str, valid: range, where: str) -> int:
    text = row[column]
    if not text.lstrip("-").isdigit() or int(text) not in valid:
        raise ValueError(f"{where}: {column} must be an integer in [{valid.start}, {valid.stop - 1}], got {text!r}")
    return int(text)


@register_dataset(NAME, multi_label=False, num_labels=len(CLASSES), num_folds=NUM_FOLDS, layout=LAYOUT)
def load_us8k(root: Path) -> Task:
    """Read UrbanSound8K (see the module docstring)."""
    table = require_file(root / "metadata" / "UrbanSound8K.csv", NAME, LAYOUT)
    labels = LabelSpace(CLASSES, multi_label=False)
    names = fold_names(NUM_FOLDS)
    collector = ClipCollector(NAME, root)
    for line, row in enumerate(read_table(table, ("slice_file_name", "fold", "classID", "class")), start=2):
        where = f"{table}:{line}"
        fold = _int(row, "fold", range(1, NUM_FOLDS + 1), where)
        class_id = _int(row, "classID", range(len(CLASSES)), where)
        if row["class"] != CLASSES[class_id]:
            raise ValueError(f"{where}: classID {class_id} is {CLASSES[class_id]!r} in UrbanSound8K, but the row "
                             f"says {row['class']!r}")
        path = root / "audio" / f"fold{fold}" / row["slice_file_name"]
        collector.add(names[fold - 1], path, (class_id,), listed_in=table.name)
    return collector.task(labels, names, num_folds=NUM_FOLDS)
