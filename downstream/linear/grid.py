"""A grid of learning rates x folds on cached embeddings, the choice of (LR, epoch) on validation, fold statistics.

Selection, per fold: the (LR, epoch) with the highest validation metric over the whole grid; ties go to the earliest
epoch, then the smaller LR. The test metric reported is the test metric of that head at that epoch. (The official
scripts train one LR per process and leave the choice across the grid to the reader; within one LR they test the
best-validation checkpoint, the earliest on ties, as done here.)

k-fold tasks: every fold is trained and selected on its own; the task's score is the mean test metric over folds,
with the sample standard deviation (ddof 1). With `protocol="official"` a fold's validation split IS its test fold
(the official US8K choice, optimistic); `hear` validates on the next fold and trains on the others.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch

from ..datasets import Clip, LabelSpace, Task
from .cache import EmbeddingCache
from .train import HeadRun, SplitData, train_head

Log = Callable[[str], None]


@dataclass
class FoldResult:
    """One fold: its name and how it was validated (`validated_on_test`: the validation split is the test split, the
    official choice for US8K and AudioSet), the usable clips per split, one `HeadRun` per LR (grid order) and the
    run chosen on validation (None when every LR diverged)."""

    name: str
    note: str
    sizes: dict[str, int]
    validated_on_test: bool = False
    runs: list[HeadRun] = field(default_factory=list)
    selected: Optional[HeadRun] = None


def select_run(runs: Sequence[HeadRun]) -> Optional[HeadRun]:
    """The run whose best epoch has the highest validation metric; ties: earlier epoch, then smaller LR."""
    scored = [run for run in runs if run.best is not None]
    if not scored:
        return None
    return min(scored, key=lambda run: (-run.best.valid, run.best.epoch, run.lr))


def split_data(cache: EmbeddingCache, clips: Sequence[Clip], labels: LabelSpace, skipped: dict[str, str],
               split: str) -> SplitData:
    """The cached embeddings and targets of `clips` without the skipped ones; an empty split is a ValueError."""
    usable = [clip for clip in clips if clip.key not in skipped]
    if not usable:
        raise ValueError(f"the {split} split has no usable clip ({len(clips)} listed, all skipped or none)")
    x = torch.from_numpy(cache.read([clip.key for clip in usable]))
    y = torch.stack([labels.target_tensor(clip.target) for clip in usable])
    return SplitData(x, y)


def run_grid(task: Task, cache: EmbeddingCache, lrs: Sequence[float], protocol: str, skipped: dict[str, str],
             batch_size: int, max_epochs: int, seed: int, device: torch.device | str = "cpu",
             log: Optional[Log] = None) -> list[FoldResult]:
    """Train one head per (fold, LR) and select per fold (module docstring)."""
    results = []
    for index in range(task.num_folds):
        splits = task.fold(index, protocol)
        train = split_data(cache, splits.train, task.labels, skipped, "training")
        valid = split_data(cache, splits.valid, task.labels, skipped, "validation")
        on_test = splits.test == splits.valid
        test = valid if on_test else split_data(cache, splits.test, task.labels, skipped, "test")
        fold = FoldResult(splits.name, splits.note, {"train": len(train), "valid": len(valid), "test": len(test)},
                          on_test)
        for lr in lrs:
            run = train_head(train, valid, test, task.labels.num_labels, task.metric, lr, batch_size, max_epochs,
                             seed, device)
            fold.runs.append(run)
            if log:
                best = run.best
                log(f"  {fold.name} lr {lr:g} (effective {run.effective_lr:g}): " + (
                    f"best valid {task.metric} {best.valid:.4f} at epoch {best.epoch}, test {best.test:.4f}"
                    if best else "diverged (no finite validation score)"))
        fold.selected = select_run(fold.runs)
        if fold.selected is None:
            raise ValueError(f"{fold.name}: every learning rate diverged ({', '.join(f'{lr:g}' for lr in lrs)}); "
                             f"try smaller --lrs")
        results.append(fold)
    return results


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample standard deviation with ddof 1; 0.0 for a single value)."""
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


def grid_summary(folds: Sequence[FoldResult], lrs: Sequence[float]) -> list[dict]:
    """Per LR: its effective LR and, per fold, the best epoch with its valid and test metric; means over folds."""
    rows = []
    for position, lr in enumerate(lrs):
        runs = [fold.runs[position] for fold in folds]
        per_fold = [{"fold": fold.name, "best_epoch": run.best_epoch or None,
                     "valid": run.best.valid if run.best else math.nan,
                     "test": run.best.test if run.best else math.nan} for fold, run in zip(folds, runs)]
        valid_mean, _ = mean_std([row["valid"] for row in per_fold])
        test_mean, test_std = mean_std([row["test"] for row in per_fold])
        rows.append({"lr": lr, "effective_lr": runs[0].effective_lr, "valid": valid_mean, "test": test_mean,
                     **({"test_std": test_std} if len(folds) > 1 else {}), "folds": per_fold})
    return rows


__all__ = ["FoldResult", "grid_summary", "mean_std", "run_grid", "select_run", "split_data"]
