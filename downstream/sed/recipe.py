"""The training recipes of `atst-downstream sed` and the optimizer each builds.

| recipe | trains | optimizer | LR (peak) | epochs x steps | batch (strong + weak) |
|---|---|---|---|---|---|
| `desed-official` (spec 1.4-1.9) | last block + final norm + head | SGD 0.9, one group | 0.1 | 100 x len(weak) // 128 | 128 + 128 |
| `as-strong-official` (spec 2.3-2.5) | everything (15 layer-decay groups, 0.75) | SGD 0.9 | 1e-3 | 100 x len(strong) // 8 | 8 + 0 |
| `default` (own data) | last block + final norm + head | SGD 0.9, one group | 0.1 | 30 x ... | 16 + 16 |

All: linear warm-up from 0 over `warmup_epochs` (5; default 3) then cosine to 1e-6 (per group x its `lr_scale`),
gradient-norm clipping 3.0, drop-path 0.1 (linspace over the blocks: 0.1 on the last one), BCE on probabilities for
the strong part of each batch (frames) and the weak part (clip labels via the weak head), weight 1 : 1.
Flags override each number; `--mean_teacher` adds the ATST-SED stage-1 consistency (spec 4.1).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Optional

from torch import nn

from atst.training.config import check_flag
from atst.training.optim import layer_decay_groups

from .model import SedModel

RECIPES = ("desed-official", "as-strong-official", "default")
PROTOCOLS = ("hear", "official")  # as the strong-label sources and the other downstream commands
MOMENTUM = 0.9
GRAD_CLIP = 3.0
AS_STRONG_LAYER_DECAY = 0.75
MEAN_TEACHER_EMA = 0.999  # ATST-SED stage 1
MEAN_TEACHER_WEIGHT = 2.0  # ATST-SED stage 1: 2 x ramp-up


@dataclass(frozen=True)
class SedRecipe:
    """Every training setting of a `sed` run."""

    name: str
    scope: str  # SedModel.scope
    learning_rate: float
    max_epochs: int
    warmup_epochs: int
    strong_batch: int  # strongly labelled clips per batch and process
    weak_batch: int  # weakly labelled clips per batch and process
    layer_decay: float  # 0: one group; else the AudioSet-strong 15 groups with this decay
    mean_teacher: bool = False
    unlabelled_batch: int = 0  # unlabelled clips per batch (mean teacher only)
    mean_teacher_ema: float = MEAN_TEACHER_EMA
    mean_teacher_weight: float = MEAN_TEACHER_WEIGHT

    def to_dict(self) -> dict:
        return asdict(self)


OFFICIAL = {
    "desed-official": SedRecipe("desed-official", "last_block", 0.1, 100, 5, 128, 128, 0.0),
    "as-strong-official": SedRecipe("as-strong-official", "all", 1e-3, 100, 5, 8, 0, AS_STRONG_LAYER_DECAY),
    "default": SedRecipe("default", "last_block", 0.1, 30, 3, 16, 16, 0.0),
}


def resolve_recipe(name: str, learning_rate: Optional[float] = None, max_epochs: Optional[int] = None,
                   warmup_epochs: Optional[int] = None, strong_batch: Optional[int] = None,
                   weak_batch: Optional[int] = None, mean_teacher: bool = False,
                   unlabelled_batch: Optional[int] = None) -> SedRecipe:
    """The recipe `name` with the given values in place of its own (each checked: ValueError naming the flag)."""
    if name not in OFFICIAL:
        raise ValueError(f"--recipe must be one of {RECIPES}, got {name!r}")
    recipe = OFFICIAL[name]
    given = {"learning_rate": learning_rate, "max_epochs": max_epochs, "warmup_epochs": warmup_epochs,
             "strong_batch": strong_batch, "weak_batch": weak_batch, "unlabelled_batch": unlabelled_batch}
    if learning_rate is not None:
        check_flag("--learning_rate", learning_rate, 0.0, low_open=True)
    if max_epochs is not None:
        check_flag("--max_epochs", max_epochs, 1, integer=True)
    if warmup_epochs is not None:
        check_flag("--warmup_epochs", warmup_epochs, 0, integer=True)
    for flag in ("strong_batch", "weak_batch", "unlabelled_batch"):
        if given[flag] is not None:
            check_flag(f"--{flag}", given[flag], 0, integer=True)
    recipe = replace(recipe, mean_teacher=bool(mean_teacher),
                     unlabelled_batch=(given["unlabelled_batch"] if given["unlabelled_batch"] is not None
                                       else (recipe.weak_batch or recipe.strong_batch) if mean_teacher else 0),
                     **{k: v for k, v in given.items() if v is not None and k != "unlabelled_batch"})
    if recipe.warmup_epochs >= recipe.max_epochs:
        raise ValueError(f"--warmup_epochs ({recipe.warmup_epochs}) must be smaller than --max_epochs "
                         f"({recipe.max_epochs})")
    if recipe.strong_batch + recipe.weak_batch < 1:
        raise ValueError("--strong_batch and --weak_batch are both 0: a batch needs labelled clips")
    return recipe


def optimizer_groups(model: SedModel, recipe: SedRecipe) -> list[dict]:
    """One group at scale 1 over every trainable tensor, or with `layer_decay` the AudioSet-strong groups
    (`atst.training.optim.layer_decay_groups`, scheme "as_strong": embeddings s^13, blocks.k s^(12-k), final norm
    and head 1; the weak head joins the head group)."""
    if recipe.layer_decay > 0:
        return layer_decay_groups(model.encoder, recipe.layer_decay, model.encoder.config.depth, head=model.head,
                                  scheme="as_strong")
    return [{"params": [p for p in model.parameters() if p.requires_grad], "lr_scale": 1.0, "name": "all"}]


def build_optimizer(model: nn.Module, recipe: SedRecipe):
    import torch

    return torch.optim.SGD(optimizer_groups(model, recipe), lr=recipe.learning_rate, momentum=MOMENTUM,
                           weight_decay=0.0)


__all__ = ["GRAD_CLIP", "MOMENTUM", "OFFICIAL", "PROTOCOLS", "RECIPES", "SedRecipe", "build_optimizer",
           "optimizer_groups", "resolve_recipe"]
