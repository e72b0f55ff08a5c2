"""The projector / predictor MLP of the official ATST-Frame and ATST-Clip recipes.

Layout (state-dict keys as in the official checkpoints): `0` Linear(in -> hidden, no bias), `1` BatchNorm1d(hidden)
synchronised across ranks, `2` ReLU, `3` Linear(hidden -> out, no bias).
"""
from __future__ import annotations

from torch import nn

from .distributed import GlobalBatchNorm1d

PROJECTOR_HIDDEN = 4096
PROJECTOR_OUT = 256


def build_mlp(in_dim: int, hidden: int = PROJECTOR_HIDDEN, out_dim: int = PROJECTOR_OUT) -> nn.Sequential:
    """Linear(no bias) -> BN -> ReLU -> Linear(no bias): `[N, in_dim]` -> `[N, out_dim]`."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden, bias=False),
        GlobalBatchNorm1d(hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, out_dim, bias=False),
    )
