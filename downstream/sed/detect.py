"""Events in recordings of any length with a trained `sed` model (`atst-downstream detect`).

    detector = Detector.load("runs/desed")                    # the run folder or its best.ckpt
    scores, events = detector.detect(wave)                    # [T, C] at 40 ms; [(onset_s, offset_s, label, score)]

The model file holds the class names, the per-class thresholds and median filters chosen when it was trained
(`decode.scores_to_events` applies them), and the frame length. A recording is scored in contiguous 10 s windows
(`SedModel.recording_scores`); a long one is scored a block of windows at a time, so memory stays flat. Each event's
score is the highest frame probability of its class within it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from atst import load_checkpoint
from atst.checkpoint import CheckpointError

from ..finetune.model import trainable_encoder
from ..model_file import HEAD_PREFIX, MODEL_FORMAT, resolve_model_path
from .decode import scores_to_events
from .model import SedModel

Event = tuple[float, float, str, float]
BLOCK_WINDOWS = 60  # 10 minutes of audio scored at a time
NOT_SED = ("is not a sound event detection model; train one with `atst-downstream sed` and pass its --out folder "
           "(or the best.ckpt in it)")


@dataclass
class Detector:
    """A trained `sed` model and its decoding settings."""

    model: SedModel
    labels: list[str]
    thresholds: list[float]
    median_filters: list[int]
    frame_seconds: float
    path: Path
    info: dict

    @classmethod
    def load(cls, path: Union[str, Path], device: Union[str, torch.device] = "cpu",
             drop_path_rate: Optional[float] = None) -> "Detector":
        """Read a `sed` model file (or the run folder holding it); anything else is a `CheckpointError` naming
        what the file is. `drop_path_rate`: the encoder's stochastic depth in train mode (None: the file's)."""
        path = resolve_model_path(path)
        loaded = load_checkpoint(path)
        raw = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        info = raw.get("downstream") if isinstance(raw, dict) and raw.get("format") == MODEL_FORMAT else None
        if not isinstance(info, dict) or info.get("kind") != "sed":
            raise CheckpointError(f"{path} {NOT_SED}")
        labels = info.get("labels")
        if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
            raise CheckpointError(f"{path}: downstream.labels must be a non-empty list of class names")
        thresholds, medians = info.get("thresholds"), info.get("median_filters")
        if not (isinstance(thresholds, list) and len(thresholds) == len(labels)
                and all(isinstance(t, (int, float)) and 0 <= t <= 1 for t in thresholds)):
            raise CheckpointError(f"{path}: downstream.thresholds must be {len(labels)} probabilities")
        if not (isinstance(medians, list) and len(medians) == len(labels)
                and all(isinstance(m, int) and m >= 1 for m in medians)):
            raise CheckpointError(f"{path}: downstream.median_filters must be {len(labels)} frame counts >= 1")
        frame_seconds = info.get("frame_seconds")
        if not isinstance(frame_seconds, float) or not math.isclose(frame_seconds, 0.04):
            raise CheckpointError(f"{path}: downstream.frame_seconds must be 0.04 (ATST-Frame tokens), got "
                                  f"{frame_seconds!r}")
        encoder = loaded.encoder if drop_path_rate is None else trainable_encoder(loaded, drop_path_rate)
        model = SedModel(encoder, loaded.frontend_config, len(labels), "all")
        head = {key[len(HEAD_PREFIX):]: value for key, value in raw["state_dict"].items()
                if key.startswith(HEAD_PREFIX)}
        try:
            model.head.load_state_dict(head)
        except RuntimeError as error:
            raise CheckpointError(f"{path}: the head does not fit {len(labels)} classes on this encoder: "
                                  f"{error}") from None
        model.requires_grad_(False).eval().to(device)
        return cls(model, list(labels), [float(t) for t in thresholds], [int(m) for m in medians],
                   float(frame_seconds), path, dict(info))

    def scores(self, wave: Tensor) -> Tensor:
        """Strong probabilities `[T, C]` of one recording `[N]` (16 kHz), T = its duration / 40 ms."""
        block = BLOCK_WINDOWS * self.model.window_samples
        parts = [self.model.recording_scores([wave[start : start + block]])[0]
                 for start in range(0, max(int(wave.shape[-1]), 1), block)]
        return torch.cat(parts)

    def events(self, scores: Tensor, seconds: float) -> list[Event]:
        """The model's events in `scores` `[T, C]` of a recording of `seconds`, each with its score."""
        array = scores.double().numpy()
        found = scores_to_events(array, self.labels, threshold=self.thresholds, median=self.median_filters,
                                 frame_seconds=self.frame_seconds, duration=seconds)
        out = []
        for onset, offset, label in found:
            column = self.labels.index(label)
            first = int(math.floor(onset / self.frame_seconds + 1e-6))
            last = max(int(math.ceil(offset / self.frame_seconds - 1e-6)), first + 1)
            out.append((onset, offset, label, float(array[first:last, column].max())))
        return out

    def detect(self, wave: Tensor) -> tuple[Tensor, list[Event]]:
        seconds = int(wave.shape[-1]) / self.model.backbone.sample_rate
        scores = self.scores(wave)
        return scores, self.events(scores, seconds)


