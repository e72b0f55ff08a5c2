"""One `atst-downstream linear` run: checks, extraction into the cache, the LR x fold grid, curves, the model file
and the results.

    outcome = run_linear(LinearConfig(ckpt="atstframe_base.ckpt", task="us8k=/data/UrbanSound8K", out="runs/us8k"))

Every input is checked (checkpoint, task, output folder, options) before any clip is decoded, so a usage error
costs nothing and leaves nothing behind.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from atst import load_checkpoint

from ..curves import plot_curves, write_csv
from ..datasets import Task, load_task
from ..model_file import write_model_file
from ..results import write_results
from .cache import EmbeddingCache, default_cache_root, file_sha256
from .defaults import default_lrs, registered_name
from .extract import EXTRACT_BATCH, ExtractionReport, extract_clips, task_clips
from .grid import FoldResult, grid_summary, mean_std, run_grid
from .readout import PRECISIONS, PROTOCOLS, Readout
from .train import BATCH_SIZE, MAX_EPOCHS, MOMENTUM

Log = Callable[[str], None]
BRANCHES = ("teacher", "student")
CURVE_COLUMNS = ("epoch", "lr", "train_loss", "valid", "test")


@dataclass
class LinearConfig:
    """The options of `atst-downstream linear` (official flag names where the official script has one)."""

    ckpt: str
    task: str
    out: str
    lrs: Optional[Sequence[float]] = None  # None: the official grid of a registered dataset (defaults.py)
    protocol: str = "official"
    n_last_blocks: int = 12
    use_encoder: str = "teacher"
    batch_size_per_gpu: int = BATCH_SIZE
    max_epochs: int = MAX_EPOCHS
    extract_batch: int = EXTRACT_BATCH
    seed: int = 0
    cache: Optional[str] = None
    precision: str = "auto"
    device: str = "auto"
    num_workers: int = 2


@dataclass
class LinearOutcome:
    """What a run produced: the results dict, where it wrote, and the clips it skipped (key -> reason)."""

    results: dict
    out_dir: Path
    skipped: dict[str, str] = field(default_factory=dict)
    extraction: ExtractionReport = field(default_factory=ExtractionReport)


def resolve_device(name: str) -> torch.device:
    """"auto" -> CUDA when available, else CPU; an unavailable CUDA is a ValueError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine; use --device cpu or auto")
    return device


def check_config(config: LinearConfig) -> None:
    """Refuse options out of range, naming them and what is accepted."""
    if config.protocol not in PROTOCOLS:
        raise ValueError(f"--protocol must be one of {PROTOCOLS}, got {config.protocol!r}")
    if config.use_encoder not in BRANCHES:
        raise ValueError(f"--use_encoder must be one of {BRANCHES}, got {config.use_encoder!r}")
    if config.precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {PRECISIONS}, got {config.precision!r}")
    for name, minimum in (("batch_size_per_gpu", 2), ("max_epochs", 1), ("extract_batch", 1), ("n_last_blocks", 1),
                          ("num_workers", 0)):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"--{name} must be an integer >= {minimum}, got {value!r}")
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")


