"""Scoring the fine-tuned model on a split: eval mode, no gradients, every rank its share, each clip counted once.

Each rank runs its `eval_sampler` share; the logits, targets and clip indices of all ranks are gathered and
de-duplicated by index (the distributed sampler repeats a few clips to even the shares), so the metric covers every
decodable clip exactly once whatever the number of processes. The official code evaluated padded shares and
printed a warning that its multi-GPU test score was therefore not exact.
"""
from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from atst.training.distributed import gather_objects

from ..metrics import compute_metric
from .model import FinetuneModel

log = logging.getLogger(__name__)
AUTOCAST = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast of a Lightning precision name ("32-true": none)."""
    dtype = AUTOCAST.get(precision)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def clip_loss(logits: Tensor, targets: Tensor, bce: bool) -> Tensor:
    """BCE with logits on float targets (class indices are one-hot encoded) when `bce` (multi-label or mixup, as the
    official code), else cross-entropy on class indices."""
    if bce:
        if targets.ndim == 1:
            targets = F.one_hot(targets.long(), logits.shape[-1])
        return F.binary_cross_entropy_with_logits(logits.float(), targets.float())
    return F.cross_entropy(logits.float(), targets)


@dataclass
class Scores:
    """A split's metric and mean loss over its clips (NaN when it cannot be computed), and how many clips."""

    metric: float
    loss: float
    clips: int
    extra: dict = field(default_factory=dict)  # further numbers a run records per validation (distillation's)


def score(logits: Tensor, targets: Tensor, metric: str, bce: bool) -> Scores:
    """`metric` and mean loss of `[N, C]` logits; targets `[N]` class indices or `[N, C]` multi-hot."""
    if logits.shape[0] == 0:
        return Scores(math.nan, math.nan, 0)
    loss = float(clip_loss(logits, targets, bce))
    try:
        value = compute_metric(metric, logits, targets)
    except ValueError as error:  # e.g. no class with a positive in this split
        log.warning("%s cannot be computed: %s", metric, error)
        value = math.nan
    return Scores(value, loss, int(logits.shape[0]))


@torch.no_grad()
def collect(model: torch.nn.Module, batches: Iterable[dict], device: torch.device, precision: str,
            on_skipped: Optional[Callable[[list], None]] = None) -> Optional[tuple[Tensor, Tensor]]:
    """`model`'s float32 outputs `[N, ...]` and the targets of every clip of `batches` (`data.collate_mels` batches
    of this rank's share), gathered from every rank and each clip once, in clip order; None when no rank had a
    clip. A collective call under DDP. The model runs in eval mode and is left in the mode it had."""
    was_training = model.training
    model.eval()
    indices, logits, targets = [], [], []
    try:
        for batch in batches:
            if on_skipped is not None and batch["skipped"]:
                on_skipped(batch["skipped"])
            if batch["mel"] is None:
                continue
            with autocast(precision, device):
                out = model(batch["mel"].to(device), batch["frames"])
            indices.append(batch["index"])
            logits.append(out.float().cpu())
            targets.append(batch["targets"])
    finally:
        model.train(was_training)
    mine = (torch.cat(indices), torch.cat(logits), torch.cat(targets)) if indices else None
    parts = [part for part in gather_objects(mine) if part is not None]
    if not parts:
        return None
    index, all_logits, all_targets = (torch.cat(column) for column in zip(*parts))
    _, first = np.unique(index.numpy(), return_index=True)
    keep = torch.from_numpy(first)
    return all_logits[keep], all_targets[keep]


def evaluate(model: FinetuneModel, batches: Iterable[dict], device: torch.device, precision: str, metric: str,
             bce: bool, on_skipped: Optional[Callable[[list], None]] = None) -> Scores:
    """Score `model` on `batches` (`collect`); a collective call under DDP. The model is left in the mode it had."""
    found = collect(model, batches, device, precision, on_skipped)
    if found is None:
        return Scores(math.nan, math.nan, 0)
    return score(*found, metric, bce)


__all__ = ["Scores", "autocast", "clip_loss", "collect", "evaluate", "score"]
