"""The data of a `sed` run: 10 s training windows with their labels, the strong / weak / unlabelled batch halves, and
whole recordings for validation and test.

* `WindowDataset`: one training item per clip of the three training parts (role 0 strong, 1 weak, 2 unlabelled):
  the clip's audio cut to a 10 s window, a clip shorter is zero-padded at the end, a longer one randomly cropped
  with its events shifted and clipped to the window (spec 1.2); targets: frames `[250, C]` (strong, `encode_events`
  at 40 ms), the clip vector `[C]` (weak; for a strong clip the classes of the events in the window).
* `StrongWeakBatches`: the official `ConcatDatasetSampler` (spec 1.4): every batch is `strong_batch` strong items,
  then `weak_batch` weak ones (then `unlabelled_batch` unlabelled, mean teacher), each part drawn from its own
  stream of seeded permutations that continues across epochs (a part is reshuffled when it is used up). The
  stream of part p on rank r is fixed by the seed, so batch k of the run is known from k alone: a resumed run
  continues exactly (`TrainPosition`, the optimizer step when the loader starts). Steps per epoch
  = len(weak) // (weak_batch x ranks), or len(strong) // (strong_batch x ranks) without weak clips (at least 1).
* `RecordingDataset`: validation and test recordings whole, at their own length (`SedModel.recording_scores`
  windows them).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any, Iterator, Optional, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from atst.audio_io import SAMPLE_RATE
from atst.training.interrupt import loader_worker_init

from ..datasets.audio_cache import AudioCache
from ..datasets.strong import Event, StrongClip, encode_events
from ..datasets.strong_audio import read_strong_clip
from ..finetune.data import TrainPosition, eval_sampler

WINDOW_SECONDS = 10.0
WINDOW_SAMPLES = int(WINDOW_SECONDS * SAMPLE_RATE)
WINDOW_FRAMES = 250  # 40 ms label frames per window
ROLES = ("strong", "weak", "unlabelled")


def crop_window(audio: Tensor, start: int) -> Tensor:
    """`audio[start : start + 10 s]`, zero-padded at the end to exactly 10 s."""
    window = audio[start : start + WINDOW_SAMPLES]
    return torch.nn.functional.pad(window, (0, WINDOW_SAMPLES - window.shape[-1]))


def shift_events(events: Sequence[Event], start_seconds: float) -> list[Event]:
    """Events moved to a window starting at `start_seconds`, clipped to [0, 10] s; those outside are dropped."""
    shifted = []
    for event in events:
        onset = max(event.onset - start_seconds, 0.0)
        offset = min(event.offset - start_seconds, WINDOW_SECONDS)
        if offset > onset:
            shifted.append(Event(onset, offset, event.label))
    return shifted


class WindowDataset(Dataset):
    """Training items (module docstring): `{"audio": [160000], "strong": [250, C], "weak": [C], "role", "key",
    "error"}`; `parts`: the clips of each role in `ROLES` order; `crop`: random crop of longer clips (else the start)."""

    def __init__(self, parts: Sequence[Sequence[StrongClip]], num_classes: int, crop: bool = True,
                 cache: Optional[AudioCache] = None) -> None:
        self.items = [(role, clip) for role, clips in enumerate(parts) for clip in clips]
        self.offsets = [sum(len(part) for part in parts[:role]) for role in range(len(parts))]
        self.sizes = [len(part) for part in parts]
        self.num_classes, self.crop, self.cache = num_classes, crop, cache

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        role, clip = self.items[index]
        out: dict[str, Any] = {"role": role, "key": clip.key, "error": None, "audio": None,
                               "strong": torch.zeros(WINDOW_FRAMES, self.num_classes),
                               "weak": torch.zeros(self.num_classes)}
        try:
            audio = read_strong_clip(clip, self.cache)
        except ValueError as error:
            out["error"] = str(error)
            return out
        extra = audio.shape[-1] - WINDOW_SAMPLES
        start = int(torch.randint(0, extra + 1, ()).item()) if self.crop and extra > 0 else 0
        out["audio"] = crop_window(audio, start)
        if clip.events is not None:
            events = shift_events(clip.events, start / SAMPLE_RATE)
            out["strong"] = encode_events(events, WINDOW_FRAMES, self.num_classes)
            out["weak"] = (out["strong"].sum(dim=0) > 0).float()
        elif clip.weak is not None:
            out["weak"][list(clip.weak)] = 1.0
        return out


def collate_windows(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """`audio` `[B, 160000]`, `strong` `[B, 250, C]`, `weak` `[B, C]`, `role` `[B]`, `keys`, and `skipped` (key, reason)
    of the items that could not be read (left out; `audio` None when none is left)."""
    good = [item for item in items if item["audio"] is not None]
    skipped = [(item["key"], str(item["error"]).removeprefix(f"{item['key']}: ")) for item in items
               if item["audio"] is None]
    if not good:
        return {"audio": None, "strong": None, "weak": None, "role": None, "keys": [], "skipped": skipped}
    return {"audio": torch.stack([item["audio"] for item in good]),
            "strong": torch.stack([item["strong"] for item in good]),
            "weak": torch.stack([item["weak"] for item in good]),
            "role": torch.tensor([item["role"] for item in good], dtype=torch.long),
            "keys": [item["key"] for item in good], "skipped": skipped}


def steps_per_epoch(sizes: Sequence[int], batches: Sequence[int], world_size: int) -> int:
    """The official epoch length (module docstring): from the weak part when it is drawn, else the strong one."""
    strong, weak = sizes[0], sizes[1]
    if batches[1] > 0 and weak > 0:
        return max(weak // (batches[1] * world_size), 1)
    if batches[0] > 0 and strong > 0:
        return max(strong // (batches[0] * world_size), 1)
    raise ValueError("no labelled training clips are drawn: the task has no strong clips with --strong_batch > 0 "
                     "and no weak clips with --weak_batch > 0")


@dataclass(frozen=True)
class PartStream:
    """The endless stream of one part on one rank: permutation c (seed + 7919 p + c) of the part, rank r taking
    every world-th element from r (shares padded to equal size by repeating the permutation)."""

    size: int
    part: int
    rank: int
    world_size: int
    seed: int

    @property
    def per_cycle(self) -> int:
        return math.ceil(self.size / self.world_size)

    def cycle(self, index: int) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed + 7919 * self.part + index)
        order = torch.randperm(self.size, generator=generator)
        total = self.per_cycle * self.world_size
        order = torch.cat([order] * math.ceil(total / self.size))[:total]
        return order[self.rank :: self.world_size].tolist()

    def take(self, start: int, count: int) -> list[int]:
        """Elements `start .. start + count - 1` of the stream."""
        out: list[int] = []
        position = start
        while len(out) < count:
            cycle, offset = divmod(position, self.per_cycle)
            chunk = self.cycle(cycle)[offset : offset + count - len(out)]
            out += chunk
            position += len(chunk)
        return out


class StrongWeakBatches(Sampler[list[int]]):
    """Batches of dataset indices (module docstring). `sizes`/`offsets`: each part's clips and first index in the
    dataset; `batches`: items per part and batch; `batches_per_epoch`: the loader's epoch length."""

    def __init__(self, sizes: Sequence[int], offsets: Sequence[int], batches: Sequence[int], batches_per_epoch: int,
                 rank: int = 0, world_size: int = 1, seed: int = 0,
                 position: Optional[TrainPosition] = None) -> None:
        self.streams = [(PartStream(size, part, rank, world_size, seed), offset, batch)
                        for part, (size, offset, batch) in enumerate(zip(sizes, offsets, batches))
                        if size > 0 and batch > 0]
        self.batches_per_epoch, self.position = batches_per_epoch, position

    def __len__(self) -> int:
        return self.batches_per_epoch

    def batch(self, number: int) -> list[int]:
        """Batch `number` (from 0) of the run on this rank."""
        return [offset + index for stream, offset, size in self.streams
                for index in stream.take(number * size, size)]

    def __iter__(self) -> Iterator[list[int]]:
        epoch, done = self.position.now() if self.position is not None else (0, 0)
        for j in range(done, self.batches_per_epoch):
            yield self.batch(epoch * self.batches_per_epoch + j)


