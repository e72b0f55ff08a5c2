"""Clips as a torch Dataset: each item decoded (any format, rate, channels -> 16 kHz mono) when it is read, through
the audio cache when one is given (files not already 16 kHz mono are then decoded and resampled once).

A clip that cannot be decoded does not stop a run: its item carries the error instead of audio, `collate_clips`
leaves it out of the batch and passes the error on, and whoever consumes the batches reports each bad file once.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

from atst.audio_io import AudioDecodeError, read_audio

from .audio_cache import AudioCache
from .types import Clip, LabelSpace


class ClipDataset(Dataset):
    """Items `{"audio": [N] float32 16 kHz or None, "target": label tensor, "key": str, "error": str or None}`.

    `transform(audio)` and `target_transform(target)` apply when given (audiossl's creator interface); the target
    is `LabelSpace.target_tensor` (a class index, or multi-hot for a multi-label task). `cache`: an `AudioCache`
    (`AudioCache.default()` is the per-user one), or None to decode every time.
    """

    def __init__(self, clips: Sequence[Clip], labels: LabelSpace, transform: Optional[Callable] = None,
                 target_transform: Optional[Callable] = None, cache: Optional[AudioCache] = None) -> None:
        self.clips = tuple(clips)
        self.labels = labels
        self.transform = transform
        self.target_transform = target_transform
        self.cache = cache

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict[str, Any]:
        clip = self.clips[index]
        target = self.labels.target_tensor(clip.target)
        if self.target_transform is not None:
            target = self.target_transform(target)
        try:
            audio: Optional[Tensor] = (self.cache.read(clip.path, clip.key) if self.cache is not None
                                       else read_audio(clip.path, clip.key))
        except AudioDecodeError as error:
            return {"audio": None, "target": target, "key": clip.key, "error": str(error)}
        if self.transform is not None:
            audio = self.transform(audio)
        return {"audio": audio, "target": target, "key": clip.key, "error": None}


def collate_clips(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch of decodable items: `audio` `[B, N_max]` zero-padded, `lengths` `[B]` samples, `targets` `[B]` or
    `[B, C]`, `keys`; `errors` lists the undecodable items left out (the batch may then be empty: `audio` None)."""
    good = [item for item in items if item["audio"] is not None]
    errors = [item["error"] for item in items if item["audio"] is None]
    if not good:
        return {"audio": None, "lengths": None, "targets": None, "keys": [], "errors": errors}
    lengths = torch.tensor([item["audio"].shape[-1] for item in good], dtype=torch.long)
    audio = torch.zeros(len(good), int(lengths.max()))
    for row, item in enumerate(good):
        audio[row, : item["audio"].shape[-1]] = item["audio"]
    return {"audio": audio, "lengths": lengths, "targets": torch.stack([item["target"] for item in good]),
            "keys": [item["key"] for item in good], "errors": errors}


__all__ = ["ClipDataset", "collate_clips"]
