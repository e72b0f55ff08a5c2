"""The one atomic writer: every file the project writes goes to a unique temporary name in the target's folder,
is flushed and fsynced, then renamed over the target, so a kill at any moment leaves either the previous complete
file or the new complete file under the final name, never a stub.

A file another program wrote completely into a staging name in the target's folder (a download) lands with
`move_into_place`. Temporary names are `.<name>.tmp-<pid>-<random>`; `remove_stale_temporaries` deletes only those
whose writing process is gone. New files get the permissions of an ordinary file (0666 minus the umask).
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
from pathlib import Path
from typing import IO, Collection, Iterator, Optional, Union

PathLike = Union[str, os.PathLike]
TMP_MARK = ".tmp-"
_TMP_NAME = re.compile(r"^\.(?P<name>.+)" + re.escape(TMP_MARK) + r"(?P<pid>\d+)-[0-9a-f]+$")


def temporary_name(path: PathLike) -> Path:
    """A fresh temporary path beside `path` (same folder, so the final rename never crosses a file system)."""
    path = Path(path)
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")


def _fsync_directory(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform/file system lets a directory be opened and synced
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _create(path: Path) -> None:
    """Create `path` empty with the umask's permissions (tempfile.mkstemp would force 0600)."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))


def move_into_place(source: PathLike, path: PathLike) -> Path:
    """Make the complete file `source` (written elsewhere, e.g. by a downloader, in `path`'s folder) appear under
    `path`: fsync it, rename it over `path`, fsync the folder. Returns `path`."""
    source, path = Path(source), Path(path)
    with open(source, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(source, path)
    _fsync_directory(path.parent)
    return path


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path to write (by any library that takes a file name); on success it is fsynced and
    renamed over `path`; on any exception it is removed and `path` is left as it was.

        with atomic_path(out) as tmp:
            safetensors.torch.save_file(tensors, str(tmp))
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    _create(tmp)
    mode = tmp.stat().st_mode & 0o777  # the umask's; some writers (safetensors) recreate the file as 0600
    try:
        yield tmp
        os.chmod(tmp, mode)
        move_into_place(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """`open(path, mode)` that lands atomically: `mode` is "w" / "wb" (text or binary); see `atomic_path`."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode must be 'w' or 'wb', got {mode!r}")
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=encoding if mode == "w" else None) as handle:
            yield handle
            handle.flush()


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically; returns the path."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` atomically; returns the path."""
    with atomic_open(path, "w", encoding=encoding) as handle:
        handle.write(text)
    return Path(path)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as error:
        return error.errno == errno.EPERM  # exists but belongs to someone else
    return True


def remove_stale_temporaries(folder: PathLike, names: Optional[Collection[str]] = None) -> list[Path]:
    """Delete the temporary files in `folder` (not recursive) whose writing process no longer runs; returns them.

    Temporaries of live processes (another run writing into the same folder) are left alone. `names`: only the
    temporaries of these final file names (a process that shares the folder with processes on other machines, whose
    process ids mean nothing here, removes only those of the files it writes itself).
    """
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for item in folder.iterdir():
        match = _TMP_NAME.match(item.name)
        if match and names is not None and match.group("name") not in names:
            continue
        if match and item.is_file() and not _process_alive(int(match.group("pid"))):
            with contextlib.suppress(FileNotFoundError):
                item.unlink()
                removed.append(item)
    return removed
