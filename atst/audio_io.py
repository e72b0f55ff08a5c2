"""Reading audio files for embedding: any sample rate resampled to 16 kHz, any channel count downmixed."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import soundfile
import torch
import torchaudio

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
TARGET_SAMPLE_RATE = 16000


def find_audio_files(paths: Iterable[str | Path]) -> list[tuple[Path, Path]]:
    """Expand files and folders (recursively) into (file, path relative to its root) pairs, sorted.

    A named file must exist and have a supported suffix; folders contribute their supported files only.
    """
    found: list[tuple[Path, Path]] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise FileNotFoundError(f"no such file or folder: {path}")
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
            found.extend((p, p.relative_to(path)) for p in files)
        elif path.suffix.lower() in AUDIO_SUFFIXES:
            found.append((path, Path(path.name)))
        else:
            raise ValueError(f"{path}: unsupported audio format {path.suffix!r}; accepted: {', '.join(AUDIO_SUFFIXES)}")
    return found


def load_mono_16k(path: str | Path) -> torch.Tensor:
    """Decode a file to float32 mono `[N]` at 16 kHz (channels averaged, resampled with torchaudio)."""
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as error:
        raise ValueError(f"{path}: cannot decode audio ({error})") from None
    if data.shape[0] == 0:
        raise ValueError(f"{path}: the file holds no samples")
    wave = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))
    if rate != TARGET_SAMPLE_RATE:
        wave = torchaudio.functional.resample(wave, rate, TARGET_SAMPLE_RATE)
    return wave.contiguous()
