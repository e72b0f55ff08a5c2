"""Pre-training corpus: discovery, decoding, random crops and the two masked views of one crop.

`--data_path` may be
* a folder (searched recursively for audio files),
* a CSV / TSV / TXT manifest (a `path` / `audio` / `file` / `filename` column, or the first column; relative paths
  are relative to the manifest),
* WebDataset tar shards: one `.tar`, a brace pattern `shards/{000000..000999}.tar`, a glob, or a folder holding
  only `.tar` files (each member with an audio extension is one clip; streamed, never unpacked).
Any sample rate (resampled to 16 kHz) and channel count (averaged). Files that cannot be decoded are skipped:
the sample is replaced by another one and the path travels with the batch so the training module counts and
reports it.
"""
from __future__ import annotations

import csv
import glob
import io
import logging
import math
import os
import random
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator, Optional, Union

import numpy as np
import soundfile as sf
import torch
import torchaudio
from torch import Tensor
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from atst.frontend import FrontendConfig, LogMelFrontend

from .augment import StudentAugment
from .masking import make_mask

log = logging.getLogger("pretrain.data")

SAMPLE_RATE = 16000
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif", ".au", ".w64", ".caf")
MANIFEST_EXTENSIONS = (".csv", ".tsv", ".txt", ".lst")
PATH_COLUMNS = ("path", "audio", "file", "filename", "audio_path", "wav")
SUBSET_SEED = 1234  # the official code draws its subset with random.seed(1234)
MAX_RETRIES = 20
SAMPLES_PER_TOKEN = 640  # 4 frames x 10 ms


class AudioDecodeError(RuntimeError):
    """An audio file that cannot be used (unreadable, empty, non-finite samples)."""


@dataclass(frozen=True)
class Corpus:
    """`kind` is "files" (a list of audio paths) or "shards" (a list of tar paths)."""

    kind: str
    items: tuple[str, ...]
    source: str


# ----------------------------------------------------------------------------------------------- discovery

def expand_braces(pattern: str) -> list[str]:
    """Expand `{000..123}` ranges (zero padding kept) and `{a,b}` lists, WebDataset style."""
    match = re.search(r"\{([^{}]*)\}", pattern)
    if match is None:
        return [pattern]
    body = match.group(1)
    numeric = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if numeric:
        low, high = numeric.groups()
        if int(high) < int(low):
            raise ValueError(f"empty brace range {{{body}}} in {pattern!r}")
        width = len(low)
        options = [str(i).zfill(width) for i in range(int(low), int(high) + 1)]
    else:
        options = body.split(",")
    head, tail = pattern[: match.start()], pattern[match.end() :]
    return [expanded for option in options for expanded in expand_braces(head + option + tail)]


