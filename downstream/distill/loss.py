"""The distillation loss (spec 3.3) and how close the student is to its teacher.

    loss = w * distillation(student, teacher) + (1 - w) * task(student, targets)

The forms follow the task loss of fine-tuning (`downstream.finetune.evaluate.clip_loss`): when it is BCE (a
multi-label task, or mixup on any task), the distillation term is BCE with logits towards sigmoid(teacher logits);
for a single-label task without mixup (cross-entropy), it is cross-entropy towards the soft targets
softmax(teacher logits). Both are means over the batch (and the classes, for BCE), in float32.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..finetune.evaluate import clip_loss


def distillation_term(student: Tensor, teacher: Tensor, bce: bool) -> Tensor:
    """`[B, C]` student and teacher logits -> the scalar distillation term (module docstring)."""
    if student.shape != teacher.shape:
        raise ValueError(f"student and teacher logits must have one shape, got {tuple(student.shape)} and "
                         f"{tuple(teacher.shape)}")
    student, teacher = student.float(), teacher.float()
    if bce:
        return F.binary_cross_entropy_with_logits(student, torch.sigmoid(teacher))
    return F.cross_entropy(student, torch.softmax(teacher, dim=-1))


def distillation_loss(student: Tensor, teacher: Tensor, targets: Tensor, bce: bool, weight: float
                      ) -> tuple[Tensor, Tensor, Tensor]:
    """(loss, distillation term, task term) of `[B, C]` logits; `targets` as `clip_loss` takes them."""
    distill = distillation_term(student, teacher, bce)
    task = clip_loss(student, targets, bce)
    return weight * distill + (1.0 - weight) * task, distill, task


def agreement(student: Tensor, teacher: Tensor) -> float:
    """The fraction of clips whose most probable class is the same for the student and the teacher (top-1
    agreement; `[N, C]` logits; NaN for no clip)."""
    if student.shape[0] == 0:
        return float("nan")
    return float((student.argmax(dim=-1) == teacher.argmax(dim=-1)).float().mean())


__all__ = ["agreement", "distillation_loss", "distillation_term"]
