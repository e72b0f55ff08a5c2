"""ATST-C2F distillation (spec `downstream_frame_spec.md` section 3): fine-tuning of a student encoder (ATST-Frame in
the paper) with a second loss term towards a frozen fine-tuned teacher (ATST-Clip in the paper), built on
`downstream.finetune` (the same data, recipe, schedule, resume, selection, model files and report).

  defaults  the official C2F settings per dataset (table 3.5) and the distillation weight (1.0 AS-2M, else 0.5)
  config    DistillConfig: finetune's options + --teacher, --distill-weight, --teacher-train-mode
  loss      the loss: w * distillation term + (1 - w) * task loss; the student / teacher agreement
  teacher   the teacher: a fine-tuned model file checked against the task, frozen, kept in eval mode
  module    DistillModule: FinetuneModule with the teacher, the two-term loss, agreement at every validation
  run       DistillVariant (the finetune run's hooks) and run_distill
"""
from typing import Any

from .config import DistillConfig

__all__ = ["DistillConfig", "DistillVariant", "run_distill"]
_RUN = ("DistillVariant", "run_distill")  # need Lightning: loaded on first use


def __getattr__(name: str) -> Any:
    if name in _RUN:
        from . import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