def events_tsv(rows: Sequence[tuple[str, Event]]) -> str:
    """`filename onset offset event_label score` (tab-separated, header first, seconds to 3 decimals)."""
    lines = ["filename\tonset\toffset\tevent_label\tscore"]
    lines += [f"{name}\t{on:.3f}\t{off:.3f}\t{label}\t{score:.4f}" for name, (on, off, label, score) in rows]
    return "\n".join(lines) + "\n"


def audacity_labels(events: Sequence[Event]) -> str:
    """An Audacity label track: `onset<TAB>offset<TAB>label` per event."""
    return "".join(f"{on:.3f}\t{off:.3f}\t{label}\n" for on, off, label, _ in events)


def plot_recording(path: Path, scores: Tensor, events: Sequence[Event], labels: Sequence[str],
                   thresholds: Sequence[float], frame_seconds: float, title: str) -> Path:
    """A PNG of each class's probability over time (one row per class) with its threshold and detected events."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from atst.fileio import atomic_open

    rows = len(labels)
    figure, axes = plt.subplots(rows, 1, figsize=(12, 0.9 * rows + 1.2), sharex=True, squeeze=False)
    times = (np.arange(scores.shape[0]) + 0.5) * frame_seconds
    for row, (label, axis) in enumerate(zip(labels, axes[:, 0])):
        axis.plot(times, scores[:, row].numpy(), linewidth=0.8)
        axis.axhline(thresholds[row], color="grey", linestyle=":", linewidth=0.8)
        for on, off, name, _ in events:
            if name == label:
                axis.axvspan(on, off, color="tab:orange", alpha=0.3)
        axis.set_ylim(0, 1)
        axis.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
        axis.set_yticks([])
    axes[-1, 0].set_xlabel("time (s)")
    axes[0, 0].set_title(title, fontsize=9)
    figure.tight_layout()
    with atomic_open(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=90)
    plt.close(figure)
    return path


def output_stems(sources: Sequence[Path]) -> list[str]:
    """A distinct file stem per recording for its label file and plot (`name`, then `name-2`, ... on clashes)."""
    seen: dict[str, int] = {}
    stems = []
    for source in sources:
        stem = source.stem or "recording"
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return stems


def describe(detector: Detector) -> dict[str, Any]:
    return {"model": str(detector.path), "labels": detector.labels, "thresholds": detector.thresholds,
            "median_filters": detector.median_filters, "frame_seconds": detector.frame_seconds,
            "task": detector.info.get("task")}


__all__ = ["BLOCK_WINDOWS", "Detector", "audacity_labels", "describe", "events_tsv", "output_stems",
           "plot_recording"]
