"""The TASK argument of `atst-downstream`: what a user names, turned into a Task.

* `NAME=PATH`: a registered dataset in its native layout (`atst-downstream datasets` lists them);
* a HEAR task directory (it holds `task_metadata.json`);
* a CSV/TSV manifest (`path,label[,split][,fold]`);
* a folder with one sub-folder per class.

`load_strong_task` resolves the TASK argument of `sed` (strong labels, timestamped events) the same way:

* `NAME=PATH`: a registered strong-label dataset (`desed`, `as_strong`) in its native layout;
* a HEAR event task directory (its task_metadata.json says embedding_type "event");
* a strong-label TSV (`filename onset offset event_label [split]`) or a folder of them (train.tsv, ...).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from .pack import PACK_FILE
from .registry import DatasetInfo, get_dataset
from .sources.folders import load_class_folders
from .sources.hear import is_hear_task, load_hear_task
from .sources.hear_events import load_hear_event_task
from .sources.strong_tsv import is_strong_folder, load_strong_folder, load_strong_tsv
from .strong import StrongTask
from .types import PROTOCOLS, Task

MANIFEST_SUFFIXES = (".csv", ".tsv")
ACCEPTED = ("NAME=PATH for a registered dataset, a HEAR task directory, a CSV/TSV manifest "
            "(path,label[,split][,fold]) or a folder with one sub-folder per class")


def _registered(text: str, kind: str, accepted: str) -> Optional[tuple[DatasetInfo, Path]]:
    """(dataset, root) of a `NAME=PATH` argument of a registered dataset with `kind` labels, else None."""
    if "=" not in text or Path(text).exists():
        return None
    name, _, path = text.partition("=")
    info = get_dataset(name.strip())
    if info.kind != kind:
        train = "with `atst-downstream sed`" if info.kind == "strong" else "with linear or finetune"
        raise ValueError(f"dataset {info.name} has {info.kind} labels: train it {train}; expected {accepted}")
    return info, Path(path.strip()).expanduser()


def _existing(text: str, accepted: str) -> Path:
    path = Path(text).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"task {text!r} does not exist; expected {accepted}")
    return path


def load_task(spec: str) -> Task:
    """Resolve a TASK argument (see the module docstring); errors name what was given and what is accepted."""
    text = str(spec)
    registered = _registered(text, "clip", ACCEPTED)
    if registered:
        return registered[0].load(registered[1])
    path = _existing(text, ACCEPTED)
    if path.is_dir():
        if (path / PACK_FILE).is_file():
            raise ValueError(f"task {text!r} is a packed task (atst-downstream pack): stream it with "
                             f"downstream.datasets.load_packed or DownstreamDataModule; expected {ACCEPTED}")
        return load_hear_task(path) if is_hear_task(path) else load_class_folders(path)
    if path.suffix.lower() in MANIFEST_SUFFIXES:
        from .sources.manifest import load_manifest

        return load_manifest(path)
    raise ValueError(f"task {text!r} is a {path.suffix or 'suffix-less'} file; expected {ACCEPTED}")


STRONG_ACCEPTED = ("NAME=PATH for a registered strong-label dataset (desed, as_strong), a HEAR event task directory, "
                   "a strong-label TSV (filename onset offset event_label [split]) or a folder with train.tsv and/or "
                   "train_weak.tsv")


def load_strong_task(spec: str, protocol: str = "hear", fold: int = 0) -> StrongTask:
    """Resolve the TASK argument of `sed` (see the module docstring) into a StrongTask whose splits follow
    `protocol` ("hear", or "official" to reproduce the official code's splits). `fold`: the test fold of a k-fold
    HEAR event task. Errors name what was given and what is accepted."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    text = str(spec)
    registered = _registered(text, "strong", STRONG_ACCEPTED)
    if registered:
        return registered[0].load(registered[1], protocol)
    path = _existing(text, STRONG_ACCEPTED)
    if path.is_dir():
        if is_hear_task(path):
            return load_hear_event_task(path, protocol, fold)
        if is_strong_folder(path):
            return load_strong_folder(path, protocol)
        raise ValueError(f"task {text!r} is a folder without task_metadata.json, train.tsv or train_weak.tsv; "
                         f"expected {STRONG_ACCEPTED}")
    if path.suffix.lower() in MANIFEST_SUFFIXES:
        return load_strong_tsv(path, protocol)
    raise ValueError(f"task {text!r} is a {path.suffix or 'suffix-less'} file; expected {STRONG_ACCEPTED}")
