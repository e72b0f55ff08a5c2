"""The clip-level metrics of the official linear evaluation and fine-tuning: top-1 accuracy and mAP.

Both return a fraction in [0, 1] (as the official code reports them, not a percentage).

mAP here is the mean, over the classes with at least one positive in the evaluated split, of sklearn's
`average_precision_score` on the sigmoid of the logits. The official `Metric` (audiossl `atst/downstream/utils.py`)
averages every class and drops the NaN APs of classes without a positive; that filter only works with old sklearn
releases: sklearn >= 1.x returns 0.0 for such a class, so the official code run today averages those zeros in and
reports a lower mAP. Excluding those classes explicitly gives what the official code gave with the sklearn it was
written for, on any sklearn.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

METRIC_NAMES = ("top1_acc", "mAP")


def top1_accuracy(logits: Tensor, targets: Tensor) -> float:
    """`logits` `[N, C]`, `targets` `[N]` class indices -> the fraction of rows whose arg-max is the target.

    (The official code calls sklearn `top_k_accuracy_score(k=1)`; the two agree except on exactly tied logits.)"""
    if logits.ndim != 2 or targets.ndim != 1 or logits.shape[0] != targets.shape[0]:
        raise ValueError(f"top1_accuracy takes logits [N, C] and targets [N], got {tuple(logits.shape)} and "
                         f"{tuple(targets.shape)}")
    if logits.shape[0] == 0:
        raise ValueError("top1_accuracy of an empty split: no clip to score")
    return float((logits.argmax(dim=1) == targets.to(logits.device)).double().mean())


def mean_average_precision(logits: Tensor, targets: Tensor) -> float:
    """`logits` `[N, C]`, multi-hot `targets` `[N, C]` -> mean AP over the classes with a positive (see the module
    docstring). A split in which no class has a positive has no mAP: ValueError."""
    from sklearn.metrics import average_precision_score

    if logits.shape != targets.shape or logits.ndim != 2:
        raise ValueError(f"mean_average_precision takes logits and multi-hot targets of one shape [N, C], got "
                         f"{tuple(logits.shape)} and {tuple(targets.shape)}")
    scores = torch.sigmoid(logits.detach().float()).cpu().numpy()
    truth = (targets.detach().cpu().numpy() > 0.5).astype(np.int64)
    scored = np.flatnonzero(truth.sum(axis=0) > 0)
    if scored.size == 0:
        raise ValueError(f"mean_average_precision: none of the {truth.shape[1]} classes has a positive clip in this "
                         f"split ({truth.shape[0]} clips), so there is nothing to average")
    return float(np.mean([average_precision_score(truth[:, c], scores[:, c]) for c in scored]))


def compute_metric(name: str, logits: Tensor, targets: Tensor) -> float:
    """`name` "top1_acc" (targets `[N]` indices) or "mAP" (targets `[N, C]` multi-hot) of `logits` `[N, C]`."""
    if name == "top1_acc":
        return top1_accuracy(logits, targets)
    if name == "mAP":
        return mean_average_precision(logits, targets)
    raise ValueError(f"metric must be one of {METRIC_NAMES}, got {name!r}")


__all__ = ["METRIC_NAMES", "compute_metric", "mean_average_precision", "top1_accuracy"]
