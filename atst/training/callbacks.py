"""Callbacks of a training run: checkpoint cadence, a final checkpoint, curves at the end, the progress line."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping, Optional

from .lightning import Callback, ModelCheckpoint, pl, rank_zero_info

from .checkpoint_io import LAST
from .curves import plot_curves


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
            trainer.save_checkpoint(self.path, weights_only=False)
        rank_zero_info(f"checkpoint at step {trainer.global_step}: {self.path}")


class CurvesAtEnd(Callback):
    """Flush the loggers and write `save_path/curves.png` from the CSV logs (rank 0); the collapse threshold is the
    module's `collapse_std` hyper-parameter when it has one."""

    def __init__(self, save_path: Path) -> None:
        self.save_path = Path(save_path)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for logger in trainer.loggers:
            logger.save()
        if trainer.is_global_zero:
            try:
                out = plot_curves(self.save_path / "csv_logs", self.save_path / "curves.png",
                                  collapse_std=pl_module.hparams.get("collapse_std"))
                rank_zero_info(f"training curves: {out}")
            except (FileNotFoundError, ValueError) as error:
                rank_zero_info(f"no curves written: {error}")


def progress_text(step: int, max_steps: int, metrics: Mapping[str, Any], seconds: Optional[float] = None) -> str:
    """`step 120/5000 loss 1.2345 lr 3.20e-04 samples/s 812.3 elapsed 0:01:05` (fields without a value are
    left out): `step` counts the optimizer steps done, the values are those of the last one."""
    def value(key: str) -> Optional[float]:
        found = metrics.get(key)
        return None if found is None else float(found)

    parts = [f"step {step}/{max_steps}"]
    for key, label, form in (("loss", "loss", ".4f"), ("lr", "lr", ".2e"), ("samples_per_sec", "samples/s", ".1f")):
        found = value(key)
        if found is not None:
            parts.append(f"{label} {found:{form}}")
    if seconds is not None:
        whole = int(seconds)
        parts.append(f"elapsed {whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}")
    return " ".join(parts)


class ProgressLine(Callback):
    """Print `progress_text` every `every_steps` optimizer steps and at the last one (rank 0): the progress report
    for logs and pipes, where Lightning's bar would only write carriage returns."""

    def __init__(self, every_steps: int) -> None:
        if every_steps < 1:
            raise ValueError(f"every_steps must be >= 1, got {every_steps}")
        self.every_steps = every_steps
        self.printed_step = -1
        self.started: Optional[float] = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.started = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        due = step % self.every_steps == 0 or step == trainer.max_steps
        if not trainer.is_global_zero or step == self.printed_step or not due or step == 0:
            return
        self.printed_step = step
        seconds = None if self.started is None else time.perf_counter() - self.started
        print(progress_text(step, trainer.max_steps, trainer.callback_metrics, seconds), flush=True)
