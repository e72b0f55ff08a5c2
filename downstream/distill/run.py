"""One `atst-downstream distill` run: the run of `finetune` (`downstream.finetune.run.run_finetune`) with the
hooks of `DistillVariant`: the teacher read and checked before anything is created, the C2F defaults, the
distillation module, and the teacher's numbers in the model file and the results.

    outcome = run_distill(DistillConfig(ckpt="atstframe_base.ckpt", teacher="runs/clip_spcv2",
                                        task="spcv2=/data/spcv2", out="runs/c2f_spcv2"))

Model selection: `official` reports the last epoch (the official scripts test last.ckpt), `hear` the best
validation epoch. k-fold tasks: one fold, the teacher's (a teacher fine-tuned on another fold has seen this
fold's test clips); `--fold` must name the same one.
"""
from __future__ import annotations

import re
import sys
import warnings
from dataclasses import replace
from typing import Callable, Optional

import torch

from atst import LoadedCheckpoint
from atst.training.config import RunConfig

from ..datasets import Task
from ..finetune.config import FinetuneConfig, Recipe, resolve_recipe
from ..finetune.evaluate import Scores
from ..finetune.model import FinetuneModel
from ..finetune.model_files import ModelFiles
from ..finetune.module import FinetuneModule
from ..finetune.run import FinetuneOutcome, default_run_config, finetune_frontend, run_finetune
from ..finetune.schedule import FinetuneSchedule
from ..finetune.variant import RunVariant
from ..linear.cache import file_sha256
from .config import DistillConfig, check_distill_config
from .defaults import c2f_defaults, default_weight
from .module import DistillModule
from .teacher import FrozenTeacher, TeacherSource, check_frontends, read_teacher

