"""The LightningModule of `sed`: the per-step LR on every optimizer group, BCE on the strong and the weak part of each
batch (spec 1.8), the optional mean teacher, and after every epoch a validation that keeps the best model so far.

It is `downstream.finetune.module.FinetuneModule` (the epoch validation triggered by the optimizer step, the
history and best record in every checkpoint, the best-step model files, resume of a pending validation) with the
sound-event step, optimizer and validation score. The validation score is minus the mean validation BCE (strong
frames of strongly labelled recordings, clip labels of weakly labelled ones): higher is better, as the fine-tuning
module selects. Validation runs on whole recordings, windowed as `detect` runs them.
"""
from __future__ import annotations

import copy
import math
import time
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from atst.training.distributed import gather_objects, gather_objects_to_zero
from atst.training.ema import ema_update
from atst.training.optim import set_learning_rate

from ..datasets.strong import StrongClip, encode_events
from ..finetune.evaluate import Scores, autocast
from ..finetune.model_files import ModelFiles
from ..finetune.module import FinetuneModule
from ..finetune.schedule import FinetuneSchedule
from .model import SedModel
from .recipe import SedRecipe, build_optimizer

METRIC = "neg_bce"  # minus the mean validation BCE
MEAN_TEACHER_RAMP_FRACTION = 0.5  # the consistency weight ramps up over the first half of the run (ATST-SED: 50 of 200 epochs is 1/4; its stage 1 is longer)


def bce(probabilities: Tensor, targets: Tensor) -> Tensor:
    """`torch.nn.BCELoss` on probabilities (the official loss), in float32 with autocast off (CUDA autocast refuses
    BCE on probabilities under bf16 / fp16)."""
    with torch.autocast(device_type=probabilities.device.type, enabled=False):
        return F.binary_cross_entropy(probabilities.float().clamp(0.0, 1.0), targets.float())


def sigmoid_rampup(step: int, ramp_steps: int) -> float:
    """exp(-5 (1 - t)^2), t = step / ramp_steps clipped to 1 (the mean-teacher ramp-up of the DCASE baseline)."""
    if ramp_steps <= 0:
        return 1.0
    t = min(max(step / ramp_steps, 0.0), 1.0)
    return float(math.exp(-5.0 * (1.0 - t) ** 2))


def recording_targets(clip: StrongClip, frames: int, num_classes: int) -> tuple[Optional[Tensor], Optional[Tensor]]:
    """(frame targets `[frames, C]` of a strongly labelled recording, clip targets `[C]` of a weakly labelled one)."""
    if clip.events is not None:
        return encode_events(clip.events, frames, num_classes), None
    if clip.weak is not None:
        weak = torch.zeros(num_classes)
        weak[list(clip.weak)] = 1.0
        return None, weak
    return None, None


@torch.no_grad()
def score_recordings(model: Any, loader: Any, device: torch.device, precision: str,
                     on_skipped: Optional[Any] = None, trim: bool = True,
                     reduce: Optional[Callable[[int, Tensor], Any]] = None,
                     to_rank_zero: bool = False) -> dict[int, Any]:
    """Strong probabilities `[T, C]` of every recording of this rank's share (`data.recording_loader`), gathered
    from every rank: {clip index: scores}, or {clip index: reduce(index, scores)} when `reduce` is given (each
    rank reduces its own recordings, so only the reductions travel). `to_rank_zero`: only rank 0 receives the
    gathered scores, the other ranks get {} (their memory stays that of their own share). A collective call under
    DDP; the model is left in the mode it had."""
    was_training = model.training
    model.eval()
    mine: dict[int, Any] = {}
    try:
        for items in loader:
            bad = [(item["key"], item["error"]) for item in items if item["audio"] is None]
            if bad and on_skipped is not None:
                on_skipped(bad)
            good = [item for item in items if item["audio"] is not None]
            if not good:
                continue
            with autocast(precision, device):
                scores = model.recording_scores([item["audio"] for item in good], trim)
            mine.update({item["index"]: reduce(item["index"], score) if reduce is not None else score
                         for item, score in zip(good, scores)})
    finally:
        model.train(was_training)
    merged: dict[int, Any] = {}
    for part in (gather_objects_to_zero if to_rank_zero else gather_objects)(mine):
        merged.update(part)
    return merged


def recording_loss(clip: StrongClip, probabilities: Tensor, num_classes: int) -> Optional[float]:
    """The BCE of one validation recording: its frames when strongly labelled, its strongest frame per class
    against its clip labels when weakly labelled (the scores `[T, C]` hold no weak head output), else None."""
    frames, weak = recording_targets(clip, probabilities.shape[0], num_classes)
    if frames is not None:
        return float(bce(probabilities, frames))
    if weak is not None:
        return float(bce(probabilities.max(dim=0).values, weak))
    return None


def validation_scores(losses: dict[int, Optional[float]]) -> Scores:
    """Minus the mean BCE over the validation recordings with labels (`Scores.metric`), the BCE itself (`loss`)."""
    values = [value for _, value in sorted(losses.items()) if value is not None]
    if not values:
        return Scores(math.nan, math.nan, 0)
    loss = float(np.mean(values))
    return Scores(-loss, loss, len(values))


