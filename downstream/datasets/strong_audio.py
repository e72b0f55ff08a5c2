"""The audio of a strong-label clip: 16 kHz mono through the audio cache (each other-rate file resampled once),
and its duration.

    audio = read_strong_clip(clip)            # float32 [N] at 16 kHz
    seconds = clip_duration(clip)             # the source's duration, else the file header's
"""
from __future__ import annotations

import soundfile
from torch import Tensor

from atst.audio_io import AudioDecodeError, read_audio

from .audio_cache import CacheChoice, DEFAULT, resolve_cache
from .strong import StrongClip


def read_strong_clip(clip: StrongClip, cache: CacheChoice = DEFAULT) -> Tensor:
    """float32 mono `[N]` at 16 kHz of `clip.path`, read through `cache` ("default": the per-user audio cache,
    None: decode every time, a folder or an AudioCache); a file that cannot be decoded raises
    `atst.audio_io.AudioDecodeError` naming the clip."""
    resolved = resolve_cache(cache)
    name = f"{clip.key} ({clip.path})" if clip.key != clip.path else clip.path
    if resolved is None:
        return read_audio(clip.path, name)
    return resolved.read(clip.path, name)


def clip_duration(clip: StrongClip) -> float:
    """Seconds: `clip.duration` when the source states it, else the file's frames / sample rate."""
    if clip.duration is not None:
        return float(clip.duration)
    try:
        info = soundfile.info(clip.path)
    except Exception as error:  # libsndfile raises several types
        raise AudioDecodeError(f"{clip.path}: cannot read the audio header ({type(error).__name__}: {error})") \
            from None
    return info.frames / float(info.samplerate)


__all__ = ["clip_duration", "read_strong_clip"]
