"""Process-group helpers that work on every backend (gloo on CPU, NCCL on GPU) and outside a distributed run.

`GlobalBatchNorm1d` replaces `torch.nn.SyncBatchNorm` (what the official runs get from Lightning's
`sync_batchnorm=True`): torch's SyncBatchNorm refuses CPU tensors, so a CPU (gloo) DDP run could not use it. This
module all-reduces per-feature count / sum / sum of squares with the autograd-aware
`torch.distributed.nn.functional.all_reduce`, which works on every backend and with a different number of rows
per rank (the masked-token count varies). Outside a multi-process run it is a plain BatchNorm1d.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn


def is_distributed() -> bool:
    """Whether a process group of more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class GlobalBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d over `[N, C]` whose training statistics cover the rows of all ranks."""

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and is_distributed()):
            return super().forward(x)
        if x.ndim != 2:
            raise ValueError(f"GlobalBatchNorm1d expects [rows, features], got {tuple(x.shape)}")
        from torch.distributed.nn.functional import all_reduce

        xf = x.float()
        count = torch.full((1,), float(xf.shape[0]), device=x.device, dtype=torch.float32)
        stats = torch.cat([count, xf.sum(0), (xf * xf).sum(0)])
        stats = all_reduce(stats, op=dist.ReduceOp.SUM)
        n = stats[0].clamp_min(1.0)
        mean = stats[1 : 1 + xf.shape[1]] / n
        var = (stats[1 + xf.shape[1] :] / n - mean * mean).clamp_min(0.0)
        with torch.no_grad():
            if self.track_running_stats and self.running_mean is not None:
                self.num_batches_tracked.add_(1)
                unbiased = var * (n / (n - 1.0).clamp_min(1.0))
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), self.momentum)
                self.running_var.lerp_(unbiased.detach().to(self.running_var.dtype), self.momentum)
        out = (xf - mean) * torch.rsqrt(var + self.eps)
        if self.affine:
            out = out * self.weight + self.bias
        return out.to(x.dtype)


def global_std(embeddings: Tensor) -> Tensor:
    """Mean over features of the std over rows of the L2-normalised `[N, d]` embeddings, rows of all ranks.

    About 1/sqrt(d) (0.0625 for d = 256) for well-spread embeddings, 0 for collapsed ones. Works on any device
    and backend (the official statistic needed CUDA). Returns a scalar float32 tensor.
    """
    z = F.normalize(embeddings.detach().float(), dim=-1)
    count = torch.full((1,), float(z.shape[0]), device=z.device)
    stats = torch.cat([count, z.sum(0), (z * z).sum(0)])
    if is_distributed():
        dist.all_reduce(stats)
    n = stats[0]
    d = z.shape[1]
    mean = stats[1 : 1 + d] / n.clamp_min(1.0)
    var = (stats[1 + d :] / n.clamp_min(1.0) - mean * mean).clamp_min(0.0) * n / (n - 1.0).clamp_min(1.0)
    return var.sqrt().mean()


def gather_objects(value: Any) -> list[Any]:
    """`[value of rank 0, value of rank 1, ...]` (a collective call under DDP; `[value]` outside one)."""
    if not is_distributed():
        return [value]
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, value)
    return parts


def gather_objects_to_zero(value: Any) -> list[Any]:
    """`[value of rank 0, value of rank 1, ...]` on rank 0 and `[]` on the other ranks (a collective call under DDP;
    `[value]` outside one). Unlike `gather_objects`, only rank 0 holds every rank's value, so the memory of the
    other ranks stays that of their own share."""
    if not is_distributed():
        return [value]
    rank_zero = dist.get_rank() == 0
    parts: list[Any] | None = [None] * dist.get_world_size() if rank_zero else None
    dist.gather_object(value, parts, dst=0)
    return parts if rank_zero else []


def max_over_ranks(value: int, device: torch.device | str = "cpu") -> int:
    """The largest `value` of all ranks (a collective call under DDP; `value` outside one). `device`: where the
    backend communicates (the rank's CUDA device under NCCL)."""
    if not is_distributed():
        return value
    found = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(found, op=dist.ReduceOp.MAX)
    return int(found.item())
