"""Callbacks of a pre-training run: periodic / last checkpoints, a final checkpoint, curves at the end."""
from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_info

from .checkpoint import LAST
from .plot import plot_curves


def checkpoint_callbacks(save_path: Path, every_steps: int, keep_every_steps: int) -> list[Callback]:
    """`last.ckpt` refreshed every `every_steps` optimizer steps; `checkpoint-step=NNNNNNN.ckpt` kept every
    `keep_every_steps` (0 = none)."""
    last = ModelCheckpoint(dirpath=save_path, every_n_train_steps=every_steps, save_top_k=0, save_last=True,
                           enable_version_counter=False)
    callbacks: list[Callback] = [last]
    if keep_every_steps:
        callbacks.append(ModelCheckpoint(dirpath=save_path, filename="checkpoint-{step:07d}", save_top_k=-1,
                                         every_n_train_steps=keep_every_steps, enable_version_counter=False))
    return callbacks


class FinalCheckpoint(Callback):
    """Write `last.ckpt` at the end of training when the last periodic save was at an earlier step."""

    def __init__(self, save_path: Path) -> None:
        self.path = Path(save_path) / LAST
        self.saved_step = -1

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        self.saved_step = trainer.global_step

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.saved_step != trainer.global_step:
            trainer.save_checkpoint(self.path)
        rank_zero_info(f"checkpoint at step {trainer.global_step}: {self.path}")


class CurvesAtEnd(Callback):
    """Flush the loggers and write `save_path/curves.png` from the CSV logs (rank 0)."""

    def __init__(self, save_path: Path) -> None:
        self.save_path = Path(save_path)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for logger in trainer.loggers:
            logger.save()
        if trainer.is_global_zero:
            try:
                out = plot_curves(self.save_path / "csv_logs", self.save_path / "curves.png")
                rank_zero_info(f"training curves: {out}")
            except (FileNotFoundError, ValueError) as error:
                rank_zero_info(f"no curves written: {error}")
