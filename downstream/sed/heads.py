"""The official DESED sound-event head on ATST-Frame tokens (spec `downstream_frame_spec.md` 1.7).

Per token `x_t` (`[B, T, D]`):
* strong: `p[b, t, c] = sigmoid(W x_t + b)`, `[B, T, C]`;
* weak: attention pooling with a second linear `V`: `a[b, t, :] = softmax_c(V x_t + d)` (softmax across CLASSES, not
  across time, as the official head and the DCASE baseline), clamped to [1e-7, 1];
  `weak[b, c] = sum_t p[b, t, c] a[b, t, c] / sum_t a[b, t, c]`, `[B, C]`.
Both linears start from N(0, 0.01^2) weights and zero biases, no normalisation. With `token_mask` (`[B, T]`, True on
real tokens) padded tokens take no part in the pooling.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

INIT_STD = 0.01
ATTENTION_FLOOR = 1e-7


class StrongWeakHead(nn.Module):
    """`strong` (per-token linear, sigmoid) and `attention` (the weak head's class-softmax attention) linears."""

    def __init__(self, embed_dim: int, num_classes: int, generator: Optional[torch.Generator] = None) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"a sound-event head needs at least one class, got {num_classes}")
        self.strong = nn.Linear(embed_dim, num_classes)
        self.attention = nn.Linear(embed_dim, num_classes)
        with torch.no_grad():
            for linear in (self.strong, self.attention):
                linear.weight.normal_(0.0, INIT_STD, generator=generator)
                linear.bias.zero_()

    def forward(self, tokens: Tensor, token_mask: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """`tokens` `[B, T, D]` -> (strong probabilities `[B, T, C]`, weak probabilities `[B, C]`)."""
        strong = torch.sigmoid(self.strong(tokens))
        attention = torch.softmax(self.attention(tokens), dim=-1).clamp(ATTENTION_FLOOR, 1.0)
        if token_mask is not None:
            attention = attention * token_mask[..., None].to(attention.dtype)
        weak = (strong * attention).sum(dim=1) / attention.sum(dim=1)
        return strong, weak


__all__ = ["ATTENTION_FLOOR", "INIT_STD", "StrongWeakHead"]
