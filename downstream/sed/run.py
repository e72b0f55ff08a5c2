"""One `atst-downstream sed` run: checks, the Lightning fit (resumed from `last.ckpt` when OUT holds one), the model
chosen on validation, its per-class median filters chosen on validation, the test evaluation, `best.ckpt` and the
results.

    outcome = run_sed(SedConfig(ckpt="atstframe_base.ckpt", task="desed=/data/dcase2021", out="runs/desed",
                                recipe="desed-official"))

Model selection never looks at the test set, except with `--protocol official` on a task whose official protocol
validates on it (AudioSet-strong, `StrongTask.official_selects_on_test`), which the results then say.
"""
from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional, Union

import torch

from atst import LoadedCheckpoint, load_checkpoint
from atst.fileio import remove_stale_temporaries
from atst.training.checkpoint_io import resume_point
from atst.training.config import RunConfig
from atst.training.curves import plot_curves
from atst.training.distributed import gather_objects
from atst.training.launch import build_trainer, launch_rank, tensorboard_without_tensorflow
from atst.training.run_folder import claim_save_path

from ..datasets.audio_cache import DEFAULT, resolve_cache
from ..datasets.strong import TOKEN_SECONDS, StrongClip, StrongTask
from ..finetune.model_files import BEST, ModelFiles
from ..finetune.module import selected
from ..finetune.run import default_run_config, finished_results
from ..finetune.schedule import FinetuneSchedule
from ..linear.cache import file_sha256
from ..results import write_results
from .datamodule import SedData
from .distill import SedDistillModule, frame_gap
from .distill_run import STRUCTURAL as DISTILL_STRUCTURAL
from .distill_run import Distillation, check_distill_flags, plain_hyper_parameters, prepare_distillation
from .model import SedModel
from .module import SedModule
from .teacher import SedTeacher
from .postprocess import OFFICIAL_MEDIAN, SELECTION_THRESHOLD, choose_median_filters
from .recipe import PROTOCOLS, SedRecipe, resolve_recipe
from .report import KIND, sed_results

Log = Callable[[str], None]
EXIT_OK, EXIT_SKIPPED = 0, 1
STRUCTURAL = ("kind", "ckpt", "task", "protocol", "fold", "name", "scope", "learning_rate", "max_epochs", "warmup_epochs",
              "strong_batch", "weak_batch", "unlabelled_batch", "layer_decay", "mean_teacher", "world_size",
              "accumulate_grad_batches", "seed", "classes") + DISTILL_STRUCTURAL


@dataclass(frozen=True)
class SedConfig:
    """What `atst-downstream sed` was given (None: the recipe's value)."""

    ckpt: str
    task: Union[str, StrongTask]
    out: str
    recipe: str = "default"
    protocol: str = "hear"
    learning_rate: Optional[float] = None
    max_epochs: Optional[int] = None
    warmup_epochs: Optional[int] = None
    strong_batch: Optional[int] = None
    weak_batch: Optional[int] = None
    unlabelled_batch: Optional[int] = None
    mean_teacher: bool = False
    use_encoder: str = "teacher"
    fold: int = 0  # k-fold HEAR event tasks: the test fold
    psds_eval: bool = True  # also the 50-operating-point PSDS of psds_eval (slow) on the test split
    distill_teacher: Optional[str] = None  # a sed model file (or its run folder) to distil from, frame by frame
    distill_weight: Optional[float] = None  # w of w * distillation + (1 - w) * sed loss; None: 0.5
    teacher_train_mode: bool = False  # the teacher in train mode (DropPath active: stochastic targets)


@dataclass
class SedOutcome:
    status: int
    out_dir: Path
    results: Optional[dict] = None
    skipped: dict[str, str] = field(default_factory=dict)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_task(task: Union[str, StrongTask], protocol: str, fold: int = 0) -> StrongTask:
    """A `StrongTask` as given, or read from its spec by the strong-label sources (`load_strong_task`)."""
    if isinstance(task, StrongTask):
        return task
    from ..datasets import load_strong_task

    return load_strong_task(task, protocol, fold)


def eval_splits(task: StrongTask, protocol: str) -> tuple[dict[str, tuple[StrongClip, ...]], bool]:
    """The splits a run uses, and whether it validates on the test set (only `official` on a task whose official
    protocol does)."""
    on_test = protocol == "official" and task.official_selects_on_test
    splits = dict(task.splits)
    if on_test:
        splits["valid"] = task.split("test")
    for name in ("valid", "test"):
        if not splits.get(name):
            raise ValueError(f"task {task.name}: the {name} split has no recordings")
    return splits, on_test


