"""The official linear-evaluation head (audiossl `modules/head.py` `LinearHead`, use_norm=True, affine=False).

    BatchNorm1d(D, affine=False) -> Linear(D, C);  Linear.weight ~ N(0, 0.01^2), Linear.bias = 0

State keys `norm.running_mean`, `norm.running_var`, `norm.num_batches_tracked`, `linear.weight`, `linear.bias`
(the official names). The batch norm normalises each embedding dimension with batch statistics while training and
running statistics (momentum 0.1) in eval mode, so the learning rates of the official grids apply whatever the scale
of the embeddings.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

INIT_STD = 0.01  # official: linear.weight.data.normal_(mean=0.0, std=0.01)


class LinearHead(nn.Module):
    """`[N, D]` embeddings -> `[N, C]` logits. `generator` seeds the weight draw (default: torch's global RNG).
    `batch_norm`: the BatchNorm1d class of `norm` (fine-tuning passes one whose statistics cover every DDP rank,
    as the official `sync_batchnorm=True`; the state keys stay the same)."""

    def __init__(self, embed_dim: int, num_labels: int, generator: Optional[torch.Generator] = None,
                 batch_norm: type[nn.BatchNorm1d] = nn.BatchNorm1d) -> None:
        super().__init__()
        if embed_dim < 1 or num_labels < 1:
            raise ValueError(f"LinearHead needs embed_dim >= 1 and num_labels >= 1, got {embed_dim}, {num_labels}")
        self.norm = batch_norm(embed_dim, affine=False)
        self.linear = nn.Linear(embed_dim, num_labels)
        with torch.no_grad():
            self.linear.weight.normal_(mean=0.0, std=INIT_STD, generator=generator)
            self.linear.bias.zero_()

    @property
    def embed_dim(self) -> int:
        return self.linear.in_features

    @property
    def num_labels(self) -> int:
        return self.linear.out_features

    def forward(self, embeddings: Tensor) -> Tensor:
        return self.linear(self.norm(embeddings))


def head_from_state(state: dict[str, Tensor]) -> LinearHead:
    """A `LinearHead` (eval mode) built from its state dict; shapes come from `linear.weight` `[C, D]`."""
    expected = {"norm.running_mean", "norm.running_var", "norm.num_batches_tracked", "linear.weight", "linear.bias"}
    if set(state) != expected:
        raise ValueError(f"a linear head state needs exactly the keys {sorted(expected)}, got {sorted(state)}")
    weight = state["linear.weight"]
    if weight.ndim != 2:
        raise ValueError(f"linear.weight must be [num_labels, embed_dim], got shape {tuple(weight.shape)}")
    head = LinearHead(int(weight.shape[1]), int(weight.shape[0]))
    head.load_state_dict(state)
    return head.eval()


__all__ = ["INIT_STD", "LinearHead", "head_from_state"]
