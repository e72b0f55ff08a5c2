"""The TensorFlow stand-in (`tf_standin/tensorflow/`) and the helpers that load it.

In-process use (what `atst-hear` does): `install()` puts the stand-in into `sys.modules["tensorflow"]`.
Stock commands without TensorFlow: put `directory()` on `PYTHONPATH`, e.g.
`PYTHONPATH=$(atst-hear standin-path) hear-validator hear_atst --model CKPT`. Never copy it into an environment
that has a real TensorFlow.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

_HERE = Path(__file__).resolve().parent


def directory() -> Path:
    """The folder to put on `PYTHONPATH` so that `import tensorflow` finds the stand-in."""
    return _HERE


def is_standin(module: ModuleType) -> bool:
    """True for the stand-in module, False for a real TensorFlow."""
    return bool(getattr(module, "IS_HEAR_ATST_STANDIN", False))


def install() -> ModuleType:
    """Load the stand-in as `tensorflow` in this process (replacing any loaded TF module) and return it."""
    current = sys.modules.get("tensorflow")
    if current is not None and is_standin(current):
        return current
    spec = importlib.util.spec_from_file_location("tensorflow", _HERE / "tensorflow" / "__init__.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["tensorflow"] = module
    return module
