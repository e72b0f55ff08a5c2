"""The LightningModule of fine-tuning: optimizer groups with layer-wise LR decay, the per-step LR, the loss, and a
validation after every epoch with the choice of the model to report.

Validation is run by this module, not by Lightning's validation loop, and it is triggered by the optimizer step:
when a step ends an epoch (step = e x steps per epoch), and, at the start of a resumed run, for an epoch whose last
step is in the checkpoint but whose validation is not (a run killed between the two). Every rank takes part
(`evaluate.evaluate` gathers their shares); the history, the best record and the validated epochs go into every
checkpoint (`finetune` entry), so a resumed run neither repeats nor misses an epoch's validation.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Any, Optional

import torch
from torch import Tensor

from atst.training.corpus_datasets import SkippedFiles
from atst.training.distributed import is_distributed
from atst.training.lightning import pl, rank_zero_info
from atst.training.optim import layer_decay_groups, set_learning_rate

from .evaluate import Scores, clip_loss, evaluate
from .model import FinetuneModel
from .model_files import ModelFiles
from .schedule import FinetuneSchedule

log = logging.getLogger(__name__)
MOMENTUM = 0.9
CHECKPOINT_KEY = "finetune"


def selected(record: dict, rule: str) -> dict:
    """The `selected` entry of the model file and results: epoch (from 1), step, and the rule that chose it."""
    return {"epoch": record["epoch"], "step": record["step"], "rule": rule}


def optimizer_groups(model: FinetuneModel, layerwise_lr: float) -> list[dict]:
    """The official `layer_wise_lr_groups` (`atst.training.optim.layer_decay_groups`, scheme "finetune": embeddings
    d^12, block k d^(12-k), final norm d, head 1) or, with `layerwise_lr` 0, one group at scale 1."""
    if layerwise_lr > 0:
        return layer_decay_groups(model.encoder, layerwise_lr, model.encoder.config.depth, head=model.head,
                                  scheme="finetune")
    return [{"params": [p for p in model.parameters() if p.requires_grad], "lr_scale": 1.0, "name": "all"}]


class FinetuneModule(pl.LightningModule):
    """Fine-tuning of `model` (see the module docstring).

    Args:
        model: encoder + read-out + head.
        hparams: every setting of the run (plain values; what `last.ckpt` stores and a resume compares).
        schedule: the per-step LR.
        steps_per_epoch: optimizer steps per epoch.
        metric: "top1_acc" or "mAP"; `bce`: the loss is BCE (multi-label or mixup) rather than cross-entropy.
        selection: "best" (keep the best validation epoch) or "last".
        files: where rank 0 keeps the best model so far (`ModelFiles`; None: nowhere, for tests and benchmarks).
    """

    def __init__(self, model: FinetuneModel, hparams: dict, schedule: FinetuneSchedule, steps_per_epoch: int,
                 metric: str, bce: bool, selection: str, files: Optional[ModelFiles] = None) -> None:
        super().__init__()
        self.model = model
        self.save_hyperparameters(hparams)
        self.schedule, self.steps_per_epoch = schedule, steps_per_epoch
        self.metric, self.bce, self.selection, self.files = metric, bce, selection, files
        self.history: list[dict] = []  # one record per validated epoch
        self.best: Optional[dict] = None  # the record of the selected epoch so far ("best" selection)
        self.skipped = SkippedFiles()
        self._loss_sum, self._loss_count = 0.0, 0
        self._step_before_batch = 0
        self._last_batch_time: Optional[float] = None

    @property
    def max_epochs(self) -> int:
        return self.schedule.total_steps // self.steps_per_epoch

    # ------------------------------------------------------------------------------------------------ optim
    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(optimizer_groups(self.model, self.hparams.layerwise_lr), lr=self.schedule.base_lr,
                               momentum=MOMENTUM, weight_decay=0.0)

    # ------------------------------------------------------------------------------------------------ steps
    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        lr = self.schedule.lr(self.global_step)
        set_learning_rate(self.trainer.optimizers[0], lr)
        self.skipped.note(batch["skipped"])
        rows = 0 if batch["mel"] is None else int(batch["mel"].shape[0])
        if rows >= (1 if is_distributed() else 2):
            loss = self.compute_loss(batch)
            self._loss_sum += float(loss.detach()) * rows
            self._loss_count += rows
        else:
            loss = self._idle_loss(rows)
        now = time.perf_counter()
        metrics = {"loss": loss.detach(), "lr": lr}
        if self._last_batch_time is not None:
            metrics["samples_per_sec"] = rows * self.trainer.world_size / max(now - self._last_batch_time, 1e-9)
        self._last_batch_time = now
        self.log_dict(metrics, on_step=True, on_epoch=False, batch_size=max(rows, 1))
        return loss

    def compute_loss(self, batch: dict) -> Tensor:
        """The training loss of a batch with clips (`data.collate_mels`): the task loss (`clip_loss`)."""
        return clip_loss(self.model(batch["mel"], batch["frames"]), batch["targets"], self.bce)

    def _idle_loss(self, rows: int) -> Tensor:
        """A zero loss touching every trainable tensor, for a batch with too few decodable clips (none under DDP,
        fewer than two for batch norm in one process): the step and its collectives happen on every rank, no
        gradient moves anything. Under DDP the head still runs on no rows, so its batch-norm reduction matches."""
        log.warning("step %d: a batch of %d decodable clip(s) trains nothing on this rank", self.global_step, rows)
        zero = sum(p.sum() for p in self.model.parameters() if p.requires_grad) * 0.0
        if is_distributed():
            empty = torch.zeros(0, self.model.embed_dim, device=self.device)
            zero = zero + self.model.head(empty).sum() * 0.0
        return zero

    def on_train_start(self) -> None:
        self.prune_best_files()
        self.validate_pending()

    def prune_best_files(self) -> None:
        """Rank 0: remove best-step files this run's state does not know (written after its last checkpoint by a
        run that was killed, or left by a run killed before its first one)."""
        if self.files is not None and self.trainer.is_global_zero:
            self.files.prune(self.best["step"] if self.best else None)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._step_before_batch = self.global_step

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = self.global_step
        if step != self._step_before_batch and step % self.steps_per_epoch == 0:
            self.validate_epoch(step // self.steps_per_epoch)

    # ------------------------------------------------------------------------------------------- validation
    @property
    def validated_epochs(self) -> int:
        return self.history[-1]["epoch"] if self.history else 0

    def validate_pending(self) -> None:
        """Validate the epoch that ended at the current step if that has not been done (a resumed run)."""
        epoch = self.global_step // self.steps_per_epoch
        if epoch > self.validated_epochs and self.global_step == epoch * self.steps_per_epoch:
            self.validate_epoch(epoch)

    def evaluate_split(self, split: str) -> Scores:
        """Scores of the model as it is on `split` ("valid" or "test"); a collective call under DDP."""
        loader = self.trainer.datamodule.eval_loader(split)
        return evaluate(self.model, loader, self.device, self.trainer.precision, self.metric, self.bce,
                        on_skipped=self.skipped.note)

    def _epoch_train_loss(self) -> float:
        totals = torch.tensor([self._loss_sum, float(self._loss_count)], dtype=torch.float64, device=self.device)
        if is_distributed():
            torch.distributed.all_reduce(totals)
        self._loss_sum, self._loss_count = 0.0, 0
        return float(totals[0] / totals[1]) if totals[1] > 0 else math.nan

    def validate_epoch(self, epoch: int) -> None:
        """Score epoch `epoch` (from 1) on validation, record it, keep it when it is the best so far."""
        scores = self.evaluate_split("valid")
        step = self.global_step
        record = {"epoch": epoch, "step": step, "lr": self.schedule.lr(max(step - 1, 0)),
                  "train_loss": self._epoch_train_loss(), "valid": scores.metric, "valid_loss": scores.loss,
                  **scores.extra}
        self.history.append(record)
        for logger in self.trainer.loggers:  # directly: self.log is not allowed in every hook this runs from
            logger.log_metrics({f"valid_{self.metric}": scores.metric, "valid_loss": scores.loss,
                                **{f"valid_{key}": value for key, value in scores.extra.items()}}, step=step)
        improved = self.selection == "best" and math.isfinite(scores.metric) and (
            self.best is None or scores.metric > self.best["valid"])
        if improved:
            self.best = record
            if self.trainer.is_global_zero and self.files is not None:
                self.files.save_best(self.model, step, {"selected": selected(record, self.selection),
                                                        "valid": record["valid"], "test": None})
        best = self.best if self.selection == "best" else None
        rank_zero_info(f"epoch {epoch}/{self.max_epochs} (step {step}): train loss {record['train_loss']:.4f}, "
                       f"valid {self.metric} {scores.metric:.4f} ({scores.clips} clips)"
                       + (f"; best {best['valid']:.4f} at epoch {best['epoch']}" if best else ""))

    def run_fit(self, trainer: "pl.Trainer", data: "pl.LightningDataModule", resume: Optional[tuple]) -> Optional[int]:
        """`trainer.fit` from `resume` (last.ckpt, step) or afresh; the exit status when a signal stopped it
        (resumable), else None."""
        from atst.training.interrupt import StopOnSignal, exit_status

        trainer.fit(self, datamodule=data, ckpt_path=str(resume[0]) if resume else None, weights_only=True)
        if any(isinstance(callback, StopOnSignal) and callback.stopped_by for callback in trainer.callbacks):
            return exit_status(trainer)
        return None

    def restore_selected(self) -> tuple[dict, str]:
        """After the fit, on every rank: validate a pending last epoch, put the selected model's weights back (the
        best-step file rank 0 wrote) and return its record and the rule that chose it."""
        self.to(self.trainer.strategy.root_device)
        self.prune_best_files()
        self.validate_pending()
        if self.selection == "best" and self.best is not None:
            if is_distributed():
                torch.distributed.barrier()  # rank 0 wrote the file
            self.files.load(self.model, self.best["step"])
            return self.best, "best"
        return self.history[-1], ("last" if self.selection == "last" else
                                  "last (no epoch had a finite validation metric)")

    # ------------------------------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[CHECKPOINT_KEY] = {"history": list(self.history), "best": self.best}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get(CHECKPOINT_KEY)
        if not isinstance(state, dict) or not isinstance(state.get("history"), list):
            raise ValueError(f"the checkpoint has no fine-tuning state ({CHECKPOINT_KEY!r}); it was not written by "
                             f"atst-downstream finetune")
        self.history = list(state["history"])
        self.best = state.get("best")


__all__ = ["CHECKPOINT_KEY", "FinetuneModule", "MOMENTUM", "optimizer_groups", "selected"]
