"""What a `sed` run reports: results.json / results.md content (through `downstream.results`).

`test` holds the numbers of `evaluate.evaluate_sed` with the per-class median filters chosen on validation, and
`test_median_7` those with the official 7 frames for every class; `metric` names the headline number (PSDS1).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from ..datasets.strong import StrongTask
from .recipe import SedRecipe

KIND = "sound event detection"
HEADLINE_PREFERENCE = ("psds1.psds_eval", "psds1")


def numbers(values: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The numeric leaves of a (nested) dict, keys joined with '.'."""
    out: dict[str, float] = {}
    for key, value in values.items():
        if key == "protocol":  # the settings behind the numbers, reported apart
            continue
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(numbers(value, f"{name}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def headline(flat: Mapping[str, float]) -> str:
    """psds_eval's PSDS1 when present (the published ATST numbers), else the first PSDS1, else the first number."""
    for word in HEADLINE_PREFERENCE:
        for key in flat:
            if key.lower().startswith(word):
                return key
    if not flat:
        raise ValueError("the evaluation returned no number")
    return next(iter(flat))


def settings_text(recipe: SedRecipe, hp: Mapping[str, Any], protocol: str) -> dict:
    return {
        "recipe": recipe.name, "protocol": protocol,
        "trains": ("the last block, the final norm and the head (other encoder tensors frozen, in eval mode)"
                   if recipe.scope == "last_block" else "the whole encoder and the head"),
        "optimizer": "SGD momentum 0.9, weight decay 0, gradient-norm clipping 3",
        "layer_decay": (f"{recipe.layer_decay:g}: 15 groups (embeddings s^13, blocks.k s^(12-k), final norm, head)"
                        if recipe.layer_decay > 0 else "off (one group)"),
        "schedule": f"linear warm-up from 0 over {recipe.warmup_epochs} epochs, cosine to 1e-6, "
                    f"{recipe.max_epochs} epochs x {hp['steps_per_epoch']} steps",
        "batch": f"{recipe.strong_batch} strong + {recipe.weak_batch} weak"
                 + (f" + {recipe.unlabelled_batch} unlabelled" if recipe.mean_teacher else "")
                 + f" per process x {hp['world_size']}",
        "loss": "BCE strong frames + BCE weak clips (1 : 1)"
                + (f" + {recipe.mean_teacher_weight:g} x ramp x MSE to the mean teacher (EMA "
                   f"{recipe.mean_teacher_ema})" if recipe.mean_teacher else ""),
        "windows": "10 s training windows (pad / random crop, labels shifted); evaluation on whole recordings in "
                   "contiguous 10 s windows, padding trimmed",
        "selection": "the epoch with the lowest validation BCE",
        "precision": hp["precision"], "seed": hp["seed"],
    }


def sed_results(task: StrongTask, hp: dict, recipe: SedRecipe, protocol: str, on_test: bool,
                history: Sequence[dict], chosen: dict, rule: str, medians: list[int], test: Mapping[str, Any],
                valid: Mapping[str, Any], skipped: Mapping[str, str], checkpoint: dict, sizes: dict, wall_time: float,
                notes: Optional[list[str]] = None) -> dict:
    """results.json of a `sed` run; `valid`: the selected model's numbers on validation (threshold-independent)."""
    flat = numbers(test["per_class_median"])
    metric = headline(flat)
    valid_numbers = numbers(valid)
    notes = list(notes or [])
    if on_test:
        notes.append("--protocol official on this task validates on the TEST set (the official AudioSet-strong "
                     "code does): the model and its median filters were chosen on the numbers reported.")
    notes.append("Median filters per class were chosen on validation (event F1 at threshold 0.5); test_median_7 "
                 "gives the official 7 frames for every class.")
    return {
        "kind": KIND, "task": task.name, "metric": metric,
        "valid": {metric: valid_numbers.get(metric), **valid_numbers, "neg_bce": chosen["valid"]}, "test": flat,
        "test_median_7": numbers(test["median_7"]), "evaluation": test["per_class_median"].get("protocol"),
        "validated_on_test": on_test,
        "selected": {"epoch": chosen["epoch"], "step": chosen["step"], "rule": rule},
        "median_filters": dict(zip(task.labels.names, medians)), "sizes": sizes,
        "epochs": list(history), "settings": settings_text(recipe, hp, protocol), "hyper_parameters": hp,
        "checkpoint": checkpoint,
        "skipped": [f"{key}: {reason}" for key, reason in sorted(skipped.items())] + list(task.skipped),
        "wall_time_s": round(wall_time, 3), "model_file": "best.ckpt", "protocol_notes": notes,
    }


__all__ = ["KIND", "headline", "numbers", "sed_results", "settings_text"]
