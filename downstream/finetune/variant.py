"""What a run built on fine-tuning may change, as hooks `run.run_finetune` calls; `RunVariant` itself is plain
fine-tuning. Distillation (`downstream.distill`) is the other variant: the same run (data, recipe, schedule,
resume, selection, model files, report) with a teacher, a second loss term and a few more numbers recorded.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from atst import LoadedCheckpoint
from atst.training.config import RunConfig

from ..datasets import Task
from .config import FinetuneConfig, Recipe, resolve_recipe
from .report import KIND

if TYPE_CHECKING:  # the module needs Lightning, loaded only when a run starts
    from .evaluate import Scores
    from .model import FinetuneModel
    from .model_files import ModelFiles
    from .module import FinetuneModule
    from .schedule import FinetuneSchedule


class RunVariant:
    """The hooks of one kind of run (fine-tuning: every hook does what `finetune` does)."""

    kind = "finetune"  # hyper_parameters["kind"], the model file's downstream.kind, the first word of log lines
    results_kind = KIND  # results.json "kind"
    structural: tuple[str, ...] = ()  # further settings a resumed or finished run must share

    def prepare(self, config: FinetuneConfig, task: Task) -> FinetuneConfig:
        """Checks of the variant's own inputs, before the output folder is made; may fill in the config."""
        return config

    def recipe(self, config: FinetuneConfig, loaded: LoadedCheckpoint, run: RunConfig) -> Recipe:
        """Every training setting (flags, else the official settings of the dataset)."""
        return resolve_recipe(config, loaded.family, loaded.config.depth, run.world_size,
                              run.accumulate_grad_batches)

    def hyper_parameters(self) -> dict:
        """Settings added to the run's hyper-parameters (last.ckpt, results.json)."""
        return {}

    def model_info(self) -> dict:
        """Entries added to the model file's `downstream` description."""
        return {}

    def module(self, model: "FinetuneModel", hp: dict, schedule: "FinetuneSchedule", steps_per_epoch: int,
               metric: str, bce: bool, selection: str, files: Optional["ModelFiles"]) -> "FinetuneModule":
        from .module import FinetuneModule

        return FinetuneModule(model, hp, schedule, steps_per_epoch, metric, bce, selection, files)

    def finish(self, module: "FinetuneModule", results: dict, test: "Scores") -> dict:
        """results.json of a fold, completed by the variant (`test`: the selected model's test scores)."""
        return results

    def finish_folds(self, results: dict, folds: list[dict]) -> dict:
        """results.json of a k-fold task (the fold mean) completed by the variant (`folds`: each fold's)."""
        return {**results, "kind": self.results_kind}


__all__ = ["RunVariant"]
