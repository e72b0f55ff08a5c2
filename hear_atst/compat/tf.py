"""Choose between a real TensorFlow and the stand-in before the harness does `import tensorflow`."""
from __future__ import annotations

import sys

from .. import tf_standin

POLICIES = ("auto", "real", "stand-in")


def _forget_tensorflow() -> None:
    for name in [n for n in sys.modules if n == "tensorflow" or n.startswith("tensorflow.")]:
        del sys.modules[name]


def _torch_sees_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def select_tensorflow(policy: str = "auto") -> str:
    """Make `import tensorflow` give what the harness needs in this process; return a one-line description.

    `auto`: real TensorFlow if it imports and, on a CUDA machine, also sees a GPU (heareval's embeddings runner
    refuses to start when torch sees a GPU and TensorFlow does not); the stand-in otherwise.
    `real`: real TensorFlow or a `RuntimeError` saying why not. `stand-in`: always the stand-in.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown TensorFlow policy {policy!r}; choose one of {', '.join(POLICIES)}")
    loaded = sys.modules.get("tensorflow")
    if loaded is not None and tf_standin.is_standin(loaded):
        if policy == "real":
            raise RuntimeError("the TensorFlow stand-in is already loaded in this process; start a new one")
        return "stand-in (already loaded)"
    if policy == "stand-in":
        _forget_tensorflow()
        tf_standin.install()
        return "stand-in (requested)"
    try:
        import tensorflow as tf
    except Exception as error:  # ImportError, or a broken install raising anything at import
        _forget_tensorflow()
        if policy == "real":
            raise RuntimeError(f"tensorflow is not importable ({error}); install tensorflow-cpu, or use the "
                               f"stand-in (--tensorflow stand-in), which serves PyTorch models") from error
        tf_standin.install()
        return f"stand-in (tensorflow not importable: {type(error).__name__})"
    if policy == "auto" and _torch_sees_cuda():
        try:
            gpus = tf.config.list_physical_devices("GPU")
        except Exception:
            gpus = []
        if not gpus:
            _forget_tensorflow()
            tf_standin.install()
            return "stand-in (torch sees CUDA, tensorflow sees no GPU)"
    return f"tensorflow {getattr(tf, '__version__', '?')}"
