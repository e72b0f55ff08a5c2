"""`DownstreamDataModule`: audiossl's data module, working: a registered dataset (or any TASK, or a packed task)
as train / valid / test data loaders of `ClipDataset` (or `ShardClipDataset`) batches.

    dm = DownstreamDataModule("/data/UrbanSound8K", "us8k", fold=0, batch_size_per_gpu=64, num_workers=4)
    dm.num_labels, dm.multi_label, dm.dataset_train, dm.train_dataloader()

Differences from audiossl, on purpose: `fold` is 0-based (audiossl's us8k fold k is our fold k - 1); `protocol`
chooses how valid is formed (`types.fold_plan`: `hear` never validates on test data, `official` reproduces the
published protocol); batches are `collate_clips` dicts of 16 kHz mono audio unless `collate_fn` is given; audio
goes through the audio cache (`cache`). Extra keyword arguments (audiossl splats its whole argparse namespace in)
are accepted and ignored; their names are kept in `ignored_kwargs`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch.utils.data import DataLoader

from atst.training.lightning import pl

from .audio_cache import DEFAULT, CacheChoice, resolve_cache
from .clip_dataset import ClipDataset, collate_clips
from .registry import get_dataset
from .resolve import load_task
from .shards import EpochLoader, ShardClipDataset, is_packed, load_packed


def _three(value: Optional[Sequence[Optional[Callable]]], name: str) -> tuple[Optional[Callable], ...]:
    if value is None:
        return (None, None, None)
    if callable(value) or len(value) != 3:
        raise TypeError(f"{name} must be None or a list of three callables or Nones (train, valid, test)")
    return tuple(value)


class DownstreamDataModule(pl.LightningDataModule):
    """Data loaders of one fold of a task (see the module docstring).

    `data_path` with `dataset_name`: a registered dataset in its native layout. `dataset_name=None`: `data_path`
    is any TASK (`resolve.load_task`: a HEAR task, a manifest, class folders) or a folder written by
    `atst-downstream pack` (streamed). Attributes: `num_labels`, `multi_label`, `labels`, `dataset_train`,
    `dataset_val`, `dataset_test`, `skipped` (files missing at load), `fold_note` (how valid was chosen).
    """

    def __init__(self, data_path: Union[str, Path], dataset_name: Optional[str] = None, fold: int = 0,
                 batch_size_per_gpu: int = 1024, num_workers: int = 10,
                 transforms: Optional[Sequence[Optional[Callable]]] = None,
                 target_transforms: Optional[Sequence[Optional[Callable]]] = None,
                 collate_fn: Optional[Callable] = None, limit_batch_size: Optional[int] = None, shuffle: bool = True,
                 sampler: Optional[Any] = None, protocol: str = "hear", cache: CacheChoice = DEFAULT,
                 seed: int = 0, shuffle_buffer: int = 256, **kwargs: Any) -> None:
        super().__init__()
        self.ignored_kwargs = sorted(kwargs)
        self.batch_size = min(limit_batch_size, batch_size_per_gpu) if limit_batch_size else batch_size_per_gpu
        self.num_workers, self.shuffle, self.sampler = num_workers, shuffle, sampler
        self.collate_fn = collate_fn or collate_clips
        transforms3, targets3 = _three(transforms, "transforms"), _three(target_transforms, "target_transforms")
        if dataset_name is None and is_packed(data_path):
            packed = load_packed(data_path)
            if sampler is not None:
                raise ValueError("a packed task is streamed: it takes no sampler (shuffling is by shard order and "
                                 "a shuffle buffer)")
            self.labels, self.skipped = packed.labels, packed.skipped
            self.fold_note = packed.plan(fold, protocol).note
            self.dataset_train, self.dataset_val, self.dataset_test = packed.datasets(
                fold, protocol, transforms3, targets3, seed=seed, shuffle_buffer=shuffle_buffer if shuffle else 0)
        else:
            task = get_dataset(dataset_name).load(data_path) if dataset_name else load_task(str(data_path))
            splits = task.fold(fold, protocol)
            audio_cache = resolve_cache(cache)
            self.labels, self.skipped, self.fold_note = task.labels, task.skipped, splits.note
            self.dataset_train, self.dataset_val, self.dataset_test = (
                ClipDataset(clips, task.labels, transform, target_transform, audio_cache)
                for clips, transform, target_transform in zip((splits.train, splits.valid, splits.test),
                                                               transforms3, targets3))
        self.num_labels, self.multi_label = self.labels.num_labels, self.labels.multi_label

    def _loader(self, dataset: Any, train: bool) -> DataLoader:
        common = dict(batch_size=self.batch_size, num_workers=self.num_workers, collate_fn=self.collate_fn,
                      drop_last=False, pin_memory=torch.cuda.is_available())
        if isinstance(dataset, ShardClipDataset):
            return EpochLoader(dataset, **common)
        if train:
            return DataLoader(dataset, shuffle=self.shuffle if self.sampler is None else False, sampler=self.sampler,
                              **common)
        return DataLoader(dataset, shuffle=False, **common)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.dataset_train, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.dataset_val, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.dataset_test, train=False)


__all__ = ["DownstreamDataModule"]
