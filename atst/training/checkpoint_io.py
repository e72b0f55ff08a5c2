"""Checkpoint files of a training run: atomic writes, weights_only reads, the resume point.

Writes go through `atst.fileio` (temporary file in the same folder, fsync, rename), so a kill at any moment leaves
the previous complete file. Reads use `torch.load(weights_only=True)`: a checkpoint holds only plain data.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from .lightning import TorchCheckpointIO

from atst.fileio import atomic_open

LAST = "last.ckpt"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO that writes atomically and reads with `weights_only=True`."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Optional[Any] = None) -> None:
        with atomic_open(path, "wb") as handle:
            torch.save(checkpoint, handle)

    def load_checkpoint(self, path: Any, map_location: Optional[Callable] = None,
                        weights_only: Optional[bool] = None) -> dict[str, Any]:
        return read_checkpoint(path)


def read_checkpoint(path: Any) -> dict[str, Any]:
    """`torch.load(path, map_location="cpu", weights_only=True)` with a clear error for unreadable files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"cannot read checkpoint {path} ({type(error).__name__}: {error}); remove it or pick "
                         f"another --save_path") from None


def resume_point(save_path: Path, hyper_parameters: dict, structural: Sequence[str]) -> Optional[tuple[Path, int]]:
    """(last.ckpt, its global step) if the run in `save_path` can be resumed with these hyper-parameters, else None.

    `structural`: the flags that fix tensor shapes (or the training method); raises ValueError naming each one
    whose value in last.ckpt differs from `hyper_parameters` (a flag the checkpoint does not store is not
    compared).
    """
    last = save_path / LAST
    if not last.is_file():
        return None
    checkpoint = read_checkpoint(last)
    previous = checkpoint.get("hyper_parameters") or {}
    conflicts = [f"{key}: {previous.get(key)!r} in {last}, {hyper_parameters.get(key)!r} now"
                 for key in structural if key in previous and previous.get(key) != hyper_parameters.get(key)]
    if conflicts:
        raise ValueError(f"--save_path {save_path} holds a run with another model shape ({'; '.join(conflicts)}); "
                         f"use a new --save_path or the same flags")
    return last, int(checkpoint.get("global_step", 0))
