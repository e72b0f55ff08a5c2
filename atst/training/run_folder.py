"""The run folder (`--save_path`): created and checked writable before any work, and locked for one run at a time
(`claim_save_path`).

The lock is an exclusive `flock` on `save_path/run.lock`, taken by the run's rank-0 process before it does any work
and held while it runs; the kernel releases it when the holder ends, however it ends (a kill -9 included), so there
is never a stale lock to remove by hand. The file records the holder (PID, host,
start time, command) for the refusal message of a second run. Data-loader workers forked by the holder close their
copy of the descriptor at once, so a killed run's workers never keep its lock.
"""
from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import socket
import sys
from pathlib import Path
from typing import Optional

LOCK_NAME = "run.lock"

_held: dict[int, Path] = {}  # descriptors of the locks this process holds: closed in forked children


def _close_in_child() -> None:
    for fd in list(_held):
        try:
            os.close(fd)
        except OSError:
            pass
    _held.clear()


os.register_at_fork(after_in_child=_close_in_child)


class SavePathInUse(ValueError):
    """Another live process holds the lock of this save path; the message names it."""


class RunLock:
    """The held lock of one save path; `release()` (or the end of the process) lets the next run in."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: Optional[int] = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            _held.pop(self._fd, None)
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = None


def _holder_text(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return (f"PID {info['pid']} on host {info['host']}, started {info['started']}, command "
                f"{' '.join(info['argv'])}")
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not recorded itself yet"


def lock_save_path(save_path: Path, argv: Optional[list[str]] = None) -> RunLock:
    """Take the lock of `save_path` (an existing folder) for this process, recording PID, host, start time and
    `argv` (default sys.argv) in it.

    Raises SavePathInUse naming the holder when another process (or another open of it in this one) holds it;
    OSError when the lock file cannot be created.
    """
    path = Path(save_path) / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        os.close(fd)
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise SavePathInUse(f"--save_path {save_path} is in use by another run ({_holder_text(path)}); wait "
                                f"for it to end or stop it, or choose another --save_path") from None
        raise
    _held[fd] = path
    info = dict(pid=os.getpid(), host=socket.gethostname(),
                started=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                argv=list(sys.argv if argv is None else argv))
    # written in place, not renamed over: the lock belongs to this inode
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(info) + "\n").encode("utf-8"), 0)
    return RunLock(path, fd)


def claim_save_path(save_path: Path, take_lock: bool) -> Optional[RunLock]:
    """Create `save_path` (parents included) and check that it is a folder this process can write, then, when
    `take_lock` (the run's rank-0 process: `atst.training.launch.launch_rank`), lock it for this run (`RunLock`,
    else None).

    Raises ValueError naming the folder and why it cannot be used; SavePathInUse (a ValueError) naming the run that
    holds it.
    """
    save_path = Path(save_path)
    if save_path.exists() and not save_path.is_dir():
        raise ValueError(f"--save_path {save_path} is a file; it must be a folder (it is created when missing)")
    try:
        save_path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"--save_path {save_path} cannot be created ({type(error).__name__}: {error})") from None
    if not os.access(save_path, os.W_OK | os.X_OK):
        raise ValueError(f"--save_path {save_path} is not writable by this user (checkpoints and logs go there)")
    if not take_lock:
        return None
    try:
        return lock_save_path(save_path)
    except SavePathInUse:
        raise
    except OSError as error:
        raise ValueError(f"--save_path {save_path} cannot be locked for this run ({save_path / LOCK_NAME}: "
                         f"{type(error).__name__}: {error})") from None
