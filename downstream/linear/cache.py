"""The on-disk embedding cache: each clip of a task is embedded once per (checkpoint, read-out) and reused by every
fold, learning rate and later run.

Layout: `ROOT/<entry>/` with `<entry>` = the first 20 hex digits of the SHA-256 of the entry identity (the format,
the checkpoint file's SHA-256, the `ReadoutSettings`, the task name and its resolved TASK argument), holding

* `identity.json`            that identity, for people;
* `shard-NNNNNN.npy`         float32 `[rows, dim]` embeddings (numpy format, read with memory mapping);
* `shard-NNNNNN.json`        its rows: `[key, resolved path, size, mtime_ns]` each, in row order.

A clip is reused only while its file has the same resolved path, size and modification time; a changed file is
embedded again into a new shard (a later shard wins for a key). Every file is written atomically (`atst.fileio`),
the `.npy` before its `.json`, so a killed run leaves complete shards only and a re-run goes on from the last one;
writers of one entry take turns through an exclusive lock on `ROOT/<entry>/.lock`. Superseded rows are not
reclaimed (delete the entry folder to start it afresh). ROOT: `--cache`, else `$ATST_EMBEDDING_CACHE`, else
`.embedding_cache` beside the output folder.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

import numpy as np

from atst.fileio import atomic_open, atomic_write_text, remove_stale_temporaries

from ..datasets import Clip

CACHE_ENV = "ATST_EMBEDDING_CACHE"
CACHE_FORMAT = 1
DEFAULT_CACHE_NAME = ".embedding_cache"
_SHARD = re.compile(r"^shard-(\d{6})\.(npy|json)$")
PathLike = Union[str, os.PathLike]


def default_cache_root(out_dir: PathLike) -> Path:
    """`$ATST_EMBEDDING_CACHE`, else `.embedding_cache` in the folder that holds `out_dir`."""
    env = os.environ.get(CACHE_ENV, "")
    return Path(env).expanduser() if env else Path(out_dir).expanduser().resolve().parent / DEFAULT_CACHE_NAME


def file_identity(path: PathLike) -> tuple[str, int, int]:
    """(resolved path, size in bytes, mtime in ns): what must stay equal for a cached embedding to be reused."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return str(resolved), int(stat.st_size), int(stat.st_mtime_ns)


def file_sha256(path: PathLike, memo_root: Optional[PathLike] = None) -> str:
    """SHA-256 of a file's bytes. With `memo_root`, the digest is remembered in `memo_root/sha256/` under the file's
    identity (path, size, mtime), so a multi-GB checkpoint is hashed once, not at every run."""
    identity = file_identity(path)
    memo: Optional[Path] = None
    if memo_root is not None:
        name = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:32]
        memo = Path(memo_root) / "sha256" / f"{name}.json"
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            saved = json.loads(memo.read_text(encoding="utf-8"))
            if tuple(saved["identity"]) == identity:
                return str(saved["sha256"])
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    value = digest.hexdigest()
    if memo is not None:
        with contextlib.suppress(OSError):
            atomic_write_text(memo, json.dumps({"identity": list(identity), "sha256": value}))
    return value


@dataclass(frozen=True)
class CachedRow:
    """Where one clip's embedding lies: shard number and row, with the file identity it was computed from."""

    shard: int
    row: int
    identity: tuple[str, int, int]


