"""One `atst-downstream finetune` run: checks, then per fold a Lightning fit (resumed from `last.ckpt` when the folder
holds one), the choice of the model, its test, `best.ckpt`, results and curves.

    outcome = run_finetune(FinetuneConfig(ckpt="atstframe_base.ckpt", task="spcv2=/data/spcv2", out="runs/spcv2"))

Folders: a task with fixed splits trains in OUT itself; a k-fold task trains fold k in OUT/foldKK and writes the fold
mean to OUT. A fold whose results.json exists is finished: a rerun of the same command reports it and trains nothing
(other settings in the same OUT are refused). Every input (checkpoint, task, options) is checked before OUT is made.
"""
from __future__ import annotations

import json
import sys
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

import torch

from atst import LoadedCheckpoint, load_checkpoint
from atst.fileio import remove_stale_temporaries
from atst.frontend import FrontendConfig
from atst.training.checkpoint_io import resume_point
from atst.training.config import RunConfig, default_workers
from atst.training.curves import plot_curves
from atst.training.distributed import gather_objects
from atst.training.launch import build_trainer, launch_rank, tensorboard_without_tensorflow
from atst.training.run_folder import claim_save_path

from ..datasets import Task, load_task
from ..datasets.audio_cache import DEFAULT, resolve_cache
from ..linear.cache import file_sha256
from ..linear.readout import ReadoutSettings
from ..linear.run import task_identity
from ..linear.train import effective_lr
from ..results import write_results
from .config import GRAD_CLIP, FinetuneConfig, Recipe, check_config
from .data import ClipMels
from .datamodule import FinetuneData
from .model import FinetuneModel, readout_train_len
from .model_files import BEST, ModelFiles, link_or_copy
from .module import selected
from .report import KIND, fold_results, kfold_results, plot_folds, protocol_notes, settings_text
from .schedule import FinetuneSchedule, global_batch, official_niter, steps_per_epoch
from .variant import RunVariant

Log = Callable[[str], None]
OFFICIAL_WIN_LENGTH = 1024  # the official fine-tuning transforms fix it, whatever the checkpoint was trained with
EXIT_OK, EXIT_SKIPPED = 0, 1
# what a resumed or finished run must share with this one (a last.ckpt or results.json of other settings is refused)
STRUCTURAL = ("kind", "ckpt", "task", "fold", "protocol", "learning_rate", "max_epochs", "warmup_epochs",
              "batch_size_per_gpu", "n_last_blocks", "layerwise_lr", "mixup_training", "alpha", "mixup_ratio",
              "mixup_bank", "rrc", "balanced_sampling", "use_encoder", "selection", "world_size",
              "accumulate_grad_batches", "seed", "train_clips", "win_length")


@dataclass
class FinetuneOutcome:
    """Exit status (0 done, 1 done with skipped clips, 128 + signal when stopped), the output folder, and on the
    rank that writes them the results and the skipped clips (key -> reason)."""

    status: int
    out_dir: Path
    results: Optional[dict] = None
    skipped: dict[str, str] = field(default_factory=dict)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def default_run_config(out: str, **settings: object) -> RunConfig:
    """The run settings of `atst-downstream finetune` left at its defaults (gradient clipping 3.0, no periodic
    checkpoint kept besides last.ckpt, the accelerator CUDA when there is one, loader workers from the CPU count),
    `settings` overriding them."""
    values: dict = dict(save_path=Path(out).expanduser().resolve(), grad_clip=GRAD_CLIP, keep_every_steps=0,
                        accelerator="gpu" if torch.cuda.is_available() else "cpu")
    values.update(settings)
    devices = values.get("devices", 1)
    values.setdefault("num_workers", default_workers(devices) if isinstance(devices, int) and devices >= 1 else 0)
    return RunConfig(**values)


def finetune_frontend(loaded: LoadedCheckpoint, protocol: str) -> FrontendConfig:
    """The front end: `official` fixes win_length 1024 (the official fine-tuning transforms), `hear` keeps the
    checkpoint's."""
    if protocol == "official":
        return replace(loaded.frontend_config, win_length=OFFICIAL_WIN_LENGTH)
    return loaded.frontend_config


