"""VoxCeleb1 speaker identification (`voxceleb1`), read in its distributed layout.

    ROOT/iden_split.txt                lines `<1|2|3> id<NNNNN>/<youtube id>/<NNNNN>.wav`
    ROOT/wav/<that path>               the extracted vox1_dev_wav + vox1_test_wav, or
    ROOT/dev/wav/, ROOT/test/wav/      the SUPERB (s3prl) layout; the first folder holding the file wins

Splits: the identification split file: 1 = train, 2 = valid, 3 = test (both protocols). Keys are the paths of
the split file. Labels: the 1251 speakers id10001 ... id11251, index = speaker number - 10001 (the official
rule). Listed files that are not on disk are skipped and named.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..registry import register_dataset
from ..types import LabelSpace, Task
from .common import ClipCollector, require_file

NAME = "voxceleb1"
LAYOUT = "a folder with iden_split.txt and the wavs under wav/ (or dev/wav/ and test/wav/)"
FIRST_SPEAKER, NUM_SPEAKERS = 10001, 1251
SPEAKERS = tuple(f"id{FIRST_SPEAKER + i}" for i in range(NUM_SPEAKERS))
SPLITS = {"1": "train", "2": "valid", "3": "test"}
WAV_FOLDERS = ("wav", "dev/wav", "test/wav")
LINE = re.compile(r"^([123])\s+((id\d{5})/\S+)$")


@register_dataset(NAME, multi_label=False, num_labels=NUM_SPEAKERS, num_folds=1, layout=LAYOUT)
def load_voxceleb1(root: Path) -> Task:
    """Read VoxCeleb1 identification (see the module docstring)."""
    split_file = require_file(root / "iden_split.txt", NAME, LAYOUT)
    folders = [root / name for name in WAV_FOLDERS if (root / name).is_dir()]
    if not folders:
        raise FileNotFoundError(f"dataset {NAME}: {root} has none of the folders {list(WAV_FOLDERS)}; "
                                f"expected {LAYOUT}")
    labels = LabelSpace(SPEAKERS, multi_label=False)
    collector = ClipCollector(NAME, root)
    for number, line in enumerate(split_file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        match = LINE.match(line.strip())
        if match is None:
            raise ValueError(f"{split_file}:{number}: expected `<1|2|3> idNNNNN/<youtube id>/<file>.wav`, "
                             f"got {line.strip()!r}")
        split, relative, speaker = match.groups()
        target = labels.encode([speaker], f"{split_file}:{number}")
        path = next((folder / relative for folder in folders if (folder / relative).is_file()), folders[0] / relative)
        collector.add(SPLITS[split], path, target, key=relative, listed_in=split_file.name)
    return collector.task(labels, tuple(SPLITS.values()))
