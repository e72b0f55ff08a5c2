"""`FinetuneData`: the loaders of one fold, built inside the run (each DDP rank knows its rank then).

Training: `MelClipDataset` with the training augmentations, sharded by `EpochSampler` (a seeded permutation per
epoch, or balanced draws), positioned from the optimizer step so a resumed run continues the interrupted epoch.
Validation and test: the same mels without augmentation, each rank its `eval_sampler` share, in order. Lightning's
own DistributedSampler is not used (`use_distributed_sampler=False`): these samplers shard the data themselves.
"""
from __future__ import annotations

from typing import Optional

from torch.utils.data import DataLoader

from atst.training.config import RunConfig
from atst.training.lightning import pl

from ..datasets import FoldSplits, LabelSpace
from ..datasets.audio_cache import AudioCache
from .augment import MixupSpecLabel, RandomResizeCrop, TrainAugment
from .config import Recipe
from .data import ClipMels, EpochSampler, MelClipDataset, TrainPosition, balanced_weights, eval_sampler, make_loader
from .schedule import batches_per_epoch, steps_per_epoch

EVAL_SPLITS = ("valid", "test")


def train_augment(recipe: Recipe) -> Optional[TrainAugment]:
    """Mixup then RandomResizeCrop as the recipe says (None when neither is on)."""
    if not (recipe.mixup_training or recipe.rrc):
        return None
    mixup = MixupSpecLabel(recipe.alpha, recipe.mixup_bank, recipe.mixup_ratio) if recipe.mixup_training else None
    return TrainAugment(mixup, RandomResizeCrop() if recipe.rrc else None)


class PositionedData(pl.LightningDataModule):
    """A data module whose training loader starts where the run stands: `steps_per_epoch`, `batches_per_epoch` and
    `run` are set by the subclass."""

    steps_per_epoch: int
    batches_per_epoch: int
    run: RunConfig

    def _rank(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def position(self) -> TrainPosition:
        """The run's epoch and batches of it done, read from the optimizer step when the loader starts."""
        trainer = self.trainer
        return TrainPosition(lambda: trainer.global_step if trainer is not None else 0, self.steps_per_epoch,
                             self.batches_per_epoch, self.run.accumulate_grad_batches)


class FinetuneData(PositionedData):
    """Loaders of `splits` (see the module docstring); `cache`: the audio cache (None: decode every time)."""

    def __init__(self, splits: FoldSplits, labels: LabelSpace, mels: ClipMels, recipe: Recipe, run: RunConfig,
                 cache: Optional[AudioCache] = None) -> None:
        super().__init__()
        self.splits, self.labels, self.mels = splits, labels, mels
        self.recipe, self.run, self.cache = recipe, run, cache
        train = len(splits.train)
        self.steps_per_epoch = steps_per_epoch(train, run.world_size, recipe.batch_size_per_gpu,
                                               run.accumulate_grad_batches)
        self.batches_per_epoch = batches_per_epoch(train, run.world_size, recipe.batch_size_per_gpu)
        self._eval: dict[str, DataLoader] = {}

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank()
        recipe = self.recipe
        dataset = MelClipDataset(self.splits.train, self.labels, self.mels, one_hot=recipe.mixup_training,
                                 augment=train_augment(recipe), cache=self.cache)
        weights = (balanced_weights([clip.target for clip in self.splits.train], self.labels.num_labels)
                   if recipe.balanced_sampling else None)
        sampler = EpochSampler(len(dataset), recipe.batch_size_per_gpu, rank, world, self.run.seed, weights,
                               self.position())
        return make_loader(dataset, sampler, recipe.batch_size_per_gpu, self.run.num_workers, rank,
                           self.run.accelerator == "gpu", persistent=True)

    def eval_loader(self, split: str) -> DataLoader:
        """The loader of this rank's share of `split` ("valid" or "test"), made once."""
        if split not in EVAL_SPLITS:
            raise ValueError(f"split must be one of {EVAL_SPLITS}, got {split!r}")
        if split not in self._eval:
            rank, world = self._rank()
            clips = self.splits.valid if split == "valid" else self.splits.test
            dataset = MelClipDataset(clips, self.labels, self.mels, one_hot=False, cache=self.cache)
            self._eval[split] = make_loader(dataset, eval_sampler(len(dataset), rank, world),
                                            self.recipe.batch_size_per_gpu, self.run.num_workers, rank,
                                            self.run.accelerator == "gpu", persistent=False)
        return self._eval[split]


__all__ = ["EVAL_SPLITS", "FinetuneData", "PositionedData", "train_augment"]