KIND = "distillation"
_FOLD = re.compile(r"^fold(\d+)$")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class DistillVariant(RunVariant):
    """The hooks that make a fine-tuning run a distillation run (module docstring)."""

    kind = "distill"
    results_kind = KIND
    structural = ("teacher_sha256", "distill_weight", "teacher_train_mode")

    def __init__(self, config: DistillConfig) -> None:
        self.config = config
        self.source: Optional[TeacherSource] = None
        self.sha256 = ""
        self.weight, self.weight_source = 0.0, ""

    # ------------------------------------------------------------------------------------- before the run
    def prepare(self, config: FinetuneConfig, task: Task) -> FinetuneConfig:
        self.source = read_teacher(self.config.teacher, task)
        self.sha256 = file_sha256(self.source.model.path)
        if task.num_folds == 1:
            return config
        match = _FOLD.match(self.source.fold or "")
        teacher_fold = int(match.group(1)) if match else None
        if config.fold is None and teacher_fold is None:
            raise ValueError(f"task {task.name} has {task.num_folds} folds and --teacher {self.source.model.path} "
                             f"names none ({self.source.fold!r}); pass --fold")
        if config.fold is not None and teacher_fold is not None and config.fold != teacher_fold:
            raise ValueError(f"--fold {config.fold}: --teacher {self.source.model.path} was fine-tuned on "
                             f"{self.source.fold} (its training clips include fold {config.fold}'s test clips); pass "
                             f"--fold {teacher_fold} or the teacher of fold {config.fold}")
        return replace(config, fold=config.fold if config.fold is not None else teacher_fold)

    def recipe(self, config: FinetuneConfig, loaded: LoadedCheckpoint, run: RunConfig) -> Recipe:
        recipe = resolve_recipe(config, loaded.family, loaded.config.depth, run.world_size,
                                run.accumulate_grad_batches, defaults=c2f_defaults)
        recipe = replace(recipe, selection="last" if recipe.protocol == "official" else "best")
        assert self.source is not None
        check_frontends(self.source.frontend, finetune_frontend(loaded, recipe.protocol), str(self.source.model.path))
        if self.config.distill_weight is not None:
            self.weight, self.weight_source = float(self.config.distill_weight), "flag"
        else:
            self.weight, self.weight_source = default_weight(recipe.dataset or None)
        recipe.sources["distill_weight"] = self.weight_source
        return recipe

    # ---------------------------------------------------------------------------------------- the run
    def teacher_description(self) -> dict:
        assert self.source is not None
        model = self.source.model
        return {"path": str(model.path), "sha256": self.sha256, "family": model.checkpoint.family,
                "kind": model.kind, "task": model.info.get("task"), "fold": self.source.fold,
                "readout": dict(model.info["readout"]), "test": model.info.get("test"),
                "train_mode": self.config.teacher_train_mode}

    def hyper_parameters(self) -> dict:
        assert self.source is not None
        return {"teacher": str(self.source.model.path), "teacher_sha256": self.sha256,
                "teacher_family": self.source.family, "distill_weight": self.weight,
                "teacher_train_mode": self.config.teacher_train_mode}

    def model_info(self) -> dict:
        return {"teacher": self.teacher_description(), "distill_weight": self.weight}

    def module(self, model: FinetuneModel, hp: dict, schedule: FinetuneSchedule, steps_per_epoch: int,
               metric: str, bce: bool, selection: str, files: Optional[ModelFiles]) -> FinetuneModule:
        assert self.source is not None
        with torch.random.fork_rng(devices=[]):  # building it draws initial weights: keep the run's RNG stream
            teacher = FrozenTeacher.build(self.source, stochastic=self.config.teacher_train_mode)
        return DistillModule(model, teacher, self.weight, hp, schedule, steps_per_epoch, metric, bce, selection,
                             files)

    def finish(self, module: FinetuneModule, results: dict, test: Scores) -> dict:
        assert isinstance(module, DistillModule)
        bce = bool(results["hyper_parameters"]["bce"])
        term = ("BCE with logits towards sigmoid(teacher logits)" if bce
                else "cross-entropy towards softmax(teacher logits)")
        task_term = "BCE with logits" if bce else "cross-entropy"
        results = {**results, "kind": KIND}
        results["distillation"] = {
            "teacher": self.teacher_description(), "weight": self.weight, "weight_source": self.weight_source,
            "loss": f"{self.weight:g} x {term} + {1 - self.weight:g} x {task_term} on the labels",
            "teacher_mode": ("train mode (official: DropPath and batch statistics active, stochastic targets)"
                             if self.config.teacher_train_mode else "eval mode (deterministic targets)"),
            "teacher_test": test.extra.get("teacher"), "test_agreement": test.extra.get("agreement"),
            "test_distill_loss": test.extra.get("distill_loss"),
            "initial_valid": module.initial,
            "valid_agreement": {"before": (module.initial or {}).get("agreement"),
                                "after": results["epochs"][-1].get("agreement") if results["epochs"] else None,
                                "selected": next((e.get("agreement") for e in results["epochs"]
                                                  if e["epoch"] == results["selected"]["epoch"]), None)},
        }
        results["settings"] = {**results["settings"], "loss": results["distillation"]["loss"],
                               "teacher": f"{self.source.model.path} (ATST-{self.source.family.capitalize()}, "
                                          f"{results['distillation']['teacher_mode']})"}
        results["protocol_notes"] = list(results["protocol_notes"]) + self.notes(results)
        return results

    def finish_folds(self, results: dict, folds: list[dict]) -> dict:
        """A k-fold task trains one fold (the teacher's): its distillation entry is the run's."""
        results = super().finish_folds(results, folds)
        if len(folds) == 1 and "distillation" in folds[0]:
            results["distillation"] = folds[0]["distillation"]
        return results

    def notes(self, results: dict) -> list[str]:
        notes = []
        if not self.config.teacher_train_mode:
            notes.append("The teacher runs in eval mode (no DropPath, its head's batch norm on its running "
                         "statistics): the official scripts leave it in train mode, so their targets are stochastic "
                         "and batch-dependent; --teacher-train-mode reproduces that.")
        notes.append("The teacher is a checked downstream model file (its classes are the task's); the official "
                     "scripts load it with strict=False and ignore the result, so a wrong file trains towards a "
                     "random head.")
        if results["hyper_parameters"].get("dataset") == "audioset":
            notes.append("AudioSet-2M: the official repository does not say how the published C2F numbers were "
                         "trained (learning rate, steps, weight); these defaults are the ATST-Frame AudioSet-2M "
                         "fine-tuning settings and weight 1.0 (train_distill.py).")
        if self.source is not None and self.source.family != "clip":
            notes.append(f"The teacher is ATST-{self.source.family.capitalize()}; the paper's C2F distils a "
                         f"fine-tuned ATST-Clip.")
        return notes


def run_distill(config: DistillConfig, run: Optional[RunConfig] = None,
                log: Optional[Callable[[str], None]] = _log) -> FinetuneOutcome:
    """The whole run (module docstring); `run` as `run_finetune` takes it."""
    check_distill_config(config)
    run = run if run is not None else default_run_config(config.out)
    # the frozen teacher is in eval mode on purpose; Lightning warns about any module in eval mode at the start
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training")
    return run_finetune(config, run, log, variant=DistillVariant(config))


__all__ = ["DistillVariant", "KIND", "run_distill"]
