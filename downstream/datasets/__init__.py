"""Labelled datasets for the downstream door: the registry (audiossl's interface), the generic sources, the
clip dataset and the TASK argument.

    from downstream.datasets import get_dataset, list_all_datasets, load_task
"""
from .clip_dataset import ClipDataset, collate_clips
from .registry import DatasetInfo, get_dataset, list_all_datasets, register_dataset
from .resolve import load_task
from .types import Clip, FoldSplits, LabelSpace, Task

__all__ = ["Clip", "ClipDataset", "DatasetInfo", "FoldSplits", "LabelSpace", "Task", "collate_clips", "get_dataset",
           "list_all_datasets", "load_task", "register_dataset"]
