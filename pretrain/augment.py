"""Student-side augmentations of the official ATST-Frame recipe, on one normalised log-mel `[n_mels, F]`.

* `Mixup` (BYOL-A style): x <- log((1 - a) exp(x) + a exp(z) + eps), a ~ 0.4 U(0, 1), z a random earlier input
  from a FIFO memory bank (per instance, i.e. per data-loader worker). As in the official code it acts on the
  MinMax-normalised values. The result lies between min(x, z) and max(x, z) elementwise (log-sum-exp). Views of
  unequal widths (ATST-Clip's masked short clips) mix over their common first frames; the rest stays as it is.
* `RandomResizeCrop` (frequency only, the official setting): crop h = clip(int(U(0.6, 1.5) n_mels), 1, n_mels)
  mel bins at a random offset over the full width and resize back bicubically (align_corners=True). Time columns
  are never mixed, so the time alignment with the teacher view and the mask is kept.
"""
from __future__ import annotations

from collections import deque

import torch
import torch.nn.functional as F
from torch import Tensor

from atst.training.augment import check_mel as _check_mel

MIXUP_ALPHA = 0.4
FREQ_SCALE = (0.6, 1.5)
_EPS = torch.finfo(torch.float32).eps


class Mixup:
    """Mix each input with a random one of the last `bank_size` inputs (no mixing while the bank is empty, nor with
    an input of another mel height)."""

    def __init__(self, alpha: float = MIXUP_ALPHA, bank_size: int = 2000) -> None:
        if bank_size < 1:
            raise ValueError(f"bank_size must be >= 1, got {bank_size}")
        self.alpha = alpha
        self.bank: deque[Tensor] = deque(maxlen=bank_size)

    def __call__(self, mel: Tensor) -> Tensor:
        """`[n_mels, F]` -> `[n_mels, F]`."""
        _check_mel(mel)
        out = mel
        if self.bank:
            background = self.bank[int(torch.randint(len(self.bank), ()))]
            if background.shape[0] == mel.shape[0]:
                ratio = self.alpha * float(torch.rand(()))
                common = min(mel.shape[1], background.shape[1])
                mixed = torch.log((1.0 - ratio) * mel[:, :common].exp() + ratio * background[:, :common].exp() + _EPS)
                out = mixed if common == mel.shape[1] else torch.cat([mixed, mel[:, common:]], dim=1)
        self.bank.append(mel.detach().clone())
        return out


class RandomResizeCrop:
    """Frequency-axis random resized crop, `[n_mels, F]` -> `[n_mels, F]` (time axis untouched)."""

    def __init__(self, freq_scale: tuple[float, float] = FREQ_SCALE) -> None:
        low, high = freq_scale
        if not 0.0 < low <= high:
            raise ValueError(f"freq_scale must be (low, high) with 0 < low <= high, got {freq_scale}")
        self.freq_scale = freq_scale

    def __call__(self, mel: Tensor) -> Tensor:
        _check_mel(mel)
        n_mels, frames = mel.shape
        low, high = self.freq_scale
        height = int((low + (high - low) * float(torch.rand(()))) * n_mels)
        height = max(1, min(n_mels, height))
        if height == n_mels:  # the bicubic resize of an uncropped canvas is the identity
            return mel
        top = int(torch.randint(n_mels - height + 1, ()))
        crop = mel[top : top + height][None, None]
        return F.interpolate(crop, size=(n_mels, frames), mode="bicubic", align_corners=True)[0, 0]


class StudentAugment:
    """Mixup then RandomResizeCrop (each optional), the official student-side transform."""

    def __init__(self, mix_up: bool = True, freq_wrap: bool = True, bank_size: int = 2000) -> None:
        self.mixup = Mixup(bank_size=bank_size) if mix_up else None
        self.crop = RandomResizeCrop() if freq_wrap else None

    def __call__(self, mel: Tensor) -> Tensor:
        if self.mixup is not None:
            mel = self.mixup(mel)
        if self.crop is not None:
            mel = self.crop(mel)
        return mel