def hyper_parameters(config: SedConfig, task: StrongTask, loaded: LoadedCheckpoint, recipe: SedRecipe,
                     run: RunConfig, steps: int, schedule: FinetuneSchedule,
                     distillation: Optional[Distillation] = None) -> dict:
    return {**(distillation.hyper_parameters() if distillation else plain_hyper_parameters()),"kind": "sed", "ckpt": loaded.path, "task": config.task if isinstance(config.task, str) else task.name,
            "protocol": config.protocol, "fold": config.fold, **recipe.to_dict(), **run.as_flags(), "world_size": run.world_size,
            "classes": list(task.labels.names), "steps_per_epoch": steps, "total_steps": schedule.total_steps,
            "train_clips": {name: len(task.split(name)) for name in ("train_strong", "train_weak",
                                                                     "train_unlabelled")},
            "frame_seconds": TOKEN_SECONDS}


def labelled(clips: list[StrongClip], scores: dict[int, torch.Tensor], names: list[str]
             ) -> tuple[dict[str, torch.Tensor], dict[str, list[tuple]], dict[str, float]]:
    """{key: scores `[T, C]`}, {key: [(onset, offset, label name)]}, {key: seconds} of the strongly labelled
    recordings among `clips` that were scored (`evaluate.ground_truth_from_clips`)."""
    from .evaluate import ground_truth_from_clips

    scored = [clips[index] for index in sorted(scores)]
    truth, durations = ground_truth_from_clips(scored, names)
    by_key = {clips[index].key: matrix for index, matrix in scores.items()}
    return {key: by_key[key] for key in truth}, truth, durations


def evaluate_test(scores: dict[str, torch.Tensor], truth: dict, durations: dict, names: list[str],
                  medians: list[int], trim_padding: bool = True, psds_eval: bool = True,
                  unscored_durations: Optional[dict[str, float]] = None) -> dict:
    """`evaluate_sed` with the chosen per-class median filters (with psds_eval's 50-operating-point PSDS when
    `psds_eval`), and with the official 7 frames for every class (threshold-independent PSDS and F1 only);
    `unscored_durations`: `StrongTask.unscored_test_durations`."""
    from .evaluate import evaluate_sed

    arrays = {key: matrix.double().numpy() for key, matrix in scores.items()}
    return {"per_class_median": evaluate_sed(arrays, truth, durations, names, median=medians,
                                             frame_seconds=TOKEN_SECONDS, trim_padding=trim_padding,
                                             include_psds_eval=psds_eval, unscored_durations=unscored_durations),
            "median_7": evaluate_sed(arrays, truth, durations, names, median=OFFICIAL_MEDIAN,
                                     frame_seconds=TOKEN_SECONDS, trim_padding=trim_padding,
                                     include_psds_eval=False, unscored_durations=unscored_durations)}


def evaluate_valid(scores: dict[str, torch.Tensor], truth: dict, durations: dict, names: list[str],
                   medians: list[int]) -> dict:
    """The selected model on validation with its median filters (threshold-independent PSDS and F1 only); empty
    when the validation split has no strongly labelled event."""
    from .evaluate import evaluate_sed

    if not any(truth.values()):
        return {}
    return evaluate_sed({key: matrix.double().numpy() for key, matrix in scores.items()}, truth, durations, names,
                        median=medians, frame_seconds=TOKEN_SECONDS, include_psds_eval=False)


def distilled_results(results: dict, distillation: Distillation, module: SedDistillModule, chosen: dict,
                      names: list[str], test_clips: list[StrongClip], student: dict, teacher: dict, trim: bool,
                      psds_eval: bool, weak: bool) -> dict:
    """results.json of a distillation run: the teacher's numbers on the same test split (its own median filters),
    the mean |p_S - p_T| on the test frames, the settings."""
    t_scores, t_truth, t_durations = labelled(test_clips, teacher, names)
    teacher_test = evaluate_test(t_scores, t_truth, t_durations, names, distillation.source.detector.median_filters,
                                 trim, psds_eval)
    from .report import numbers

    keys = sorted(student)
    gap = frame_gap(torch.cat([student[k] for k in keys]), torch.cat([teacher[k] for k in keys])) if keys else \
        float("nan")
    entry = distillation.results(module, results["epochs"], chosen, numbers(teacher_test["per_class_median"]), gap,
                                 weak)
    notes = list(results["protocol_notes"]) + [
        f"Frame-level distillation from {distillation.path}: loss {entry['loss']}; teacher in {entry['teacher_mode']}"
        f". teacher_test: the teacher on this test split with its own median filters."]
    settings = {**results["settings"], "loss": entry["loss"] + f" (the sed loss: {results['settings']['loss']})",
                "teacher": f"{distillation.path} ({entry['teacher_mode']})"}
    return {**results, "distillation": entry, "settings": settings, "protocol_notes": notes}