def _read_manifest(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    delimiter = "\t" if path.suffix == ".tsv" or ("\t" in text.splitlines()[0] if text.strip() else False) else ","
    rows = [row for row in csv.reader(io.StringIO(text), delimiter=delimiter) if row and row[0].strip()]
    if not rows:
        raise ValueError(f"manifest {path} lists no files")
    header = [cell.strip().lower() for cell in rows[0]]
    column = 0
    named = [i for i, cell in enumerate(header) if cell in PATH_COLUMNS]
    if named:
        column, rows = named[0], rows[1:]
    elif not header[0].endswith(AUDIO_EXTENSIONS) and not (path.parent / rows[0][0]).exists():
        rows = rows[1:]  # an unnamed header line
    paths = []
    for row in rows:
        if column >= len(row):
            raise ValueError(f"manifest {path}: row {row} has no column {column}")
        entry = Path(row[column].strip())
        paths.append(str(entry if entry.is_absolute() else path.parent / entry))
    if not paths:
        raise ValueError(f"manifest {path} lists no files")
    return paths


def resolve_corpus(data_path: Union[str, os.PathLike]) -> Corpus:
    """What `--data_path` names; raises FileNotFoundError / ValueError with what is accepted."""
    text = str(data_path)
    accepted = ("a folder of audio files, a CSV/TSV manifest of paths, or WebDataset tar shards "
                "(file.tar, 'shards/{000000..000999}.tar' or a glob)")
    if "{" in text or any(ch in text for ch in "*?["):
        shards = sorted({p for pattern in expand_braces(text) for p in (glob.glob(pattern) or [pattern])})
        missing = [p for p in shards if not os.path.isfile(p)]
        if missing:
            raise FileNotFoundError(f"--data_path {text!r}: {len(missing)} shard(s) do not exist, e.g. {missing[0]}")
        if not all(p.endswith(".tar") for p in shards):
            raise ValueError(f"--data_path {text!r} is a pattern; patterns must name .tar shards")
        return Corpus("shards", tuple(shards), text)
    path = Path(text)
    if not path.exists():
        raise FileNotFoundError(f"--data_path {text} does not exist; expected {accepted}")
    if path.is_dir():
        files = sorted(str(p) for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
        if files:
            return Corpus("files", tuple(files), text)
        tars = sorted(str(p) for p in path.rglob("*.tar"))
        if tars:
            return Corpus("shards", tuple(tars), text)
        raise ValueError(f"--data_path {text} holds no audio files ({', '.join(AUDIO_EXTENSIONS)}) and no .tar shards")
    if path.suffix == ".tar":
        return Corpus("shards", (str(path),), text)
    if path.suffix.lower() in MANIFEST_EXTENSIONS:
        return Corpus("files", tuple(_read_manifest(path)), text)
    if path.suffix.lower() in AUDIO_EXTENSIONS:
        return Corpus("files", (str(path),), text)
    raise ValueError(f"--data_path {text}: unsupported file type {path.suffix!r}; expected {accepted}")


def take_subset(items: tuple[str, ...], subset: Optional[int]) -> tuple[str, ...]:
    """A fixed random subset of `subset` items (the same on every rank and every run), or all of them."""
    if not subset or subset >= len(items):
        return items
    if subset < 0:
        raise ValueError(f"--subset must be positive, got {subset}")
    chosen = random.Random(SUBSET_SEED).sample(range(len(items)), subset)
    return tuple(items[i] for i in sorted(chosen))


# ------------------------------------------------------------------------------------------------- decoding

_RESAMPLERS: dict[int, torchaudio.transforms.Resample] = {}


def decode_crop(source: Union[str, IO[bytes]], seconds: float, name: str = "") -> tuple[Tensor, int]:
    """A random `seconds`-long mono crop at 16 kHz: (waveform float32 `[seconds * 16000]`, valid samples).

    Reads only the frames it needs; clips shorter than the crop are right-padded with zeros.
    Raises AudioDecodeError for anything unusable.
    """
    name = name or str(source)
    target = int(round(seconds * SAMPLE_RATE))
    try:
        with sf.SoundFile(source) as handle:
            rate, total = handle.samplerate, handle.frames
            if total <= 0:
                raise AudioDecodeError(f"{name}: no audio samples")
            needed = min(total, int(math.ceil(seconds * rate)))
            start = random.randrange(total - needed + 1) if total > needed else 0
            if start:
                handle.seek(start)
            data = handle.read(needed, dtype="float32", always_2d=True)
    except AudioDecodeError:
        raise
    except Exception as error:  # libsndfile raises several types for corrupt input
        raise AudioDecodeError(f"{name}: cannot decode ({type(error).__name__}: {error})") from None
    if data.size == 0:
        raise AudioDecodeError(f"{name}: no audio samples")
    if not np.isfinite(data).all():
        raise AudioDecodeError(f"{name}: contains NaN or Inf samples")
    wave = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))
    if rate != SAMPLE_RATE:
        if rate not in _RESAMPLERS:
            _RESAMPLERS[rate] = torchaudio.transforms.Resample(rate, SAMPLE_RATE)
        wave = _RESAMPLERS[rate](wave)
    valid = min(target, wave.numel())
    out = torch.zeros(target)
    out[:valid] = wave[:valid]
    return out, valid


# ---------------------------------------------------------------------------------------------------- views

class ViewMaker:
    """Waveform crop -> log-mel -> teacher view, student view, one token mask shared by both views.

    Returns `mel_t`, `mel_s` `[n_mels, F]` (F = crop samples // 160 + 1), `mask` bool `[T]` (T = F // patch_w),
    `valid_tokens` (tokens holding real audio; only those are masked and attended to).
    """

    def __init__(self, anchor_len: float, n_mels: int = 64, win_length: int = 1024, patch_w: int = 4,
                 mask_type: str = "block", mask_ratio: float = 0.65, mask_len: int = 5, aug_tea: bool = False,
                 aug_stu: bool = True, mix_up: bool = True, freq_wrap: bool = True, mixup_bank: int = 2000) -> None:
        self.anchor_len = anchor_len
        self.frontend = LogMelFrontend(FrontendConfig(n_mels=n_mels, win_length=win_length))
        self.patch_w = patch_w
        self.mask_args = dict(mask_type=mask_type, mask_ratio=mask_ratio, mask_len=mask_len)
        self.aug_tea = StudentAugment(mix_up, freq_wrap, mixup_bank) if aug_tea else None
        self.aug_stu = StudentAugment(mix_up, freq_wrap, mixup_bank) if aug_stu else None
        samples = int(round(anchor_len * SAMPLE_RATE))
        self.n_tokens = self.frontend.num_frames(samples) // patch_w

    def __call__(self, wave: Tensor, valid_samples: int) -> dict:
        with torch.no_grad():
            mel = self.frontend(wave[None])[0]
        valid_tokens = max(1, min(self.n_tokens, math.ceil(valid_samples / (160 * self.patch_w))))
        return {
            "mel_t": self.aug_tea(mel) if self.aug_tea else mel,
            "mel_s": self.aug_stu(mel) if self.aug_stu else mel.clone(),
            "mask": make_mask(self.n_tokens, valid_tokens, **self.mask_args),
            "valid_tokens": valid_tokens,
        }


