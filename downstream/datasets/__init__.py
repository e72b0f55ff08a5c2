"""Labelled datasets for the downstream door: the registry (audiossl's interface), the native-layout and generic
sources, the clip dataset and its audio cache, packed shards, the TASK argument and `DownstreamDataModule`.

    from downstream.datasets import get_dataset, list_all_datasets, load_task, DownstreamDataModule

`DownstreamDataModule` is loaded on first use (it needs Lightning; the rest does not).
"""
from typing import Any

from .audio_cache import AudioCache
from .clip_dataset import ClipDataset, collate_clips
from .pack import PackReport, pack_task
from .registry import DatasetInfo, get_dataset, list_all_datasets, register_dataset
from .resolve import load_strong_task, load_task
from .strong import Event, StrongClip, StrongTask
from .strong_audio import clip_duration, read_strong_clip
from .shards import PackedTask, ShardClipDataset, is_packed, load_packed
from .types import Clip, FoldPlan, FoldSplits, LabelSpace, Task, fold_plan

__all__ = ["AudioCache", "Clip", "ClipDataset", "DatasetInfo", "DownstreamDataModule", "Event", "FoldPlan",
           "FoldSplits", "LabelSpace", "PackReport", "PackedTask", "ShardClipDataset", "StrongClip", "StrongTask",
           "Task", "clip_duration", "collate_clips", "fold_plan", "get_dataset", "is_packed", "list_all_datasets",
           "load_packed", "load_strong_task", "load_task", "pack_task", "read_strong_clip", "register_dataset"]


def __getattr__(name: str) -> Any:
    if name == "DownstreamDataModule":
        from .datamodule import DownstreamDataModule

        return DownstreamDataModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
