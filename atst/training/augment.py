"""BYOL-A's RandomResizeCrop (audiossl `transforms/byol_a.py`) on one normalised log-mel `[n_mels, F]`, shared by
clip-level fine-tuning (`downstream`) and ATST-Clip pre-training (`pretrain --method clip`).

The mel is centred on a zero canvas `[int(1.0 n_mels), int(1.5 F)]` (the virtual crop), a crop of height
clip(int(U(0.6, 1.5) n_mels), 1, canvas) and width clip(int(U(0.6, 1.5) F), 1, canvas) is taken at a random place
and resized back to `[n_mels, F]` bicubically (align_corners=True): it stretches and shifts both frequency and time.
Random numbers come from torch's generator (each data-loader worker seeds its own).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

VIRTUAL_CROP = (1.0, 1.5)
FREQ_SCALE = (0.6, 1.5)
TIME_SCALE = (0.6, 1.5)


def check_mel(mel: Tensor) -> None:
    """ValueError unless `mel` is one spectrogram `[n_mels, frames]`."""
    if mel.ndim != 2:
        raise ValueError(f"expected one log-mel spectrogram [n_mels, frames], got shape {tuple(mel.shape)}")


def uniform(low: float, high: float) -> float:
    """U(low, high) from torch's generator."""
    return low + (high - low) * float(torch.rand(()))


def randint(high: int) -> int:
    """Uniform integer in [0, high] (both ends) from torch's generator."""
    return int(torch.randint(high + 1, ()))


class RandomResizeCrop:
    """`[n_mels, F]` -> `[n_mels, F]`: virtual crop, random crop in frequency and time, bicubic resize back."""

    def __init__(self, virtual_crop: tuple[float, float] = VIRTUAL_CROP,
                 freq_scale: tuple[float, float] = FREQ_SCALE, time_scale: tuple[float, float] = TIME_SCALE) -> None:
        for name, (low, high) in (("virtual_crop", virtual_crop), ("freq_scale", freq_scale),
                                  ("time_scale", time_scale)):
            if not 0.0 < low <= high:
                raise ValueError(f"{name} must be (low, high) with 0 < low <= high, got {(low, high)}")
        if min(virtual_crop) < 1.0:
            raise ValueError(f"virtual_crop must not shrink the canvas below the input, got {virtual_crop}")
        self.virtual_crop, self.freq_scale, self.time_scale = virtual_crop, freq_scale, time_scale

    def __call__(self, mel: Tensor) -> Tensor:
        check_mel(mel)
        n_mels, frames = mel.shape
        canvas_h, canvas_w = int(n_mels * self.virtual_crop[0]), int(frames * self.virtual_crop[1])
        canvas = mel.new_zeros(canvas_h, canvas_w)
        top, left = (canvas_h - n_mels) // 2, (canvas_w - frames) // 2
        canvas[top : top + n_mels, left : left + frames] = mel
        height = min(max(int(uniform(*self.freq_scale) * n_mels), 1), canvas_h)
        width = min(max(int(uniform(*self.time_scale) * frames), 1), canvas_w)
        row = randint(canvas_h - height) if canvas_h > height else 0
        column = randint(canvas_w - width) if canvas_w > width else 0
        crop = canvas[row : row + height, column : column + width]
        return F.interpolate(crop[None, None], size=(n_mels, frames), mode="bicubic", align_corners=True)[0, 0]
