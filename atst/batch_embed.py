"""Embedding audio files (`atst embed`): planned up front, decoded batch by batch, written atomically.

* Inputs (files, folders, manifests, WebDataset tar shards) and where their outputs go: `atst.embed_inputs`.
  Two inputs that would write the same output are refused before any work, naming both.
* Files are probed (header only) to plan batches of similar length; each batch is decoded only when its turn comes,
  so memory holds one batch, whatever the number of files. Shard members are decoded as the shard streams by and
  embedded in batches of the same budget.
* A clip that cannot be used (missing, undecodable, empty, NaN/Inf samples, overflowing amplitude) is skipped and
  reported once; the others are written.
* Each output is written atomically (temporary file, fsync, rename); a clip whose outputs all exist was completed
  by an earlier run and is kept unless `overwrite`. Temporaries left by killed runs are removed.
* A sharded run (`rank` of `world_size` processes) embeds every world_size-th unit of the plan (a file or a
  whole shard); the report records every clip's outcome for the run's index (`write_index`).
"""
from __future__ import annotations

import io
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np
import soundfile
import torch
from tqdm import tqdm

from .audio_io import SAMPLE_RATE, AudioDecodeError, read_audio
from .embed_inputs import EmbedJob, ShardJob, ShardReadError, plan_units, stream_shard, units_of_rank
from .embedding import Embedder
from .fileio import atomic_open, atomic_write_text, remove_stale_temporaries

SCENE_OUTPUT = "scene"
TIMESTAMP_OUTPUTS = ("timestamp_embeddings", "timestamps")
INDEX_NAME = "index.json"
INDEX_FORMAT = "atst-embed-index"
STATUSES = ("written", "kept", "skipped")


@dataclass(frozen=True)
class Outcome:
    """What a run did with one clip (a file, or a member of a shard), for the index.

    `unit`: the position of its file or shard in the plan, `order`: its position in the shard's stream (0 for a
    file); `status` one of `STATUSES`; `outputs` relative to the output folder; `reason` why it was skipped."""

    unit: int
    order: int
    input: str
    member: Optional[str]
    status: str
    outputs: tuple[str, ...] = ()
    reason: Optional[str] = None
    rank: int = 0


@dataclass
class EmbedReport:
    """What a run did: outputs written, clips skipped as unusable (the reasons), clips kept as complete, and every
    clip's `Outcome`."""

    out_dir: Path
    rank: int = 0
    written: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)

    def record(self, unit: int, order: int, source: Path, member: Optional[str], status: str,
               outputs: Sequence[Path] = (), reason: Optional[str] = None) -> None:
        if status == "written":
            self.written.extend(outputs)
        elif status == "kept":
            self.kept.append(source if member is None else Path(f"{source}:{member}"))
        else:
            self.skipped.append(str(reason))
        relative = tuple(str(Path(path).relative_to(self.out_dir)) for path in outputs)
        self.outcomes.append(Outcome(unit, order, str(source), member, status, relative, reason, self.rank))


@dataclass(frozen=True)
class Placed:
    """A job with its place in the plan (`unit`, `order`), so its outcome lands in the right row of the index."""

    job: EmbedJob
    unit: int
    order: int = 0


def probe_samples(path: Path) -> int:
    """Samples the file has once resampled to 16 kHz, from its header only (no decoding)."""
    if not path.is_file():
        raise AudioDecodeError(f"{path}: no such file")
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


def embed_files(embedder: Embedder, paths: Sequence[str], out_dir: Path, batch_seconds: float = 120.0,
                timestamps: bool = True, progress: bool = True, overwrite: bool = False, rank: int = 0,
                world_size: int = 1) -> EmbedReport:
    """Embed every clip under `paths` into `out_dir` (see the module docstring); process `rank` of `world_size`
    takes its share of the plan. Returns what this process did.

    Raises FileNotFoundError / ValueError before any work for a missing input, no audio input, colliding outputs,
    an output folder that cannot be written, or a non-positive `batch_seconds`.
    """
    if not batch_seconds > 0 or not math.isfinite(batch_seconds):
        raise ValueError(f"batch_seconds must be a positive number of seconds, got {batch_seconds!r}")
    out_dir = Path(out_dir)
    units = plan_units(paths, out_dir)
    if not units:
        raise FileNotFoundError(f"no audio files under {list(paths)}")
    _check_writable(out_dir)
    runner = FileEmbedder(embedder, timestamps)
    report = EmbedReport(out_dir, rank)
    mine = units_of_rank(units, rank, world_size)
    files = [Placed(unit, index) for index, unit in mine if isinstance(unit, EmbedJob)]
    shards = [(index, unit) for index, unit in mine if isinstance(unit, ShardJob)]
    _remove_own_temporaries([placed.job for placed in files], runner.kinds)
    budget = max(1, int(batch_seconds * SAMPLE_RATE))
    todo = []
    for placed in files:
        if not overwrite and runner.is_complete(placed.job):
            report.record(placed.unit, 0, placed.job.source, None, "kept", runner.outputs(placed.job))
        else:
            todo.append(placed)
    lengths: list[int] = []
    usable: list[Placed] = []
    for placed in todo:
        try:
            lengths.append(probe_samples(placed.job.source))
            usable.append(placed)
        except AudioDecodeError as error:
            report.record(placed.unit, 0, placed.job.source, None, "skipped", reason=str(error))
    desc = "embedding" if world_size == 1 else f"embedding (rank {rank}/{world_size})"
    bar = tqdm(total=len(usable) + len(shards), desc=desc, unit="item", disable=not progress)
    for batch in plan_batches(lengths, budget):
        members = [usable[i] for i in batch]
        _embed_decoded(runner, _decode_files(members, report), report)
        bar.update(len(batch))
    for index, shard in shards:
        _embed_shard(runner, index, shard, budget, overwrite, report)
        bar.update(1)
    bar.close()
    return report


