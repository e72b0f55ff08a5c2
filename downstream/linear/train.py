"""One linear head on cached embeddings, as the official `LinearClassifierPLModule` trains it, in a plain loop.

* head: `LinearHead` (BatchNorm1d without affine, then Linear with N(0, 0.01^2) weights and zero bias);
* optimiser: SGD(momentum 0.9, weight decay 0) on the head only, at the effective LR
  `lr x nproc x batch_size / 256` (official scaling; nproc is 1 here: 2e-3 at batch 1024 trains at 8e-3);
* schedule: `CosineAnnealingLR(T_max=max_epochs, eta_min=0)` stepped once per epoch, no warm-up (epoch e, counted
  from 0, trains at `lr_eff (1 + cos(pi e / max_epochs)) / 2`);
* loss: cross-entropy (single-label) or BCE with logits on multi-hot targets (multi-label);
* every epoch: the validation and test metric of the head in eval mode (BN running statistics).

Epochs are counted from 1 in what is reported (epoch 1 = the head after one pass over the training clips).
Seeded: the weight draw and the shuffling come from one generator seeded with `seed`, so every learning rate starts
from the same head and sees the clips in the same order. A final training batch of one clip is left out of its
epoch (batch norm cannot train on one row; the official code would stop with an error there).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Iterator, Optional

import torch
from torch import Tensor, nn

from ..metrics import compute_metric
from .head import LinearHead

BATCH_SIZE = 1024  # the official shells' batch_size_per_gpu
MAX_EPOCHS = 100  # official --max_epochs default
MOMENTUM = 0.9
LR_REFERENCE_BATCH = 256


def effective_lr(lr: float, batch_size: int, nproc: int = 1) -> float:
    """The official scaling: `lr x nproc x batch_size / 256`."""
    return lr * nproc * batch_size / LR_REFERENCE_BATCH


def cosine_lr(epoch: int, lr: float, max_epochs: int) -> float:
    """The LR of epoch `epoch` (from 0) under CosineAnnealingLR(T_max=max_epochs, eta_min=0) stepped per epoch."""
    return lr * (1.0 + math.cos(math.pi * epoch / max_epochs)) / 2.0


@dataclass
class SplitData:
    """Embeddings `x` `[N, D]` float32 and targets `y` (`[N]` class indices, or `[N, C]` multi-hot float32)."""

    x: Tensor
    y: Tensor

    def __post_init__(self) -> None:
        if self.x.ndim != 2 or self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"embeddings must be [N, D] with one target per row, got {tuple(self.x.shape)} and "
                             f"targets {tuple(self.y.shape)}")

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass
class EpochRecord:
    """One epoch: its number (from 1), the LR it trained at, its mean training loss, the valid and test metrics."""

    epoch: int
    lr: float
    train_loss: float
    valid: float
    test: float


@dataclass
class HeadRun:
    """A trained head: the LR asked for and the one used, the per-epoch history, the epoch with the best validation
    metric (the earliest on ties, as Lightning's ModelCheckpoint keeps it; 0 when no epoch scored, i.e. the LR
    diverged) and the head's state at that epoch."""

    lr: float
    effective_lr: float
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    best_state: dict[str, Tensor] = field(default_factory=dict)

    @property
    def best(self) -> Optional[EpochRecord]:
        return self.history[self.best_epoch - 1] if self.best_epoch else None


@contextlib.contextmanager
def deterministic() -> Iterator[None]:
    """torch.use_deterministic_algorithms for the block (warnings only where an op has no deterministic kernel)."""
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])


def train_head(train: SplitData, valid: SplitData, test: SplitData, num_labels: int, metric: str, lr: float,
               batch_size: int = BATCH_SIZE, max_epochs: int = MAX_EPOCHS, seed: int = 0,
               device: torch.device | str = "cpu") -> HeadRun:
    """Train one head (module docstring) and score it on `valid` and `test` after every epoch."""
    if len(train) < 2:
        raise ValueError(f"the training split has {len(train)} usable clip(s); a batch-normalised head needs at "
                         f"least 2")
    if max_epochs < 1 or batch_size < 2 or not lr > 0:
        raise ValueError(f"need max_epochs >= 1, batch_size >= 2 (batch norm) and lr > 0, got {max_epochs}, "
                         f"{batch_size}, {lr}")
    device = torch.device(device)
    multi_label = train.y.ndim == 2
    generator = torch.Generator().manual_seed(seed)
    head = LinearHead(train.x.shape[1], num_labels, generator=generator).to(device)
    run = HeadRun(lr=lr, effective_lr=effective_lr(lr, batch_size))
    optimizer = torch.optim.SGD(head.parameters(), lr=run.effective_lr, momentum=MOMENTUM, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max_epochs, eta_min=0.0)
    loss_fn: nn.Module = nn.BCEWithLogitsLoss() if multi_label else nn.CrossEntropyLoss()
    x, y = train.x.to(device), train.y.to(device)
    best_valid = -math.inf
    with deterministic():
        for epoch in range(1, max_epochs + 1):
            used_lr = optimizer.param_groups[0]["lr"]
            head.train()
            order = torch.randperm(len(train), generator=generator).to(device)
            losses = []
            for start in range(0, len(train), batch_size):
                rows = order[start : start + batch_size]
                if rows.numel() < 2:
                    continue
                loss = loss_fn(head(x[rows]), y[rows])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()))
            scheduler.step()
            valid_score = evaluate(head, valid, metric)
            test_score = valid_score if test is valid else evaluate(head, test, metric)
            run.history.append(EpochRecord(epoch, used_lr, sum(losses) / max(len(losses), 1), valid_score, test_score))
            if valid_score > best_valid:
                best_valid = valid_score
                run.best_epoch = epoch
                run.best_state = {k: v.detach().cpu().clone() for k, v in head.state_dict().items()}
    return run


def evaluate(head: LinearHead, split: SplitData, metric: str) -> float:
    """The metric of `head` (eval mode) on `split`; NaN when its logits are not finite (a diverged LR)."""
    logits = predict_logits(head, split.x)
    return compute_metric(metric, logits, split.y) if bool(torch.isfinite(logits).all()) else math.nan


def predict_logits(head: LinearHead, x: Tensor, batch_size: int = 8192) -> Tensor:
    """`[N, D]` -> `[N, C]` logits of `head` in eval mode (float32, CPU)."""
    head.eval()
    device = head.linear.weight.device
    with torch.no_grad():
        return torch.cat([head(x[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)])


__all__ = ["BATCH_SIZE", "EpochRecord", "HeadRun", "MAX_EPOCHS", "SplitData", "cosine_lr", "effective_lr",
           "evaluate", "predict_logits", "train_head"]
