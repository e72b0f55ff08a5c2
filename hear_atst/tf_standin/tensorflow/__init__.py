"""Stand-in for the handful of `tensorflow` names that hearvalidator and heareval touch for a PyTorch model.

This is NOT TensorFlow. It exists so that the stock harness runs where TensorFlow is absent, or where a CPU-only
TensorFlow sits on a CUDA machine (heareval's embeddings runner refuses to start there). It provides:

* `Module`: a class no PyTorch model is an instance of, so both harnesses take their torch code path;
* `test.is_gpu_available()`: answers what torch sees, so heareval's import-time GPU guard passes;
* `device(name)`: a no-op context manager.

Any other attribute raises an `AttributeError` that says a real TensorFlow is needed (TF models only).
"""
from __future__ import annotations

import contextlib
from typing import Any, ContextManager

__version__ = "0.0.0+hear-atst-standin"
IS_HEAR_ATST_STANDIN = True


class Module:
    """Placeholder for `tf.Module`: `isinstance(torch_model, tf.Module)` is False."""


class _TestNamespace:
    @staticmethod
    def is_gpu_available(*args: Any, **kwargs: Any) -> bool:
        """True exactly when torch sees a CUDA device (the harness only compares the two)."""
        try:
            import torch
        except ImportError:
            return False
        return bool(torch.cuda.is_available())


test = _TestNamespace()


def device(name: str) -> ContextManager[None]:
    """No-op placement context (the harness only uses it for TensorFlow models)."""
    return contextlib.nullcontext()


def __getattr__(name: str) -> Any:
    raise AttributeError(
        f"tensorflow.{name} is not provided by the hear-atst TensorFlow stand-in: it only serves PyTorch models. "
        f"Install tensorflow to evaluate a TensorFlow model."
    )
