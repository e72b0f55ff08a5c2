"""What `atst embed` reads, planned into units of work before anything is decoded.

Each input path is one of
* an audio file -> `OUT/<file name>`;
* a folder -> its audio files (recursive) -> `OUT/<path relative to the folder>`;
* a manifest (`.csv`, `.tsv`, `.txt`, `.lst`: a `path` / `audio` / `file` / `filename` column, else the first;
  relative entries are relative to the manifest) -> each listed file -> `OUT/<path relative to the manifest's
  folder>`, or for a file outside that folder its absolute path without the root (`/data/a.wav` ->
  `OUT/data/a.wav`); a listed file that is missing or unreadable is skipped and named at run time;
* WebDataset tar shards (`x.tar`, or a brace pattern or glob of them such as `'shards/{000..009}.tar'`) -> each
  member with an audio suffix, streamed in order, never unpacked -> `OUT/<shard file name>/<member path>`; a member
  whose path would leave that folder (absolute, `..`) is skipped and named.

Outputs are `<target>.<kind>.npy`. A file named twice is one job; two inputs that would write the same outputs are
refused before any work, naming both. The plan's order is deterministic (sorted within each input), so every
process of a sharded run computes the same plan and takes its own units from it (`units_of_rank`).
"""
from __future__ import annotations

import functools
import glob
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator, Optional, Sequence, TypeVar, Union

from .audio_io import AUDIO_SUFFIXES, AudioDecodeError, find_audio_files, is_audio_path
from .training.corpus import MANIFEST_SUFFIXES, expand_braces, read_manifest

SHARD_SUFFIX = ".tar"
ACCEPTED = (f"audio files ({', '.join(AUDIO_SUFFIXES)}), folders, manifests ({', '.join(MANIFEST_SUFFIXES)}) and "
            f"WebDataset shards ({SHARD_SUFFIX}, a brace pattern or a glob)")


@dataclass(frozen=True)
class EmbedJob:
    """One input clip and where its outputs go (`<target>.<kind>.npy`): a file (`member` None) or a member of the
    tar shard `source`."""

    source: Path
    target: Path
    member: Optional[str] = None

    def output(self, kind: str) -> Path:
        return self.target.with_name(f"{self.target.name}.{kind}.npy")

    @property
    def name(self) -> str:
        """How messages name the clip: the file, or `shard.tar:member`."""
        return str(self.source) if self.member is None else f"{self.source}:{self.member}"


@dataclass(frozen=True)
class ShardJob:
    """A WebDataset tar shard whose audio members are embedded into `folder` (`OUT/<shard file name>`)."""

    shard: Path
    folder: Path

    def job(self, member: str) -> EmbedJob:
        """The job of one member; raises AudioDecodeError for a member path that would leave `folder`."""
        parts = PurePosixPath(member).parts
        if not parts or PurePosixPath(member).is_absolute() or ".." in parts:
            raise AudioDecodeError(f"{self.shard}:{member}: the member's path leaves the shard's folder (absolute or "
                                   f"'..'); not embedded")
        return EmbedJob(self.shard, self.folder.joinpath(*parts), member)


Unit = Union[EmbedJob, ShardJob]
T = TypeVar("T")


