"""A folder with one sub-folder per class: `ROOT/<class>/**/<audio>` (single-label).

Splits: `ROOT/{train,valid,test}/<class>/...` when ROOT holds a `train` folder (`valid` may be absent: then 10 % of
train, chosen by key); otherwise every clip's split is drawn from its key (80 / 10 / 10, `splitting.split_of`).
Classes are the sub-folder names in sorted order. Keys are paths relative to ROOT.
"""
from __future__ import annotations

from pathlib import Path

from atst.audio_io import AUDIO_SUFFIXES, is_audio_path

from ..splitting import split_of
from ..types import Clip, LabelSpace, Task, check_unique_keys

SPLIT_FOLDERS = ("train", "valid", "test")


def _class_clips(folder: Path) -> dict[str, list[Path]]:
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    return {c.name: sorted(f for f in c.rglob("*") if f.is_file() and is_audio_path(f)) for c in classes}


def load_class_folders(root: Path) -> Task:
    """Read a class-folder tree into a single-label Task (see the module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder; expected a folder with one sub-folder per class")
    presplit = (root / "train").is_dir()
    trees = {name: _class_clips(root / name) for name in SPLIT_FOLDERS if (root / name).is_dir()} \
        if presplit else {"": _class_clips(root)}
    names = sorted({label for tree in trees.values() for label, files in tree.items() if files})
    if not names:
        raise ValueError(f"{root} holds no class folder with audio files ({', '.join(AUDIO_SUFFIXES)})")
    labels = LabelSpace(tuple(names), multi_label=False)
    splits: dict[str, list[Clip]] = {name: [] for name in SPLIT_FOLDERS}
    for folder, tree in trees.items():
        for label, files in tree.items():
            for path in files:
                key = str(path.relative_to(root))
                if folder == "":
                    split = split_of(key)
                elif folder == "train" and "valid" not in trees:
                    split = "valid" if split_of(key, (("valid", 0.1),)) == "valid" else "train"
                else:
                    split = folder
                splits[split].append(Clip(key, str(path), labels.encode([label], key)))
    all_clips = [clip for clips in splits.values() for clip in clips]
    check_unique_keys(all_clips, str(root))
    empty = [name for name, clips in splits.items() if not clips]
    if empty:
        raise ValueError(f"{root}: split(s) {empty} hold no clip ({len(all_clips)} clips in all); add clips or use "
                         f"train/ valid/ test/ folders")
    return Task(name=root.name, labels=labels, splits={k: tuple(v) for k, v in splits.items()},
                source=f"class folders {root}")
