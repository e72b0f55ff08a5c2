"""Where a training corpus is: a folder, a manifest or WebDataset tar shards (`--data_path`), and its fixed subset.

`resolve_corpus` accepts
* a folder (searched recursively for audio files, `atst.audio_io.AUDIO_SUFFIXES`),
* a CSV / TSV / TXT manifest (a `path` / `audio` / `file` / `filename` column, or the first column; relative paths
  are relative to the manifest),
* WebDataset tar shards: one `.tar`, a brace pattern `shards/{000000..000999}.tar`, a glob, or a folder holding
  only `.tar` files (each member with an audio suffix is one clip; streamed, never unpacked).
"""
from __future__ import annotations

import csv
import glob
import io
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from atst.audio_io import AUDIO_SUFFIXES, is_audio_path

MANIFEST_SUFFIXES = (".csv", ".tsv", ".txt", ".lst")
PATH_COLUMNS = ("path", "audio", "file", "filename", "audio_path", "wav")
SUBSET_SEED = 1234  # the official code draws its subset with random.seed(1234)


@dataclass(frozen=True)
class Corpus:
    """`kind` is "files" (a list of audio paths) or "shards" (a list of tar paths); `source` is what was given."""

    kind: str
    items: tuple[str, ...]
    source: str


def expand_braces(pattern: str) -> list[str]:
    """Expand `{000..123}` ranges (zero padding kept) and `{a,b}` lists, WebDataset style."""
    match = re.search(r"\{([^{}]*)\}", pattern)
    if match is None:
        return [pattern]
    body = match.group(1)
    numeric = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if numeric:
        low, high = numeric.groups()
        if int(high) < int(low):
            raise ValueError(f"empty brace range {{{body}}} in {pattern!r}")
        width = len(low)
        options = [str(i).zfill(width) for i in range(int(low), int(high) + 1)]
    else:
        options = body.split(",")
    head, tail = pattern[: match.start()], pattern[match.end() :]
    return [expanded for option in options for expanded in expand_braces(head + option + tail)]


def read_manifest(path: Path) -> list[str]:
    """The audio paths a CSV / TSV / TXT manifest lists (relative ones resolved against its folder)."""
    text = path.read_text(encoding="utf-8")
    delimiter = "\t" if path.suffix == ".tsv" or ("\t" in text.splitlines()[0] if text.strip() else False) else ","
    rows = [row for row in csv.reader(io.StringIO(text), delimiter=delimiter) if row and row[0].strip()]
    if not rows:
        raise ValueError(f"manifest {path} lists no files")
    header = [cell.strip().lower() for cell in rows[0]]
    column = 0
    named = [i for i, cell in enumerate(header) if cell in PATH_COLUMNS]
    if named:
        column, rows = named[0], rows[1:]
    elif not is_audio_path(header[0]) and not (path.parent / rows[0][0]).exists():
        rows = rows[1:]  # an unnamed header line
    paths = []
    for row in rows:
        if column >= len(row):
            raise ValueError(f"manifest {path}: row {row} has no column {column}")
        entry = Path(row[column].strip())
        paths.append(str(entry if entry.is_absolute() else path.parent / entry))
    if not paths:
        raise ValueError(f"manifest {path} lists no files")
    return paths


def resolve_corpus(data_path: Union[str, os.PathLike]) -> Corpus:
    """What `--data_path` names; raises FileNotFoundError / ValueError with what is accepted."""
    text = str(data_path)
    accepted = ("a folder of audio files, a CSV/TSV manifest of paths, or WebDataset tar shards "
                "(file.tar, 'shards/{000000..000999}.tar' or a glob)")
    if "{" in text or any(ch in text for ch in "*?["):
        shards = sorted({p for pattern in expand_braces(text) for p in (glob.glob(pattern) or [pattern])})
        missing = [p for p in shards if not os.path.isfile(p)]
        if missing:
            raise FileNotFoundError(f"--data_path {text!r}: {len(missing)} shard(s) do not exist, e.g. {missing[0]}")
        if not all(p.endswith(".tar") for p in shards):
            raise ValueError(f"--data_path {text!r} is a pattern; patterns must name .tar shards")
        return Corpus("shards", tuple(shards), text)
    path = Path(text)
    if not path.exists():
        raise FileNotFoundError(f"--data_path {text} does not exist; expected {accepted}")
    if path.is_dir():
        files = sorted(str(p) for p in path.rglob("*") if p.is_file() and is_audio_path(p))
        if files:
            return Corpus("files", tuple(files), text)
        tars = sorted(str(p) for p in path.rglob("*.tar"))
        if tars:
            return Corpus("shards", tuple(tars), text)
        raise ValueError(f"--data_path {text} holds no audio files ({', '.join(AUDIO_SUFFIXES)}) and no .tar shards")
    if path.suffix == ".tar":
        return Corpus("shards", (str(path),), text)
    if path.suffix.lower() in MANIFEST_SUFFIXES:
        return Corpus("files", tuple(read_manifest(path)), text)
    if is_audio_path(path):
        return Corpus("files", (str(path),), text)
    raise ValueError(f"--data_path {text}: unsupported file type {path.suffix!r}; expected {accepted}")


def take_subset(items: tuple[str, ...], subset: Optional[int]) -> tuple[str, ...]:
    """A fixed random subset of `subset` items in corpus order (the same on every rank and every run: drawn with
    its own seeded generator), or all of them when `subset` is 0 / None / at least the corpus size."""
    if not subset or subset >= len(items):
        return items
    if subset < 0:
        raise ValueError(f"--subset must be positive, got {subset}")
    chosen = random.Random(SUBSET_SEED).sample(range(len(items)), subset)
    return tuple(items[i] for i in sorted(chosen))
