"""Write any task into WebDataset tar shards that training streams (`atst-downstream pack`, `shards.py` reads them).

    OUT/pack.json                          the task: name, labels, folds, protocol flag, shards per split, skipped
    OUT/<split>/<split>-NNNNNN.tar         clips in task order, `shard_size` per shard; members per clip:
                                           `<n>.flac` or `<n>.npy` (16 kHz mono, `codec`) and `<n>.json`
                                           ({"key": clip key, "target": [class indices]})
    OUT/<split>/<split>-NNNNNN.json        the shard's receipt: a fingerprint of its clips, its count, its skips

Every file is written atomically (`atst.fileio`). A shard whose tar and receipt exist and whose fingerprint
matches the clips it should hold is complete and kept, so an interrupted pack resumes where it stopped and a
re-run with the same task does no work. Clips that cannot be decoded are skipped and named (in the receipt and
pack.json); files missing at load time are named in pack.json too. Memory: one clip at a time.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from atst.audio_io import AudioDecodeError, read_audio
from atst.fileio import atomic_path, atomic_write_text, remove_stale_temporaries

from .codec import FORMATS, encode_audio
from .types import Clip, Task

log = logging.getLogger("downstream.pack")

PACK_FILE = "pack.json"
PACK_VERSION = 1
DEFAULT_SHARD_SIZE = 1000


@dataclass
class PackReport:
    """What one `pack_task` call did: shards written and kept (complete from an earlier run), clips stored,
    and every clip skipped (missing at load, or undecodable) with its reason."""

    written: int = 0
    kept: int = 0
    clips: int = 0
    skipped: list[str] = field(default_factory=list)


def _fingerprint(clips: Sequence[Clip], fmt: str) -> str:
    text = "\n".join(f"{clip.key}\t{list(clip.target)}\t{clip.path}" for clip in clips)
    return hashlib.sha256(f"{PACK_VERSION}\t{fmt}\n{text}".encode("utf-8")).hexdigest()


def _receipt(path: Path, fingerprint: str) -> Optional[dict]:
    """The receipt of a complete shard matching `fingerprint`, else None."""
    try:
        receipt = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(receipt, dict) or receipt.get("fingerprint") != fingerprint:
        return None
    if not path.with_suffix(".tar").is_file():
        return None
    return receipt


def write_shard(path: Path, clips: Sequence[Clip], fmt: str) -> tuple[int, list[str]]:
    """Write one tar shard atomically; returns (clips stored, skipped reasons)."""
    import webdataset as wds

    stored, skipped = 0, []
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            writer = wds.TarWriter(handle, encoder=False, mtime=0.0, mode=0o644, user="", group="")
            for clip in clips:
                try:
                    audio = read_audio(clip.path, clip.key)
                except AudioDecodeError as error:
                    skipped.append(str(error))
                    continue
                suffix, payload = encode_audio(audio, fmt)
                meta = json.dumps({"key": clip.key, "target": list(clip.target)}).encode("utf-8")
                writer.write({"__key__": f"{stored:06d}", suffix: payload, "json": meta})
                stored += 1
            writer.close()
    return stored, skipped


def pack_task(task: Task, out: Path, shard_size: int = DEFAULT_SHARD_SIZE, fmt: str = "flac",
              progress: Optional[Callable[[str], None]] = None) -> PackReport:
    """Write `task` into shards under `out` (see the module docstring); returns what was done."""
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise ValueError(f"shard size must be a positive number of clips, got {shard_size!r}")
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; expected a folder (created if missing)")
    report = PackReport(skipped=list(task.skipped))
    splits: dict[str, list[dict]] = {}
    for split, clips in task.splits.items():
        folder = out / split
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(folder)
        splits[split] = []
        for start in range(0, len(clips), shard_size):
            chunk = clips[start:start + shard_size]
            name = f"{split}-{start // shard_size:06d}"
            tar, receipt_path = folder / f"{name}.tar", folder / f"{name}.json"
            fingerprint = _fingerprint(chunk, fmt)
            receipt = _receipt(receipt_path, fingerprint)
            if receipt is None:
                stored, skipped = write_shard(tar, chunk, fmt)
                receipt = {"fingerprint": fingerprint, "clips": stored, "skipped": skipped}
                atomic_write_text(receipt_path, json.dumps(receipt, indent=1))
                report.written += 1
            else:
                report.kept += 1
            report.clips += int(receipt["clips"])
            report.skipped.extend(receipt["skipped"])
            splits[split].append({"path": f"{split}/{tar.name}", "clips": int(receipt["clips"])})
            if progress is not None:
                progress(f"{split}/{tar.name}: {receipt['clips']} clip(s)")
    manifest = {"format_version": PACK_VERSION, "name": task.name, "labels": list(task.labels.names),
                "multi_label": task.labels.multi_label, "num_folds": task.num_folds, "metric": task.metric,
                "official_validates_on_test": task.official_validates_on_test, "source": task.source,
                "audio_format": fmt, "shard_size": shard_size, "splits": splits, "skipped": report.skipped}
    atomic_write_text(out / PACK_FILE, json.dumps(manifest, indent=1))
    return report


__all__ = ["DEFAULT_SHARD_SIZE", "PACK_FILE", "PackReport", "pack_task", "write_shard"]
