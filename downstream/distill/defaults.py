"""The settings of the official C2F distillation scripts (spec `downstream_frame_spec.md` 3.3 and 3.5): what a flag
left out takes for `distill --task NAME=PATH`.

`AF/shell/distill/eval_batch.sh` runs `train_distill_other.py` on 4 GPUs x 128 (the global batch of 512 that
fine-tuning also defaults to) with the distillation weight 0.5; `train_distill.py` (AudioSet-2M) defaults to 1.0
(pure distillation). The AudioSet-2M learning rate, epochs and warm-up are not in the repository (its only script
passes its arguments in the wrong positions): they default to the ATST-Frame AudioSet-2M fine-tuning settings,
which are the values that script passes (lr 0.5, 11 epochs, 2 warm-up). A task without an official C2F row takes
the student's fine-tuning settings (`downstream.finetune.defaults`).
"""
from __future__ import annotations

from typing import Optional

from ..finetune.defaults import OfficialRecipe, official_recipe
from ..linear.defaults import registered_name

# dataset -> (lr per 256 clips, epochs, warm-up epochs, mixup, alpha); table 3.5 of the spec
C2F_RECIPES: dict[str, OfficialRecipe] = {
    "nsynth": OfficialRecipe(1e-2, 50, 5, True, 0.5, grid={"learning_rate": (1e-2, 2e-2)}),
    "spcv2": OfficialRecipe(2.0, 50, 5, True, 0.5),
    "voxceleb1": OfficialRecipe(5e-2, 50, 5, False, 10.0),
    "audioset_b": OfficialRecipe(3.0, 200, 5, True, 0.5),
    "fsd50k": OfficialRecipe(2.0, 100, 5, True, 10.0),
}
AUDIOSET_WEIGHT = 1.0  # train_distill.py (AudioSet-2M): the label term has weight 0
OTHER_WEIGHT = 0.5  # train_distill_other.py as eval_batch.sh runs it (nsynth, spcv2, voxceleb1, audioset_b, fsd50k)


def c2f_defaults(task_spec: str, family: str) -> tuple[OfficialRecipe, Optional[str], str]:
    """(recipe, registered dataset or None, where it comes from in words) for a TASK and the student's family;
    the `defaults` of `downstream.finetune.config.resolve_recipe`."""
    name = registered_name(task_spec)
    if name in C2F_RECIPES:
        return C2F_RECIPES[name], name, f"the official C2F {name} script (AF/shell/distill/eval_batch.sh)"
    recipe, dataset = official_recipe(task_spec, family)
    if dataset == "audioset":
        return recipe, dataset, ("the official ATST-Frame AudioSet-2M fine-tuning script (the C2F AudioSet-2M "
                                 "settings are not in the official repository)")
    where = f"the official ATST-{family.capitalize()} {dataset} fine-tuning script" if dataset else \
        "the official US8K fine-tuning script"
    return recipe, dataset, f"{where} (no official C2F script for this task)"


def default_weight(dataset: Optional[str]) -> tuple[float, str]:
    """(distillation weight, where it comes from): 1.0 for AudioSet-2M (`audioset=`), 0.5 for every other task."""
    if dataset == "audioset":
        return AUDIOSET_WEIGHT, "the official AudioSet-2M C2F script (train_distill.py)"
    return OTHER_WEIGHT, "the official C2F script of the other tasks (train_distill_other.py, eval_batch.sh)"


__all__ = ["AUDIOSET_WEIGHT", "C2F_RECIPES", "OTHER_WEIGHT", "c2f_defaults", "default_weight"]
