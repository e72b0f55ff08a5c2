"""What a fine-tuning run reports: results.json / results.md content (through `downstream.results`), the settings
in words, the notes a reader comparing with published numbers needs, and the per-fold curves of a k-fold task."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional, Sequence

from ..curves import plot_curves
from ..datasets import FoldSplits, Task
from ..linear.grid import mean_std
from .config import Recipe
from .defaults import PAPER_GLOBAL_BATCH
from .schedule import FinetuneSchedule

KIND = "fine-tuning"


def settings_text(recipe: Recipe, hp: dict, schedule: FinetuneSchedule, readout: str) -> dict:
    """The settings in words and numbers for results.json / results.md (`hp`: the run's hyper-parameters)."""
    mixed = "every clip" if recipe.mixup_ratio >= 1 else f"{recipe.mixup_ratio:.0%} of the clips"
    augment = [f"mixup (Beta({recipe.alpha:g}, {recipe.alpha:g}), linear on normalised mels and targets, bank of "
               f"{recipe.mixup_bank} per loader worker, {mixed})"] if recipe.mixup_training else []
    augment += ["RandomResizeCrop (virtual crop 1.0-1.5, frequency and time scale 0.6-1.5, bicubic)"] \
        if recipe.rrc else []
    return {
        "protocol": recipe.protocol, "readout": readout, "n_last_blocks": recipe.n_last_blocks,
        "use_encoder": recipe.use_encoder, "learning_rate": recipe.learning_rate,
        "global_batch": f"{hp['world_size']} device(s) x {recipe.batch_size_per_gpu} x "
                        f"{hp['accumulate_grad_batches']} accumulation = {hp['global_batch']} (paper: "
                        f"{PAPER_GLOBAL_BATCH})",
        "effective_lr": schedule.base_lr,
        "lr_scaling": f"effective lr = {recipe.learning_rate:g} x {hp['global_batch']} / 256",
        "schedule": schedule.describe(), "max_epochs": recipe.max_epochs, "warmup_epochs": recipe.warmup_epochs,
        "steps_per_epoch": hp["steps_per_epoch"], "total_steps": schedule.total_steps,
        "optimizer": "SGD momentum 0.9, weight decay 0, gradient-norm clipping "
                     f"{hp['grad_clip']:g}",
        "layerwise_lr": (f"{recipe.layerwise_lr:g}: embeddings x d^12, block k x d^(12-k), final norm x d, head x 1"
                         if recipe.layerwise_lr > 0 else "off (one LR for every tensor)"),
        "drop_path": "0.1 (linspace over the blocks, training only)",
        "loss": "BCE with logits" if hp["bce"] else "cross-entropy",
        "augmentation": ", then ".join(augment) or "none",
        "sampling": ("balanced: weights 1000 / (n_c + 0.01) summed over a clip's classes, drawn with replacement"
                     if recipe.balanced_sampling else "a seeded permutation per epoch"),
        "selection": ("the epoch with the best validation metric (ties: the earlier)" if recipe.selection == "best"
                      else "the last epoch (the official choice for this dataset and family)"),
        "precision": hp["precision"], "seed": hp["seed"], "sources": dict(recipe.sources),
    }


def protocol_notes(recipe: Recipe, family: str, splits: FoldSplits, hp: dict) -> list[str]:
    """What a reader comparing these numbers with published ones must know."""
    notes = []
    if recipe.mixup_training and recipe.dataset in ("us8k", "nsynth"):
        notes.append("Mixup and RandomResizeCrop really apply here; the official code drops them silently for US8K "
                     "and NSynth (their dataset creators ignore the target transform), so its 'mixup' runs there "
                     "trained with BCE on one-hot targets and no augmentation.")
    if recipe.mixup_training and recipe.dataset == "audioset":
        notes.append("AudioSet-2M mixup partners come from the per-worker bank of recent clips (drawn by the "
                     "balanced sampler); the official code loads a uniformly random training clip as the partner.")
    if recipe.protocol == "official":
        notes.append("--protocol official: the official read-out (12 s centre crop, "
                     + ("1001-frame chunks" if family == "frame" else "6 s chunks, hard-coded in the official "
                        "ATST-Clip fine-tuning") + "), front end win_length 1024 (the official fine-tuning ignores "
                     "the checkpoint's), and the official LR table (niter = clips // batch // devices + 1 per epoch, "
                     "so the cosine does not reach 1e-6).")
        if recipe.selection == "last":
            notes.append("The reported model is the last epoch, as the official scripts test for this dataset; "
                         "--protocol hear reports the best validation epoch.")
    if splits.note:
        notes.append(f"Fold {splits.name}: {splits.note}.")
    if hp["global_batch"] != PAPER_GLOBAL_BATCH:
        notes.append(f"The global batch is {hp['global_batch']}, not the paper's {PAPER_GLOBAL_BATCH}; the LR is "
                     f"scaled by global batch / 256 as in the official code.")
    notes.append("Validation and test count every clip once, whatever the number of processes (the official "
                 "multi-GPU evaluation padded the shares); mixup banks live for the whole run (the official ones "
                 "restarted empty every epoch).")
    return notes


def fold_results(task: Task, splits: FoldSplits, hp: dict, settings: dict, checkpoint: dict, history: Sequence[dict],
                 chosen: dict, rule: str, test: float, test_loss: float, skipped: dict[str, str], notes: list[str],
                 wall_time: float) -> dict:
    """results.json of one fold (or of a task with fixed splits); `chosen`: the reported epoch's record, `rule`: how
    it was chosen."""
    metric = task.metric
    return {
        "kind": KIND, "task": task.name, "metric": metric,
        "valid": {metric: chosen["valid"]}, "test": {metric: test},
        "selected": {"epoch": chosen["epoch"], "step": chosen["step"], "rule": rule,
                     "valid_loss": chosen.get("valid_loss"), "test_loss": test_loss},
        "fold": {"name": splits.name, "note": splits.note, "validated_on_test": splits.valid == splits.test,
                 "sizes": sizes(splits)},
        "epochs": list(history), "settings": settings, "hyper_parameters": hp, "checkpoint": checkpoint,
        "skipped": [f"{key}: {reason}" for key, reason in sorted(skipped.items())] + list(task.skipped),
        "wall_time_s": round(wall_time, 3), "model_file": "best.ckpt", "protocol_notes": notes,
    }


def sizes(splits: FoldSplits) -> dict:
    return {"train": len(splits.train), "valid": len(splits.valid), "test": len(splits.test)}


def kfold_results(task: Task, folds: Sequence[dict], wall_time: float) -> dict:
    """results.json of a k-fold task: the fold mean in `valid` / `test`, `test_std` (ddof 1), each fold."""
    metric = task.metric
    valid_mean, _ = mean_std([_number(fold["valid"][metric]) for fold in folds])
    test_mean, test_std = mean_std([_number(fold["test"][metric]) for fold in folds])
    first = folds[0]
    skipped = sorted({line for fold in folds for line in fold["skipped"]})
    return {
        "kind": KIND, "task": task.name, "metric": metric, "valid": {metric: valid_mean},
        "test": {metric: test_mean}, "test_std": test_std,
        "folds": [{"fold": fold["fold"]["name"], "note": fold["fold"]["note"],
                   "validated_on_test": fold["fold"]["validated_on_test"], "sizes": fold["fold"]["sizes"],
                   "lr": fold["settings"]["effective_lr"], "epoch": fold["selected"]["epoch"],
                   "valid": fold["valid"][metric], "test": fold["test"][metric]} for fold in folds],
        "folds_done": f"{len(folds)} of {task.num_folds}", "settings": first["settings"],
        "checkpoint": first["checkpoint"], "skipped": skipped, "wall_time_s": round(wall_time, 3),
        "model_file": f"best.ckpt (the model of {first['fold']['name']}, trained without it; each fold's own in "
                      f"its folder)", "protocol_notes": first["protocol_notes"],
    }


def _number(value: Any) -> float:
    """A stored number; None (how results.json writes NaN) -> NaN."""
    return math.nan if value is None else float(value)


def plot_folds(path: Path, folds: Sequence[dict], metric: str) -> Optional[Path]:
    """A PNG of each fold's validation metric and mean training loss per epoch."""
    panels: dict[str, dict[str, list[tuple[int, float]]]] = {f"valid {metric}": {}, "train loss": {}}
    for fold in folds:
        name = fold["fold"]["name"]
        panels[f"valid {metric}"][name] = [(r["epoch"], _number(r["valid"])) for r in fold["epochs"]]
        panels["train loss"][name] = [(r["epoch"], _number(r["train_loss"])) for r in fold["epochs"]]
    return plot_curves(path, panels)


__all__ = ["KIND", "fold_results", "kfold_results", "plot_folds", "protocol_notes", "settings_text", "sizes"]
