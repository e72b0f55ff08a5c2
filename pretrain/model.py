"""The ATST-Frame student / teacher pair and its loss (no Lightning here).

Attribute names give the official state-dict keys: `student.encoder.*`, `student.projector.*`,
`student.predictor.*`, `teacher.encoder.*`, `teacher.projector.*`.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from atst.encoder import ATSTEncoder, EncoderConfig

from .heads import PROJECTOR_HIDDEN, PROJECTOR_OUT, build_mlp


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
    """Loss and the projected embeddings it was computed from (rows = masked valid tokens of both views)."""

    loss: Tensor
    teacher_out: Tensor  # [2M, out_dim], view-1 rows then view-2 rows
    student_out: Tensor  # [2M, out_dim] (after the predictor)


class FrameATST(nn.Module):
    """Teacher-student ATST-Frame: `forward(mel_t, mel_s, mask, valid_tokens)` -> StepOutput.

    mel_t / mel_s: the two views `[B, n_mels, F]`; mask: bool `[B, T]` shared by both views (True = masked, only
    within the first `valid_tokens[b]` tokens); the student sees masked tokens replaced by `mask_embed`, the teacher
    sees everything. Loss (symmetric): mean of BYOL(student(view 2), teacher(view 1)) and BYOL(student(view 1),
    teacher(view 2)) over the masked tokens. Non-symmetric: only the first pair.
    """

    def __init__(self, config: EncoderConfig, symmetric: bool = True, hidden: int = PROJECTOR_HIDDEN,
                 out_dim: int = PROJECTOR_OUT) -> None:
        super().__init__()
        self.symmetric = symmetric
        self.student = Student(config, hidden, out_dim)
        self.teacher = Teacher(self.student)

    def _rows(self, encoder: ATSTEncoder, mel: Tensor, lengths: Tensor, mask: Tensor, masked_input: bool) -> Tensor:
        out = encoder(mel, token_lengths=lengths, token_mask=mask if masked_input else None)  # [B, T, D]
        return out[mask]  # [M, D]

    def forward(self, mel_t: Tensor, mel_s: Tensor, mask: Tensor, valid_tokens: Tensor) -> StepOutput:
        if mel_t.shape != mel_s.shape:
            raise ValueError(f"views differ in shape: {tuple(mel_t.shape)} vs {tuple(mel_s.shape)}")
        mels = torch.cat([mel_t, mel_s])
        masks = torch.cat([mask, mask])
        lengths = torch.cat([valid_tokens, valid_tokens])
        if not bool(mask.any()):
            raise ValueError("the mask selects no token; nothing to train on")
        with torch.no_grad():
            teacher = self.teacher.projector(self._rows(self.teacher.encoder, mels, lengths, masks, False))
        student = self.student.predictor(self.student.projector(
            self._rows(self.student.encoder, mels, lengths, masks, True)))
        tea_1, tea_2 = teacher.chunk(2)
        stu_1, stu_2 = student.chunk(2)
        if self.symmetric:
            loss = 0.5 * (byol_loss(stu_2, tea_1) + byol_loss(stu_1, tea_2))
        else:
            loss = byol_loss(stu_2, tea_1)
        return StepOutput(loss, teacher, student)

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """teacher <- m teacher + (1 - m) student, for encoder and projector parameters (not BN buffers)."""
        for part in ("encoder", "projector"):
            teacher = list(getattr(self.teacher, part).parameters())
            student = list(getattr(self.student, part).parameters())
            torch._foreach_lerp_(teacher, [p.detach() for p in student], 1.0 - momentum)


def parameter_groups(module: nn.Module) -> list[dict]:
    """Official AdamW groups of the student: group 0 (weight-decayed) = every tensor whose name does not end in
    `.bias` and whose ndim != 1 (Linear weights, `pos_embed`, `mask_embed`); group 1 (no decay) = the rest."""
    decay, no_decay = [], []
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if name.endswith(".bias") or param.ndim == 1 else decay).append(param)
    return [{"params": decay, "name": "decay"}, {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"}]
