"""The teacher of a distillation: a fine-tuned downstream model file (`atst-downstream finetune`), its encoder and
head, run with the read-out its head was trained on (for a fine-tuned ATST-Clip under the official protocol: 6 s
chunks, [CLS | token mean]); frozen, and in eval mode for the whole run.

    source = read_teacher("runs/clip_spcv2", task)       # checks: a fine-tuned model file, the task's classes
    teacher = FrozenTeacher.build(source, stochastic=False)
    logits = teacher(mel, frames)                         # [B, n_mels, F], [B] -> [B, C] in the task's class order

`FrozenTeacher.train(True)` leaves it in eval mode (Lightning puts the whole LightningModule in train mode at
every epoch), unless `stochastic`: then it follows the mode it is given, as the official teacher did (DropPath
active, its head's batch norm on batch statistics, updating its running statistics), for parity runs.
Its logits are computed under `torch.no_grad()`.

The official C2F teacher is ATST-Clip; a fine-tuned ATST-Frame model is taken as well (same recipe: the official
frame-level variant distils between the two families in both directions). Teacher and student read the same
normalised log-mel, so their front ends must agree.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from atst.checkpoint import CheckpointError
from atst.frontend import FrontendConfig

from ..datasets import Task
from ..finetune.model import FinetuneModel, trainable_encoder
from ..frozen import FrozenNetwork
from ..model_file import DownstreamModel, read_model_file

TEACHER_KINDS = ("finetune", "distill")  # model files whose encoder was trained on the task with its head


@dataclass
class TeacherSource:
    """A read and checked teacher model file; `order`: teacher class index of each task class (None: the same)."""

    model: DownstreamModel
    order: Optional[list[int]]

    @property
    def family(self) -> str:
        return self.model.checkpoint.family

    @property
    def frontend(self) -> FrontendConfig:
        return self.model.checkpoint.frontend_config

    @property
    def fold(self) -> Optional[str]:
        fold = self.model.info.get("fold")
        return fold if isinstance(fold, str) else None


def read_teacher(path: str, task: Task) -> TeacherSource:
    """The teacher model file at `path` (a file or the --out folder holding best.ckpt), checked: a fine-tuned model
    (`TEACHER_KINDS`) whose classes are the task's (any order) and whose single/multi-label kind matches. Anything
    else: ValueError (FileNotFoundError for a missing path) naming what is wrong and what to pass."""
    advice = "the --teacher must be a fine-tuned model: the --out folder (or best.ckpt) of `atst-downstream finetune`"
    try:
        model = read_model_file(path)
    except CheckpointError as error:
        raise CheckpointError(f"--teacher {path}: {error}; {advice}") from None
    except FileNotFoundError as error:
        raise FileNotFoundError(f"--teacher: {error}") from None
    if model.kind not in TEACHER_KINDS:
        raise CheckpointError(f"--teacher {model.path} is a {model.kind!r} model (its encoder was not trained on the "
                              f"task); {advice}")
    order = class_order(list(task.labels.names), model.labels,
                        f"--teacher {model.path} was trained on other classes than task {task.name}",
                        "pass a teacher fine-tuned on this task")
    if model.multi_label != task.labels.multi_label:
        raise ValueError(f"--teacher {model.path} is a {'multi' if model.multi_label else 'single'}-label model; task "
                         f"{task.name} is {'multi' if task.labels.multi_label else 'single'}-label")
    return TeacherSource(model, order)


def class_order(names: list[str], theirs: list[str], mismatch: str, advice: str) -> Optional[list[int]]:
    """The teacher's index of each task class `names` among its classes `theirs` (None: the same order); other
    classes: ValueError `mismatch: what differs; advice (N classes)`."""
    if set(names) != set(theirs):
        missing, extra = sorted(set(names) - set(theirs)), sorted(set(theirs) - set(names))
        raise ValueError(f"{mismatch}: "
                         + "; ".join(part for part in (f"task classes it lacks {missing[:10]}" if missing else "",
                                                       f"classes the task lacks {extra[:10]}" if extra else "")
                                     if part)
                         + f"; {advice} ({len(names)} classes)")
    order = [theirs.index(name) for name in names]
    return None if order == list(range(len(order))) else order


class FrozenTeacher(FrozenNetwork):
    """The teacher network (module docstring): `FinetuneModel` with the file's encoder, read-out and head, frozen and
    kept in eval mode by `downstream.frozen.FrozenNetwork`."""

    def __init__(self, model: FinetuneModel, order: Optional[list[int]] = None, stochastic: bool = False) -> None:
        super().__init__(model, stochastic)
        self.register_buffer("order", None if order is None else torch.tensor(order, dtype=torch.long),
                             persistent=False)

    @classmethod
    def build(cls, source: TeacherSource, stochastic: bool = False) -> "FrozenTeacher":
        """The network of a read teacher file (DropPath 0.1 in its encoder, active only when `stochastic` and in
        train mode)."""
        file, spec = source.model, source.model.readout
        loaded = file.checkpoint
        clip_train_len = spec.clip_train_len if spec.clip_train_len is not None else loaded.clip_train_len
        model = FinetuneModel(trainable_encoder(loaded), loaded.frontend_config, spec.protocol, spec.n_blocks,
                              len(file.labels), clip_train_len)
        try:
            model.head.load_state_dict(file.head_state)
        except RuntimeError as error:
            raise CheckpointError(f"--teacher {file.path}: its head does not fit its read-out: {error}") from None
        return cls(model, source.order, stochastic)

    def forward(self, mel: Tensor, frames: Tensor) -> Tensor:
        """`mel` `[B, n_mels, F]` normalised log-mels, `frames` `[B]` -> logits `[B, C]` in the task's class order."""
        with torch.no_grad():
            logits = self.model(mel, frames)
        return logits if self.order is None else logits.index_select(-1, self.order)


def check_frontends(teacher: FrontendConfig, student: FrontendConfig, teacher_path: str,
                    flag: str = "--teacher") -> None:
    """Teacher and student read the same log-mel: ValueError naming the settings that differ."""
    if teacher != student:
        differ = [f"{name} {getattr(teacher, name)} (teacher) vs {getattr(student, name)} (student)"
                  for name in teacher.__dataclass_fields__ if getattr(teacher, name) != getattr(student, name)]
        raise ValueError(f"{flag} {teacher_path} was trained on another log-mel front end than the student reads "
                         f"({'; '.join(differ)}); both see the same mel: use a teacher and a student --protocol "
                         f"with one front end")


__all__ = ["FrozenTeacher", "TEACHER_KINDS", "TeacherSource", "check_frontends", "class_order", "read_teacher"]
