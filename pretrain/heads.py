"""Projector / predictor MLPs of the official recipe, with a batch norm synchronised across ranks.

Layout (state-dict keys as in the official checkpoints): `0` Linear(in -> hidden, no bias), `1` BatchNorm1d(hidden),
`2` ReLU, `3` Linear(hidden -> out, no bias).

`GlobalBatchNorm1d` replaces `torch.nn.SyncBatchNorm` (what the official run gets from Lightning's
`sync_batchnorm=True`): torch's SyncBatchNorm refuses CPU tensors, so a CPU (gloo) DDP run could not use it. This
module all-reduces per-feature count / sum / sum of squares with the autograd-aware
`torch.distributed.nn.functional.all_reduce`, which works on every backend (gloo, nccl) and with a different
number of rows per rank (the masked-token count varies). Outside a multi-process run it is a plain BatchNorm1d.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

PROJECTOR_HIDDEN = 4096
PROJECTOR_OUT = 256


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class GlobalBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d over `[N, C]` whose training statistics cover the rows of all ranks."""

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and _distributed()):
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


def build_mlp(in_dim: int, hidden: int = PROJECTOR_HIDDEN, out_dim: int = PROJECTOR_OUT) -> nn.Sequential:
    """Linear(no bias) -> BN -> ReLU -> Linear(no bias): `[N, in_dim]` -> `[N, out_dim]`."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden, bias=False),
        GlobalBatchNorm1d(hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, out_dim, bias=False),
    )


def plain_batch_norm_equivalent(x: Tensor, bn: nn.BatchNorm1d) -> Tensor:
    """Reference: what a single-process BatchNorm1d in training mode computes on `x` (used by tests)."""
    return F.batch_norm(x, None, None, bn.weight, bn.bias, training=True, eps=bn.eps)
