"""Predicting folders of audio files: planned up front, decoded batch by batch, bad files skipped and named once.

Inputs are files and folders (searched recursively) in any format `atst.audio_io` reads, at any rate and channel
count (`atst.audio_io.find_audio_files`; a file named twice, directly and through its folder, is predicted once).
Files are probed from their headers and grouped by length into batches of at most `batch_seconds` of audio
(`atst.batch_embed.plan_batches`); a batch is decoded only when its turn comes, so memory holds one batch whatever
the number of files (a file longer than the budget is a batch of its own). A file that cannot be used (undecodable,
empty, NaN/Inf samples, amplitude that overflows the front end, too short for the model's read-out) is skipped with
its reason, once; the others are predicted.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from torch import Tensor
from tqdm import tqdm

from atst.audio_io import SAMPLE_RATE, AudioDecodeError, find_audio_files, read_audio
from atst.batch_embed import plan_batches, probe_samples

from .predictor import Predictor


@dataclass(frozen=True)
class FilePrediction:
    """One recording's result: its path (as found under the inputs), duration in seconds (16 kHz), the number of
    windows read out (1 without windows) and the probability of each label `[C]` in label order."""

    path: Path
    seconds: float
    windows: int
    probabilities: Tensor


@dataclass
class PredictionReport:
    """Predictions in input order, and the files skipped (`"path: reason"`, each once)."""

    predictions: list[FilePrediction] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def find_inputs(paths: Sequence[str]) -> list[Path]:
    """Every audio file under `paths` (files and folders), each once (by resolved path), in the order found.
    A missing path, a named file of an unsupported format, or no audio file at all is an error naming it."""
    found: dict[Path, Path] = {}
    for source, _ in find_audio_files(paths):
        found.setdefault(source.resolve(), source)
    if not found:
        raise FileNotFoundError(f"no audio files under {', '.join(map(str, paths))}")
    return list(found.values())


def predict_files(predictor: Predictor, sources: Sequence[Path], batch_seconds: float = 120.0,
                  window_seconds: Optional[float] = None, aggregate: str = "mean",
                  progress: bool = True) -> PredictionReport:
    """Predict every file of `sources` (`find_inputs`); see the module docstring. `window_seconds`: read long
    recordings in windows (`Predictor.recording_probabilities`)."""
    if not batch_seconds > 0 or not math.isfinite(batch_seconds):
        raise ValueError(f"--batch_seconds must be a positive number of seconds, got {batch_seconds!r}")
    budget = max(1, int(batch_seconds * SAMPLE_RATE))
    window = int(round(window_seconds * SAMPLE_RATE)) if window_seconds else None
    skipped: dict[int, str] = {}
    lengths: list[int] = []
    usable: list[int] = []
    for index, source in enumerate(sources):
        try:
            lengths.append(probe_samples(source))
            usable.append(index)
        except AudioDecodeError as error:
            skipped[index] = str(error)
    done: dict[int, FilePrediction] = {}
    with tqdm(total=len(sources), desc="predicting", unit="file", disable=not progress) as bar:
        bar.update(len(skipped))
        for batch in plan_batches(lengths, budget):
            members = _decode([usable[i] for i in batch], sources, skipped, predictor)
            _predict_members(predictor, members, sources, window, aggregate, budget, done, skipped)
            bar.update(len(batch))
    return PredictionReport([done[i] for i in sorted(done)], [skipped[i] for i in sorted(skipped)])


def _decode(indices: list[int], sources: Sequence[Path], skipped: dict[int, str],
            predictor: Predictor) -> list[tuple[int, Tensor]]:
    """Decode the batch's files now (not before); the unusable ones go to `skipped` with their reason."""
    members = []
    for index in indices:
        try:
            wave = read_audio(sources[index], str(sources[index]))
        except AudioDecodeError as error:
            skipped[index] = str(error)
            continue
        reason = predictor.unusable(wave.shape[0])
        if reason:
            skipped[index] = f"{sources[index]}: {reason}"
        else:
            members.append((index, wave))
    return members


def _predict_members(predictor: Predictor, members: list[tuple[int, Tensor]], sources: Sequence[Path],
                     window: Optional[int], aggregate: str, budget: int, done: dict[int, FilePrediction],
                     skipped: dict[int, str]) -> None:
    """Predict recordings together; if that fails, each alone, so only the unusable one is skipped."""
    if not members:
        return
    try:
        probabilities, windows = predictor.recording_probabilities([wave for _, wave in members], window, aggregate,
                                                                   budget)
    except ValueError as error:
        if len(members) == 1:
            skipped[members[0][0]] = f"{sources[members[0][0]]}: {error}"
            return
        for member in members:
            _predict_members(predictor, [member], sources, window, aggregate, budget, done, skipped)
        return
    for (index, wave), row, count in zip(members, probabilities, windows):
        done[index] = FilePrediction(sources[index], wave.shape[0] / SAMPLE_RATE, count, row)


__all__ = ["FilePrediction", "PredictionReport", "find_inputs", "predict_files"]
