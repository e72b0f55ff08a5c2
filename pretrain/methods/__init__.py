"""Pre-training methods: what differs between ATST-Frame (`frame`) and ATST-Clip (`clip`) pre-training.

A method says which flags it adds (and its recipe's defaults of the shared ones), how it checks them, which flags fix
tensor shapes (a run folder holding other values cannot be resumed), how it builds its teacher-student networks
and how it turns a decoded crop into a training sample. `pretrain.module` trains any of them the same way.
"""
from __future__ import annotations

import argparse
from abc import ABC, abstractmethod
from typing import Any, Mapping

from atst.training.corpus_datasets import SampleMaker

from ..teacher_student import TeacherStudent


class PretrainMethod(ABC):
    name: str = ""
    description: str = ""
    # names under which the teacher / student std statistics are logged (the official names)
    std_names: tuple[str, str] = ("std_tea", "std_stu")
    # flags that fix tensor shapes
    structural_flags: tuple[str, ...] = ()
    # the method's recipe defaults of the shared pre-training flags (README small recipe): every one of
    # batch_size_per_gpu, warmup_steps, max_steps, ema, subset, learning_rate
    defaults: Mapping[str, Any] = {}
    # DDP must tolerate trainable parameters without a gradient (ATST-Clip never uses `mask_embed`)
    find_unused_parameters: bool = False

    @abstractmethod
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add the method's own flags."""

    @abstractmethod
    def check(self, args: argparse.Namespace) -> None:
        """Raise ValueError naming the flag for settings the method cannot train with."""

    @abstractmethod
    def build_model(self, hp: Mapping[str, Any]) -> TeacherStudent:
        """The student / teacher networks for these hyper-parameters (every flag; learning_rate already scaled)."""

    @abstractmethod
    def sample_maker(self, hp: Mapping[str, Any]) -> SampleMaker:
        """What turns one decoded crop into a training sample (one instance per data loader)."""

    @abstractmethod
    def describe(self, hp: Mapping[str, Any]) -> str:
        """A few words on the samples, for the start-up line (e.g. `clips of 10.0 s`)."""


def _registry() -> dict[str, PretrainMethod]:
    from .clip import ClipMethod
    from .frame import FrameMethod

    return {method.name: method for method in (FrameMethod(), ClipMethod())}


METHODS = _registry()
DEFAULT_METHOD = "frame"


def get_method(name: str) -> PretrainMethod:
    """The registered method called `name`; ValueError naming the accepted ones otherwise."""
    if name not in METHODS:
        raise ValueError(f"unknown pre-training method {name!r}; choose one of {sorted(METHODS)}")
    return METHODS[name]
