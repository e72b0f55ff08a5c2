"""What `--distill-teacher` adds to a `sed` run (`run.run_sed`): the flag checks, the teacher read before the run
folder is touched, the structural settings a resume must share (the teacher's SHA-256, the weight, its mode), the
model file's note, and the `distillation` entry of results.json (the teacher's test numbers on the same test split,
the weight, the frame gap before and after)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from atst.frontend import FrontendConfig
from atst.training.config import check_flag

from ..datasets.strong import StrongTask
from ..linear.cache import file_sha256
from .distill import DEFAULT_WEIGHT
from .teacher import FLAG, SedTeacherSource, read_sed_teacher

STRUCTURAL = ("distill_teacher_sha256", "distill_weight", "teacher_train_mode")
WEIGHT_SOURCE = ("the official AudioSet-strong frame-level distillation (model_distill_as_strong.py: 0.5 labels + "
                 "0.5 teacher); the official DESED weighting (labels : teacher = 2 : 1) is --distill-weight 0.333")


@dataclass
class Distillation:
    """A checked teacher and the distillation settings of a run."""

    source: SedTeacherSource
    weight: float
    weight_source: str
    sha256: str
    train_mode: bool

    @property
    def path(self) -> str:
        return str(self.source.detector.path)

    def hyper_parameters(self) -> dict:
        return {"distill_teacher": self.path, "distill_teacher_sha256": self.sha256, "distill_weight": self.weight,
                "teacher_train_mode": self.train_mode}

    def model_info(self) -> dict:
        return {"distilled_from": {"path": self.path, "sha256": self.sha256, "weight": self.weight}}

    def loss_text(self, weak: bool) -> str:
        term = "BCE(strong_S, strong_T)" + (" + BCE(weak_S, weak_T)" if weak else "")
        return f"{self.weight:g} x [{term}] + {1 - self.weight:g} x the sed loss"

    def mode_text(self) -> str:
        return ("train mode (DropPath 0.1 active: stochastic targets, as the official C2F teacher)" if self.train_mode
                else "eval mode under no_grad (deterministic targets, as the official frame-level teacher)")

    def results(self, module: Any, history: list, chosen: dict, teacher_test: dict, test_gap: float,
                weak: bool) -> dict:
        """The `distillation` entry of results.json."""
        return {
            "teacher": self.path, "teacher_sha256": self.sha256, "teacher_mode": self.mode_text(),
            "weight": self.weight, "weight_source": self.weight_source, "loss": self.loss_text(weak),
            "teacher_test": teacher_test, "test_frame_gap": test_gap,
            "valid_frame_gap": {"before": (module.initial or {}).get("frame_gap"),
                                "after": history[-1].get("frame_gap") if history else None,
                                "selected": chosen.get("frame_gap")},
        }


def check_distill_flags(config: Any) -> None:
    """The distillation flags, before anything is read: ValueError naming a flag out of range or given without
    --distill-teacher."""
    if not config.distill_teacher:
        for flag, given in (("--distill-weight", config.distill_weight is not None),
                            ("--teacher-train-mode", config.teacher_train_mode)):
            if given:
                raise ValueError(f"{flag} needs {FLAG} (the sed model to distil from)")
    elif config.distill_weight is not None:
        check_flag("--distill-weight", config.distill_weight, 0.0, 1.0,
                   note="w of w * distillation + (1 - w) * the sed loss")


def prepare_distillation(config: Any, task: StrongTask, frontend: FrontendConfig) -> Optional[Distillation]:
    """None without --distill-teacher; else the read and checked teacher (errors name the flag)."""
    check_distill_flags(config)
    if not config.distill_teacher:
        return None
    source = read_sed_teacher(config.distill_teacher, task, frontend, stochastic=config.teacher_train_mode)
    weight, where = ((float(config.distill_weight), "--distill-weight") if config.distill_weight is not None
                     else (DEFAULT_WEIGHT, WEIGHT_SOURCE))
    return Distillation(source, weight, where, file_sha256(source.detector.path), bool(config.teacher_train_mode))


def plain_hyper_parameters() -> dict:
    """The distillation settings of a run without a teacher (recorded, so a resume with one is refused; all None,
    as a run folder written before the option reads)."""
    return {"distill_teacher": None, "distill_teacher_sha256": None, "distill_weight": None,
            "teacher_train_mode": None}


__all__ = ["Distillation", "STRUCTURAL", "check_distill_flags", "plain_hyper_parameters", "prepare_distillation"]