class EmbeddingCache:
    """One cache entry (module docstring). `identity`: a JSON-able dict naming everything the embeddings depend on;
    `dim`: the embedding width."""

    def __init__(self, root: PathLike, identity: dict, dim: int) -> None:
        self.identity = {"format": CACHE_FORMAT, **identity}
        text = json.dumps(self.identity, sort_keys=True)
        self.dir = Path(root) / hashlib.sha256(text.encode()).hexdigest()[:20]
        self.dim = int(dim)
        self.problems: list[str] = []  # shards that could not be read (their clips are embedded again)
        self._rows: Optional[dict[str, CachedRow]] = None

    # ------------------------------------------------------------------------------------------ writing
    @contextlib.contextmanager
    def writing(self) -> Iterator["EmbeddingCache"]:
        """Hold the entry's lock (other writers wait); creates the entry and removes the `.npy` of a shard whose
        `.json` a killed writer never wrote."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ValueError(f"cannot create the embedding cache folder {self.dir}: {error.strerror}; pass --cache "
                             f"DIR (a writable folder) or set ${CACHE_ENV}") from None
        with open(self.dir / ".lock", "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                remove_stale_temporaries(self.dir)
                identity_file = self.dir / "identity.json"
                if not identity_file.is_file():
                    atomic_write_text(identity_file, json.dumps(self.identity, indent=2, sort_keys=True))
                shards = self._shard_files()
                for number, kinds in shards.items():
                    if "json" not in kinds:
                        with contextlib.suppress(FileNotFoundError):
                            (self.dir / f"shard-{number:06d}.npy").unlink()
                self._rows = None
                yield self
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def append(self, keys: Sequence[str], identities: Sequence[tuple[str, int, int]], embeddings: np.ndarray) -> None:
        """Store `embeddings` `[len(keys), dim]` as a new shard (call inside `writing()`)."""
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        if embeddings.shape != (len(keys), self.dim) or len(identities) != len(keys):
            raise ValueError(f"a shard needs [{len(keys)}, {self.dim}] embeddings and one identity per key, got "
                             f"{embeddings.shape} and {len(identities)} identities")
        number = max(self._shard_files(), default=0) + 1
        with atomic_open(self.dir / f"shard-{number:06d}.npy", "wb") as handle:
            np.save(handle, embeddings)
        rows = [[key, *identity] for key, identity in zip(keys, identities)]
        atomic_write_text(self.dir / f"shard-{number:06d}.json", json.dumps({"dim": self.dim, "rows": rows}))
        index = self.rows()
        for row, (key, identity) in enumerate(zip(keys, identities)):
            index[key] = CachedRow(number, row, tuple(identity))

    # ------------------------------------------------------------------------------------------ reading
    def rows(self) -> dict[str, CachedRow]:
        """{clip key: where its newest embedding lies} over every complete, readable shard."""
        if self._rows is not None:
            return self._rows
        rows: dict[str, CachedRow] = {}
        for number, kinds in sorted(self._shard_files().items()):
            if kinds != {"npy", "json"}:
                continue
            listing = self.dir / f"shard-{number:06d}.json"
            try:
                meta = json.loads(listing.read_text(encoding="utf-8"))
                entries = [(str(k), CachedRow(number, row, (str(p), int(s), int(m))))
                           for row, (k, p, s, m) in enumerate(meta["rows"])]
                shape = np.load(self.dir / f"shard-{number:06d}.npy", mmap_mode="r").shape
                if int(meta["dim"]) != self.dim or shape != (len(entries), self.dim):
                    raise ValueError(f"holds {shape}, expected [{len(entries)}, {self.dim}]")
            except (OSError, ValueError, KeyError, TypeError) as error:
                self.problems.append(f"{listing}: unreadable ({error}); its clips are embedded again")
                continue
            rows.update(entries)
        self._rows = rows
        return rows

    def split_fresh(self, clips: Sequence[Clip]) -> tuple[list[Clip], list[Clip]]:
        """(clips whose cached embedding is current, clips to embed: absent, or their file changed or vanished)."""
        rows = self.rows()
        fresh, missing = [], []
        for clip in clips:
            cached = rows.get(clip.key)
            try:
                current = file_identity(clip.path)
            except OSError:
                current = None
            (fresh if cached is not None and cached.identity == current else missing).append(clip)
        return fresh, missing

    def read(self, keys: Sequence[str]) -> np.ndarray:
        """The embeddings of `keys` (each cached), `[len(keys), dim]` float32, in that order; each shard is memory
        mapped and only the rows asked for are read."""
        rows = self.rows()
        unknown = [key for key in keys if key not in rows]
        if unknown:
            raise KeyError(f"no cached embedding for {unknown[:3]}{' ...' if len(unknown) > 3 else ''} in {self.dir}")
        out = np.empty((len(keys), self.dim), dtype=np.float32)
        by_shard: dict[int, list[tuple[int, int]]] = {}
        for position, key in enumerate(keys):
            by_shard.setdefault(rows[key].shard, []).append((rows[key].row, position))
        for number, pairs in by_shard.items():
            matrix = np.load(self.dir / f"shard-{number:06d}.npy", mmap_mode="r")
            pairs.sort()
            out[[p for _, p in pairs]] = matrix[[r for r, _ in pairs]]
        return out

    def _shard_files(self) -> dict[int, set[str]]:
        found: dict[int, set[str]] = {}
        if self.dir.is_dir():
            for item in self.dir.iterdir():
                match = _SHARD.match(item.name)
                if match:
                    found.setdefault(int(match.group(1)), set()).add(match.group(2))
        return found


__all__ = ["CACHE_ENV", "CachedRow", "EmbeddingCache", "default_cache_root", "file_identity", "file_sha256"]
