"""`downstream`: labelled training on ATST encoders: the dataset registry, linear evaluation, fine-tuning and
prediction (`atst-downstream`, `python -m downstream`). Frame-level detection and distillation come next.

The door imports `atst` and `atst.training` only.
"""
from .datasets import get_dataset, list_all_datasets, load_task


def __getattr__(name: str):
    # the audiossl interface `downstream.DownstreamDataModule`, loaded on first use (it needs Lightning)
    if name == "DownstreamDataModule":
        from .datasets import DownstreamDataModule

        return DownstreamDataModule
    raise AttributeError(f"module 'downstream' has no attribute {name!r}")


__all__ = ["DownstreamDataModule", "get_dataset", "list_all_datasets", "load_task"]
