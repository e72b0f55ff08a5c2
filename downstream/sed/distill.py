"""Frame-level distillation in `sed` (`--distill-teacher`; spec `downstream_frame_spec.md` 3.6): the student's
strong (and weak) probabilities pulled towards a frozen trained `sed` teacher's on the same batch.

    loss = w * distillation + (1 - w) * the ordinary sed loss
    distillation = BCE(strong_S, strong_T) [+ BCE(weak_S, weak_T) when the recipe trains the weak head]

BCE of probabilities towards probabilities, as the official frame-level code and the sed loss compute it; for the
strong head this equals BCE-with-logits(student logits, sigmoid(teacher logits)). Every clip of the batch (strong,
weak and unlabelled) takes the distillation term; the label terms only the clips with those labels. The default
w = 0.5 is the official AudioSet-strong weighting (`0.5 BCE(p_S, y) + 0.5 BCE(p_S, p_T)`). The official DESED code
weights (L_strong + L_weak) / 2 + (D_strong + D_weak) / 4: labels : teacher = 2 : 1, which w = 1/3 gives (the whole
loss then 2/3 of the official one).

Every validation also reports `frame_gap`: the mean |p_S - p_T| over the validation frames (lower: closer to the
teacher); the untrained student's is measured once before the first step (`initial`).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from ..distill.module import InitialValidation
from ..finetune.evaluate import Scores
from ..finetune.model_files import ModelFiles
from ..finetune.schedule import FinetuneSchedule
from .model import SedModel
from .module import SedModule, bce, recording_loss, validation_scores
from .recipe import SedRecipe
from .teacher import SedTeacher

DEFAULT_WEIGHT = 0.5  # the official AudioSet-strong frame-level distillation (spec 3.6)
CHECKPOINT_KEY = "sed_distill"


def frame_distillation_term(student_strong: Tensor, student_weak: Tensor, teacher_strong: Tensor,
                            teacher_weak: Tensor, weak: bool) -> Tensor:
    """BCE of the student's strong probabilities `[B, T, C]` towards the teacher's (mean over the batch, frames
    and classes), plus that of the weak `[B, C]` ones when `weak`."""
    if student_strong.shape != teacher_strong.shape:
        raise ValueError(f"student and teacher strong scores must have one shape, got {tuple(student_strong.shape)} "
                         f"and {tuple(teacher_strong.shape)}")
    term = bce(student_strong, teacher_strong.detach())
    if weak:
        term = term + bce(student_weak, teacher_weak.detach())
    return term


def frame_gap(student: Tensor, teacher: Tensor) -> float:
    """Mean |student - teacher| of two probability tensors of one shape (NaN when empty)."""
    return float((student.float() - teacher.float()).abs().mean()) if student.numel() else math.nan


class StudentAndTeacherScores(nn.Module):
    """Both networks for evaluation: `recording_scores` -> `[T_i, 2C]` = [student | teacher] per recording."""

    def __init__(self, student: SedModel, teacher: SedTeacher) -> None:
        super().__init__()
        self.student, self.teacher = student, teacher
        self.training = student.training

    def recording_scores(self, waves: Sequence[Tensor], trim: bool = True) -> list[Tensor]:
        return [torch.cat([s, t], dim=-1) for s, t in zip(self.student.recording_scores(waves, trim),
                                                          self.teacher.recording_scores(waves, trim))]


class SedDistillModule(InitialValidation, SedModule):
    """`SedModule` with the teacher and the two-term loss (module docstring); `weight` w in [0, 1]."""

    initial_key = CHECKPOINT_KEY
    initial_writer = "atst-downstream sed --distill-teacher"

    def __init__(self, model: SedModel, teacher: SedTeacher, weight: float, hparams: dict,
                 schedule: FinetuneSchedule, steps_per_epoch: int, recipe: SedRecipe, valid_clips: list,
                 files: Optional[ModelFiles] = None) -> None:
        super().__init__(model, hparams, schedule, steps_per_epoch, recipe, valid_clips, files)
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"the distillation weight must lie in [0, 1], got {weight}")
        if teacher.num_classes != model.num_classes:
            raise ValueError(f"the teacher scores {teacher.num_classes} classes, the student {model.num_classes}")
        if teacher.model.backbone.window_tokens != model.backbone.window_tokens:
            raise ValueError(f"the teacher scores windows of {teacher.model.backbone.window_tokens} tokens, the "
                             f"student {model.backbone.window_tokens}")
        self.distill_teacher, self.weight = teacher, float(weight)
        self.distill_weak = recipe.weak_batch > 0  # the weak head takes the teacher's clip scores when it trains
        self.initial: Optional[dict] = None

    def losses(self, batch: dict) -> dict[str, Tensor]:
        """The sed parts (`SedModule.loss_parts`) as `task`, the `distill` term, and `loss` = w distill +
        (1 - w) task."""
        strong, weak, _ = self.model(batch["audio"])
        parts = self.loss_parts(batch, strong, weak)
        teacher_strong, teacher_weak = self.distill_teacher(batch["audio"])
        parts["distill"] = frame_distillation_term(strong, weak, teacher_strong, teacher_weak, self.distill_weak)
        parts["task"] = parts["loss"]
        parts["loss"] = self.weight * parts["distill"] + (1.0 - self.weight) * parts["task"]
        return parts

    def evaluate_split(self, split: str) -> Scores:
        """`SedModule.evaluate_split` with `frame_gap` (mean |p_S - p_T| over the split's frames) in `extra`."""
        clips, classes = self.trainer.datamodule.split_clips(split), self.model.num_classes

        def reduce(index: int, both: Tensor) -> tuple:
            student, teacher = both[:, :classes], both[:, classes:]
            return (recording_loss(clips[index], student, classes), float((student - teacher).abs().sum()),
                    student.numel())

        found = self.split_scores(split, reduce=reduce, model=StudentAndTeacherScores(self.model,
                                                                                     self.distill_teacher))
        scores = validation_scores({index: value[0] for index, value in found.items()})
        count = sum(value[2] for value in found.values())
        scores.extra = {"frame_gap": sum(value[1] for value in found.values()) / count if count else math.nan}
        return scores

    def teacher_scores(self, split: str, trim: bool = True, to_rank_zero: bool = False) -> dict:
        """{clip index: the teacher's strong scores `[T, C]`} of `split` (a collective call under DDP; with
        `to_rank_zero` only rank 0 receives them)."""
        return self.split_scores(split, trim, to_rank_zero=to_rank_zero, model=self.distill_teacher)


__all__ = ["CHECKPOINT_KEY", "DEFAULT_WEIGHT", "SedDistillModule", "StudentAndTeacherScores", "frame_distillation_term",
           "frame_gap"]
