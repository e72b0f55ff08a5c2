"""The options of `atst-downstream distill`: those of `finetune` (`FinetuneConfig`) plus the teacher, the
distillation weight and the teacher's mode."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from atst.training.config import check_flag

from ..finetune.config import FinetuneConfig, check_config


@dataclass(frozen=True)
class DistillConfig(FinetuneConfig):
    """What `atst-downstream distill` was given; `ckpt` is the student's encoder checkpoint."""

    teacher: str = ""  # a fine-tuned model file (best.ckpt) or the --out folder of `atst-downstream finetune`
    distill_weight: Optional[float] = None  # w in [0, 1]; None: 1.0 for AudioSet-2M, 0.5 elsewhere
    teacher_train_mode: bool = False  # the official stochastic teacher (dropout / DropPath, batch statistics)


def check_distill_config(config: DistillConfig) -> None:
    """Refuse given values out of range (before anything is read or created)."""
    check_config(config)
    if not str(config.teacher).strip():
        raise ValueError("--teacher is required: the --out folder (or best.ckpt) of `atst-downstream finetune`")
    if config.distill_weight is not None:
        check_flag("--distill-weight", config.distill_weight, 0.0, 1.0,
                   note="w of w * distillation + (1 - w) * task loss")


__all__ = ["DistillConfig", "check_distill_config"]
