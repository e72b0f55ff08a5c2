"""`SedData`: the loaders of a `sed` run, built inside the run (each DDP rank knows its rank then): training batches
of strong / weak / unlabelled windows (`data.StrongWeakBatches`, positioned from the optimizer step so a resumed
run continues the interrupted epoch), and whole validation and test recordings, each rank its share."""
from __future__ import annotations

from typing import Optional

from torch.utils.data import DataLoader

from atst.training.config import RunConfig

from ..datasets.audio_cache import AudioCache
from ..datasets.strong import StrongClip
from ..finetune.datamodule import PositionedData
from .data import StrongWeakBatches, WindowDataset, recording_loader, steps_per_epoch, train_loader
from .recipe import SedRecipe

EVAL_SPLITS = ("valid", "test")


def train_parts(train: dict[str, tuple[StrongClip, ...]], recipe: SedRecipe) -> tuple[list, list[int]]:
    """The clips of each role (strong, weak, unlabelled) and the items of each drawn per batch."""
    parts = [list(train.get("train_strong", ())), list(train.get("train_weak", ())),
             list(train.get("train_unlabelled", ())) if recipe.mean_teacher else []]
    batches = [recipe.strong_batch if parts[0] else 0, recipe.weak_batch if parts[1] else 0,
               recipe.unlabelled_batch if parts[2] else 0]
    return parts, batches


class SedData(PositionedData):
    """Loaders of a `sed` run; `splits`: the task's training splits and the `valid` / `test` recordings."""

    def __init__(self, splits: dict[str, tuple[StrongClip, ...]], num_classes: int, recipe: SedRecipe, run: RunConfig,
                 cache: Optional[AudioCache] = None) -> None:
        super().__init__()
        self.splits, self.num_classes, self.recipe, self.run, self.cache = splits, num_classes, recipe, run, cache
        self.parts, self.batches = train_parts(splits, recipe)
        self.steps_per_epoch = steps_per_epoch([len(p) for p in self.parts], self.batches, run.world_size)
        self.batches_per_epoch = self.steps_per_epoch * run.accumulate_grad_batches
        self._eval: dict[str, DataLoader] = {}

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank()
        dataset = WindowDataset(self.parts, self.num_classes, crop=True, cache=self.cache)
        sampler = StrongWeakBatches(dataset.sizes, dataset.offsets, self.batches, self.batches_per_epoch, rank, world,
                                    self.run.seed, self.position())
        return train_loader(dataset, sampler, self.run.num_workers, rank, self.run.accelerator == "gpu")

    def split_clips(self, split: str) -> list[StrongClip]:
        if split not in EVAL_SPLITS:
            raise ValueError(f"split must be one of {EVAL_SPLITS}, got {split!r}")
        return list(self.splits[split])

    def eval_loader(self, split: str) -> DataLoader:
        """The loader of this rank's share of `split`, made once."""
        if split not in self._eval:
            rank, world = self._rank()
            self._eval[split] = recording_loader(self.split_clips(split), rank, world, self.run.num_workers,
                                                 self.cache)
        return self._eval[split]


__all__ = ["EVAL_SPLITS", "SedData", "train_parts"]