class SedModule(FinetuneModule):
    """`sed` training of `model` (module docstring). `recipe`: the training settings; `teacher`: the mean teacher
    (a copy of the model, EMA of its weights) or None."""

    def __init__(self, model: SedModel, hparams: dict, schedule: FinetuneSchedule, steps_per_epoch: int,
                 recipe: SedRecipe, valid_clips: list[StrongClip], files: Optional[ModelFiles] = None) -> None:
        super().__init__(model, hparams, schedule, steps_per_epoch, METRIC, True, "best", files)
        self.recipe, self.valid_clips = recipe, list(valid_clips)
        self.teacher: Optional[SedModel] = None
        if recipe.mean_teacher:
            self.teacher = copy.deepcopy(model).requires_grad_(False).eval()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return build_optimizer(self.model, self.recipe)

    def train(self, mode: bool = True) -> "SedModule":
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        return self

    def losses(self, batch: dict) -> dict[str, Tensor]:
        """The losses of one batch: `strong` and `weak` BCE (a part the batch lacks gives 0 while touching its
        head, so every trainable tensor takes part under DDP), `consistency` with the mean teacher, `loss` the sum."""
        strong, weak, _ = self.model(batch["audio"])
        return self.loss_parts(batch, strong, weak)

    def loss_parts(self, batch: dict, strong: Tensor, weak: Tensor) -> dict[str, Tensor]:
        """`losses` of the student's strong `[B, T, C]` and weak `[B, C]` probabilities on `batch`."""
        role = batch["role"].to(strong.device)
        parts = {}
        for name, rows, prediction, target in (("strong", role == 0, strong, batch["strong"]),
                                                ("weak", role == 1, weak, batch["weak"])):
            parts[name] = bce(prediction[rows], target.to(strong.device)[rows]) if bool(rows.any()) \
                else prediction.sum() * 0.0
        loss = parts["strong"] + parts["weak"]
        if self.teacher is not None:
            with torch.no_grad():
                teacher_strong, teacher_weak, _ = self.teacher(batch["audio"])
            weight = self.recipe.mean_teacher_weight * sigmoid_rampup(
                self.global_step, int(self.schedule.total_steps * MEAN_TEACHER_RAMP_FRACTION))
            parts["consistency"] = F.mse_loss(strong.float(), teacher_strong.float()) + \
                F.mse_loss(weak.float(), teacher_weak.float())
            loss = loss + weight * parts["consistency"]
        parts["loss"] = loss
        return parts

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        lr = self.schedule.lr(self.global_step)
        set_learning_rate(self.trainer.optimizers[0], lr)
        self.skipped.note(batch["skipped"])
        rows = 0 if batch["audio"] is None else int(batch["audio"].shape[0])
        if rows:
            parts = self.losses(batch)
            loss = parts["loss"]
            self._loss_sum += float(loss.detach()) * rows
            self._loss_count += rows
        else:
            loss = sum(p.sum() for p in self.model.parameters() if p.requires_grad) * 0.0
            parts = {"loss": loss}
        now = time.perf_counter()
        metrics = {f"{name}_loss" if name != "loss" else "loss": value.detach() for name, value in parts.items()}
        metrics["lr"] = lr
        if self._last_batch_time is not None:
            metrics["samples_per_sec"] = rows * self.trainer.world_size / max(now - self._last_batch_time, 1e-9)
        self._last_batch_time = now
        self.log_dict(metrics, on_step=True, on_epoch=False, batch_size=max(rows, 1))
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.teacher is not None and self.global_step != self._step_before_batch:
            ema_update(self.teacher, self.model, self.recipe.mean_teacher_ema)
        super().on_train_batch_end(outputs, batch, batch_idx)

    def split_scores(self, split: str, trim: bool = True,
                     reduce: Optional[Callable[[int, Tensor], Any]] = None, to_rank_zero: bool = False,
                     model: Optional[Any] = None) -> dict[int, Any]:
        """{clip index: strong scores `[T, C]`} of every recording of `split` ("valid" or "test"); `trim` False
        keeps the scores of the padding (`SedModel.recording_scores`); `reduce`, `to_rank_zero`: see
        `score_recordings`; `model`: what scores them (anything with `recording_scores`; default: the model
        trained)."""
        loader = self.trainer.datamodule.eval_loader(split)
        return score_recordings(self.model if model is None else model, loader, self.device, self.trainer.precision,
                                self.skipped.note, trim, reduce, to_rank_zero)

    def evaluate_split(self, split: str) -> Scores:
        """The validation score of `split`: each rank turns its recordings into losses, only those are gathered."""
        clips = self.trainer.datamodule.split_clips(split)
        classes = self.model.num_classes
        return validation_scores(self.split_scores(split, reduce=lambda index, scores: recording_loss(
            clips[index], scores, classes)))


__all__ = ["METRIC", "SedModule", "bce", "recording_loss", "recording_targets", "score_recordings",
           "sigmoid_rampup", "validation_scores"]
