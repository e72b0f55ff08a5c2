"""The settings of the official fine-tuning shell scripts (spec section 2.6), per registered dataset and encoder
family: what a flag left out takes, so `finetune --task spcv2=... ` runs the official spcv2 recipe.

Where a shell script runs a grid (several learning rates, or mixup on and off), the default is its first value and
`OfficialRecipe.grid` keeps the rest for the docs and results.md. `mixup_training` is the shell's value: the
official code then drops mixup for US8K and NSynth (their dataset creators ignore the target transform); here
mixup really applies (docs/downstream_finetune.md). Tasks without an official script take `OTHER_RECIPE`, the
settings of the official US8K run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..linear.defaults import registered_name

PAPER_GLOBAL_BATCH = 512  # "batch_size_per_gpu x nproc should equal to 512" (official README); shells 4 x 128
MIXUP_BANK = 5000  # MixupSpecLabel's n_memory
AUDIOSET_MIXUP_RATIO = 0.5  # the official AudioSet-2M target transform mixes half of the clips


@dataclass(frozen=True)
class OfficialRecipe:
    """One dataset's shell settings: base LR (per 256 clips), epochs, warm-up epochs, mixup on/off, Beta alpha,
    the fraction of clips mixed; `grid` lists the other values a shell tries ({flag: (values...)})."""

    learning_rate: float
    max_epochs: int
    warmup_epochs: int
    mixup_training: bool
    alpha: float
    mixup_ratio: float = 1.0
    grid: dict = field(default_factory=dict)


# dataset -> family ("frame", "clip") -> recipe (spec 2.6: ATST-Frame F/shell/downtream/finetune, ATST-Clip C/...)
OFFICIAL_RECIPES: dict[str, dict[str, OfficialRecipe]] = {
    "spcv2": {"frame": OfficialRecipe(1.0, 50, 5, True, 10.0),
              "clip": OfficialRecipe(0.5, 50, 5, True, 0.5)},
    "us8k": {"frame": OfficialRecipe(2e-3, 50, 5, True, 0.5),
             "clip": OfficialRecipe(2e-3, 50, 5, True, 0.5, grid={"mixup_training": (True, False)})},
    "nsynth": {"frame": OfficialRecipe(5e-4, 50, 5, False, 0.5, grid={"learning_rate": (5e-4, 2.5e-4, 1e-3),
                                                                      "mixup_training": (False, True)}),
               "clip": OfficialRecipe(5e-4, 50, 5, True, 0.5, grid={"learning_rate": (5e-4, 2.5e-4, 1e-3),
                                                                    "mixup_training": (True, False)})},
    "voxceleb1": {"frame": OfficialRecipe(0.1, 50, 5, False, 10.0, grid={"learning_rate": (0.1, 0.05)}),
                  "clip": OfficialRecipe(0.1, 50, 5, False, 0.5, grid={"learning_rate": (0.1, 0.05)})},
    "audioset_b": {"frame": OfficialRecipe(1.0, 200, 5, True, 0.5),
                   "clip": OfficialRecipe(1.0, 200, 5, True, 0.5, grid={"learning_rate": (1.0, 0.5),
                                                                        "alpha": (0.5, 10.0)})},
    "fsd50k": {"frame": OfficialRecipe(0.5, 100, 5, True, 10.0, grid={"learning_rate": (0.5, 1.0),
                                                                      "alpha": (10.0, 0.5)}),
               "clip": OfficialRecipe(0.5, 100, 5, True, 0.5, grid={"learning_rate": (0.5, 1.0),
                                                                    "alpha": (0.5, 10.0)})},
    "audioset": {"frame": OfficialRecipe(0.5, 11, 2, True, 10.0, AUDIOSET_MIXUP_RATIO,
                                         grid={"learning_rate": (0.5, 1.0)}),
                 "clip": OfficialRecipe(0.5, 10, 2, True, 10.0, AUDIOSET_MIXUP_RATIO,
                                        grid={"learning_rate": (0.5, 1.0, 2.0)})},
}
OTHER_RECIPE = OfficialRecipe(2e-3, 50, 5, True, 0.5)


def official_recipe(task_spec: str, family: str) -> tuple[OfficialRecipe, Optional[str]]:
    """(recipe, registered dataset name or None) for a TASK argument and an encoder family."""
    name = registered_name(task_spec)
    recipes = OFFICIAL_RECIPES.get(name or "")
    if recipes is None:
        return OTHER_RECIPE, None
    return recipes[family], name


__all__ = ["AUDIOSET_MIXUP_RATIO", "MIXUP_BANK", "OFFICIAL_RECIPES", "OTHER_RECIPE", "OfficialRecipe",
           "PAPER_GLOBAL_BATCH", "official_recipe"]
