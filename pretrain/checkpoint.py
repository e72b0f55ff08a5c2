"""Checkpoint files of a pre-training run: atomic writes, weights_only reads, resume checks.

A run's checkpoints use the official ATST-Frame Lightning layout (`state_dict` with `model.student.*` /
`model.teacher.*`, `hyper_parameters` holding every flag), so `atst.load_checkpoint`, `hear_atst.load_model` and
`atst export` read them unchanged.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

LAST = "last.ckpt"
TMP_MARK = ".tmp-"
# flags that fix tensor shapes: a save_path holding another shape cannot be resumed
STRUCTURAL_FLAGS = ("arch", "n_mels", "patch_h", "patch_w")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write to a temporary file in the same folder, fsync, then rename over the target (a kill at any moment
    leaves the previous complete file); read with `weights_only=True` (checkpoints hold only plain data)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Optional[Any] = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")
        try:
            with open(tmp, "wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()

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


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete temporary files a killed run left behind (`.NAME.tmp-PID`); returns what was removed."""
    removed = []
    if folder.is_dir():
        for item in folder.glob(f".*{TMP_MARK}*"):
            item.unlink(missing_ok=True)
            removed.append(item)
    return removed


def resume_point(save_path: Path, hyper_parameters: dict) -> Optional[tuple[Path, int]]:
    """(last.ckpt, its global step) if the run in `save_path` can be resumed with these flags, else None.

    Raises ValueError when last.ckpt holds a model of another shape (another arch, n_mels or patch size).
    """
    last = save_path / LAST
    if not last.is_file():
        return None
    checkpoint = read_checkpoint(last)
    previous = checkpoint.get("hyper_parameters") or {}
    conflicts = [f"{key}: {previous.get(key)!r} in {last}, {hyper_parameters.get(key)!r} now"
                 for key in STRUCTURAL_FLAGS if key in previous and previous.get(key) != hyper_parameters.get(key)]
    if conflicts:
        raise ValueError(f"--save_path {save_path} holds a run with another model shape ({'; '.join(conflicts)}); "
                         f"use a new --save_path or the same flags")
    return last, int(checkpoint.get("global_step", 0))
