"""`downstream`: labelled training on ATST encoders: the dataset registry, linear evaluation, fine-tuning and
prediction (`atst-downstream`, `python -m downstream`). Frame-level detection and distillation come next.

The door imports `atst` and `atst.training` only.
"""
from .datasets import get_dataset, list_all_datasets, load_task

__all__ = ["get_dataset", "list_all_datasets", "load_task"]