class RecordingDataset(Dataset):
    """Whole recordings: `{"audio": [N] or None, "index", "key", "error"}`."""

    def __init__(self, clips: Sequence[StrongClip], cache: Optional[AudioCache] = None) -> None:
        self.clips, self.cache = list(clips), cache

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict[str, Any]:
        clip = self.clips[index]
        try:
            audio = read_strong_clip(clip, self.cache)
            return {"audio": audio, "index": index, "key": clip.key, "error": None}
        except ValueError as error:
            return {"audio": None, "index": index, "key": clip.key, "error": str(error)}


def recording_loader(clips: Sequence[StrongClip], rank: int, world_size: int, num_workers: int,
                     cache: Optional[AudioCache] = None, batch_size: int = 8) -> DataLoader:
    """This rank's share of `clips`, in order, as lists of `RecordingDataset` items."""
    dataset = RecordingDataset(clips, cache)
    return DataLoader(dataset, batch_size=batch_size, sampler=eval_sampler(len(dataset), rank, world_size),
                      num_workers=num_workers, collate_fn=list, worker_init_fn=partial(loader_worker_init, rank=rank))


def train_loader(dataset: WindowDataset, sampler: StrongWeakBatches, num_workers: int, rank: int,
                 pin_memory: bool) -> DataLoader:
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, collate_fn=collate_windows,
                      pin_memory=pin_memory, persistent_workers=num_workers > 0,
                      worker_init_fn=partial(loader_worker_init, rank=rank))


__all__ = ["ROLES", "RecordingDataset", "StrongWeakBatches", "WINDOW_FRAMES", "WINDOW_SAMPLES", "WindowDataset",
           "collate_windows", "crop_window", "recording_loader", "shift_events", "steps_per_epoch", "train_loader"]
