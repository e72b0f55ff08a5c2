"""The data of a fine-tuning run: clips -> log-mels (+ training augmentations) in data-loader workers, mel batches,
and the samplers that shard them across DDP ranks.

* `ClipMels`: one clip's audio `[N]` -> its normalised log-mel `[n_mels, F]` as the read-out sees it: `official`
  centre-crops to 12 s first (`atst.official.centre_crop`) and refuses clips its read-out cannot take
  (`downstream.linear.readout.unusable_reason`); `hear` reads the whole clip (`atst.backbone.clip_mels`: a clip too
  short for the STFT is padded to one token).
* `MelClipDataset`: a `ClipDataset` item -> `{"mel", "target", "key", "index", "error"}`; training items go through
  the augmentation (`augment.TrainAugment`: mixup with a per-worker bank, then RandomResizeCrop), as the official
  target transform runs per item in the worker. Targets are one-hot / multi-hot float vectors when the loss is BCE
  (`one_hot`), class indices otherwise.
* `collate_mels`: zero-padded `[B, n_mels, F_max]` (0 in normalised space, as the official collate), frames `[B]`.
* `EpochSampler`: the indices one rank draws in one epoch: a seeded permutation (or, with weights, draws with
  replacement: balanced sampling) of the whole run, the same on every rank, of which rank r takes every
  world-th from r (padded to equal shares like torch's DistributedSampler). Where a run stands comes from its
  optimizer step when the loader starts, so a resumed run draws the rest of the interrupted epoch, in its order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Iterator, Optional, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from atst.backbone import check_mel_finite, clip_mels
from atst.frontend import LogMelFrontend
from atst.official import centre_crop
from atst.training.interrupt import loader_worker_init

from ..datasets import Clip, ClipDataset, LabelSpace
from ..datasets.audio_cache import AudioCache
from ..linear.readout import unusable_reason
from .augment import TrainAugment
from .schedule import samples_per_rank

BALANCE_NUMERATOR = 1000.0  # the PSLA / AST weights of the official AudioSet-2M sampler: 1000 / (n_c + 0.01)
BALANCE_EPSILON = 0.01


@dataclass
class ClipMels:
    """A clip's audio `[N]` (16 kHz) -> its log-mel `[n_mels, F]` under `protocol` (module docstring); a clip the
    read-out cannot take raises ValueError naming why."""

    frontend: LogMelFrontend
    patch_w: int
    protocol: str
    family: str

    def __call__(self, audio: Tensor) -> Tensor:
        if self.protocol == "hear":
            return clip_mels(self.frontend, self.patch_w, audio[None], torch.tensor([audio.shape[-1]]))[0]
        wave = centre_crop(audio, self.frontend.config.sample_rate)
        reason = unusable_reason(self.protocol, self.family, self.frontend, int(wave.shape[-1]))
        if reason:
            raise ValueError(reason)
        mel = self.frontend(wave[None])
        check_mel_finite(mel, wave[None], [0])
        return mel[0]


class MelClipDataset(Dataset):
    """Items `{"mel": [n_mels, F] or None, "target", "key", "index", "error": str or None}` of `clips`."""

    def __init__(self, clips: Sequence[Clip], labels: LabelSpace, mels: ClipMels, one_hot: bool,
                 augment: Optional[TrainAugment] = None, cache: Optional[AudioCache] = None) -> None:
        self.clips = ClipDataset(clips, labels, cache=cache)
        self.mels, self.one_hot, self.augment = mels, one_hot, augment
        self.num_labels = labels.num_labels

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.clips[index]
        target = item["target"]
        if self.one_hot and target.ndim == 0:
            target = torch.nn.functional.one_hot(target, self.num_labels).float()
        out = {"mel": None, "target": target, "key": item["key"], "index": index, "error": item["error"]}
        if item["error"] is None:
            try:
                out["mel"] = self.mels(item["audio"])
            except ValueError as error:
                out["error"] = str(error)
        if out["mel"] is not None and self.augment is not None:
            out["mel"], out["target"] = self.augment(out["mel"], target)
        return out


def collate_mels(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """`mel` `[B, n_mels, F_max]` zero-padded, `frames` `[B]`, `targets` `[B]` or `[B, C]`, `index` `[B]`, `keys`, and
    `skipped`: (key, reason) of the items left out (the batch may then be empty: `mel` None)."""
    good = [item for item in items if item["mel"] is not None]
    skipped = [(item["key"], str(item["error"]).removeprefix(f"{item['key']}: ")) for item in items
               if item["mel"] is None]
    if not good:
        return {"mel": None, "frames": None, "targets": None, "index": None, "keys": [], "skipped": skipped}
    frames = torch.tensor([item["mel"].shape[-1] for item in good], dtype=torch.long)
    longest = int(frames.max())
    mel = torch.stack([torch.nn.functional.pad(item["mel"], (0, longest - item["mel"].shape[-1])) for item in good])
    return {"mel": mel, "frames": frames, "targets": torch.stack([item["target"] for item in good]),
            "index": torch.tensor([item["index"] for item in good], dtype=torch.long),
            "keys": [item["key"] for item in good], "skipped": skipped}


# ------------------------------------------------------------------------------------------------- samplers

def balanced_weights(targets: Sequence[Sequence[int]], num_labels: int) -> Tensor:
    """The official AudioSet-2M sampling weights (`F/downstream/test_sampler.py`, the PSLA / AST recipe): clip i gets
    w_i = sum over its classes c of 1000 / (n_c + 0.01), n_c the number of clips of class c among `targets` (each
    clip's class indices, as `Clip.target`). A clip without a label gets 0 (it is never drawn). `[N]` float64."""
    counts = torch.zeros(num_labels, dtype=torch.float64)
    for target in targets:
        counts[list(target)] += 1.0
    per_class = (BALANCE_NUMERATOR / (counts + BALANCE_EPSILON)).tolist()
    return torch.tensor([sum(per_class[c] for c in target) for target in targets], dtype=torch.float64)


@dataclass(frozen=True)
class TrainPosition:
    """Where the run stands, read when a training loader starts: (epoch, batches of it already trained) from the
    optimizer step `step()` and the epoch's length in steps and batches."""

    step: Callable[[], int]
    steps_per_epoch: int
    batches_per_epoch: int
    accumulate_grad_batches: int

    def now(self) -> tuple[int, int]:
        step = self.step()
        epoch, done = divmod(step, self.steps_per_epoch)
        return epoch, min(done * self.accumulate_grad_batches, self.batches_per_epoch)


class EpochSampler(Sampler[int]):
    """The training indices of one rank (module docstring). `weights` (`[N]`): draw with replacement in proportion
    to them (balanced sampling) instead of a permutation. `position`: the run's epoch and the batches of it already
    trained (a resumed run skips those); None = epoch 0 from its start."""

    def __init__(self, size: int, batch_size: int, rank: int = 0, world_size: int = 1, seed: int = 0,
                 weights: Optional[Tensor] = None, position: Optional[TrainPosition] = None) -> None:
        if size < 1:
            raise ValueError("the training split is empty")
        if weights is not None and (weights.shape != (size,) or not bool((weights >= 0).all())
                                    or not float(weights.sum()) > 0):
            raise ValueError(f"sampling weights must be {size} non-negative numbers, not all 0")
        self.size, self.batch_size, self.rank, self.world_size, self.seed = size, batch_size, rank, world_size, seed
        self.weights, self.position = weights, position
        self.per_rank = samples_per_rank(size, world_size, batch_size)

    def __len__(self) -> int:
        return self.per_rank

    def epoch_indices(self, epoch: int) -> list[int]:
        """All `per_rank` indices of this rank in `epoch`."""
        generator = torch.Generator().manual_seed(self.seed + epoch)
        total = math.ceil(self.size / self.world_size) * self.world_size
        if self.weights is not None:
            order = torch.multinomial(self.weights, total, replacement=True, generator=generator)
        else:
            order = torch.randperm(self.size, generator=generator)
            order = torch.cat([order] * math.ceil(total / self.size))[:total]
        return order[self.rank :: self.world_size][: self.per_rank].tolist()

    def __iter__(self) -> Iterator[int]:
        epoch, batches_done = self.position.now() if self.position is not None else (0, 0)
        return iter(self.epoch_indices(epoch)[batches_done * self.batch_size :])


def eval_sampler(size: int, rank: int, world_size: int) -> Sampler[int]:
    """Evaluation: every clip once per rank share, in order (torch's DistributedSampler without shuffling pads the
    last shares with repeats; metrics count each clip once by its index)."""
    if world_size == 1:
        return torch.utils.data.SequentialSampler(range(size))
    return torch.utils.data.DistributedSampler(range(size), num_replicas=world_size, rank=rank, shuffle=False)


def make_loader(dataset: Dataset, sampler: Sampler[int], batch_size: int, num_workers: int, rank: int,
                pin_memory: bool, persistent: bool) -> DataLoader:
    """A loader of `collate_mels` batches; workers ignore SIGINT/SIGTERM and are seeded as Lightning seeds them;
    `persistent`: they live from epoch to epoch (training: their mixup banks too)."""
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      collate_fn=collate_mels, pin_memory=pin_memory, persistent_workers=persistent and num_workers > 0,
                      worker_init_fn=partial(loader_worker_init, rank=rank))


__all__ = ["ClipMels", "EpochSampler", "MelClipDataset", "TrainPosition", "balanced_weights", "collate_mels",
           "eval_sampler", "make_loader"]