class FileEmbedder:
    """Embeds jobs with one `Embedder`, writing `.npy` outputs (float32; timestamps in ms)."""

    def __init__(self, embedder: Embedder, timestamps: bool = True) -> None:
        self.embedder = embedder
        self.kinds = (SCENE_OUTPUT,) + (TIMESTAMP_OUTPUTS if timestamps else ())

    def outputs(self, job: EmbedJob) -> list[Path]:
        return [job.output(kind) for kind in self.kinds]

    def is_complete(self, job: EmbedJob) -> bool:
        return all(path.is_file() for path in self.outputs(job))

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


Decoded = tuple[Placed, torch.Tensor]


def _decode_files(members: list[Placed], report: EmbedReport) -> list[Decoded]:
    """Decode a batch's files now (not before)."""
    decoded: list[Decoded] = []
    for placed in members:
        try:
            decoded.append((placed, read_audio(placed.job.source, str(placed.job.source))))
        except AudioDecodeError as error:
            report.record(placed.unit, 0, placed.job.source, None, "skipped", reason=str(error))
    return decoded


def _embed_shard(runner: FileEmbedder, unit: int, shard: ShardJob, budget: int, overwrite: bool,
                 report: EmbedReport) -> None:
    """Stream one shard: members already complete are kept unread, the others decoded and embedded in batches of
    at most `budget` (longest x count) samples; an unreadable archive is skipped and named (members done stand)."""
    pending: list[Decoded] = []
    order = 0
    try:
        for order, (member, read) in enumerate(stream_shard(shard.shard), start=1):
            try:
                job = shard.job(member)
                if not overwrite and runner.is_complete(job):
                    report.record(unit, order, shard.shard, member, "kept", runner.outputs(job))
                    continue
                wave = read_audio(io.BytesIO(read()), job.name)
            except ShardReadError:
                raise
            except AudioDecodeError as error:
                report.record(unit, order, shard.shard, member, "skipped", reason=str(error))
                continue
            longest = max([wave.shape[0]] + [w.shape[0] for _, w in pending])
            if pending and longest * (len(pending) + 1) > budget:
                _embed_decoded(runner, pending, report)
                pending = []
            pending.append((Placed(job, unit, order), wave))
    except AudioDecodeError as error:
        report.record(unit, order + 1, shard.shard, None, "skipped", reason=str(error))
    _embed_decoded(runner, pending, report)


def _embed_decoded(runner: FileEmbedder, decoded: list[Decoded], report: EmbedReport) -> None:
    for group in _equal_length_groups([wave for _, wave in decoded], runner.embedder.mode == "official"):
        _embed_members(runner, [decoded[i] for i in group], report)


def _embed_members(runner: FileEmbedder, members: list[Decoded], report: EmbedReport) -> None:
    """Embed clips together; if that fails, each alone, so only the unusable clip is skipped."""
    if not members:
        return
    try:
        outputs = runner.embed_batch([placed.job for placed, _ in members], [wave for _, wave in members])
    except ValueError as error:
        if len(members) == 1:
            placed = members[0][0]
            report.record(placed.unit, placed.order, placed.job.source, placed.job.member, "skipped",
                          reason=f"{placed.job.name}: {error}")
        else:
            for member in members:
                _embed_members(runner, [member], report)
        return
    for (placed, _), output in zip(members, outputs):
        paths = runner.write(placed.job, output)
        report.record(placed.unit, placed.order, placed.job.source, placed.job.member, "written", paths)


def _remove_own_temporaries(jobs: Iterable[EmbedJob], kinds: Sequence[str]) -> None:
    """Temporaries of dead processes, only those of this process's own outputs: other processes of a sharded run
    (on other machines too) write into the same folders."""
    names: dict[Path, set[str]] = {}
    for job in jobs:
        names.setdefault(job.target.parent, set()).update(job.output(kind).name for kind in kinds)
    for folder in sorted(names):
        remove_stale_temporaries(folder, names[folder])


def _check_writable(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"cannot create the output folder {out_dir}: {error.strerror or error}") from None
    if not out_dir.is_dir() or not os.access(out_dir, os.W_OK | os.X_OK):
        raise ValueError(f"the output folder {out_dir} is not a writable folder")


def write_index(out_dir: Path, outcomes: Iterable[Outcome], run: dict) -> Path:
    """Write `out_dir/index.json` atomically: `run` (settings of the run) and one row per clip in plan order
    (`input`, `member`, `status`, `outputs` relative to `out_dir`, `reason`, `rank`) with the counts per status."""
    rows = sorted(outcomes, key=lambda outcome: (outcome.unit, outcome.order))
    counts = {status: sum(row.status == status for row in rows) for status in STATUSES}
    entries = [{key: value for key, value in asdict(row).items() if key not in ("unit", "order")} for row in rows]
    document = {"format": INDEX_FORMAT, "version": 1, **run, "counts": counts, "inputs": entries}
    return atomic_write_text(Path(out_dir) / INDEX_NAME, json.dumps(document, indent=1) + "\n")


__all__ = ["EmbedJob", "EmbedReport", "FileEmbedder", "INDEX_NAME", "Outcome", "embed_files", "plan_batches",
           "probe_samples", "write_index"]