def collate(samples: list[dict]) -> dict:
    """Stack views `[B, n_mels, F]`, masks `[B, T]`, valid tokens `[B]`; concatenate the skipped paths."""
    return {
        "mel_t": torch.stack([s["mel_t"] for s in samples]),
        "mel_s": torch.stack([s["mel_s"] for s in samples]),
        "mask": torch.stack([s["mask"] for s in samples]),
        "valid_tokens": torch.tensor([s["valid_tokens"] for s in samples], dtype=torch.long),
        "skipped": [path for s in samples for path in s["skipped"]],
    }


# -------------------------------------------------------------------------------------------------- datasets

class FileDataset(Dataset):
    """Map-style dataset over audio paths (Lightning adds the DistributedSampler)."""

    def __init__(self, files: tuple[str, ...], views: ViewMaker) -> None:
        if not files:
            raise ValueError("the corpus is empty")
        self.files = files
        self.views = views

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        skipped: list[str] = []
        for _ in range(MAX_RETRIES):
            path = self.files[index]
            try:
                wave, valid = decode_crop(path, self.views.anchor_len)
            except AudioDecodeError as error:
                log.warning("skipping undecodable file: %s", error)
                skipped.append(path)
                index = random.randrange(len(self.files))
                continue
            return {**self.views(wave, valid), "skipped": skipped}
        raise RuntimeError(f"{MAX_RETRIES} files in a row could not be decoded (last: {skipped[-1]}); "
                           f"check --data_path")


def iter_tar_audio(path: str) -> Iterator[tuple[str, bytes]]:
    """(member name, bytes) of every audio member of a tar shard, streamed in archive order."""
    with tarfile.open(path, mode="r|*") as archive:
        for member in archive:
            if member.isfile() and os.path.splitext(member.name)[1].lower() in AUDIO_EXTENSIONS:
                handle = archive.extractfile(member)
                if handle is not None:
                    yield member.name, handle.read()


class ShardDataset(IterableDataset):
    """Endless stream over WebDataset tar shards, split across ranks and data-loader workers.

    With at least as many shards as consumers (ranks x workers) each consumer reads its own shards; otherwise
    every consumer reads all shards and keeps every n-th clip. Each pass reshuffles the shard order (seeded) and
    clips go through a small shuffle buffer. `subset` caps the clips of one pass (over all consumers).
    """

    def __init__(self, shards: tuple[str, ...], views: ViewMaker, rank: int = 0, world_size: int = 1,
                 seed: int = 0, subset: Optional[int] = None, shuffle_buffer: int = 64) -> None:
        if not shards:
            raise ValueError("no shards")
        self.shards, self.views = shards, views
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.subset, self.shuffle_buffer = subset, shuffle_buffer

    def _consumer(self) -> tuple[int, int]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        return self.rank * workers + worker, self.world_size * workers

    def _raw_stream(self, consumer: int, consumers: int, rng: random.Random) -> Iterator[tuple[str, bytes]]:
        epoch = 0
        while True:
            order = list(self.shards)
            random.Random(self.seed * 100003 + epoch).shuffle(order)  # same order on every consumer
            per_shard = len(order) >= consumers
            mine = order[consumer::consumers] if per_shard else order
            limit = math.ceil(self.subset / consumers) if self.subset else None
            produced, counter = 0, 0
            for shard in mine:
                try:
                    for name, payload in iter_tar_audio(shard):
                        counter += 1
                        if not per_shard and (counter - 1) % consumers != consumer:
                            continue
                        yield f"{shard}:{name}", payload
                        produced += 1
                        if limit and produced >= limit:
                            break
                except (tarfile.TarError, OSError) as error:
                    log.warning("skipping unreadable shard %s (%s)", shard, error)
                    yield shard, b""
                if limit and produced >= limit:
                    break
            epoch += 1

    def __iter__(self) -> Iterator[dict]:
        consumer, consumers = self._consumer()
        rng = random.Random(self.seed * 7919 + consumer)
        buffer: list[tuple[str, bytes]] = []
        skipped: list[str] = []
        for item in self._raw_stream(consumer, consumers, rng):
            buffer.append(item)
            if len(buffer) < self.shuffle_buffer:
                continue
            name, payload = buffer.pop(rng.randrange(len(buffer)))
            sample = self._make(name, payload, skipped)
            if sample is not None:
                yield sample
                skipped = []

    def _make(self, name: str, payload: bytes, skipped: list[str]) -> Optional[dict]:
        if len(skipped) >= MAX_RETRIES:
            raise RuntimeError(f"{MAX_RETRIES} clips in a row could not be decoded (last: {skipped[-1]})")
        try:
            if not payload:
                raise AudioDecodeError(f"{name}: unreadable")
            wave, valid = decode_crop(io.BytesIO(payload), self.views.anchor_len, name=name)
        except AudioDecodeError as error:
            log.warning("skipping undecodable clip: %s", error)
            skipped.append(name)
            return None
        return {**self.views(wave, valid), "skipped": list(skipped)}
