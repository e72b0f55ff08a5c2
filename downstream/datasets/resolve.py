"""The TASK argument of `atst-downstream`: what a user names, turned into a Task.

* `NAME=PATH`: a registered dataset in its native layout (`atst-downstream datasets` lists them);
* a HEAR task directory (it holds `task_metadata.json`);
* a CSV/TSV manifest (`path,label[,split][,fold]`);
* a folder with one sub-folder per class.
"""
from __future__ import annotations

from pathlib import Path

from .pack import PACK_FILE
from .registry import get_dataset
from .sources.folders import load_class_folders
from .sources.hear import is_hear_task, load_hear_task
from .types import Task

MANIFEST_SUFFIXES = (".csv", ".tsv")
ACCEPTED = ("NAME=PATH for a registered dataset, a HEAR task directory, a CSV/TSV manifest "
            "(path,label[,split][,fold]) or a folder with one sub-folder per class")


def load_task(spec: str) -> Task:
    """Resolve a TASK argument (see the module docstring); errors name what was given and what is accepted."""
    text = str(spec)
    if "=" in text and not Path(text).exists():
        name, _, path = text.partition("=")
        return get_dataset(name.strip()).load(Path(path.strip()).expanduser())
    path = Path(text).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"task {text!r} does not exist; expected {ACCEPTED}")
    if path.is_dir():
        if (path / PACK_FILE).is_file():
            raise ValueError(f"task {text!r} is a packed task (atst-downstream pack): stream it with "
                             f"downstream.datasets.load_packed or DownstreamDataModule; expected {ACCEPTED}")
        return load_hear_task(path) if is_hear_task(path) else load_class_folders(path)
    if path.suffix.lower() in MANIFEST_SUFFIXES:
        from .sources.manifest import load_manifest

        return load_manifest(path)
    raise ValueError(f"task {text!r} is a {path.suffix or 'suffix-less'} file; expected {ACCEPTED}")
