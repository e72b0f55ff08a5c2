"""The student / teacher pair every pre-training method trains, and the BYOL loss (no Lightning here).

Attribute names give the official state-dict keys: `student.encoder.*`, `student.projector.*`,
`student.predictor.*`, `teacher.encoder.*`, `teacher.projector.*` (ATST-Frame and ATST-Clip alike).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from atst.encoder import ATSTEncoder, EncoderConfig
from atst.training.ema import ema_update
from atst.training.heads import PROJECTOR_HIDDEN, PROJECTOR_OUT, build_mlp


def byol_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """2 - 2 mean cos(prediction, target) over rows, `[N, d]` x `[N, d]` -> scalar (0 when aligned, 4 opposite)."""
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape")
    return 2.0 - 2.0 * (F.normalize(prediction.float(), dim=-1) * F.normalize(target.float(), dim=-1)).sum(-1).mean()


class Student(nn.Module):
    def __init__(self, config: EncoderConfig, hidden: int = PROJECTOR_HIDDEN, out_dim: int = PROJECTOR_OUT) -> None:
        super().__init__()
        self.encoder = ATSTEncoder(config)
        self.projector = build_mlp(config.embed_dim, hidden, out_dim)
        self.predictor = build_mlp(out_dim, hidden, out_dim)


class Teacher(nn.Module):
    def __init__(self, student: Student) -> None:
        super().__init__()
        self.encoder = copy.deepcopy(student.encoder)
        self.projector = copy.deepcopy(student.projector)
        self.requires_grad_(False)


@dataclass
class StepOutput:
    """Loss of one batch and the projected embeddings it was computed from (for the std statistics)."""

    loss: Tensor
    teacher_out: Tensor  # [N, out_dim]
    student_out: Tensor  # [N, out_dim] (after the predictor)
    clips: int  # batch items (clips) on this rank


class TeacherStudent(nn.Module):
    """A student (encoder, projector, predictor) and its EMA teacher (encoder, projector), initialised as a copy
    of the student and never trained by gradients. A method subclasses it and defines `step(batch)`."""

    def __init__(self, config: EncoderConfig, hidden: int = PROJECTOR_HIDDEN, out_dim: int = PROJECTOR_OUT) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.student = Student(config, hidden, out_dim)
        self.teacher = Teacher(self.student)

    def step(self, batch: dict) -> StepOutput:
        """The loss of one collated batch of this method's samples."""
        raise NotImplementedError

    def update_teacher(self, momentum: float) -> None:
        """teacher <- m teacher + (1 - m) student, for encoder and projector parameters (not BN buffers)."""
        ema_update([*self.teacher.encoder.parameters(), *self.teacher.projector.parameters()],
                   [*self.student.encoder.parameters(), *self.student.projector.parameters()], momentum)