def fold_indices(task: Task, fold: Optional[int]) -> list[int]:
    """The folds to run: `fold` alone, or every fold."""
    if fold is None:
        return list(range(task.num_folds))
    if not 0 <= fold < task.num_folds:
        raise ValueError(f"--fold {fold}: task {task.name} has {task.num_folds} fold(s), numbered from 0"
                         + (" (it has fixed splits: leave --fold out)" if task.num_folds == 1 else ""))
    return [fold]


def check_splits(task: Task, index: int, protocol: str) -> None:
    """ValueError naming the split of fold `index` that has no clips."""
    splits = task.fold(index, protocol)
    for part, clips in (("train", splits.train), ("valid", splits.valid), ("test", splits.test)):
        if not clips:
            raise ValueError(f"task {task.name}, {splits.name}: the {part} split has no clips")


def finished_results(folder: Path, hp: dict, kind: str = KIND, structural: tuple = STRUCTURAL) -> Optional[dict]:
    """The results of a finished run of `kind` in `folder` with the settings of `hp` (the `structural` ones
    compared), else None; another kind of run or other settings: ValueError."""
    path = folder / "results.json"
    if not path.is_file():
        return None
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} cannot be read ({error}); move it away to run again") from None
    previous = results.get("hyper_parameters") if isinstance(results, dict) else None
    if not isinstance(previous, dict) or results.get("kind") != kind:
        found = results.get("kind", "another") if isinstance(results, dict) else "another"
        raise ValueError(f"{folder} holds the results of a {found} run ({path}), not of this {kind}; choose "
                         f"another --out")
    conflicts = [f"{key}: {previous.get(key)!r} there, {hp.get(key)!r} now" for key in structural
                 if previous.get(key) != hp.get(key)]
    if conflicts:
        raise ValueError(f"{folder} holds a finished {kind} run with other settings ({'; '.join(conflicts)}); "
                         f"choose another --out")
    return results


@dataclass
class Context:
    """What every fold of a run shares."""

    config: FinetuneConfig
    run: RunConfig
    recipe: Recipe
    loaded: LoadedCheckpoint
    frontend: FrontendConfig
    task: Task
    log: Optional[Log]
    sha256: str
    variant: RunVariant = field(default_factory=RunVariant)


def run_finetune(config: FinetuneConfig, run: Optional[RunConfig] = None, log: Optional[Log] = _log,
                 variant: Optional[RunVariant] = None) -> FinetuneOutcome:
    """The whole run (module docstring). `run`: devices, precision, seed, workers, ... (default:
    `default_run_config`); its `save_path` and `max_steps` are set per fold. `variant`: the hooks of a run built on
    fine-tuning (default: fine-tuning itself)."""
    start = time.perf_counter()
    variant = variant or RunVariant()
    check_config(config)
    run = run if run is not None else default_run_config(config.out)
    loaded = load_checkpoint(config.ckpt, branch=config.use_encoder)
    task = load_task(config.task)
    config = variant.prepare(config, task)
    recipe = variant.recipe(config, loaded, run)
    folds = fold_indices(task, config.fold)
    for index in folds:
        check_splits(task, index, recipe.protocol)
    out = Path(config.out).expanduser().resolve()
    writer = launch_rank(run.devices) == 0
    lock = claim_save_path(out, take_lock=writer)
    try:
        context = Context(config, run, recipe, loaded, finetune_frontend(loaded, recipe.protocol), task, log,
                          file_sha256(loaded.path) if writer else "", variant)
        results: dict[int, dict] = {}
        skipped: dict[str, str] = {}
        trained = False
        for index in folds:
            outcome = train_fold(context, index, fold_folder(out, task, index))
            if outcome.status:
                return replace(outcome, out_dir=out)
            trained |= outcome.results is None or not outcome.results.get("reused")
            if outcome.results is not None:
                results[index] = outcome.results
            skipped.update(outcome.skipped)
        if not writer:
            return FinetuneOutcome(EXIT_OK, out)
        final = results[folds[0]] if task.num_folds == 1 else \
            write_kfold(out, task, finished_folds(out, task, results), time.perf_counter() - start, variant)
        if log and not trained:
            log(f"{out} holds a finished run with these settings (results.json): nothing trained; remove it or choose "
                f"another --out to train again")
        return FinetuneOutcome(EXIT_SKIPPED if final["skipped"] else EXIT_OK, out, final, skipped)
    finally:
        if lock is not None:
            lock.release()


