"""The fine-tuning learning rate: global batch, LR scaling, steps per epoch and the per-step schedule.

Official (`F/downstream/train_finetune.py`, `utils/common.py:cosine_scheduler_epoch`):

* base LR = `--learning_rate x nproc x batch_size_per_gpu / 256`; here the global batch is devices x nodes x
  batch_size_per_gpu x accumulate_grad_batches (the official code had one node and no accumulation, where the two
  agree); the paper's global batch is 512 (LR x 2);
* a table of `max_epochs x niter` values, `niter = len(train) // batch_size_per_gpu // nproc + 1`: linear warm-up
  `linspace(0, lr, warmup_epochs x niter)` (step 0 trains at LR 0), then `1e-6 + (lr - 1e-6)(1 + cos(pi i / n)) / 2`
  over the remaining n entries, read at `global_step` each step and multiplied by each group's `lr_scale`.

`niter` is at least one more than the real number of optimizer steps per epoch, so the official run ends before
its table does and never reaches 1e-6 (nor do its warm-up epochs end on an epoch boundary). `--protocol official`
keeps that table (`table="official"`); `--protocol hear` builds it on the real steps per epoch and ends the cosine
exactly at 1e-6 on the last step (`table="exact"`). Both are `atst.training.schedules.learning_rate` (warm-up from
0, cosine to 1e-6), differing only in their step counts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from atst.training.schedules import FINAL_LR, learning_rate

TABLES = ("official", "exact")


def global_batch(world_size: int, batch_size_per_gpu: int, accumulate_grad_batches: int = 1) -> int:
    """Clips per optimizer step over the whole run."""
    return world_size * batch_size_per_gpu * accumulate_grad_batches


def samples_per_rank(clips: int, world_size: int, batch_size: int) -> int:
    """Clips each rank draws per epoch: ceil(clips / ranks) (shares padded to equal size, as torch's
    DistributedSampler); in a one-process run, one fewer when that would leave a last batch of one clip (batch norm
    cannot train on one row; the official run stops with an error there)."""
    per_rank = math.ceil(clips / world_size)
    if world_size == 1 and batch_size > 1 and per_rank % batch_size == 1 and per_rank > 1:
        per_rank -= 1
    return per_rank


def batches_per_epoch(train_clips: int, world_size: int, batch_size_per_gpu: int) -> int:
    """Batches each rank draws per epoch (`samples_per_rank` in batches of `batch_size_per_gpu`, the last one
    possibly smaller)."""
    return math.ceil(samples_per_rank(train_clips, world_size, batch_size_per_gpu) / batch_size_per_gpu)


def steps_per_epoch(train_clips: int, world_size: int, batch_size_per_gpu: int, accumulate_grad_batches: int = 1
                    ) -> int:
    """Optimizer steps per epoch: Lightning steps after every `accumulate_grad_batches` batches and after the last
    batch of the epoch."""
    return math.ceil(batches_per_epoch(train_clips, world_size, batch_size_per_gpu) / accumulate_grad_batches)


def official_niter(train_clips: int, world_size: int, batch_size_per_gpu: int, accumulate_grad_batches: int = 1
                   ) -> int:
    """The official `niter_per_epoch = len(train) // batch_size_per_gpu // nproc + 1`, with the accumulated batches
    counted as one (the official code had no accumulation)."""
    return train_clips // batch_size_per_gpu // world_size // accumulate_grad_batches + 1


@dataclass(frozen=True)
class FinetuneSchedule:
    """The per-step LR of one run. `base_lr`: the scaled LR; `warmup_steps` and `table_steps`: the warm-up length and
    the end of the cosine (step of LR 1e-6); `total_steps`: optimizer steps the run trains (max_epochs x steps per
    epoch, steps 0 .. total_steps - 1)."""

    base_lr: float
    warmup_steps: int
    table_steps: int
    total_steps: int
    table: str

    @classmethod
    def build(cls, base_lr: float, max_epochs: int, warmup_epochs: int, steps: int, niter: int,
              table: str) -> "FinetuneSchedule":
        """`steps`: real optimizer steps per epoch; `niter`: the official table's steps per epoch (`official_niter`);
        `table`: "official" (the official table, quirk kept) or "exact" (real steps, 1e-6 on the last step)."""
        if table not in TABLES:
            raise ValueError(f"table must be one of {TABLES}, got {table!r}")
        if not 0 <= warmup_epochs < max_epochs:
            raise ValueError(f"--warmup_epochs must lie in [0, --max_epochs) = [0, {max_epochs}), got "
                             f"{warmup_epochs}")
        total = max_epochs * steps
        if table == "official":
            return cls(base_lr, warmup_epochs * niter, max_epochs * niter, total, table)
        # the last trained step is total - 1: the cosine ends there (a one-step run trains at base_lr)
        return cls(base_lr, warmup_epochs * steps, max(total - 1, 1), total, table)

    def lr(self, step: int) -> float:
        """The LR of optimizer step `step` (from 0), before each group's `lr_scale`."""
        return learning_rate(step, self.base_lr, self.warmup_steps, self.table_steps, FINAL_LR)

    def describe(self) -> str:
        reach = ("ends at 1e-6 on the last step" if self.table == "exact" else
                 f"official table of {self.table_steps} steps for {self.total_steps} trained (ends at "
                 f"{self.lr(self.total_steps - 1):.3g}, not 1e-6)")
        return (f"per step: linear warm-up from 0 over {self.warmup_steps} steps to {self.base_lr:g}, then cosine to "
                f"1e-6; {reach}")


__all__ = ["FinetuneSchedule", "TABLES", "batches_per_epoch", "global_batch", "official_niter", "samples_per_rank",
           "steps_per_epoch"]
