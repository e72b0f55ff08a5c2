"""Exponential moving average of a student's parameters into a teacher (BYOL / DINO style), for any modules."""
from __future__ import annotations

from typing import Iterable, Union

import torch
from torch import Tensor, nn

Parameters = Union[nn.Module, Iterable[Tensor]]


def _tensors(parameters: Parameters) -> list[Tensor]:
    return list(parameters.parameters() if isinstance(parameters, nn.Module) else parameters)


@torch.no_grad()
def ema_update(teacher: Parameters, student: Parameters, momentum: float) -> None:
    """teacher <- momentum x teacher + (1 - momentum) x student, parameter by parameter, in place.

    `teacher` / `student`: modules (their parameters; buffers such as batch-norm statistics are not averaged) or
    matching sequences of tensors. momentum 1 leaves the teacher unchanged, 0 copies the student. One fused
    `_foreach_lerp_` over all tensors. Raises ValueError when the two do not pair up tensor for tensor.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"EMA momentum must lie in [0, 1], got {momentum}")
    targets, sources = _tensors(teacher), _tensors(student)
    if len(targets) != len(sources):
        raise ValueError(f"teacher has {len(targets)} parameters, student {len(sources)}: they must pair up")
    for index, (target, source) in enumerate(zip(targets, sources)):
        if target.shape != source.shape:
            raise ValueError(f"parameter {index}: teacher shape {tuple(target.shape)} != student shape "
                             f"{tuple(source.shape)}")
    if targets:
        torch._foreach_lerp_(targets, [p.detach() for p in sources], 1.0 - momentum)