def fold_folder(out: Path, task: Task, index: int) -> Path:
    """Where fold `index` trains: OUT for a task with fixed splits, OUT/foldKK for a k-fold task."""
    return out if task.num_folds == 1 else out / f"fold{index:02d}"


def finished_folds(out: Path, task: Task, fresh: dict[int, dict]) -> list[dict]:
    """The results of every finished fold of a k-fold task in fold order: `fresh` (this run's, by fold index) and
    those an earlier run with the same settings left in OUT (`--fold` runs one fold at a time)."""
    reference = next(iter(fresh.values()))["hyper_parameters"]
    shared = [key for key in STRUCTURAL if key not in ("fold", "train_clips")]
    found = []
    for index in range(task.num_folds):
        if index in fresh:
            found.append(fresh[index])
            continue
        path = fold_folder(out, task, index) / "results.json"
        if not path.is_file():
            continue
        try:
            results = json.loads(path.read_text(encoding="utf-8"))
            previous = results["hyper_parameters"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path} cannot be read ({error}); move it away to run that fold again") from None
        if all(previous.get(key) == reference.get(key) for key in shared):
            found.append(results)
    return found


def write_kfold(out: Path, task: Task, folds: list[dict], wall_time: float,
                variant: Optional[RunVariant] = None) -> dict:
    """The fold mean of the finished folds: OUT/results.json, results.md, curves.png, and best.ckpt = fold 0's."""
    results = (variant or RunVariant()).finish_folds(kfold_results(task, folds, wall_time), folds)
    write_results(out, results)
    plot_folds(out / "curves.png", folds, task.metric)
    first = out / "fold00" / BEST
    if first.is_file():
        link_or_copy(first, out / BEST)
    return results


def hyper_parameters(context: Context, splits_name: str, train_clips: int, steps: int, schedule: FinetuneSchedule,
                     bce: bool) -> dict:
    """Every setting of a fold's run, plain values (last.ckpt's hyper_parameters; results.json)."""
    config, run, recipe = context.config, context.run, context.recipe
    return {"kind": context.variant.kind, "ckpt": context.loaded.path, "task": task_identity(config.task, context.task)["spec"],
            "fold": splits_name, **recipe.to_dict(), **run.as_flags(), "world_size": run.world_size,
            "global_batch": global_batch(run.world_size, recipe.batch_size_per_gpu, run.accumulate_grad_batches),
            "train_clips": train_clips, "steps_per_epoch": steps, "total_steps": schedule.total_steps,
            "effective_lr": schedule.base_lr, "schedule_table": schedule.table, "bce": bce,
            "win_length": context.frontend.win_length, "family": context.loaded.family,
            **context.variant.hyper_parameters()}


def readout_settings(context: Context) -> ReadoutSettings:
    loaded, recipe = context.loaded, context.recipe
    return ReadoutSettings(protocol=recipe.protocol, family=loaded.family, branch=loaded.branch,
                           n_blocks=recipe.n_last_blocks,
                           precision="bf16" if context.run.precision == "bf16-mixed" else "fp32",
                           win_length=context.frontend.win_length,
                           clip_train_len=readout_train_len(loaded, recipe.protocol) if loaded.config.has_cls
                           else None)