def prepare_out(out: Path) -> None:
    """Create the output folder; one that cannot be created or written is a ValueError naming it."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"--out {out} cannot be created: {error.strerror}") from None
    if not os.access(out, os.W_OK):
        raise ValueError(f"--out {out} is not writable")


def run_linear(config: LinearConfig, log: Optional[Log] = None) -> LinearOutcome:
    """The whole run (module docstring); returns what it wrote."""
    start = time.perf_counter()
    check_config(config)
    device = resolve_device(config.device)
    loaded = load_checkpoint(config.ckpt, branch=config.use_encoder)
    if config.n_last_blocks > loaded.config.depth:
        raise ValueError(f"--n_last_blocks {config.n_last_blocks}: the encoder of {config.ckpt} has "
                         f"{loaded.config.depth} blocks; pass 1..{loaded.config.depth}")
    task = load_task(config.task)
    lrs, lr_source = ((tuple(config.lrs), "--lrs") if config.lrs else default_lrs(config.task, loaded.family))
    readout = Readout(loaded, config.protocol, config.n_last_blocks, config.precision, device)
    out = Path(config.out)
    prepare_out(out)
    cache_root = Path(config.cache).expanduser() if config.cache else default_cache_root(out)
    sha256 = file_sha256(config.ckpt, memo_root=cache_root)
    cache = EmbeddingCache(cache_root, {"checkpoint_sha256": sha256, "readout": readout.settings.to_dict(),
                                        "task": task_identity(config.task, task)}, readout.dim)

    extraction = extract_clips(readout, cache, task_clips(task), task.labels, config.extract_batch,
                               config.num_workers, log=log)
    skipped = dict(extraction.skipped)
    if log:
        log(f"embeddings: {extraction.embedded} embedded, {extraction.reused} reused, {len(skipped)} skipped "
            f"({extraction.seconds:.1f} s); training {len(lrs)} LR(s) x {task.num_folds} fold(s)")
    folds = run_grid(task, cache, lrs, config.protocol, skipped, config.batch_size_per_gpu, config.max_epochs,
                     config.seed, device, log)
    write_fold_curves(out, folds, task.metric)

    chosen = folds[0].selected
    assert chosen is not None and chosen.best is not None  # run_grid raises when a fold has no choice
    selected = {"lr": chosen.lr, "effective_lr": chosen.effective_lr, "epoch": chosen.best_epoch,
                "fold": folds[0].name}
    write_model_file(out / "best.ckpt", loaded, chosen.best_state, {
        "kind": "linear", "labels": list(task.labels.names), "multi_label": task.labels.multi_label,
        "task": task.name, "metric": task.metric, "readout": readout.settings.to_dict(),
        "embedding_dim": readout.dim, "selected": selected, "valid": chosen.best.valid, "test": chosen.best.test,
        "source_checkpoint": {"path": str(Path(config.ckpt).resolve()), "sha256": sha256}})

    results = build_results(config, task, loaded.family, readout, folds, lrs, lr_source, selected, extraction,
                            sha256, cache, device)
    results["skipped"] = [f"{key}: {reason}" for key, reason in sorted(skipped.items())] + list(task.skipped)
    results["wall_time_s"] = round(time.perf_counter() - start, 3)
    write_results(out, results)
    return LinearOutcome(results, out, skipped, extraction)


def task_identity(spec: str, task: Task) -> dict:
    """The task part of the cache key: its name and the TASK argument with its path resolved (so runs from other
    working directories share the entry)."""
    name = registered_name(spec)
    path = spec.partition("=")[2] if name else spec
    resolved = str(Path(path.strip()).expanduser().resolve())
    return {"name": task.name, "spec": f"{name}={resolved}" if name else resolved}


def write_fold_curves(out: Path, folds: Sequence[FoldResult], metric: str) -> None:
    """`out/curves/<fold>_lr<lr>.csv` per head and `out/curves.png` (per LR, means over folds)."""
    panels: dict[str, dict[str, list[tuple[int, float]]]] = {f"valid {metric}": {}, f"test {metric}": {},
                                                             "train loss": {}}
    for position, run in enumerate(folds[0].runs):
        label = f"lr {run.lr:g}"
        histories = [fold.runs[position].history for fold in folds]
        for panel, attribute in zip(panels, ("valid", "test", "train_loss")):
            panels[panel][label] = [(records[0].epoch, mean_std([getattr(r, attribute) for r in records])[0])
                                    for records in zip(*histories)]
    for fold in folds:
        for run in fold.runs:
            write_csv(out / "curves" / f"{fold.name}_lr{run.lr:g}.csv", [asdict(r) for r in run.history],
                      CURVE_COLUMNS)
    plot_curves(out / "curves.png", panels)


def build_results(config: LinearConfig, task: Task, family: str, readout: Readout, folds: Sequence[FoldResult],
                  lrs: Sequence[float], lr_source: str, selected: dict, extraction: ExtractionReport, sha256: str,
                  cache: EmbeddingCache, device: torch.device) -> dict:
    """results.json's content (downstream/results.py) for a linear run."""
    metric = task.metric
    chosen = [fold.selected for fold in folds]
    valid_mean, _ = mean_std([run.best.valid for run in chosen])
    test_mean, test_std = mean_std([run.best.test for run in chosen])
    results = {
        "kind": "linear evaluation", "task": task.name, "metric": metric,
        "valid": {metric: valid_mean}, "test": {metric: test_mean},
        **({"test_std": test_std} if len(folds) > 1 else {}),
        "selected": selected,
        "folds": [{"fold": fold.name, "note": fold.note, "validated_on_test": fold.validated_on_test,
                   "sizes": fold.sizes, "lr": run.lr,
                   "effective_lr": run.effective_lr, "epoch": run.best_epoch, "valid": run.best.valid,
                   "test": run.best.test} for fold, run in zip(folds, chosen)],
        "grid": grid_summary(folds, lrs),
        "settings": {
            "protocol": config.protocol, "readout": readout.settings.describe(),
            "n_last_blocks": config.n_last_blocks, "use_encoder": config.use_encoder,
            "precision": readout.settings.precision, "device": str(device), "lrs": list(lrs),
            "lrs_from": lr_source, "batch_size_per_gpu": config.batch_size_per_gpu, "nproc": 1,
            "lr_scaling": f"effective lr = lr x {config.batch_size_per_gpu} / 256",
            "optimizer": f"SGD momentum {MOMENTUM}, weight decay 0", "schedule":
                f"cosine per epoch to 0 over {config.max_epochs} epochs, no warm-up",
            "max_epochs": config.max_epochs, "head": "BatchNorm1d(affine=False) + Linear, N(0, 0.01^2) init",
            "loss": "BCE with logits" if task.labels.multi_label else "cross-entropy",
            "selection": "best validation metric over LRs and epochs; ties: earlier epoch, then smaller LR",
            "extract_batch": config.extract_batch, "seed": config.seed, "cache": str(cache.dir),
            "task_source": task.source, "classes": task.labels.num_labels, "folds": task.num_folds,
        },
        "checkpoint": {"path": str(Path(config.ckpt).resolve()), "sha256": sha256,
                       "family": f"ATST-{family.capitalize()}", "branch": config.use_encoder},
        "extraction": extraction.to_dict(),
        "model_file": "best.ckpt" + (f" (the head of {folds[0].name}, trained without it)" if len(folds) > 1 else ""),
        "protocol_notes": protocol_notes(config, task, readout, folds),
    }
    return results


