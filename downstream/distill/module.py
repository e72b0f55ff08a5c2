"""`DistillModule`: the LightningModule of fine-tuning (`FinetuneModule`: layer-wise LR decay, SGD, the per-step LR,
validation after every epoch, the model choice) with a frozen teacher and the distillation loss.

Each training batch (the mixed and cropped mels of the recipe, the same ones for both networks) goes through the
student and the teacher; the loss is `loss.distillation_loss`. Every validation (and the test) also scores the
teacher on the same clips and records `agreement` (top-1 agreement of student and teacher), `distill_loss` (the
distillation term, both in eval mode) and `teacher` (the teacher's metric). Before the first step the untrained
student is validated once (`initial`, kept in last.ckpt), under a forked RNG so the training draws stay those of
a plain fine-tuning run with the same seed.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from atst.training.distributed import is_distributed

from ..finetune.evaluate import Scores, collect, score
from ..finetune.model import FinetuneModel
from ..finetune.model_files import ModelFiles
from ..finetune.module import FinetuneModule
from ..finetune.schedule import FinetuneSchedule
from .loss import agreement, distillation_loss, distillation_term
from .teacher import FrozenTeacher

CHECKPOINT_KEY = "distill"


class StudentAndTeacher(nn.Module):
    """Both networks side by side for evaluation: `[B, 2C]` = [student logits | teacher logits]."""

    def __init__(self, student: FinetuneModel, teacher: FrozenTeacher) -> None:
        super().__init__()
        self.student, self.teacher = student, teacher
        self.training = student.training

    def forward(self, mel: Tensor, frames: Tensor) -> Tensor:
        return torch.cat([self.student(mel, frames).float(), self.teacher(mel, frames).float()], dim=-1)


class InitialValidation:
    """For a distillation module (a `FinetuneModule` with `initial`, None until measured): the untrained student
    validated once before the first step, under a forked RNG so the training draws stay those of the plain run
    with the same seed; kept in every checkpoint under `initial_key`."""

    initial_key = CHECKPOINT_KEY
    initial_writer = "atst-downstream distill"

    def on_train_start(self) -> None:
        if self.global_step == 0 and self.initial is None:
            devices = [self.device] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                scores = self.evaluate_split("valid")
            self.initial = {"valid": scores.metric, "valid_loss": scores.loss, **scores.extra}
        super().on_train_start()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[self.initial_key] = {"initial": self.initial}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get(self.initial_key)
        if not isinstance(state, dict):
            raise ValueError(f"the checkpoint has no distillation state ({self.initial_key!r}); it was not written by "
                             f"{self.initial_writer}")
        self.initial = state.get("initial")


class DistillModule(InitialValidation, FinetuneModule):
    """Fine-tuning of `model` towards `teacher` with distillation weight `weight` (the other arguments: those of
    `FinetuneModule`)."""

    def __init__(self, model: FinetuneModel, teacher: FrozenTeacher, weight: float, hparams: dict,
                 schedule: FinetuneSchedule, steps_per_epoch: int, metric: str, bce: bool, selection: str,
                 files: Optional[ModelFiles] = None) -> None:
        super().__init__(model, hparams, schedule, steps_per_epoch, metric, bce, selection, files)
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"the distillation weight must lie in [0, 1], got {weight}")
        self.teacher, self.weight = teacher, float(weight)
        self.initial: Optional[dict] = None  # the untrained student's validation (metric, agreement, ...)

    # ------------------------------------------------------------------------------------------------ loss
    def compute_loss(self, batch: dict) -> Tensor:
        mel, frames = batch["mel"], batch["frames"]
        student = self.model(mel, frames)
        teacher = self.teacher(mel, frames)
        loss, distill, task = distillation_loss(student, teacher, batch["targets"], self.bce, self.weight)
        self.log_dict({"loss_distill": distill.detach(), "loss_task": task.detach()}, on_step=True, on_epoch=False,
                      batch_size=int(mel.shape[0]))
        return loss

    def _idle_loss(self, rows: int) -> Tensor:
        zero = super()._idle_loss(rows)
        if is_distributed() and self.teacher.training:  # the train-mode teacher head's batch norm is collective
            with torch.no_grad():
                self.teacher.model.head(torch.zeros(0, self.teacher.model.embed_dim, device=self.device))
        return zero

    # ------------------------------------------------------------------------------------------- validation
    def evaluate_split(self, split: str) -> Scores:
        """The student's scores on `split`, with `agreement`, `distill_loss` and `teacher` (its metric) in
        `extra`; a collective call under DDP."""
        loader = self.trainer.datamodule.eval_loader(split)
        found = collect(StudentAndTeacher(self.model, self.teacher), loader, self.device, self.trainer.precision,
                        on_skipped=self.skipped.note)
        if found is None:
            return Scores(math.nan, math.nan, 0, {"agreement": math.nan, "distill_loss": math.nan,
                                                 "teacher": math.nan})
        both, targets = found
        student, teacher = both.chunk(2, dim=-1)
        scores = score(student, targets, self.metric, self.bce)
        scores.extra = {"agreement": agreement(student, teacher),
                        "distill_loss": float(distillation_term(student, teacher, self.bce)),
                        "teacher": score(teacher, targets, self.metric, self.bce).metric}
        return scores


__all__ = ["CHECKPOINT_KEY", "DistillModule", "InitialValidation", "StudentAndTeacher"]
