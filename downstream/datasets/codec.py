"""How a packed clip's audio is stored: 16 kHz mono as 24-bit FLAC (compact; each sample rounded to the nearest
step of 2^-23, an error below 6e-8) or as float32 `.npy` (exact, 64 kB per second).

FLAC cannot hold a sample at or beyond full scale, so with `flac` a clip whose peak is that loud is stored as
`.npy` instead (exactly, never clipped); the member's suffix says which, and the reader takes both.
"""
from __future__ import annotations

import io

import numpy as np
import soundfile
import torch
from torch import Tensor

from atst.audio_io import SAMPLE_RATE, AudioDecodeError

FORMATS = ("flac", "npy")
STEPS = 2 ** 23  # 24-bit PCM


def encode_audio(audio: Tensor, fmt: str = "flac") -> tuple[str, bytes]:
    """(suffix, bytes) of float32 mono 16 kHz `[N]` audio in `fmt` (see the module docstring)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    data = audio.detach().cpu().numpy().astype(np.float32, copy=False)
    buffer = io.BytesIO()
    if fmt == "flac" and data.size and float(np.abs(data).max()) * STEPS <= STEPS - 1:
        # rounded here: libsndfile's float -> PCM conversion truncates; int32 samples are written by their top 24 bits
        pcm = np.round(data.astype(np.float64) * STEPS).astype(np.int32) << 8
        soundfile.write(buffer, pcm, SAMPLE_RATE, subtype="PCM_24", format="FLAC")
        return "flac", buffer.getvalue()
    np.save(buffer, data, allow_pickle=False)
    return "npy", buffer.getvalue()


def decode_audio(suffix: str, payload: bytes, name: str) -> Tensor:
    """float32 mono 16 kHz `[N]` from what `encode_audio` wrote; anything else is an AudioDecodeError naming
    `name`."""
    try:
        if suffix == "npy":
            data = np.load(io.BytesIO(payload), allow_pickle=False)
            if data.dtype != np.float32 or data.ndim != 1:
                raise ValueError(f"holds {data.dtype} {data.shape}, not float32 [N]")
        elif suffix == "flac":
            data, rate = soundfile.read(io.BytesIO(payload), dtype="float32")
            if rate != SAMPLE_RATE or data.ndim != 1:
                raise ValueError(f"holds {rate} Hz {data.shape}, not 16 kHz mono")
        else:
            raise ValueError(f"unknown audio member .{suffix}; expected one of {FORMATS}")
    except Exception as error:  # numpy and libsndfile raise several types for corrupt input
        raise AudioDecodeError(f"{name}: cannot decode packed audio ({type(error).__name__}: {error})") from None
    return torch.from_numpy(np.ascontiguousarray(data))


__all__ = ["FORMATS", "decode_audio", "encode_audio"]
