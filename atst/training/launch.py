"""How a run is launched and the `pl.Trainer` it gets.

Three launchers: plain (Lightning starts `devices` processes per node itself), torchrun / torch elastic (one
process per device; LOCAL_WORLD_SIZE and WORLD_SIZE say the topology) and SLURM (`srun`, one task per device;
SLURM_NTASKS_PER_NODE and SLURM_NNODES). Lightning is imported inside `build_trainer` only.
"""
from __future__ import annotations

import os
import sys
import types
from typing import TYPE_CHECKING, Mapping, Optional, Sequence

if TYPE_CHECKING:
    from .config import RunConfig
    from .lightning import pl


def launcher_topology(environ: Optional[Mapping[str, str]] = None) -> tuple[int, int]:
    """(processes per node, nodes) announced by torchrun or SLURM, else (1, 1)."""
    environ = os.environ if environ is None else environ
    if "LOCAL_WORLD_SIZE" in environ and "WORLD_SIZE" in environ:  # torchrun / torch elastic
        local = int(environ["LOCAL_WORLD_SIZE"])
        return local, max(1, int(environ["WORLD_SIZE"]) // max(local, 1))
    if "SLURM_NTASKS_PER_NODE" in environ and "SLURM_NNODES" in environ:
        # SLURM writes "8(x2)" for 8 tasks on each of 2 nodes
        return int(environ["SLURM_NTASKS_PER_NODE"].split("(")[0]), int(environ["SLURM_NNODES"])
    return 1, 1


def launch_rank(devices: int, environ: Optional[Mapping[str, str]] = None) -> int:
    """The global rank this process will have, known before any process group exists: torchrun's RANK; for a
    process started with a LOCAL_RANK (the ranks > 0 Lightning starts itself in a plain launch)
    NODE_RANK x devices + LOCAL_RANK; SLURM's SLURM_PROCID; else (the process a user started) NODE_RANK x devices.

    `devices`: processes per node. Decides which one process takes a run-wide resource (the save-path lock) before
    the Trainer exists.
    """
    environ = os.environ if environ is None else environ
    if "LOCAL_WORLD_SIZE" in environ and "WORLD_SIZE" in environ and "RANK" in environ:  # torchrun / torch elastic
        return int(environ["RANK"])
    node = int(environ.get("NODE_RANK", environ.get("GROUP_RANK", "0")))
    if "LOCAL_RANK" in environ:
        return node * devices + int(environ["LOCAL_RANK"])
    if "SLURM_NTASKS_PER_NODE" in environ and "SLURM_NNODES" in environ and "SLURM_PROCID" in environ:
        return int(environ["SLURM_PROCID"])
    return node * devices


def tensorboard_without_tensorflow() -> None:
    """TensorBoard imports TensorFlow (seconds and a GiB per process) when it is installed, only for file I/O;
    its own `notf` switch makes it use the bundled stub instead (local and plain paths need nothing more)."""
    if "tensorflow" not in sys.modules and "tensorboard.compat.notf" not in sys.modules:
        sys.modules["tensorboard.compat.notf"] = types.ModuleType("tensorboard.compat.notf")


def stdout_is_terminal() -> bool:
    return bool(getattr(sys.stdout, "isatty", None)) and sys.stdout.isatty()


def build_trainer(run: RunConfig, callbacks: Sequence["pl.Callback"] = (), show_bar: Optional[bool] = None,
                  use_distributed_sampler: bool = True, find_unused_parameters: bool = False) -> "pl.Trainer":
    """A Trainer for `run`: DDP when the run has more than one process, TensorBoard (`save_path/tb_logs`) and CSV
    (`save_path/csv_logs`) loggers, atomic checkpoint writing, the run's checkpoint cadence, the curves PNG at the
    end, stopping with a checkpoint on SIGINT / SIGTERM (`atst.training.interrupt`), `callbacks`, the progress line
    and the learning-rate monitor.

    `show_bar` (default: `run.progress` and stdout is a terminal) chooses Lightning's bar; without the bar a
    progress line is printed every `run.progress_every` steps. `use_distributed_sampler=False`: the door's data
    loaders shard the data across ranks themselves (Lightning adds no DistributedSampler).
    `find_unused_parameters`: DDP tolerates trainable parameters that get no gradient (ATST-Clip's `mask_embed`, as
    the official run did with `ddp_find_unused_parameters_true`).
    """
    tensorboard_without_tensorflow()
    from .lightning import CSVLogger, LearningRateMonitor, TensorBoardLogger, pl

    from .callbacks import CurvesAtEnd, FinalCheckpoint, ProgressLine, checkpoint_callbacks
    from .checkpoint_io import AtomicCheckpointIO
    from .interrupt import StopOnSignal

    bar = run.progress and stdout_is_terminal() if show_bar is None else show_bar
    ddp = "ddp_find_unused_parameters_true" if find_unused_parameters else "ddp"
    extra: list[pl.Callback] = [] if bar or not run.progress_every else [ProgressLine(run.progress_every)]
    return pl.Trainer(
        accelerator=run.accelerator, devices=run.devices, num_nodes=run.num_nodes,
        strategy=ddp if run.world_size > 1 else "auto", precision=run.precision, max_steps=run.max_steps,
        max_epochs=-1, gradient_clip_val=run.grad_clip or None, accumulate_grad_batches=run.accumulate_grad_batches,
        logger=[TensorBoardLogger(run.save_path, name="tb_logs"), CSVLogger(run.save_path, name="csv_logs")],
        callbacks=[*checkpoint_callbacks(run.save_path, run.ckpt_every_steps, run.keep_every_steps),
                   FinalCheckpoint(run.save_path), CurvesAtEnd(run.save_path), *callbacks, *extra,
                   StopOnSignal(run.save_path, run.ckpt_every_steps), LearningRateMonitor(logging_interval="step")],
        plugins=[AtomicCheckpointIO()], log_every_n_steps=run.log_every_n_steps, enable_progress_bar=bar,
        enable_model_summary=False, use_distributed_sampler=use_distributed_sampler, num_sanity_val_steps=0,
    )
