"""Speech Commands v0.02 (`spcv2`), read in its distributed layout: ROOT is the `speech_commands_v0.02` folder.

    ROOT/validation_list.txt, ROOT/testing_list.txt   lines `<word>/<file>.wav`
    ROOT/<word>/<speaker>_nohash_<n>.wav             one folder per word (35 words)
    ROOT/_background_noise_/                         not a class: excluded, as the official conversion does

Splits: a clip listed in `validation_list.txt` is valid, one in `testing_list.txt` is test, every other clip of a
word folder is train. Keys are `<word>/<file>` (file names repeat across word folders, so a basename is not a
key). Labels: the official index order (the hard-coded list of the official conversion script: "right" = 0,
"eight" = 1, ..., "four" = 34), not alphabetical. A folder that is not one of the 35 words is an error; a listed
file that is not on disk is skipped and named. The same splits serve both protocols.
"""
from __future__ import annotations

from pathlib import Path

from atst.audio_io import is_audio_path

from ..registry import register_dataset
from ..types import LabelSpace, Task
from .common import ClipCollector, require_file

NAME = "spcv2"
LAYOUT = "the speech_commands_v0.02 folder: <word>/*.wav, validation_list.txt, testing_list.txt"
WORDS = ("right", "eight", "cat", "backward", "learn", "tree", "bed", "happy", "go", "dog", "no", "wow", "follow",
         "nine", "left", "stop", "three", "sheila", "one", "bird", "zero", "seven", "up", "visual", "marvin", "two",
         "house", "down", "six", "yes", "on", "five", "forward", "off", "four")
BACKGROUND = "_background_noise_"
LISTS = {"valid": "validation_list.txt", "test": "testing_list.txt"}


def _read_list(path: Path) -> set[str]:
    return {line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}


@register_dataset(NAME, multi_label=False, num_labels=len(WORDS), num_folds=1, layout=LAYOUT)
def load_spcv2(root: Path) -> Task:
    """Read Speech Commands v0.02 (see the module docstring)."""
    listed = {split: _read_list(require_file(root / name, NAME, LAYOUT)) for split, name in LISTS.items()}
    labels = LabelSpace(WORDS, multi_label=False)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != BACKGROUND)
    unknown = [p.name for p in folders if p.name not in WORDS]
    if unknown:
        raise ValueError(f"dataset {NAME}: {root} holds folder(s) {unknown} that are not Speech Commands v0.02 "
                         f"words; the 35 words are: {', '.join(WORDS)}")
    collector = ClipCollector(NAME, root)
    seen: set[str] = set()
    for folder in folders:
        target = labels.encode([folder.name])
        for path in sorted(p for p in folder.iterdir() if p.is_file() and is_audio_path(p)):
            key = f"{folder.name}/{path.name}"
            seen.add(key)
            split = "valid" if key in listed["valid"] else "test" if key in listed["test"] else "train"
            collector.add(split, path, target, key)
    for split, keys in listed.items():
        for key in sorted(keys - seen):
            collector.skip(f"{root / key}: missing (listed in {LISTS[split]})")
    return collector.task(labels, ("train", "valid", "test"))
