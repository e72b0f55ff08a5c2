"""Embed every clip of a task once into the embedding cache; folds and learning rates then read the cache only.

(The official linear evaluation keeps embeddings in RAM for one run and extracts them again for every learning
rate, every encoder choice and every US8K fold: ten extractions of all 8,732 clips for one US8K number.)

Clips are decoded by `ClipDataset` in DataLoader workers and embedded `batch_size` at a time (official: 64).
A clip that cannot be decoded, that is too short for the read-out, or that makes the read-out fail is skipped with
its reason (each named once in the report); the others are embedded.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np
from torch.utils.data import DataLoader

from ..datasets import Clip, ClipDataset, LabelSpace, Task, collate_clips
from .cache import EmbeddingCache, file_identity
from .readout import Readout

EXTRACT_BATCH = 64  # official: min(64, batch_size_per_gpu)
FLUSH_ROWS = 4096  # clips per cache shard: a killed extraction loses at most this many
LOG_EVERY_SECONDS = 30.0

Log = Callable[[str], None]


@dataclass
class ExtractionReport:
    """What one extraction did: clips embedded now, clips reused from the cache, clips skipped (key -> reason),
    wall time in seconds (decoding + encoder)."""

    embedded: int = 0
    reused: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"embedded": self.embedded, "reused": self.reused, "skipped": len(self.skipped),
                "seconds": round(self.seconds, 3)}


def task_clips(task: Task) -> list[Clip]:
    """Every clip of every split (or fold) of `task`, each key once, in split order."""
    seen: dict[str, Clip] = {}
    for clips in task.splits.values():
        for clip in clips:
            seen.setdefault(clip.key, clip)
    return list(seen.values())


def extract_clips(readout: Readout, cache: EmbeddingCache, clips: Sequence[Clip], labels: LabelSpace,
                  batch_size: int = EXTRACT_BATCH, num_workers: int = 0, flush_rows: int = FLUSH_ROWS,
                  log: Optional[Log] = None) -> ExtractionReport:
    """Embed the clips of `clips` that the cache lacks (or whose file changed) and store them in `cache`."""
    start = time.perf_counter()
    report = ExtractionReport()
    with cache.writing():
        fresh, missing = cache.split_fresh(clips)
        report.reused = len(fresh)
        if missing:
            _embed_missing(readout, cache, missing, labels, batch_size, num_workers, flush_rows, report, log)
    report.seconds = time.perf_counter() - start
    return report


def _embed_missing(readout: Readout, cache: EmbeddingCache, missing: Sequence[Clip], labels: LabelSpace,
                   batch_size: int, num_workers: int, flush_rows: int, report: ExtractionReport,
                   log: Optional[Log]) -> None:
    identities: dict[str, tuple[str, int, int]] = {}
    for clip in missing:  # taken before decoding: a file changed meanwhile is embedded again next time
        try:
            identities[clip.key] = file_identity(clip.path)
        except OSError as error:
            report.skipped[clip.key] = f"{clip.path}: {error.strerror or error}"
    todo = [clip for clip in missing if clip.key in identities]
    loader = DataLoader(ClipDataset(todo, labels), batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=list)
    pending: tuple[list[str], list[np.ndarray]] = ([], [])
    last_log = time.perf_counter()
    if log:
        log(f"embedding {len(todo)} clips ({report.reused} reused from the cache) with the "
            f"{readout.settings.protocol} read-out on {readout.device}")
    for items in loader:
        usable = []
        for item in items:
            reason = item["error"] or readout.unusable(int(item["audio"].shape[-1]))
            if reason:
                report.skipped[item["key"]] = reason.removeprefix(f"{item['key']}: ")  # named once, by its key
            else:
                usable.append(item)
        for key, vector in _embed_items(readout, usable, report.skipped):
            pending[0].append(key)
            pending[1].append(vector)
        if len(pending[0]) >= flush_rows:
            _flush(cache, pending, identities, report)
        if log and time.perf_counter() - last_log > LOG_EVERY_SECONDS:
            last_log = time.perf_counter()
            log(f"  {report.embedded + len(pending[0])}/{len(todo)} clips embedded")
    _flush(cache, pending, identities, report)


def _embed_items(readout: Readout, items: list[dict[str, Any]], skipped: dict[str, str]) -> list[tuple[str, Any]]:
    """(key, `[dim]` embedding) of each item; when the batch fails, each item alone, so only the culprit is skipped."""
    if not items:
        return []
    batch = collate_clips(items)
    try:
        return list(zip(batch["keys"], readout(batch["audio"], batch["lengths"]).numpy()))
    except ValueError as error:
        if len(items) == 1:
            skipped[items[0]["key"]] = str(error)
            return []
    return [pair for item in items for pair in _embed_items(readout, [item], skipped)]


def _flush(cache: EmbeddingCache, pending: tuple[list[str], list[np.ndarray]],
           identities: dict[str, tuple[str, int, int]], report: ExtractionReport) -> None:
    keys, vectors = pending
    if keys:
        cache.append(keys, [identities[key] for key in keys], np.stack(vectors))
        report.embedded += len(keys)
        keys.clear()
        vectors.clear()


__all__ = ["EXTRACT_BATCH", "ExtractionReport", "extract_clips", "task_clips"]
