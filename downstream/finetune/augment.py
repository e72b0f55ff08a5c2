"""Training augmentations of the official fine-tuning, on one clip's normalised log-mel `[n_mels, F]` and its target.

* `MixupSpecLabel` (audiossl `transforms/target_transform.py`): with a partner drawn uniformly from a FIFO bank of
  the last `bank_size` *unmixed* (mel, target) pairs of this instance (one per data-loader worker), lambda ~
  Beta(alpha, alpha), mel <- lambda mel + (1 - lambda) partner (linear, in MinMax-normalised space, not in power)
  and target <- lambda target + (1 - lambda) partner target. An empty bank leaves the clip as it is. Unequal lengths:
  a longer clip mixes the partner into a random window of itself; a shorter one mixes with a random window of the
  partner (window starts drawn from every position, the last included; the official `np.random.randint(0, d)`
  never picks the last). `ratio` < 1 mixes only that fraction of the clips (the official AudioSet-2M recipe: 0.5).
* `RandomResizeCrop`: BYOL-A's time-and-frequency crop, from the training kit (`atst.training.augment`).

Random numbers come from torch's generator, which each data-loader worker seeds on its own (seeded runs repeat).
"""
from __future__ import annotations

from collections import deque
from typing import Optional

import torch
from torch import Tensor

from atst.training.augment import FREQ_SCALE, TIME_SCALE, VIRTUAL_CROP, RandomResizeCrop
from atst.training.augment import check_mel as _check_mel
from atst.training.augment import randint as _randint


def mix(mel: Tensor, target: Tensor, partner_mel: Tensor, partner_target: Tensor, lam: float
        ) -> tuple[Tensor, Tensor]:
    """The official linear mix of two clips of any lengths (module docstring): (`[n_mels, F]` of `mel`, target)."""
    frames, other = mel.shape[-1], partner_mel.shape[-1]
    if frames == other:
        mixed = lam * mel + (1.0 - lam) * partner_mel
    elif frames > other:
        start = _randint(frames - other)
        mixed = mel.clone()
        mixed[:, start : start + other] = lam * mel[:, start : start + other] + (1.0 - lam) * partner_mel
    else:
        start = _randint(other - frames)
        mixed = lam * mel + (1.0 - lam) * partner_mel[:, start : start + frames]
    return mixed, lam * target + (1.0 - lam) * partner_target


class MixupSpecLabel:
    """Mix each clip and its target with one of the last `bank_size` clips this instance saw (module docstring).

    Targets must be float vectors `[C]` (one-hot or multi-hot)."""

    def __init__(self, alpha: float, bank_size: int, ratio: float = 1.0) -> None:
        if not alpha > 0:
            raise ValueError(f"mixup alpha must be > 0 (Beta(alpha, alpha)), got {alpha}")
        if bank_size < 1:
            raise ValueError(f"the mixup bank needs at least one entry, got {bank_size}")
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"the mixup ratio must lie in [0, 1], got {ratio}")
        self.beta = torch.distributions.Beta(torch.tensor(float(alpha)), torch.tensor(float(alpha)))
        self.ratio = ratio
        self.bank: deque[tuple[Tensor, Tensor]] = deque(maxlen=bank_size)

    def __call__(self, mel: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        _check_mel(mel)
        if target.ndim != 1 or not target.is_floating_point():
            raise ValueError(f"mixup needs a float target vector [classes], got {target.dtype} "
                             f"{tuple(target.shape)}")
        out = (mel, target)
        if self.bank and (self.ratio >= 1.0 or float(torch.rand(())) < self.ratio):
            partner_mel, partner_target = self.bank[_randint(len(self.bank) - 1)]
            out = mix(mel, target, partner_mel, partner_target, float(self.beta.sample()))
        self.bank.append((mel, target))
        return out


class TrainAugment:
    """Mixup (optional) then RandomResizeCrop (optional): `(mel, target) -> (mel, target)`."""

    def __init__(self, mixup: Optional[MixupSpecLabel], crop: Optional[RandomResizeCrop]) -> None:
        self.mixup, self.crop = mixup, crop

    def __call__(self, mel: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        if self.mixup is not None:
            mel, target = self.mixup(mel, target)
        if self.crop is not None:
            mel = self.crop(mel)
        return mel, target


__all__ = ["FREQ_SCALE", "MixupSpecLabel", "RandomResizeCrop", "TIME_SCALE", "TrainAugment", "VIRTUAL_CROP", "mix"]