def run_sed(config: SedConfig, run: Optional[RunConfig] = None, log: Optional[Log] = _log) -> SedOutcome:
    """The whole run (module docstring). `run`: devices, precision, seed, workers, ... (default:
    `finetune.run.default_run_config`: gradient clipping 3.0)."""
    start = time.perf_counter()
    if config.protocol not in PROTOCOLS:
        raise ValueError(f"--protocol must be one of {PROTOCOLS}, got {config.protocol!r}")
    check_distill_flags(config)
    recipe = resolve_recipe(config.recipe, config.learning_rate, config.max_epochs, config.warmup_epochs,
                            config.strong_batch, config.weak_batch, config.mean_teacher, config.unlabelled_batch)
    out = Path(config.out).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    run = run if run is not None else default_run_config(config.out)
    loaded = load_checkpoint(config.ckpt, branch=config.use_encoder)
    if loaded.family != "frame":
        raise ValueError(f"{config.ckpt} is an ATST-{loaded.family.capitalize()} checkpoint; sound event detection "
                         f"reads ATST-Frame tokens (pass an ATST-Frame checkpoint)")
    task = load_task(config.task, config.protocol, config.fold)
    distillation = prepare_distillation(config, task, loaded.frontend_config)
    splits, on_test = eval_splits(task, config.protocol)
    data = SedData(splits, task.labels.num_labels, recipe, replace(run, save_path=out), cache=resolve_cache(DEFAULT))
    steps = data.steps_per_epoch
    schedule = FinetuneSchedule.build(recipe.learning_rate, recipe.max_epochs, recipe.warmup_epochs, steps, steps,
                                      "official")
    fold_run = replace(run, save_path=out, max_steps=schedule.total_steps)
    data.run = fold_run
    hp = hyper_parameters(config, task, loaded, recipe, run, steps, schedule, distillation)
    writer = launch_rank(run.devices) == 0
    lock = claim_save_path(out, take_lock=writer)
    try:
        finished = finished_results(out, hp, KIND, STRUCTURAL)
        if finished is not None:
            if log and writer:
                log(f"{out} holds a finished run with these settings (results.json): nothing trained; remove it or "
                    f"choose another --out to train again")
            return SedOutcome(EXIT_SKIPPED if finished["skipped"] else EXIT_OK, out, finished if writer else None)
        out.mkdir(parents=True, exist_ok=True)
        return _train(config, task, loaded, recipe, fold_run, data, schedule, hp, splits, on_test, writer, log,
                      start, distillation)
    finally:
        if lock is not None:
            lock.release()


