"""Stopping a training run on SIGINT (Ctrl-C) or SIGTERM (`kill`, a batch scheduler's time limit): the run finishes
the optimizer step it is in, writes `last.ckpt` at that step through the same `Trainer.save_checkpoint` as the
periodic saves (so resuming from it is resuming from a periodic checkpoint), says where it is and how to resume,
and the door's process ends with 128 + the signal number (130, 143). A second signal ends the process at once,
without saving.

Under DDP every rank asks after each optimizer step whether any rank has received a signal (one small
all-reduce), so all ranks stop after the same step wherever the signal arrived: a terminal's Ctrl-C reaches every
process, `kill` or a launcher may reach only one. While training runs, this replaces Lightning's SIGTERM handler
(which ends the run without a checkpoint). Data-loader workers ignore both signals (`loader_worker_init`): a worker
ended by a Ctrl-C meant for the run would fail the step the training process is finishing; workers end when the
training process closes its loaders, or by themselves once it is gone.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any, Optional

from .checkpoint_io import LAST
from .distributed import max_over_ranks
from .lightning import Callback, pl, pl_worker_init_function

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _name(signum: int) -> str:
    return signal.Signals(signum).name


class StopOnSignal(Callback):
    """Stop after the current optimizer step on SIGINT / SIGTERM, with `save_path/last.ckpt` written at that step.

    `every_steps`: the cadence of the periodic `last.ckpt` callback, which runs after this one (Lightning runs
    checkpoint callbacks last) and already writes the steps it is due at. After `fit`, `stopped_by` is the signal
    that stopped the run (0 when it was not stopped); `exit_status(trainer)` turns it into an exit status.
    """

    def __init__(self, save_path: Path, every_steps: int) -> None:
        self.path = Path(save_path) / LAST
        self.every_steps = every_steps
        self.received = 0  # the signal this process received (0 = none yet)
        self.stopped_by = 0
        self._pid: Optional[int] = None
        self._trainer: Optional[pl.Trainer] = None
        self._announce = False
        self._step_before_batch = 0
        self._previous: dict[int, Any] = {}

    # ----------------------------------------------------------------------------------------------- handlers
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # after Lightning has registered its own handlers (it does so just before the training loop starts)
        if threading.current_thread() is not threading.main_thread():
            return  # Python lets only the main thread set handlers
        self._pid, self._trainer, self._announce = os.getpid(), trainer, trainer.is_global_zero
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        if os.getpid() != self._pid:  # a forked child (a data-loader worker before its init) inherited the handler
            return
        if self.received:
            self._abort(signum)
        self.received = signum
        if self._announce:  # os.write: print() is not safe inside a signal handler
            try:
                os.write(2, (f"\n{_name(signum)} received: finishing the current step, then writing {self.path} "
                             f"(send it again to stop at once, without saving)\n").encode())
            except OSError:  # no stderr to tell: the stop goes on all the same
                pass

    def _abort(self, signum: int) -> None:
        launcher = getattr(self._trainer.strategy, "launcher", None) if self._trainer is not None else None
        if launcher is not None:
            launcher.kill(signal.SIGKILL)  # the ranks a plain launch started (none under torchrun / SLURM)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        for signum, previous in self._previous.items():
            if signal.getsignal(signum) == self._handle:
                signal.signal(signum, previous)
        self._previous = {}

    # ---------------------------------------------------------------------------------------------- stopping
    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._step_before_batch = trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if step == self._step_before_batch:  # accumulating: the optimizer step is not finished yet
            return
        agreed = max_over_ranks(self.received, trainer.strategy.root_device)
        if not agreed or 0 < trainer.max_steps <= step:  # the last step ends the run anyway
            return
        self.stopped_by = agreed
        if step % self.every_steps:  # a due step is written by the periodic callback, after this one
            trainer.save_checkpoint(self.path, weights_only=False)
        trainer.should_stop = True
        if trainer.is_global_zero:
            print(f"stopped by {_name(agreed)} after step {step} of {trainer.max_steps}: {self.path} holds this "
                  f"step; run the same command again to resume from it", file=sys.stderr, flush=True)


def exit_status(trainer: pl.Trainer) -> int:
    """The exit status of a door's process after `trainer.fit`: 128 + the signal number on global rank zero when a
    signal stopped the run, else 0. Other ranks end with 0 once they have stopped cleanly: Lightning ends every
    process of a plain launch as soon as one it started exits with another status."""
    for callback in trainer.callbacks:
        if isinstance(callback, StopOnSignal) and callback.stopped_by:
            return 128 + callback.stopped_by if trainer.is_global_zero else 0
    return 0


def loader_worker_init(worker_id: int, rank: int) -> None:
    """The `worker_init_fn` of training data loaders (`functools.partial(loader_worker_init, rank=global_rank)`):
    the worker ignores SIGINT and SIGTERM (see the module docstring), then seeds its generators exactly as Lightning
    does after `seed_everything(workers=True)`."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    if int(os.environ.get("PL_SEED_WORKERS", 0)):
        pl_worker_init_function(worker_id, rank=rank)
