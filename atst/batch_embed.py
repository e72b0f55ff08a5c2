"""Embedding folders of audio files (`atst embed`): planned up front, decoded batch by batch, written atomically.

* Outputs mirror each input root: `OUT/<path relative to its root>.{scene,timestamp_embeddings,timestamps}.npy`.
  Two inputs that would write the same output are refused before any work, naming both.
* Files are probed (header only) to plan batches of similar length; each batch is decoded only when its turn comes,
  so memory holds one batch, whatever the number of files.
* A file that cannot be used (undecodable, empty, NaN/Inf samples, overflowing amplitude) is skipped and reported
  once; the others are written.
* Each output is written atomically (temporary file, fsync, rename); a file whose outputs all exist was completed
  by an earlier run and is kept unless `overwrite`. Temporaries left by killed runs are removed.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import soundfile
import torch
from tqdm import tqdm

from .audio_io import SAMPLE_RATE, AudioDecodeError, find_audio_files, read_audio
from .embedding import Embedder
from .fileio import atomic_open, remove_stale_temporaries

SCENE_OUTPUT = "scene"
TIMESTAMP_OUTPUTS = ("timestamp_embeddings", "timestamps")


@dataclass(frozen=True)
class EmbedJob:
    """One input file and where its outputs go (`<target>.<kind>.npy`)."""

    source: Path
    target: Path

    def output(self, kind: str) -> Path:
        return self.target.with_name(f"{self.target.name}.{kind}.npy")


@dataclass
class EmbedReport:
    """What a run did: outputs written, files skipped as unusable (with the reason), files kept as complete."""

    written: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)


def plan_jobs(paths: Sequence[str], out_dir: Path) -> list[EmbedJob]:
    """One job per distinct input file; refuses (ValueError) two inputs that would write the same outputs."""
    jobs: dict[Path, EmbedJob] = {}
    seen: dict[Path, Path] = {}
    for source, relative in find_audio_files(paths):
        resolved = source.resolve()
        if resolved in seen:  # the same file named twice (a file and its folder): one job
            continue
        target = out_dir / relative
        if target in jobs:
            raise ValueError(f"{jobs[target].source} and {source} would both write {target}.*.npy; embed them in "
                             f"separate runs (--out) or pass their common parent folder")
        seen[resolved] = target
        jobs[target] = EmbedJob(source, target)
    return list(jobs.values())


def probe_samples(path: Path) -> int:
    """Samples the file has once resampled to 16 kHz, from its header only (no decoding)."""
    try:
        info = soundfile.info(str(path))
    except Exception as error:  # libsndfile raises several types for corrupt input
        raise AudioDecodeError(f"{path}: cannot decode audio ({type(error).__name__}: {error})") from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise AudioDecodeError(f"{path}: the file holds no audio samples")
    return max(1, math.ceil(info.frames * SAMPLE_RATE / info.samplerate))


def plan_batches(lengths: Sequence[int], budget_samples: int) -> list[list[int]]:
    """Indices grouped so that (longest in batch) x (batch size) <= budget; sorted by length to limit padding."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    for index in order:
        if batches:
            current = batches[-1]
            longest = max(lengths[index], lengths[current[-1]])
            if longest * (len(current) + 1) <= budget_samples:
                current.append(index)
                continue
        batches.append([index])
    return batches


def _equal_length_groups(waves: list[torch.Tensor], official: bool) -> Iterator[list[int]]:
    """Official mode has no per-clip lengths: only clips of identical length share an encoder call."""
    if not official:
        yield list(range(len(waves)))
        return
    groups: dict[int, list[int]] = {}
    for index, wave in enumerate(waves):
        groups.setdefault(wave.shape[0], []).append(index)
    yield from groups.values()


