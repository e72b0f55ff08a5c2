"""The training kit's stop on SIGINT / SIGTERM (`atst.training.interrupt`): the decision after each optimizer step,
the checkpoint at the stopping step, the exit status, the second signal, and data-loader workers that leave the
signals to the training process. The whole path through `atst-pretrain` runs in tests/test_pretrain_e2e.py."""
from __future__ import annotations

import signal
import subprocess
import sys
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import torch
from torch.utils.data import DataLoader, Dataset

from atst.training.interrupt import StopOnSignal, exit_status, loader_worker_init
from conftest import subprocess_env


class FakeTrainer(SimpleNamespace):
    """What StopOnSignal reads of a Trainer; `saved` lists the paths of save_checkpoint calls."""

    def __init__(self, **values) -> None:
        defaults = dict(global_step=0, max_steps=100, is_global_zero=True, should_stop=False, saved=[],
                        strategy=SimpleNamespace(root_device=torch.device("cpu"), launcher=None))
        super().__init__(**{**defaults, **values})

    def save_checkpoint(self, path: Path, weights_only: bool = False) -> None:
        self.saved.append((Path(path), self.global_step))


def _batch(stop: StopOnSignal, trainer: FakeTrainer, step_after: int) -> None:
    stop.on_train_batch_start(trainer, None, None, 0)
    trainer.global_step = step_after
    stop.on_train_batch_end(trainer, None, None, None, 0)


def test_a_signal_stops_after_the_optimizer_step_with_last_ckpt_at_that_step(tmp_path, capsys):
    stop = StopOnSignal(tmp_path, every_steps=10)
    trainer = FakeTrainer(callbacks=[stop])
    _batch(stop, trainer, 1)
    assert not trainer.should_stop and exit_status(trainer) == 0
    stop.received = signal.SIGINT
    _batch(stop, trainer, 1)  # an accumulation micro-batch: the optimizer step is not finished
    assert not trainer.should_stop and not trainer.saved
    _batch(stop, trainer, 2)
    assert trainer.should_stop and trainer.saved == [(tmp_path / "last.ckpt", 2)]
    assert "stopped by SIGINT after step 2 of 100: " in capsys.readouterr().err
    assert exit_status(trainer) == 130
    trainer.is_global_zero = False
    assert exit_status(trainer) == 0  # other ranks end cleanly (Lightning ends a plain launch on a failed child)


def test_a_due_periodic_step_is_left_to_the_periodic_callback_and_the_last_step_ends_the_run_anyway(tmp_path):
    stop = StopOnSignal(tmp_path, every_steps=5)
    trainer = FakeTrainer(callbacks=[stop])
    stop.received = signal.SIGTERM
    _batch(stop, trainer, 5)
    assert trainer.should_stop and not trainer.saved and exit_status(trainer) == 143
    late = StopOnSignal(tmp_path, every_steps=5)
    trainer = FakeTrainer(callbacks=[late], global_step=99)
    late.received = signal.SIGTERM
    _batch(late, trainer, 100)
    assert not trainer.should_stop and exit_status(trainer) == 0  # finished, not stopped


_TWO_SIGNALS = """
import os, signal, sys, time
from types import SimpleNamespace
from atst.training.interrupt import StopOnSignal
stop = StopOnSignal(sys.argv[1], every_steps=10)
stop.on_train_start(SimpleNamespace(is_global_zero=True, strategy=SimpleNamespace(launcher=None)), None)
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(0.2)
print("first signal noted:", stop.received, flush=True)
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(5)
print("still running after the second signal", flush=True)
"""


def test_the_first_signal_is_noted_and_announced_the_second_ends_the_process_at_once(tmp_path):
    result = subprocess.run([sys.executable, "-c", _TWO_SIGNALS, str(tmp_path)], capture_output=True, text=True,
                            env=subprocess_env(), timeout=120)
    assert result.stdout.splitlines() == [f"first signal noted: {int(signal.SIGTERM)}"]
    assert "SIGTERM received: finishing the current step, then writing" in result.stderr
    assert result.returncode == -signal.SIGTERM


class _Dispositions(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor([signal.getsignal(signal.SIGINT) == signal.SIG_IGN,
                             signal.getsignal(signal.SIGTERM) == signal.SIG_IGN])


def test_data_loader_workers_leave_sigint_and_sigterm_to_the_training_process():
    loader = DataLoader(_Dispositions(), num_workers=1, worker_init_fn=partial(loader_worker_init, rank=0))
    assert all(bool(batch.all()) for batch in loader)
    assert signal.getsignal(signal.SIGINT) != signal.SIG_IGN  # the training process keeps its own