def train_fold(context: Context, index: int, folder: Path) -> FinetuneOutcome:
    """Train, select and test fold `index` in `folder` (or report it finished)."""
    from atst.training.lightning import pl, rank_zero_info

    start = time.perf_counter()
    run, recipe, task, loaded = context.run, context.recipe, context.task, context.loaded
    splits = task.fold(index, recipe.protocol)
    batch, accumulate = recipe.batch_size_per_gpu, run.accumulate_grad_batches
    steps = steps_per_epoch(len(splits.train), run.world_size, batch, accumulate)
    schedule = FinetuneSchedule.build(effective_lr(recipe.learning_rate, batch * accumulate, run.world_size),
                                      recipe.max_epochs, recipe.warmup_epochs, steps,
                                      official_niter(len(splits.train), run.world_size, batch, accumulate),
                                      "official" if recipe.protocol == "official" else "exact")
    bce = task.labels.multi_label or recipe.mixup_training
    fold_run = replace(run, save_path=folder, max_steps=schedule.total_steps)
    hp = hyper_parameters(context, splits.name, len(splits.train), steps, schedule, bce)
    variant = context.variant
    finished = finished_results(folder, hp, variant.results_kind, STRUCTURAL + variant.structural)
    if finished is not None:
        return FinetuneOutcome(EXIT_OK, folder, {**finished, "reused": True})
    folder.mkdir(parents=True, exist_ok=True)

    tensorboard_without_tensorflow()
    pl.seed_everything(run.seed, workers=True, verbose=False)
    model = FinetuneModel.from_checkpoint(loaded, recipe.protocol, recipe.n_last_blocks, task.labels.num_labels,
                                          context.frontend, generator=torch.Generator().manual_seed(run.seed))
    settings = readout_settings(context)
    files = ModelFiles(folder, replace(loaded, frontend_config=context.frontend), {
        "kind": variant.kind, "labels": list(task.labels.names), "multi_label": task.labels.multi_label,
        "task": task.name, "metric": task.metric, "readout": settings.to_dict(), "embedding_dim": model.embed_dim,
        "fold": splits.name, "recipe": recipe.to_dict(),
        "source_checkpoint": {"path": loaded.path, "sha256": context.sha256}, **variant.model_info()})
    module = variant.module(model, hp, schedule, steps, task.metric, bce, recipe.selection, files)
    resume = resume_point(folder, hp, STRUCTURAL + variant.structural, model=module,
                          optimizers=[module.configure_optimizers()])
    data = FinetuneData(splits, task.labels, ClipMels(model.backbone.frontend, loaded.config.patch_w,
                                                      recipe.protocol, loaded.family), recipe, fold_run,
                        cache=resolve_cache(DEFAULT))
    trainer = build_trainer(fold_run, use_distributed_sampler=False)
    # Lightning warns that a mid-epoch resume replays the epoch from its start; EpochSampler continues it instead
    warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")
    if trainer.is_global_zero:
        remove_stale_temporaries(folder)
    rank_zero_info(
        f"{variant.kind} {task.name} {splits.name}: {len(splits.train)} train / {len(splits.valid)} valid / "
        f"{len(splits.test)} test clips; ATST-{loaded.family.capitalize()} ({loaded.branch}) {recipe.protocol} "
        f"read-out; {hp['global_batch']} clips per step ({run.world_size} device(s) x {batch} x {accumulate}), lr "
        f"{recipe.learning_rate:g} -> {schedule.base_lr:.4g}; {recipe.max_epochs} epochs x {steps} steps "
        f"(warm-up {recipe.warmup_epochs}); {run.accelerator} {run.precision}; run folder {folder}"
        + (f"; resuming from {resume[0]} at step {resume[1]}" if resume else ""))
    stopped = module.run_fit(trainer, data, resume)
    if stopped is not None:
        return FinetuneOutcome(stopped, folder)

    # the model to report, its test, the files (every rank evaluates its share; rank 0 writes)
    chosen, rule = module.restore_selected()
    test = module.evaluate_split("test")
    skipped: dict[str, str] = {}
    for part in gather_objects(module.skipped.reasons):
        skipped.update(part)
    if not trainer.is_global_zero:
        return FinetuneOutcome(EXIT_OK, folder)
    files.write_final(model, {"selected": selected(chosen, rule), "valid": chosen["valid"], "test": test.metric})
    for logger in trainer.loggers:
        logger.save()
    plot_curves(folder / "csv_logs", folder / "curves.png")
    checkpoint = {"path": loaded.path, "sha256": context.sha256, "family": f"ATST-{loaded.family.capitalize()}",
                  "branch": loaded.branch}
    results = fold_results(task, splits, hp, settings_text(recipe, hp, schedule, settings.describe()),
                           checkpoint, module.history, chosen, rule, test.metric, test.loss, skipped,
                           protocol_notes(recipe, loaded.family, splits, hp), time.perf_counter() - start)
    results = variant.finish(module, results, test)
    write_results(folder, results)
    if context.log:
        context.log(f"{task.name} {splits.name}: test {task.metric} {test.metric:.4f} ({test.clips} clips), valid "
                    f"{chosen['valid']:.4f} at epoch {chosen['epoch']} ({rule}); wrote "
                    f"{folder / 'results.json'} and {folder / BEST}")
    return FinetuneOutcome(EXIT_OK, folder, results, skipped)


__all__ = ["FinetuneOutcome", "GRAD_CLIP", "OFFICIAL_WIN_LENGTH", "STRUCTURAL", "default_run_config",
           "finetune_frontend", "fold_indices", "run_finetune", "train_fold"]
