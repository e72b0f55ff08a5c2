"""The LightningModule: optimizer groups, per-step schedules, EMA teacher, std statistics and collapse warning.

The attribute `model` (a `FrameATST`) makes the state-dict keys `model.student.*` / `model.teacher.*`, the
official ATST-Frame layout. Hyper-parameters are every CLI flag (official `save_hyperparameters()` of kwargs).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import pytorch_lightning as pl
import torch
import torch.distributed as dist
import torch.nn.functional as F
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor

from atst.encoder import arch_config

from .model import FrameATST, parameter_groups
from .schedules import ema_momentum, learning_rate, weight_decay

DROP_PATH_RATE = 0.1
COLLAPSE_WARN_EVERY = 100  # steps between two collapse warnings


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def global_std(embeddings: Tensor) -> Tensor:
    """Mean over features of the std over rows of the L2-normalised `[N, d]` embeddings, rows of all ranks.

    About 1/sqrt(d) (0.0625 for d = 256) for well-spread embeddings, 0 for collapsed ones. Works on any device
    and backend (the official statistic needed CUDA). Returns a scalar float32 tensor.
    """
    z = F.normalize(embeddings.detach().float(), dim=-1)
    count = torch.full((1,), float(z.shape[0]), device=z.device)
    stats = torch.cat([count, z.sum(0), (z * z).sum(0)])
    if _distributed():
        dist.all_reduce(stats)
    n = stats[0]
    d = z.shape[1]
    mean = stats[1 : 1 + d] / n.clamp_min(1.0)
    var = (stats[1 + d :] / n.clamp_min(1.0) - mean * mean).clamp_min(0.0) * n / (n - 1.0).clamp_min(1.0)
    return var.sqrt().mean()


class FrameATSTPretrain(pl.LightningModule):
    """ATST-Frame pre-training. kwargs: the CLI flags (see `pretrain.cli`); `learning_rate` is already scaled."""

    def __init__(self, **hparams: Any) -> None:
        super().__init__()
        self.save_hyperparameters()
        hp = self.hparams
        config = arch_config(hp.arch, drop_path_rate=DROP_PATH_RATE, n_mels=hp.n_mels, patch_h=hp.patch_h,
                             patch_w=hp.patch_w)
        self.model = FrameATST(config, symmetric=hp.symmetric, hidden=hp.get("projector_hidden", 4096))
        self._step_before_batch = 0
        self._last_batch_time: Optional[float] = None
        self._last_collapse_warning = -COLLAPSE_WARN_EVERY
        self.skipped_files: set[str] = set()

    # ------------------------------------------------------------------------------------------------ optim
    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(parameter_groups(self.model.student), lr=self.hparams.learning_rate,
                                 betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay(0, self.hparams.max_steps))

    def current_schedules(self, step: int) -> dict[str, float]:
        hp = self.hparams
        return {
            "lr": learning_rate(step, hp.learning_rate, hp.warmup_steps, hp.max_steps),
            "wd": weight_decay(step, hp.max_steps),
        }

    # ------------------------------------------------------------------------------------------------ steps
    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        self._step_before_batch = self.global_step

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        schedules = self.current_schedules(self.global_step)
        optimizer = self.trainer.optimizers[0]
        for group in optimizer.param_groups:
            group["lr"] = schedules["lr"]
        optimizer.param_groups[0]["weight_decay"] = schedules["wd"]

        out = self.model(batch["mel_t"], batch["mel_s"], batch["mask"], batch["valid_tokens"])
        std_tea, std_stu = global_std(out.teacher_out), global_std(out.student_out)
        self.skipped_files.update(batch.get("skipped", []))

        now = time.perf_counter()
        metrics = {"loss": out.loss.detach(), "std_frm_tea": std_tea, "std_frm_stu": std_stu,
                   "lr": schedules["lr"], "wd": schedules["wd"], "step": float(self.global_step)}
        if self._last_batch_time is not None:
            seconds = now - self._last_batch_time
            samples = batch["mel_t"].shape[0] * self.trainer.world_size
            metrics["samples_per_sec"] = samples / max(seconds, 1e-9)
            metrics["step_time"] = seconds
        self._last_batch_time = now
        self.log_dict(metrics, on_step=True, on_epoch=False, batch_size=batch["mel_t"].shape[0])
        self.log("skipped_files", float(len(self.skipped_files)), on_step=True, on_epoch=False,
                 reduce_fx="sum", sync_dist=True, batch_size=1)
        self.log("std", torch.minimum(std_tea, std_stu), prog_bar=True, on_step=True, on_epoch=False,
                 logger=False, batch_size=1)
        self._check_collapse(float(std_tea), float(std_stu))
        return out.loss

    def _check_collapse(self, std_tea: float, std_stu: float) -> None:
        threshold = self.hparams.get("collapse_std", 0.0)
        if min(std_tea, std_stu) >= threshold:
            return
        if self.global_step - self._last_collapse_warning >= COLLAPSE_WARN_EVERY:
            self._last_collapse_warning = self.global_step
            rank_zero_warn(
                f"possible representation collapse at step {self.global_step}: embedding std teacher "
                f"{std_tea:.4g}, student {std_stu:.4g} < --collapse_std {threshold:g} (healthy is about "
                f"{1 / self.model.student.predictor[-1].out_features ** 0.5:.3g}); consider a lower "
                f"--learning_rate, a longer --warmup_steps or a higher --ema"
            )

    def on_train_batch_end(self, outputs: Any, batch: dict, batch_idx: int) -> None:
        if self.global_step == self._step_before_batch:  # accumulating: no optimizer step yet
            return
        # the counter has already moved to the next step (as in the official code): m(step + 1), defined up to and
        # including max_steps (the official table ran one past its end here)
        momentum = ema_momentum(self.global_step, self.hparams.ema, self.hparams.max_steps)
        self.model.update_teacher(momentum)
        self.log("ema", momentum, on_step=True, on_epoch=False, batch_size=1)

    # ------------------------------------------------------------------------------------------- reporting
    def gathered_skipped_files(self) -> list[str]:
        """Undecodable files seen by any rank (a collective call under DDP)."""
        files = set(self.skipped_files)
        if _distributed():
            parts: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(parts, sorted(files))
            files = {f for part in parts for f in part}
        return sorted(files)

    def on_train_end(self) -> None:
        files = self.gathered_skipped_files()
        if self.trainer.is_global_zero:
            save_path = Path(self.hparams.save_path)
            report = save_path / "skipped_files.txt"
            if files:
                report.write_text("".join(f + "\n" for f in files))
                rank_zero_warn(f"skipped {len(files)} file(s) that could not be decoded (listed in {report}): "
                               + ", ".join(files[:10]) + (" ..." if len(files) > 10 else ""))
            else:
                rank_zero_info("skipped 0 files: every file read was decoded")
