"""Released checkpoints by name: `resolve_checkpoint("atstframe_base")` -> a verified file in the cache folder.

    path = resolve_checkpoint("atstframe_base")            # downloads once, then the cached file
    path = resolve_checkpoint("my.ckpt")                   # a path is returned unchanged
    cached_release(release(name), rehash=True)             # fetch or re-verify ahead of time (`atst download`)

The cache folder is `$ATST_CACHE`, else `<torch hub dir>/atst` (`~/.cache/torch/hub/atst` unless `$TORCH_HOME`
says otherwise). A download goes to a staging name in that folder (resumed from its `.part` file after an
interruption), is verified (weights-only load, tensor names, shapes and dtypes equal to the release's manifest),
gets its SHA-256 recorded beside it (`<name>.ckpt.sha256.json`) and only then is renamed to `<name>.ckpt`: nothing
half-downloaded or unverified is ever under the final name. A cached file whose size or modification time differs
from its record is hashed again, and a changed SHA-256 is an error naming the file; `atst download` always
re-hashes.

Offline mode (`offline=True`, `atst ... --offline`, `$ATST_OFFLINE=1`) never touches the network.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Iterator, Optional, Union

from .download import DownloadError, Source, fetch
from .fileio import atomic_write_text, move_into_place
from .flags import parse_bool
from .releases import URLS_ENV, Release, UnknownReleaseError, release

PathLike = Union[str, os.PathLike]
CACHE_ENV = "ATST_CACHE"
OFFLINE_ENV = "ATST_OFFLINE"
RECORD_SUFFIX = ".sha256.json"
STAGING_SUFFIX = ".download"
HASH_BLOCK = 8 << 20  # bytes read per step when hashing
# what a release name looks like (a path has a separator or a suffix): such a text that is no file is an unknown name
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")


class OfflineError(FileNotFoundError):
    """A released checkpoint that is not in the cache while offline mode forbids downloading it."""


def cache_dir(cache: Optional[PathLike] = None) -> Path:
    """The cache folder: `cache`, else `$ATST_CACHE`, else `<torch hub dir>/atst`."""
    if cache:
        return Path(cache).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    import torch.hub

    return Path(torch.hub.get_dir()) / "atst"


def offline_mode(offline: Optional[bool] = None) -> bool:
    """`offline` when given, else `$ATST_OFFLINE` (a boolean word; unset or empty means online)."""
    if offline is not None:
        return parse_bool(offline, "offline")
    return parse_bool(os.environ.get(OFFLINE_ENV) or "0", f"${OFFLINE_ENV}")


def requested_release(name_or_path: PathLike) -> Optional[Release]:
    """The release a checkpoint argument names, or None for a path. An existing file or folder is always a path;
    a name-like text (no separator, no suffix) that is neither a file nor registered raises `UnknownReleaseError`
    (a FileNotFoundError) listing the names."""
    text = os.fspath(name_or_path)
    if not text or Path(text).exists() or not NAME_PATTERN.match(text):
        return None
    return release(text)


def resolve_checkpoint(name_or_path: PathLike, offline: Optional[bool] = None, cache: Optional[PathLike] = None,
                       progress: bool = True) -> Path:
    """The file to load for a checkpoint argument: a path as given, a released name as its verified cached file
    (downloaded first if needed, with a progress bar on stderr when `progress`)."""
    found = requested_release(name_or_path)
    if found is None:
        return Path(name_or_path)
    return cached_release(found, offline=offline, cache=cache, progress=progress)


def cached_release(found: Release, offline: Optional[bool] = None, cache: Optional[PathLike] = None,
                   progress: bool = True, rehash: bool = False) -> Path:
    """The cached, verified file of a release, downloaded first unless it is there (or offline mode forbids it).
    `rehash`: hash a cached file even when its size and modification time match the record."""
    folder = cache_dir(cache)
    target = folder / found.filename
    offline_now = offline_mode(offline)  # read even for a cached file: a malformed $ATST_OFFLINE is always named
    if target.is_file():
        return check_cached(target, found, rehash)
    if offline_now:
        why = "offline=True / --offline" if offline is not None else f"${OFFLINE_ENV}={os.environ.get(OFFLINE_ENV)}"
        raise OfflineError(
            f"{found.name} is not in the cache: {target} does not exist, and offline mode ({why}) never downloads. "
            f"Run `atst download {found.name}` where there is network and copy {target} here (or point "
            f"${CACHE_ENV} at a folder holding {found.filename}); or download {found.official_location} by hand "
            f"and save it as {target}.")
    with _download_lock(folder, found.name):
        if target.is_file():  # another process finished it while we waited
            return check_cached(target, found, rehash)
        return _download(found, target, progress)


def _by_hand(found: Release, target: Path) -> str:
    return (f"To download by hand: open {found.official_location} (linked from {found.readme}) in a browser, save "
            f"the file as {target} and run again (it is verified on first use); or run `atst download {found.name}` "
            f"where there is network and copy {target.parent} here (or point ${CACHE_ENV} at it); or set "
            f"${URLS_ENV} to a mirror.")


def _source(found: Release) -> Source:
    if found.override:
        return Source(url=found.override)
    return Source(drive_id=found.drive_id) if found.drive_id else Source(url=found.url)


def _download(found: Release, target: Path, progress: bool) -> Path:
    from .verify import check_layout  # atst.checkpoint, which verify reads files with, imports this module

    source = _source(found)
    staging = target.with_name(f".{target.name}{STAGING_SUFFIX}")
    if progress:
        print(f"atst: downloading {found.name} ({found.family}, {found.arch}; licence {found.licence}) from "
              f"{source} into {target.parent}", file=sys.stderr, flush=True)
    fetch(source, staging, progress=progress, by_hand=_by_hand(found, target))
    try:
        check_layout(staging, found.manifest(),
                     f"the file downloaded from {source} is not the released {found.name} (nothing was kept)")
        _write_record(target, staging, found, source)
        move_into_place(staging, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            staging.unlink()
    return target


def check_cached(target: Path, found: Release, rehash: bool = False) -> Path:
    """`target` when it is the verified file of `found`: a file without a record (put there by hand) is verified
    and recorded; a file whose size or modification time differs from its record (or any, with `rehash`) is hashed
    and must match the recorded SHA-256."""
    from .checkpoint import CheckpointError
    from .verify import check_layout

    record = _read_record(target)
    stat = target.stat()
    if record is None:
        check_layout(target, found.manifest(), f"{target} is not the released {found.name} (delete it, or put the "
                                               f"file from {found.official_location} there)")
        _write_record(target, target, found, None)
        return target
    if not rehash and record.get("size") == stat.st_size and record.get("mtime_ns") == stat.st_mtime_ns:
        return target
    digest = sha256_file(target)
    if digest != record.get("sha256"):
        raise CheckpointError(
            f"{target} is not the file that was verified on {record.get('verified', '?')}: its SHA-256 is {digest}, "
            f"the record {_record_path(target)} says {record.get('sha256')}. Delete both and run `atst download "
            f"{found.name}` (or put the released file there again).")
    _write_record(target, target, found, record.get("source"), digest)
    return target


def _record_path(target: Path) -> Path:
    return target.with_name(target.name + RECORD_SUFFIX)


def _read_record(target: Path) -> Optional[dict]:
    try:
        record = json.loads(_record_path(target).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _write_record(target: Path, current: Path, found: Release, source: object, digest: Optional[str] = None) -> None:
    """Record the SHA-256, size and modification time of the file now at `current`, for `target`."""
    stat = current.stat()
    record = {
        "release": found.name,
        "sha256": digest or sha256_file(current),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "source": None if source is None else str(source),
        "verified": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "manifest": f"atst/manifests/{found.manifest_path.name}",
    }
    atomic_write_text(_record_path(target), json.dumps(record, indent=1) + "\n")


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in blocks (memory stays at one block)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(HASH_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _download_lock(folder: Path, name: str) -> Iterator[None]:
    """One downloader per release and cache folder (the others wait, then find the file there)."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(folder / f".{name}.lock"))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock.acquire(timeout=0)
    except Timeout:
        print(f"atst: waiting for another process that is downloading {name} into {folder}", file=sys.stderr,
              flush=True)
        lock.acquire()
    except OSError as error:
        raise DownloadError(f"cannot write into the cache folder {folder} ({type(error).__name__}: {error}); set "
                            f"${CACHE_ENV} (or `atst download --cache`) to a writable folder") from None
    try:
        yield
    finally:
        lock.release()


__all__ = ["CACHE_ENV", "DownloadError", "OFFLINE_ENV", "OfflineError", "UnknownReleaseError", "cache_dir",
           "cached_release", "check_cached", "offline_mode", "requested_release", "resolve_checkpoint", "sha256_file"]
