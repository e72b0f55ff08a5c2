"""Token masks for the student view (the official `random_mask.py` recipe, re-implemented without fairseq).

`block`: spans of `mask_len` tokens at distinct random starts, n_spans = max(min_masks, int(ratio * L / mask_len + u))
with u ~ U(0, 1); overlapping spans merge, so the masked fraction is below `mask_ratio` (about 0.50 for 0.65 / 5 at
250 tokens, as in the official runs). Difference from fairseq (a fix): starts are drawn from {0, ..., L - mask_len},
so the last token can be masked too (fairseq never masks it).
`random`: exactly ceil(ratio * L) distinct positions.

Only the first `length` tokens of an item (its valid tokens) can be masked. Masks are reproducible for a given
`torch.Generator` seed.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

MASK_TYPES = ("block", "random")


def _check(mask_ratio: float, mask_len: int, mask_type: str) -> None:
    if mask_type not in MASK_TYPES:
        raise ValueError(f"mask_type must be one of {MASK_TYPES}, got {mask_type!r}")
    if not 0.0 < mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must lie in (0, 1), got {mask_ratio}")
    if mask_len < 1:
        raise ValueError(f"mask_len must be a positive number of tokens, got {mask_len}")


def block_mask(length: int, mask_ratio: float, mask_len: int, min_masks: int = 2,
               generator: Optional[torch.Generator] = None) -> Tensor:
    """Span mask over `length` tokens: bool `[length]`, True = masked. Empty input gives an empty mask."""
    _check(mask_ratio, mask_len, "block")
    mask = torch.zeros(length, dtype=torch.bool)
    if length == 0:
        return mask
    span = min(mask_len, length)
    n_starts = length - span + 1
    u = float(torch.rand((), generator=generator))
    n_spans = max(min_masks, int(mask_ratio * length / span + u))
    n_spans = min(n_spans, n_starts)
    starts = torch.randperm(n_starts, generator=generator)[:n_spans]
    offsets = (starts[:, None] + torch.arange(span)[None, :]).reshape(-1)
    mask[offsets] = True
    return mask


def random_mask(length: int, mask_ratio: float, generator: Optional[torch.Generator] = None) -> Tensor:
    """Exactly ceil(mask_ratio * length) masked positions, bool `[length]`."""
    _check(mask_ratio, 1, "random")
    mask = torch.zeros(length, dtype=torch.bool)
    count = min(length, math.ceil(mask_ratio * length))
    mask[torch.randperm(length, generator=generator)[:count]] = True
    return mask


def make_mask(n_tokens: int, valid_tokens: int, mask_type: str, mask_ratio: float, mask_len: int,
              generator: Optional[torch.Generator] = None, min_masks: int = 2) -> Tensor:
    """Mask bool `[n_tokens]` whose True entries all lie in the first `valid_tokens` positions."""
    _check(mask_ratio, mask_len, mask_type)
    if not 0 <= valid_tokens <= n_tokens:
        raise ValueError(f"valid_tokens must lie in [0, {n_tokens}], got {valid_tokens}")
    inner = (block_mask(valid_tokens, mask_ratio, mask_len, min_masks, generator) if mask_type == "block"
             else random_mask(valid_tokens, mask_ratio, generator))
    mask = torch.zeros(n_tokens, dtype=torch.bool)
    mask[:valid_tokens] = inner
    return mask


def batch_masks(valid_tokens: Tensor, n_tokens: int, mask_type: str, mask_ratio: float, mask_len: int,
                generator: Optional[torch.Generator] = None) -> Tensor:
    """One mask per item: `valid_tokens` `[B]` (int) -> bool `[B, n_tokens]`."""
    return torch.stack([make_mask(n_tokens, int(v), mask_type, mask_ratio, mask_len, generator)
                        for v in valid_tokens.tolist()])
