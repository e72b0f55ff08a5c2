"""The one audio decoder of the project: any format libsndfile reads, any sample rate, any channel count ->
float32 mono at the model rate (16 kHz).

Every door reads audio through here: `atst embed`, the pre-training corpus, the generated datasets. Files are
read with soundfile (libsndfile); channels are averaged; other rates are resampled with soxr (high quality), whose
time and memory grow with the number of samples only, whatever the two rates' common factor (a 200-sample file
whose header claims 96001 Hz costs microseconds). Anything unusable (unreadable, empty, NaN/Inf samples) raises
`AudioDecodeError`, a ValueError that names the file.
"""
from __future__ import annotations

import math
import random
from pathlib import Path
from typing import IO, Iterable, Optional, Union

import numpy as np
import soundfile
import soxr
import torch
from torch import Tensor

from .frontend import SAMPLE_RATE
# The formats every door accepts (libsndfile's); a named file with another suffix is refused, folders skip them.
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif", ".au", ".w64", ".caf")
RESAMPLE_QUALITY = "HQ"

Source = Union[str, Path, IO[bytes]]


class AudioDecodeError(ValueError):
    """An audio file that cannot be used: unreadable, empty, or holding NaN/Inf samples. The message names it."""


def is_audio_path(path: Union[str, Path]) -> bool:
    """Whether the suffix is one of `AUDIO_SUFFIXES` (case-insensitive)."""
    return Path(str(path)).suffix.lower() in AUDIO_SUFFIXES


def find_audio_files(paths: Iterable[Union[str, Path]]) -> list[tuple[Path, Path]]:
    """Expand files and folders (recursively) into (file, path relative to its root) pairs, sorted per root.

    A named file must exist and have a supported suffix; folders contribute their supported files only.
    """
    found: list[tuple[Path, Path]] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise FileNotFoundError(f"no such file or folder: {path}")
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and is_audio_path(p))
            found.extend((p, p.relative_to(path)) for p in files)
        elif is_audio_path(path):
            found.append((path, Path(path.name)))
        else:
            raise ValueError(f"{path}: unsupported audio format {path.suffix!r}; accepted: {', '.join(AUDIO_SUFFIXES)}")
    return found


def resample(wave: Tensor, rate: int) -> Tensor:
    """`[N]` float32 at `rate` Hz -> `[M]` at 16 kHz, M = round(N * 16000 / rate) (unchanged at 16 kHz)."""
    if rate == SAMPLE_RATE:
        return wave
    if isinstance(rate, bool) or not isinstance(rate, int) or rate < 1:
        raise ValueError(f"sample rate must be a positive int number of Hz, got {rate!r}")
    if wave.ndim != 1:
        raise ValueError(f"resample takes mono audio [samples], got shape {tuple(wave.shape)}")
    out = soxr.resample(wave.detach().cpu().numpy(), rate, SAMPLE_RATE, quality=RESAMPLE_QUALITY)
    return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))


def _to_mono_16k(data: np.ndarray, rate: int, name: str) -> Tensor:
    """`[frames, channels]` float32 from soundfile -> `[N]` float32 mono at 16 kHz, checked."""
    if data.size == 0:
        raise AudioDecodeError(f"{name}: the file holds no audio samples")
    if not np.isfinite(data).all():
        raise AudioDecodeError(f"{name}: contains NaN or Inf samples")
    mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1)  # a view for mono: no second copy of the file
    wave = torch.from_numpy(np.ascontiguousarray(mono, dtype=np.float32))
    return resample(wave, rate).contiguous()


def _open_error(name: str, error: Exception) -> AudioDecodeError:
    return AudioDecodeError(f"{name}: cannot decode audio ({type(error).__name__}: {error})")


def read_audio(source: Source, name: str = "") -> Tensor:
    """Decode a whole file (path or binary file object) to float32 mono `[N]` at 16 kHz."""
    name = name or str(source)
    try:
        data, rate = soundfile.read(source, dtype="float32", always_2d=True)
    except Exception as error:  # libsndfile raises several types for corrupt input
        raise _open_error(name, error) from None
    return _to_mono_16k(data, rate, name)


def read_crop(source: Source, seconds: float, name: str = "",
              rng: Optional[random.Random] = None) -> tuple[Tensor, int]:
    """A random `seconds`-long crop: (float32 mono `[round(seconds * 16000)]` at 16 kHz, valid samples).

    Reads only the frames it needs; a file shorter than the crop is right-padded with zeros (`valid` < length).
    `rng` draws the start (default: the `random` module's generator).
    """
    name = name or str(source)
    target = int(round(seconds * SAMPLE_RATE))
    try:
        with soundfile.SoundFile(source) as handle:
            rate, total = handle.samplerate, handle.frames
            if total <= 0:
                raise AudioDecodeError(f"{name}: the file holds no audio samples")
            needed = min(total, int(math.ceil(seconds * rate)))
            start = (rng or random).randrange(total - needed + 1) if total > needed else 0
            if start:
                handle.seek(start)
            data = handle.read(needed, dtype="float32", always_2d=True)
    except AudioDecodeError:
        raise
    except Exception as error:
        raise _open_error(name, error) from None
    wave = _to_mono_16k(data, rate, name)
    valid = min(target, wave.numel())
    out = torch.zeros(target)
    out[:valid] = wave[:valid]
    return out, valid


def load_mono_16k(path: Union[str, Path]) -> Tensor:
    """`read_audio` of a path (the name `atst` has always exported)."""
    return read_audio(path)


def write_wav(path: Union[str, Path], audio: Union[np.ndarray, Tensor], sample_rate: int = SAMPLE_RATE) -> Path:
    """Write mono 16-bit PCM atomically; `audio` `[N]` float in [-1, 1] (clipped), sample = round(x * 32767).
    Returns the path."""
    from .fileio import atomic_path

    data = audio.detach().cpu().numpy() if isinstance(audio, Tensor) else np.asarray(audio)
    if data.ndim != 1:
        raise ValueError(f"write_wav takes mono audio [samples], got shape {tuple(data.shape)}")
    # rounded here: libsndfile's float -> PCM_16 conversion truncates, biasing every sample by half a step
    pcm = np.round(np.clip(data.astype(np.float64), -1.0, 1.0) * 32767).astype("<i2")
    path = Path(path)
    with atomic_path(path) as tmp:
        soundfile.write(str(tmp), pcm, sample_rate, subtype="PCM_16", format="WAV")
    return path
