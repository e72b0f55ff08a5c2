"""The inference path of a downstream model file, rebuilt from the file alone: audio -> label probabilities.

    predictor = Predictor.load("runs/us8k")                       # the run folder or its best.ckpt
    probabilities = predictor.probabilities(audio, lengths)       # [B, N] 16 kHz (+ lengths [B]) -> [B, C]

The encoder is the one stored in the file (a fine-tuned one for `finetune` models); the read-out is the one the
head was trained on (`downstream.readout`, see `downstream.linear.Readout`): `official` reads the 12 s centre crop
of each clip in the official chunks, `hear` the whole clip pooled; then the head (batch norm + Linear) and softmax
(single-label models) or sigmoid (multi-label).

Recordings longer than the model was trained on (`recording_probabilities` with `window_samples`): cut into
ceil(length / window) windows of exactly the window's length, evenly spaced from the start to the end (the first
starts at 0, the last ends at the end, neighbours overlap by less than a window); each window is read out as one
clip and the windows' probabilities are aggregated per recording (mean, or max). A recording no longer than the
window is one window: the same numbers as without windows.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Optional, Sequence

import torch
from torch import Tensor

from atst.audio_io import SAMPLE_RATE
from atst.batch_embed import plan_batches
from atst.checkpoint import CheckpointError

from ..linear.head import head_from_state
from ..linear.readout import PRECISIONS, PROTOCOLS, READOUT_VERSION, Readout
from ..model_file import DownstreamModel, PathLike, read_model_file

CLIP_KINDS = ("linear", "finetune", "distill")  # model kinds whose head labels whole clips
AGGREGATES = ("mean", "max")


def resolve_predict_precision(precision: str, trained: str, device: torch.device) -> str:
    """"auto": the precision the head was trained on, on a GPU; fp32 on a CPU (bf16 matmuls are slow there and
    differ from fp32 by rounding only). "fp32" / "bf16": as given."""
    if precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return trained if device.type == "cuda" else "fp32"
    return precision


def window_starts(num_samples: int, window: int) -> list[int]:
    """First samples of the windows covering a recording (module docstring): `[0]` when it fits in one window."""
    if window < 1:
        raise ValueError(f"a window must hold at least one sample, got {window}")
    if num_samples <= window:
        return [0]
    count = math.ceil(num_samples / window)
    return [round(index * (num_samples - window) / (count - 1)) for index in range(count)]


class Predictor:
    """A model file's inference path (module docstring).

    Args:
        model: a read model file (`read_model_file`) of kind linear or finetune.
        device: where the encoder runs (the head runs on the CPU: it is one matrix).
        precision: "auto", "fp32" or "bf16" (`resolve_predict_precision`).
    """

    def __init__(self, model: DownstreamModel, device: torch.device | str = "cpu", precision: str = "auto") -> None:
        where = model.path
        if model.kind not in CLIP_KINDS:
            raise CheckpointError(f"{where} is a {model.kind!r} model; predict labels clips with the models "
                                  f"{' and '.join(CLIP_KINDS)} runs write")
        spec = model.readout
        if spec.protocol not in PROTOCOLS:
            raise CheckpointError(f"{where}: downstream.readout.protocol must be one of {PROTOCOLS}, got "
                                  f"{spec.protocol!r}")
        if spec.version > READOUT_VERSION:
            raise CheckpointError(f"{where} was written by a newer hear-atst (read-out version {spec.version}; this "
                                  f"one has {READOUT_VERSION}); upgrade hear-atst")
        device = torch.device(device)
        self.readout = Readout(model.checkpoint, spec.protocol, spec.n_blocks,
                               resolve_predict_precision(precision, spec.precision, device), device,
                               spec.clip_train_len)
        try:
            self.head = head_from_state(model.head_state)
        except ValueError as error:
            raise CheckpointError(f"{where}: the head: {error}") from None
        if self.head.embed_dim != self.readout.dim:
            raise CheckpointError(f"{where}: the head reads {self.head.embed_dim}-d embeddings but the recorded "
                                  f"read-out gives {self.readout.dim}-d ones")
        self.model = model

    @classmethod
    def load(cls, path: PathLike, device: torch.device | str = "cpu", precision: str = "auto") -> "Predictor":
        """The predictor of a model file or of the run folder holding `best.ckpt`."""
        return cls(read_model_file(path), device, precision)

    @property
    def labels(self) -> list[str]:
        return self.model.labels

    @property
    def multi_label(self) -> bool:
        return self.model.multi_label

    def unusable(self, num_samples: int) -> Optional[str]:
        """Why a clip of `num_samples` samples (16 kHz) cannot be read out as the head was trained, or None."""
        reason = self.readout.unusable(num_samples)
        # without linear's training hint (`; --protocol hear ...`): a trained model's read-out cannot be changed
        return None if reason is None else f"too short for this model's read-out: {reason.partition(';')[0]}"

    def describe(self) -> str:
        """One line: the read-out as recorded in the file (its branch included), precision and device."""
        settings = replace(self.readout.settings, branch=self.model.info["readout"].get("branch", "teacher"))
        return f"{settings.describe()} on {self.readout.device}"

    @torch.inference_mode()
    def logits(self, audio: Tensor, lengths: Tensor) -> Tensor:
        """`[B, N]` float32 16 kHz audio, `lengths` `[B]` valid samples -> `[B, C]` float32 logits (CPU)."""
        return self.head(self.readout(audio, lengths))

    def probabilities(self, audio: Tensor, lengths: Tensor) -> Tensor:
        """`[B, N]`, `[B]` -> `[B, C]`: softmax over the labels (single-label) or each label's sigmoid."""
        logits = self.logits(audio, lengths)
        return logits.sigmoid() if self.multi_label else logits.softmax(dim=-1)

    def recording_probabilities(self, waves: Sequence[Tensor], window_samples: Optional[int] = None,
                                aggregate: str = "mean", budget_samples: int = 120 * SAMPLE_RATE
                                ) -> tuple[Tensor, list[int]]:
        """Probabilities of whole recordings (1-D float32 16 kHz tensors): (`[len(waves), C]`, windows per
        recording). `window_samples`: cut each into windows (module docstring), else one clip each. Encoder calls
        hold at most `budget_samples` samples (longest x count), or one clip. Raises ValueError when any clip
        cannot be read out (NaN, overflowing amplitude); callers retry the recordings alone to find it."""
        if aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")
        pieces: list[Tensor] = []
        owners: list[int] = []
        for owner, wave in enumerate(waves):
            starts = window_starts(wave.shape[0], window_samples) if window_samples else [0]
            span = window_samples or wave.shape[0]
            pieces.extend(wave[start:start + span] for start in starts)
            owners.extend([owner] * len(starts))
        rows = torch.empty(len(pieces), len(self.labels))
        for call in plan_batches([piece.shape[0] for piece in pieces], budget_samples):
            lengths = torch.tensor([pieces[i].shape[0] for i in call])
            audio = torch.zeros(len(call), int(lengths.max()))
            for row, index in enumerate(call):
                audio[row, :pieces[index].shape[0]] = pieces[index]
            rows[call] = self.probabilities(audio, lengths)
        owner_index = torch.tensor(owners)
        counts = torch.bincount(owner_index, minlength=len(waves)).tolist()
        per_recording = [rows[owner_index == owner] for owner in range(len(waves))]
        reduce = (lambda x: x.mean(dim=0)) if aggregate == "mean" else (lambda x: x.amax(dim=0))
        return torch.stack([reduce(part) for part in per_recording]), counts


__all__ = ["AGGREGATES", "CLIP_KINDS", "Predictor", "resolve_predict_precision", "window_starts"]