class FileEmbedder:
    """Embeds jobs with one `Embedder`, writing `.npy` outputs (float32; timestamps in ms)."""

    def __init__(self, embedder: Embedder, timestamps: bool = True) -> None:
        self.embedder = embedder
        self.kinds = (SCENE_OUTPUT,) + (TIMESTAMP_OUTPUTS if timestamps else ())

    def is_complete(self, job: EmbedJob) -> bool:
        return all(job.output(kind).is_file() for kind in self.kinds)

    def embed_batch(self, jobs: list[EmbedJob], waves: list[torch.Tensor]) -> list[dict[str, np.ndarray]]:
        """Outputs per job of a batch `waves` (1-D, 16 kHz); raises ValueError if any clip is unusable."""
        lengths = torch.tensor([wave.shape[0] for wave in waves])
        audio = torch.zeros(len(waves), int(lengths.max()))
        for row, wave in enumerate(waves):
            audio[row, : wave.shape[0]] = wave
        ragged = lengths if bool((lengths != lengths.max()).any()) else None
        scene = self.embedder.scene_embeddings(audio, ragged).cpu()
        outputs = [{SCENE_OUTPUT: scene[row].numpy()} for row in range(len(jobs))]
        if len(self.kinds) > 1:
            tokens, stamps = self.embedder.timestamp_embeddings(audio, ragged)
            counts = (self.embedder.token_counts(lengths.tolist()) if self.embedder.mode == "hear"
                      else [tokens.shape[1]] * len(jobs))
            for row, count in enumerate(counts):
                outputs[row]["timestamp_embeddings"] = tokens[row, :count].cpu().numpy()
                outputs[row]["timestamps"] = stamps[row, :count].cpu().numpy()
        return outputs

    def write(self, job: EmbedJob, outputs: dict[str, np.ndarray]) -> list[Path]:
        written = []
        for kind, value in outputs.items():
            path = job.output(kind)
            with atomic_open(path, "wb") as handle:
                np.save(handle, np.asarray(value, dtype=np.float32))
            written.append(path)
        return written


def embed_files(embedder: Embedder, paths: Sequence[str], out_dir: Path, batch_seconds: float = 120.0,
                timestamps: bool = True, progress: bool = True, overwrite: bool = False) -> EmbedReport:
    """Embed every audio file under `paths` into `out_dir` (see the module docstring). Returns what was done.

    Raises FileNotFoundError / ValueError before any work for a missing input, no audio file, colliding outputs,
    an output folder that cannot be written, or a non-positive `batch_seconds`.
    """
    if not batch_seconds > 0 or not math.isfinite(batch_seconds):
        raise ValueError(f"batch_seconds must be a positive number of seconds, got {batch_seconds!r}")
    out_dir = Path(out_dir)
    jobs = plan_jobs(paths, out_dir)
    if not jobs:
        raise FileNotFoundError(f"no audio files under {list(paths)}")
    _check_writable(out_dir)
    runner = FileEmbedder(embedder, timestamps)
    report = EmbedReport()
    for folder in sorted({job.target.parent for job in jobs}):
        remove_stale_temporaries(folder)
    todo: list[EmbedJob] = []
    for job in jobs:
        if not overwrite and runner.is_complete(job):
            report.kept.append(job.source)
        else:
            todo.append(job)
    lengths: list[int] = []
    usable: list[EmbedJob] = []
    for job in todo:
        try:
            lengths.append(probe_samples(job.source))
            usable.append(job)
        except AudioDecodeError as error:
            report.skipped.append(str(error))
    budget = max(1, int(batch_seconds * SAMPLE_RATE))
    bar = tqdm(total=len(usable), desc="embedding", unit="file", disable=not progress)
    for batch in plan_batches(lengths, budget):
        _embed_one_batch(runner, [usable[i] for i in batch], report)
        bar.update(len(batch))
    bar.close()
    return report


def _embed_one_batch(runner: FileEmbedder, jobs: list[EmbedJob], report: EmbedReport) -> None:
    """Decode the batch's files now (not before) and embed them."""
    decoded: list[tuple[EmbedJob, torch.Tensor]] = []
    for job in jobs:
        try:
            decoded.append((job, read_audio(job.source, str(job.source))))
        except AudioDecodeError as error:
            report.skipped.append(str(error))
    for group in _equal_length_groups([wave for _, wave in decoded], runner.embedder.mode == "official"):
        _embed_members(runner, [decoded[i] for i in group], report)


def _embed_members(runner: FileEmbedder, members: list[tuple[EmbedJob, torch.Tensor]], report: EmbedReport) -> None:
    """Embed clips together; if that fails, each alone, so only the unusable clip is skipped."""
    try:
        outputs = runner.embed_batch([job for job, _ in members], [wave for _, wave in members])
    except ValueError as error:
        if len(members) == 1:
            report.skipped.append(f"{members[0][0].source}: {error}")
        else:
            for member in members:
                _embed_members(runner, [member], report)
        return
    for (job, _), output in zip(members, outputs):
        report.written.extend(runner.write(job, output))


def _check_writable(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"cannot create the output folder {out_dir}: {error.strerror or error}") from None
    if not out_dir.is_dir() or not os.access(out_dir, os.W_OK | os.X_OK):
        raise ValueError(f"the output folder {out_dir} is not a writable folder")


__all__ = ["EmbedJob", "EmbedReport", "FileEmbedder", "embed_files", "plan_batches", "plan_jobs", "probe_samples"]
