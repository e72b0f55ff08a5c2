"""The audio cache: each file that is not already 16 kHz mono is decoded and resampled once, then read back.

Where: `$ATST_AUDIO_CACHE` if set (`off` turns caching off), else `$XDG_CACHE_HOME/hear-atst/audio`, else
`~/.cache/hear-atst/audio`: per user, shared by every dataset and run. An entry is the float32 16 kHz mono
audio as `.npy` (exact: what `atst.audio_io.read_audio` returns), at `<sha256[:2]>/<sha256>.npy` of (resolved
path, size, modification time in ns), so an edited or replaced file gets a new entry; entries are written
atomically (`atst.fileio`), so data-loader workers racing on one file never leave a stub. Files already at
16 kHz mono are read directly and never cached. Size: 64 kB per second of audio (AudioSet-2M: about 1.3 TB; to
train at that scale, pack the dataset into shards instead, `atst-downstream pack`). Nothing is held in memory
beyond the clip being read. Stale entries are never deleted automatically: remove the folder to reclaim space.
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Optional, Union

import numpy as np
import soundfile
import torch
from torch import Tensor

from atst.audio_io import SAMPLE_RATE, read_audio
from atst.fileio import atomic_path

log = logging.getLogger("downstream.audio_cache")

CACHE_ENV = "ATST_AUDIO_CACHE"
OFF = ("off", "none", "0", "false")


def default_cache_dir() -> Optional[Path]:
    """The cache folder the environment asks for (see the module docstring); None when caching is off."""
    value = os.environ.get(CACHE_ENV, "").strip()
    if value.lower() in OFF:
        return None
    if value:
        return Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(base) / "hear-atst" / "audio"


def is_native(path: Union[str, Path]) -> bool:
    """Whether the file's header says 16 kHz mono (then it is read directly); False if it cannot be read."""
    try:
        info = soundfile.info(str(path))
    except Exception:  # libsndfile raises several types; read_audio will name the problem
        return False
    return info.samplerate == SAMPLE_RATE and info.channels == 1


class AudioCache:
    """Read audio as float32 mono 16 kHz `[N]`, decoding and resampling each non-native file once."""

    def __init__(self, folder: Union[str, Path]) -> None:
        self.folder = Path(folder).expanduser()
        self._writable = True

    @classmethod
    def default(cls) -> Optional["AudioCache"]:
        """The cache at `default_cache_dir()`, or None when `$ATST_AUDIO_CACHE` turns it off."""
        folder = default_cache_dir()
        return cls(folder) if folder is not None else None

    def entry(self, path: Union[str, Path]) -> Path:
        """The cache file of `path` as it is now (resolved path, size, mtime)."""
        resolved = Path(path).resolve()
        stat = resolved.stat()
        digest = hashlib.sha256(f"{resolved}\0{stat.st_size}\0{stat.st_mtime_ns}".encode("utf-8")).hexdigest()
        return self.folder / digest[:2] / f"{digest}.npy"

    def read(self, path: Union[str, Path], name: str = "") -> Tensor:
        """The audio of `path`; raises `atst.audio_io.AudioDecodeError` naming `name` (or the path) when the file
        cannot be used. A corrupt cache entry is decoded again and replaced."""
        if is_native(path):
            return read_audio(str(path), name or str(path))
        try:
            entry = self.entry(path)
        except OSError:
            return read_audio(str(path), name or str(path))  # names the missing file
        if entry.is_file():
            try:
                array = np.load(entry, allow_pickle=False)
                if array.dtype != np.float32 or array.ndim != 1:
                    raise ValueError(f"holds {array.dtype} {array.shape}, not float32 [N]")
                return torch.from_numpy(array)
            except (OSError, ValueError) as error:
                log.warning("audio cache: re-decoding %s (its entry %s is unreadable: %s)", path, entry, error)
        audio = read_audio(str(path), name or str(path))
        self._store(entry, audio)
        return audio

    def _store(self, entry: Path, audio: Tensor) -> None:
        if not self._writable:
            return
        try:
            with atomic_path(entry) as tmp:
                with open(tmp, "wb") as handle:
                    np.save(handle, audio.numpy(), allow_pickle=False)
        except OSError as error:
            self._writable = False
            log.warning("audio cache: cannot write under %s (%s); decoding every time from now on", self.folder,
                        error)


CacheChoice = Union[AudioCache, str, Path, None]
DEFAULT = "default"


def resolve_cache(cache: CacheChoice) -> Optional[AudioCache]:
    """`"default"`: `AudioCache.default()`; None: no cache; a folder: a cache there; an AudioCache: itself."""
    if isinstance(cache, AudioCache) or cache is None:
        return cache
    if isinstance(cache, str) and cache == DEFAULT:
        return AudioCache.default()
    if isinstance(cache, (str, Path)):
        return AudioCache(cache)
    raise TypeError(f"cache must be 'default', None, a folder or an AudioCache, got {type(cache).__name__}")


__all__ = ["AudioCache", "CACHE_ENV", "CacheChoice", "DEFAULT", "default_cache_dir", "is_native", "resolve_cache"]