def protocol_notes(config: LinearConfig, task: Task, readout: Readout, folds: Sequence[FoldResult]) -> list[str]:
    """What a reader comparing these numbers with published ones must know."""
    notes = ["Embeddings are extracted once per (checkpoint, read-out, task) into the cache and shared by every fold "
             "and learning rate (the official code extracts them again for every LR and every fold)."]
    if config.protocol == "official" and readout.settings.precision == "fp32":
        notes.append("Precision: fp32 on this device; the official extraction runs under bf16 autocast on a GPU, "
                     "so embeddings differ slightly (bf16 matmul rounding).")
    if any(fold.validated_on_test for fold in folds):
        notes.append("--protocol official reproduces the official choice: the LR and epoch are chosen on the test "
                     "data itself (" + "; ".join(sorted({fold.note for fold in folds if fold.note})) + "); "
                     "--protocol hear validates on data kept apart from the test set.")
    elif task.num_folds > 1:
        notes.append("k-fold with --protocol hear: each fold validates on the next fold and trains on the others.")
    if len(folds[0].runs) > 1:
        notes.append("The LR is chosen on validation; the official scripts train one LR per run and papers report the "
                     "best test number over the grid (see the grid table).")
    if task.metric == "mAP":
        notes.append("mAP averages the classes with at least one positive in the split (the official NaN filter does "
                     "the same only with old sklearn releases).")
    if any(fold.sizes["train"] % config.batch_size_per_gpu == 1 for fold in folds):
        notes.append("A final training batch of one clip is left out of each epoch (batch norm cannot train on one "
                     "row; the official code stops with an error there).")
    return notes


__all__ = ["LinearConfig", "LinearOutcome", "build_results", "check_config", "prepare_out", "resolve_device",
           "run_linear", "task_identity"]
