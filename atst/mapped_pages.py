"""Dropping the resident pages of a memory-mapped checkpoint as soon as a tensor has been copied out of it.

`torch.load(mmap=True)` maps the whole file (MAP_PRIVATE); reading a tensor makes its pages resident in this
process. The encoder keeps private float32 copies (so it never depends on the file again: a checkpoint overwritten
in place while a model runs would otherwise change its weights or kill it with SIGBUS), and once a tensor is copied
its pages are released with `madvise(MADV_DONTNEED)`: the load's peak is the weights once plus one tensor's pages,
not the weights twice.

Only pages of the file's own mapping are released (found in /proc/self/maps), so no anonymous memory is ever
touched; the released pages are unmodified file pages, re-read from the file if anything reads them again.
Elsewhere than Linux nothing is released (the peak is then the weights twice, as a plain copy).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
from pathlib import Path
from typing import Optional

from torch import Tensor

MADV_DONTNEED = 4  # Linux
PAGE = mmap.PAGESIZE
MAPS = Path("/proc/self/maps")


def _madvise() -> Optional[object]:
    if not MAPS.is_file():
        return None
    try:
        function = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    function.restype = ctypes.c_int
    return function


_MADVISE = _madvise()


class MappedFile:
    """The address ranges at which this process maps `path` (empty where they cannot be known)."""

    def __init__(self, path: os.PathLike) -> None:
        self.ranges: list[tuple[int, int]] = []
        if _MADVISE is None:
            return
        target = str(Path(path).resolve())
        with open(MAPS) as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                if len(fields) == 6 and fields[5].rstrip("\n") == target:
                    low, high = (int(x, 16) for x in fields[0].split("-"))
                    self.ranges.append((low, high))

    def release(self, tensor: Tensor) -> bool:
        """Release the pages under `tensor`'s storage if they lie in the file's mapping; whether it did."""
        start = tensor.untyped_storage().data_ptr()
        stop = start + tensor.untyped_storage().nbytes()
        for low, high in self.ranges:
            if low <= start and stop <= high:
                first = max(low, start - start % PAGE)
                last = min(high, -(-stop // PAGE) * PAGE)
                return _MADVISE(first, last - first, MADV_DONTNEED) == 0
        return False


__all__ = ["MappedFile"]
