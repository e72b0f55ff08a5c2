"""Optimizer parameter groups: the official AdamW decay / no-decay split and layer-wise LR decay.

Layer-wise decay gives every parameter an `lr_scale`; `set_learning_rate` then sets `lr = schedule value x scale`
on every group each step (what the official fine-tuning code does). A layer id is given to each encoder tensor and
the scale is `decay ** (top - layer_id)`. Two schemes, as the official downstream code has them:

* `finetune` (the official `layer_wise_lr_groups` of clip-level fine-tuning and of ATST-C2F distillation):
  embeddings (`patch_embed`, `pos_embed`, `mask_embed`, `cls_token`) 0, `blocks.k` k,
  final norm depth - 1, head depth; top = depth. So embeddings and block 0 share decay^depth, the final norm and
  the last block share decay^1 (the official quirk), the head has 1.
* `as_strong` (the official AudioSet-strong frame-level fine-tuning; BEiT's scheme): embeddings 0,
  `blocks.k` k + 1, final norm and head depth + 1; top = depth + 1. With depth 12: norm 1, blocks.11 s, ...,
  blocks.0 s^12, embeddings s^13.
"""
from __future__ import annotations

import re
from typing import Optional

import torch
from torch import nn

LAYER_DECAY_SCHEMES = ("finetune", "as_strong")
EMBEDDING_NAMES = ("patch_embed", "pos_embed", "mask_embed", "cls_token")
FINAL_NORM_NAMES = ("norm_frame", "norm")
ADAMW_BETAS = (0.9, 0.999)
ADAMW_EPS = 1e-6  # transformers' AdamW default, what the official runs used, not torch's 1e-8
_BLOCK = re.compile(r"^blocks\.(\d+)\.")


def parameter_groups(module: nn.Module) -> list[dict]:
    """Official AdamW groups: group 0 (weight-decayed) = every trainable tensor whose name does not end in `.bias`
    and whose ndim != 1 (Linear weights, `pos_embed`, `mask_embed`, `cls_token`); group 1 (no decay) = the rest."""
    decay, no_decay = [], []
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if name.endswith(".bias") or param.ndim == 1 else decay).append(param)
    return [{"params": decay, "name": "decay"}, {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"}]


def official_adamw(module: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """The official pre-training optimizer: AdamW over `parameter_groups(module)`, betas (0.9, 0.999),
    eps 1e-6; `weight_decay` applies to group 0 only (group 1 has 0). torch's AdamW stands in for the official
    transformers AdamW (removed from transformers); eps is added to sqrt(v) after rather than before the bias
    correction, a difference that fades within the first steps."""
    return torch.optim.AdamW(parameter_groups(module), lr=lr, betas=ADAMW_BETAS, eps=ADAMW_EPS,
                             weight_decay=weight_decay)


def _check_scheme(scheme: str) -> None:
    if scheme not in LAYER_DECAY_SCHEMES:
        raise ValueError(f"layer-decay scheme must be one of {LAYER_DECAY_SCHEMES}, got {scheme!r}")


def encoder_part(name: str, depth: int) -> tuple[str, int]:
    """(part, layer id in the `finetune` scheme) of an encoder tensor, its name relative to the encoder
    (`blocks.3.attn.qkv.weight` -> ("blocks.3", 3)); parts are `embed`, `blocks.<k>`, `norm`."""
    root = name.split(".")[0]
    if root in EMBEDDING_NAMES:
        return "embed", 0
    match = _BLOCK.match(name)
    if match:
        block = int(match.group(1))
        if not 0 <= block < depth:
            raise ValueError(f"encoder tensor {name!r} names block {block}, but the encoder has {depth} blocks")
        return f"blocks.{block}", block
    if root in FINAL_NORM_NAMES:
        return "norm", depth - 1
    raise ValueError(f"encoder tensor {name!r} belongs to no layer: expected {', '.join(EMBEDDING_NAMES)}, "
                     f"blocks.<k>.* or the final norm ({' / '.join(FINAL_NORM_NAMES)})")


def encoder_layer_id(name: str, depth: int, scheme: str = "finetune") -> int:
    """Layer id of an encoder tensor in `scheme` (see the module docstring); the top (head) id is
    `depth` (finetune) or `depth + 1` (as_strong)."""
    _check_scheme(scheme)
    part, layer = encoder_part(name, depth)
    if scheme == "finetune" or part == "embed":
        return layer
    return depth + 1 if part == "norm" else layer + 1


def layer_decay_groups(encoder: nn.Module, decay: float, depth: int, head: Optional[nn.Module] = None,
                       scheme: str = "finetune", freeze_embed: bool = False) -> list[dict]:
    """One group per encoder part, ordered embeddings, blocks.0 .. blocks.<depth-1>, final norm, then the head:
    each `{"params", "lr_scale", "name"}` with name `embed`, `blocks.<k>`, `norm` or `head` and lr_scale
    `decay ** (top - layer id)` (head: 1). Frozen tensors (requires_grad False) are left out; `freeze_embed` gives
    the embeddings scale 0 (the official `--freeze_embed`). An encoder tensor that belongs to no layer raises
    ValueError (the official code printed "missed" and left it out of the optimizer).
    """
    if not 0.0 < decay <= 1.0:
        raise ValueError(f"layer decay must lie in (0, 1], got {decay}")
    _check_scheme(scheme)
    top = depth + (1 if scheme == "as_strong" else 0)
    parts: dict[str, dict] = {}
    order: dict[str, tuple[int, bool]] = {}  # the final norm after the last block (they share an id in finetune)
    for name, param in encoder.named_parameters():
        if not param.requires_grad:
            continue
        part = encoder_part(name, depth)[0]
        if part not in parts:
            layer = encoder_layer_id(name, depth, scheme)
            scale = 0.0 if part == "embed" and freeze_embed else decay ** (top - layer)
            parts[part] = {"params": [], "lr_scale": scale, "name": part}
            order[part] = (layer, part == "norm")
        parts[part]["params"].append(param)
    groups = [parts[part] for part in sorted(parts, key=order.__getitem__)]
    head_params = [p for p in head.parameters() if p.requires_grad] if head is not None else []
    if head_params:
        groups.append({"params": head_params, "lr_scale": 1.0, "name": "head"})
    return groups


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """`group["lr"] = lr x group["lr_scale"]` (scale 1 for groups without one) on every group."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
