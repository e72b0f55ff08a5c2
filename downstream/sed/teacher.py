"""The teacher of frame-level distillation (`atst-downstream sed --distill-teacher`): a trained `sed` model file
(ATST-Frame or any model `atst-downstream sed` wrote), checked against the task, frozen and kept in eval mode
(`downstream.frozen.FrozenNetwork`; `stochastic` for a train-mode teacher).

    source = read_sed_teacher("runs/desed_teacher", task, student_frontend)   # checks: a sed model, the classes,
    teacher = SedTeacher(source)                                               # 40 ms frames, the front end
    strong, weak = teacher(audio)            # [B, N] 16 kHz -> [B, T, C], [B, C] probabilities, task class order
    scores = teacher.recording_scores([wave])   # as SedModel.recording_scores

The teacher scores the same 10 s windows (same front end, 250 tokens of 40 ms) the student sees, so its frames are
the student's frames.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor

from atst.checkpoint import CheckpointError
from atst.frontend import FrontendConfig

from ..datasets.strong import TOKEN_SECONDS, StrongTask
from ..distill.teacher import check_frontends, class_order
from ..finetune.model import DROP_PATH_RATE
from ..frozen import FrozenNetwork
from .detect import Detector

FLAG = "--distill-teacher"
ADVICE = (f"the {FLAG} must be a sound event detection model: the --out folder (or best.ckpt) of "
          f"`atst-downstream sed`")


@dataclass
class SedTeacherSource:
    """A read and checked teacher file; `order`: teacher class index of each task class (None: the same order)."""

    detector: Detector
    order: Optional[list[int]]
    stochastic: bool = False

    @property
    def frontend(self) -> FrontendConfig:
        return self.detector.model.backbone.frontend.config


def read_sed_teacher(path: str, task: StrongTask, student_frontend: FrontendConfig,
                     stochastic: bool = False) -> SedTeacherSource:
    """The `sed` model file at `path` (a file or the --out folder holding best.ckpt), checked: a sed model whose
    classes are the task's (any order), whose frames are 40 ms ATST-Frame tokens and whose front end is the
    student's. Anything else: CheckpointError / ValueError (FileNotFoundError for a missing path) naming what is
    wrong and what to pass. `stochastic`: DropPath 0.1 in the teacher's encoder (active in train mode only)."""
    try:
        detector = Detector.load(path, drop_path_rate=DROP_PATH_RATE if stochastic else None)
    except CheckpointError as error:
        raise CheckpointError(f"{FLAG} {path}: {error}; {ADVICE}") from None
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{FLAG}: {error}; {ADVICE}") from None
    order = class_order(list(task.labels.names), detector.labels,
                        f"{FLAG} {detector.path} detects other classes than task {task.name}",
                        "pass a sed model trained on this task's classes")
    if not math.isclose(detector.frame_seconds, TOKEN_SECONDS):
        raise ValueError(f"{FLAG} {detector.path} scores frames of {detector.frame_seconds} s; the student scores "
                         f"{TOKEN_SECONDS} s frames (pass a model of `atst-downstream sed`)")
    window = detector.info.get("window_seconds")
    own = detector.model.window_samples / detector.model.backbone.sample_rate
    if not isinstance(window, (int, float)) or not math.isclose(float(window), own):
        raise ValueError(f"{FLAG} {detector.path} was trained on {window!r} s windows; its encoder scores {own} s "
                         f"windows (a damaged or foreign sed model file)")
    check_frontends(detector.model.backbone.frontend.config, student_frontend, str(detector.path), FLAG)
    return SedTeacherSource(detector, order, stochastic)


class SedTeacher(FrozenNetwork):
    """The teacher's `SedModel`, frozen; outputs in the task's class order (module docstring)."""

    def __init__(self, source: SedTeacherSource) -> None:
        super().__init__(source.detector.model, source.stochastic)
        self.register_buffer("order", None if source.order is None else torch.tensor(source.order),
                             persistent=False)

    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    def _ordered(self, scores: Tensor) -> Tensor:
        return scores if self.order is None else scores.index_select(-1, self.order.to(scores.device))

    def forward(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        """`audio` `[B, N]` 16 kHz -> strong `[B, T, C]`, weak `[B, C]` probabilities, computed without a graph."""
        with torch.no_grad():
            strong, weak, _ = self.model(audio)
        return self._ordered(strong), self._ordered(weak)

    def recording_scores(self, waves: Sequence[Tensor], trim: bool = True) -> list[Tensor]:
        """`SedModel.recording_scores` of the teacher, `[T_i, C]` in the task's class order."""
        with torch.no_grad():
            return [self._ordered(scores) for scores in self.model.recording_scores(waves, trim)]


__all__ = ["FLAG", "SedTeacher", "SedTeacherSource", "read_sed_teacher"]