def units_of_rank(units: Sequence[T], rank: int, world_size: int) -> list[tuple[int, T]]:
    """(plan index, unit) of the units process `rank` of `world_size` takes: every world_size-th, from `rank`."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must lie in [0, {world_size}), got {rank}")
    return [(index, units[index]) for index in range(rank, len(units), world_size)]


def _is_pattern(text: str) -> bool:
    return any(char in text for char in "*?[{")


def _shard_paths(pattern: str) -> list[Path]:
    """The shards a brace pattern or glob names (sorted); every match must exist and end in .tar."""
    paths = sorted({Path(p) for part in expand_braces(pattern) for p in (glob.glob(part) or [part])})
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{pattern!r}: {len(missing)} shard(s) do not exist, e.g. {missing[0]}")
    if not all(p.suffix == SHARD_SUFFIX for p in paths):
        raise ValueError(f"{pattern!r} is a pattern; patterns must name WebDataset shards ({SHARD_SUFFIX})")
    return paths


def _manifest_entries(manifest: Path) -> list[tuple[Path, Path]]:
    """(file, output path relative to OUT) of every entry of a manifest."""
    root = Path(os.path.abspath(manifest.parent))
    entries = []
    for listed in read_manifest(manifest):
        path = Path(os.path.normpath(listed))
        absolute = Path(os.path.abspath(path))
        try:
            relative = absolute.relative_to(root)
        except ValueError:
            relative = absolute.relative_to(absolute.anchor)
        entries.append((path, relative))
    return entries


def _expand(raw: str) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """One input argument -> (files with their output paths relative to OUT, shards)."""
    path = Path(raw)
    if not path.exists() and _is_pattern(raw):
        return [], _shard_paths(raw)
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    if path.is_dir() or is_audio_path(path):
        return find_audio_files([path]), []
    if path.suffix == SHARD_SUFFIX:
        return [], [path]
    if path.suffix.lower() in MANIFEST_SUFFIXES:
        return _manifest_entries(path), []
    raise ValueError(f"{path}: unsupported audio format {path.suffix!r}; accepted: {ACCEPTED}")


def plan_units(paths: Sequence[Union[str, os.PathLike]], out_dir: Path) -> list[Unit]:
    """Files and shards under `paths` as units with their output locations under `out_dir` (module docstring).

    Raises FileNotFoundError for a missing input, ValueError for an unsupported one or colliding outputs."""
    units: list[Unit] = []
    targets: dict[Path, Path] = {}  # output target (or shard folder) -> its source
    seen: set[Path] = set()
    for raw in paths:
        files, shards = _expand(str(raw))
        for source, relative in files:
            resolved = source.resolve()
            if resolved in seen:  # the same file named twice (a file and its folder): one job
                continue
            target = out_dir / relative
            _claim(targets, target, source)
            seen.add(resolved)
            units.append(EmbedJob(source, target))
        for shard in shards:
            if shard.resolve() in seen:
                continue
            seen.add(shard.resolve())
            folder = out_dir / shard.name
            _claim(targets, folder, shard)
            units.append(ShardJob(shard, folder))
    folders = {unit.folder: unit.shard for unit in units if isinstance(unit, ShardJob)}
    for unit in units:  # a file written inside a shard's output folder
        if isinstance(unit, EmbedJob):
            clash = next((parent for parent in unit.target.parents if parent in folders), None)
            if clash is not None:
                raise ValueError(f"{unit.source} and the shard {folders[clash]} would both write under {clash}; "
                                 f"embed them in separate runs (--out)")
    return units


def _claim(targets: dict[Path, Path], target: Path, source: Path) -> None:
    if target in targets:
        raise ValueError(f"{targets[target]} and {source} would both write {target}.*.npy; embed them in separate "
                         f"runs (--out) or pass their common parent folder")
    targets[target] = source


class ShardReadError(AudioDecodeError):
    """A tar shard that cannot be read on (truncated, corrupt): the rest of the shard is lost, not one member."""


READ_ERRORS = (tarfile.TarError, OSError, EOFError)


def stream_shard(shard: Path) -> Iterator[tuple[str, Callable[[], bytes]]]:
    """(member path, read) of each audio member of a tar shard, in stream order, never unpacked: `read()` returns the
    member's bytes and must be called before the next member is asked for (members not read are passed over
    without being held in memory).

    Both raise ShardReadError naming the shard when the archive cannot be read on (members already yielded stand).
    """
    try:
        with tarfile.open(shard, mode="r|*") as archive:
            for info in archive:
                if info.isfile() and is_audio_path(info.name):
                    yield info.name, functools.partial(_read_member, shard, archive, info)
    except READ_ERRORS as error:
        raise _shard_error(shard, error) from None


def _read_member(shard: Path, archive: tarfile.TarFile, info: tarfile.TarInfo) -> bytes:
    try:
        handle = archive.extractfile(info)
        return handle.read() if handle is not None else b""
    except READ_ERRORS as error:
        raise _shard_error(shard, error) from None


def _shard_error(shard: Path, error: BaseException) -> ShardReadError:
    return ShardReadError(f"{shard}: cannot read the tar shard ({type(error).__name__}: {error})")


__all__ = ["ACCEPTED", "EmbedJob", "ShardJob", "ShardReadError", "Unit", "plan_units", "stream_shard", "units_of_rank"]
