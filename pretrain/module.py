"""The LightningModule of every pre-training method: optimizer groups, per-step schedules, EMA teacher, std
statistics and collapse warning, skipped-file report.

The attribute `model` (a method's `TeacherStudent`) makes the state-dict keys `model.student.*` /
`model.teacher.*`, the official layout. Hyper-parameters are every CLI flag (official `save_hyperparameters()` of
kwargs), `method` included.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor

from atst.fileio import atomic_write_text
from atst.training.corpus_datasets import SkippedFiles
from atst.training.distributed import gather_objects, global_std
from atst.training.lightning import pl, rank_zero_info, rank_zero_warn
from atst.training.optim import official_adamw, set_learning_rate
from atst.training.schedules import ema_momentum, learning_rate, weight_decay

from .methods import DEFAULT_METHOD, get_method

COLLAPSE_WARN_EVERY = 100  # steps between two collapse warnings


class TeacherStudentPretrain(pl.LightningModule):
    """Pre-training of `hparams["method"]`. kwargs: the CLI flags (see `pretrain.cli`); `learning_rate` is already
    scaled by devices x batch / 256."""

    def __init__(self, **hparams: Any) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.method = get_method(self.hparams.get("method", DEFAULT_METHOD))
        self.model = self.method.build_model(self.hparams)
        self._last_batch_time: Optional[float] = None
        self._last_collapse_warning = -COLLAPSE_WARN_EVERY
        self.skipped = SkippedFiles()  # warns once per file

    # ------------------------------------------------------------------------------------------------ optim
    def configure_optimizers(self) -> torch.optim.Optimizer:
        return official_adamw(self.model.student, lr=self.hparams.learning_rate,
                              weight_decay=weight_decay(0, self.hparams.max_steps))

    def current_schedules(self, step: int) -> dict[str, float]:
        hp = self.hparams
        return {
            "lr": learning_rate(step, hp.learning_rate, hp.warmup_steps, hp.max_steps),
            "wd": weight_decay(step, hp.max_steps),
        }

    # ------------------------------------------------------------------------------------------------ steps
    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        schedules = self.current_schedules(self.global_step)
        optimizer = self.trainer.optimizers[0]
        set_learning_rate(optimizer, schedules["lr"])
        optimizer.param_groups[0]["weight_decay"] = schedules["wd"]

        out = self.model.step(batch)
        std_tea, std_stu = global_std(out.teacher_out), global_std(out.student_out)
        self.skipped.note(batch.get("skipped", []))

        now = time.perf_counter()
        tea_name, stu_name = self.method.std_names
        metrics = {"loss": out.loss.detach(), tea_name: std_tea, stu_name: std_stu, "lr": schedules["lr"],
                   "wd": schedules["wd"], "step": float(self.global_step)}
        if self._last_batch_time is not None:
            seconds = now - self._last_batch_time
            metrics["samples_per_sec"] = out.clips * self.trainer.world_size / max(seconds, 1e-9)
            metrics["step_time"] = seconds
        self._last_batch_time = now
        self.log_dict(metrics, on_step=True, on_epoch=False, batch_size=out.clips)
        self.log("skipped_files", float(len(self.skipped)), on_step=True, on_epoch=False,
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
                f"{1 / self.model.out_dim ** 0.5:.3g}); consider a lower --learning_rate, a longer "
                f"--warmup_steps or a higher --ema"
            )

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        # The teacher follows each optimizer step here rather than in on_train_batch_end, which Lightning calls
        # after the callbacks: a checkpoint written at step N (periodic or on a signal) then holds the teacher of
        # step N. global_step counts this step once the hook returns, so the momentum is m(step + 1), the official
        # code's value, defined up to and including max_steps (the official table ran one past its end here).
        momentum = ema_momentum(self.global_step + 1, self.hparams.ema, self.hparams.max_steps)
        self.model.update_teacher(momentum)
        self.log("ema", momentum, on_step=True, on_epoch=False, batch_size=1)

    # ------------------------------------------------------------------------------------------- reporting
    def gathered_skipped_files(self) -> list[str]:
        """Undecodable files seen by any rank (a collective call under DDP)."""
        return sorted({path for part in gather_objects(sorted(self.skipped.names)) for path in part})

    def on_train_end(self) -> None:
        files = self.gathered_skipped_files()
        if self.trainer.is_global_zero:
            report = Path(self.hparams.save_path) / "skipped_files.txt"
            if files:
                atomic_write_text(report, "".join(f + "\n" for f in files))
                rank_zero_warn(f"skipped {len(files)} file(s) that could not be decoded (listed in {report}): "
                               + ", ".join(files[:10]) + (" ..." if len(files) > 10 else ""))
            else:
                rank_zero_info("skipped 0 files: every file read was decoded")