def _train(config: SedConfig, task: StrongTask, loaded: LoadedCheckpoint, recipe: SedRecipe, run: RunConfig,
           data: SedData, schedule: FinetuneSchedule, hp: dict, splits: dict, on_test: bool, writer: bool,
           log: Optional[Log], start: float, distillation: Optional[Distillation] = None) -> SedOutcome:
    from atst.training.lightning import pl, rank_zero_info

    out = run.save_path
    tensorboard_without_tensorflow()
    pl.seed_everything(run.seed, workers=True, verbose=False)
    model = SedModel.from_checkpoint(loaded, task.labels.num_labels, recipe.scope,
                                     generator=torch.Generator().manual_seed(run.seed))
    names = list(task.labels.names)
    sha256 = file_sha256(loaded.path) if writer else ""
    files = ModelFiles(out, loaded, {
        "kind": "sed", "labels": names, "multi_label": True, "task": task.name, "frame_seconds": TOKEN_SECONDS,
        "window_seconds": model.window_samples / model.backbone.sample_rate, "recipe": recipe.to_dict(),
        "protocol": config.protocol, "precision": "bf16" if run.precision == "bf16-mixed" else "fp32",
        "thresholds": [SELECTION_THRESHOLD] * len(names), "median_filters": [OFFICIAL_MEDIAN] * len(names),
        "source_checkpoint": {"path": loaded.path, "sha256": sha256},
        **(distillation.model_info() if distillation else {})})
    if distillation is None:
        module = SedModule(model, hp, schedule, data.steps_per_epoch, recipe, list(splits["valid"]), files)
    else:  # the frozen teacher stays in eval mode on purpose; Lightning warns about such modules at the start
        warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training")
        module = SedDistillModule(model, SedTeacher(distillation.source), distillation.weight, hp, schedule,
                                  data.steps_per_epoch, recipe, list(splits["valid"]), files)
    resume = resume_point(out, hp, STRUCTURAL, model=module, optimizers=[module.configure_optimizers()])
    trainer = build_trainer(run, use_distributed_sampler=False)
    warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")
    if recipe.scope == "last_block":  # the frozen blocks are in eval mode on purpose (spec 1.6)
        warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training")
    if trainer.is_global_zero:
        remove_stale_temporaries(out)
    sizes = ", ".join(f"{len(part)} {role}" for part, role in zip(data.parts, ("strong", "weak", "unlabelled")))
    rank_zero_info(
        f"sed {task.name} ({recipe.name}, protocol {config.protocol}): train {sizes}; {len(splits['valid'])} valid"
        f"{' (= test, the official choice)' if on_test else ''} / {len(splits['test'])} test recordings; batch "
        f"{data.batches} per process x {run.world_size}; {recipe.max_epochs} epochs x {data.steps_per_epoch} steps "
        f"(warm-up {recipe.warmup_epochs}), lr {recipe.learning_rate:g}; trains {recipe.scope}"
        f"{'; mean teacher' if recipe.mean_teacher else ''}; {run.accelerator} {run.precision}; run folder {out}"
        + (f"; resuming from {resume[0]} at step {resume[1]}" if resume else ""))
    stopped = module.run_fit(trainer, data, resume)
    if stopped is not None:
        return SedOutcome(stopped, out)
    chosen, rule = module.restore_selected()
    valid_scores = module.split_scores("valid", to_rank_zero=True)  # only rank 0 evaluates
    trim = config.protocol != "official"  # the official DESED test keeps the scores of the padding (quirk)
    test_scores = module.split_scores("test", trim, to_rank_zero=True)
    teacher_scores = module.teacher_scores("test", trim, to_rank_zero=True) if distillation else None
    skipped: dict[str, str] = {}
    for part in gather_objects(module.skipped.reasons):
        skipped.update(part)
    if not trainer.is_global_zero:
        return SedOutcome(EXIT_OK, out)
    v_scores, v_truth, v_durations = labelled(list(splits["valid"]), valid_scores, names)
    medians = choose_median_filters(v_scores, v_truth, v_durations, names) if v_truth else \
        [OFFICIAL_MEDIAN] * len(names)
    t_scores, t_truth, t_durations = labelled(list(splits["test"]), test_scores, names)
    test = evaluate_test(t_scores, t_truth, t_durations, names, medians, trim, config.psds_eval,
                         task.unscored_test_durations)
    valid = evaluate_valid(v_scores, v_truth, v_durations, names, medians)
    files.info["median_filters"] = medians
    files.write_final(model, {"selected": selected(chosen, rule), "valid": chosen["valid"], "test": test})
    for logger in trainer.loggers:
        logger.save()
    plot_curves(out / "csv_logs", out / "curves.png")
    results = sed_results(task, hp, recipe, config.protocol, on_test, module.history, chosen, rule, medians, test,
                          valid,
                          skipped, {"path": loaded.path, "sha256": files.info["source_checkpoint"]["sha256"],
                           "family": "ATST-Frame", "branch": loaded.branch},
                          {name: len(splits[name]) for name in ("valid", "test")}, time.perf_counter() - start)
    if distillation is not None:
        results = distilled_results(results, distillation, module, chosen, names, list(splits["test"]), test_scores,
                                    teacher_scores, trim, config.psds_eval, recipe.weak_batch > 0)
    write_results(out, results)
    if log:
        metric = results["metric"]
        log(f"{task.name}: test {metric} {results['test'][metric]:.4f}; selected epoch {chosen['epoch']} ({rule}); "
            f"wrote {out / 'results.json'} and {out / BEST}")
    return SedOutcome(EXIT_SKIPPED if results["skipped"] else EXIT_OK, out, results, skipped)


__all__ = ["STRUCTURAL", "SedConfig", "SedOutcome", "eval_splits", "load_task", "run_sed"]
