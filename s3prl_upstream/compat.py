"""Make s3prl 0.4.18, as released, import and run on torchaudio >= 2.9, huggingface_hub >= 1 and torch >= 2.6.

Applied in-process (`apply()`), idempotent, never touching s3prl's installed files:

1. `torchaudio.set_audio_backend` / `get_audio_backend` (removed): no-ops (`import s3prl.hub` and
   `run_downstream.main` call them).
2. `torchaudio.sox_effects` (removed): a small module with `apply_effects_file` / `apply_effects_tensor`
   supporting the effects SUPERB datasets use: `channels 1`, `rate R`, `gain DB`.
3. `torchaudio.load` needs torchcodec + FFmpeg on >= 2.9: files soundfile can read are read with soundfile
   (float32 `[channels, samples]`); anything else goes to the original loader. `torchaudio.info` likewise.
4. `huggingface_hub.HfFolder` / `Repository` (removed in 1.0, imported by the runner for `--hub huggingface` and
   `--push_to_hf_hub` only): placeholders that raise a clear error when used.
5. torch >= 2.6 loads with `weights_only=True`; s3prl's experiment checkpoints pickle an `argparse.Namespace`
   (`Args`), which is allowed as a safe global (attributes only, no code), so `-e` works and stays weights-only.
6. The voxceleb1 dataset caches its file lists in site-packages keyed only by split name, so a second dataset
   root would silently reuse stale lists. The cache is moved to `$ATST_S3PRL_CACHE` (default
   `~/.cache/atst-s3prl`) under a key of the data root, the meta file's content and the root's speaker folders.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import os
import sys
import types
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

_APPLIED = False
SUPPORTED_EFFECTS = ("channels", "rate", "gain")


# ---------------------------------------------------------------------------------------------- torchaudio
def _no_backend(*args, **kwargs) -> None:
    """Audio backends were removed from torchaudio; kept for code that still selects one."""
    return None


def _soundfile_read(path: str, frame_offset: int = 0, num_frames: int = -1) -> tuple[torch.Tensor, int]:
    import soundfile

    data, sample_rate = soundfile.read(str(path), start=int(frame_offset),
                                       frames=int(num_frames) if num_frames and num_frames > 0 else -1,
                                       dtype="float32", always_2d=True)
    return torch.from_numpy(data.T.copy()), int(sample_rate)


def _make_load(original: Optional[Callable]) -> Callable:
    def load(uri, frame_offset: int = 0, num_frames: int = -1, normalize: bool = True, channels_first: bool = True,
             format: Optional[str] = None, *args, **kwargs) -> tuple[torch.Tensor, int]:
        """torchaudio.load stand-in: float32 `[channels, samples]` and the sample rate (soundfile first)."""
        import soundfile

        if isinstance(uri, (str, os.PathLike)):
            try:
                wav, sample_rate = _soundfile_read(os.fspath(uri), frame_offset, num_frames)
                return (wav if channels_first else wav.T), sample_rate
            except soundfile.LibsndfileError:
                if original is None:
                    raise
        if original is None:
            raise RuntimeError(f"cannot load {uri!r}: soundfile cannot read it and torchaudio.load is unavailable")
        return original(uri, frame_offset, num_frames, normalize, channels_first, format, *args, **kwargs)

    load._atst_compat = True  # type: ignore[attr-defined]
    return load


def _info(uri, *args, **kwargs):
    """torchaudio.info stand-in (soundfile): an object with sample_rate, num_frames, num_channels."""
    import soundfile

    meta = soundfile.info(os.fspath(uri))
    return types.SimpleNamespace(sample_rate=int(meta.samplerate), num_frames=int(meta.frames),
                                 num_channels=int(meta.channels), bits_per_sample=0, encoding=meta.subtype)


def apply_effects_tensor(tensor: torch.Tensor, sample_rate: int, effects: Sequence[Sequence[str]],
                         channels_first: bool = True) -> tuple[torch.Tensor, int]:
    """Apply sox-style effects to `[channels, samples]` audio; supports `channels`, `rate`, `gain`."""
    import torchaudio

    wav = tensor if channels_first else tensor.T
    wav = wav.float()
    for effect in effects:
        name, *values = [str(v) for v in effect]
        if name == "channels":
            wanted = int(values[0])
            if wanted == 1:
                wav = wav.mean(dim=0, keepdim=True)
            elif wanted != wav.shape[0]:
                raise ValueError(f"sox effect 'channels {wanted}' is only supported as a downmix to 1 channel "
                                 f"(input has {wav.shape[0]})")
        elif name == "rate":
            target = int(float(values[0]))
            if target != sample_rate:
                wav = torchaudio.functional.resample(wav, sample_rate, target)
                sample_rate = target
        elif name == "gain":
            wav = wav * (10.0 ** (float(values[-1]) / 20.0))
        else:
            raise NotImplementedError(f"sox effect {name!r} is not available without libsox; the compatibility "
                                      f"layer supports {SUPPORTED_EFFECTS}")
    return (wav if channels_first else wav.T), sample_rate


def apply_effects_file(path, effects: Sequence[Sequence[str]], normalize: bool = True, channels_first: bool = True,
                       format: Optional[str] = None) -> tuple[torch.Tensor, int]:
    """Read a file (soundfile) and apply sox-style effects (`channels`, `rate`, `gain`)."""
    wav, sample_rate = _soundfile_read(os.fspath(path))
    return apply_effects_tensor(wav, sample_rate, effects, channels_first)


def _patch_torchaudio() -> None:
    import torchaudio

    for name in ("set_audio_backend", "get_audio_backend"):
        if not hasattr(torchaudio, name):
            setattr(torchaudio, name, _no_backend)
    if not hasattr(torchaudio, "list_audio_backends"):
        torchaudio.list_audio_backends = lambda: ["soundfile"]  # type: ignore[attr-defined]
    try:
        importlib.import_module("torchaudio.sox_effects")
    except ImportError:
        module = types.ModuleType("torchaudio.sox_effects")
        module.__doc__ = "hear-atst stand-in for the removed torchaudio.sox_effects (channels, rate, gain only)."
        module.apply_effects_file = apply_effects_file  # type: ignore[attr-defined]
        module.apply_effects_tensor = apply_effects_tensor  # type: ignore[attr-defined]
        sys.modules["torchaudio.sox_effects"] = module
        torchaudio.sox_effects = module  # type: ignore[attr-defined]
    if not getattr(torchaudio.load, "_atst_compat", False):
        try:
            importlib.import_module("torchcodec")
            original = torchaudio.load
        except ImportError:
            original = None
        torchaudio.load = _make_load(original)
    if not hasattr(torchaudio, "info"):
        torchaudio.info = _info  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------- huggingface_hub
def _removed_hub_class(name: str) -> type:
    message = (f"huggingface_hub.{name} was removed in huggingface_hub 1.0; s3prl uses it only for "
               f"`--hub huggingface` and `--push_to_hf_hub`, which are not supported with this installation")

    def fail(*args, **kwargs):
        raise RuntimeError(message)

    return type(name, (), {"__init__": fail, "get_token": staticmethod(fail), "save_token": staticmethod(fail),
                           "__doc__": message})


def _patch_huggingface_hub() -> None:
    try:
        import huggingface_hub
    except ImportError:
        return
    for name in ("HfFolder", "Repository"):
        if not hasattr(huggingface_hub, name):
            setattr(huggingface_hub, name, _removed_hub_class(name))


# ---------------------------------------------------------------------------------------------- torch.load
def allow_experiment_checkpoints() -> None:
    """Allow `argparse.Namespace` (s3prl's pickled `Args`) in weights-only loads, process-wide (idempotent)."""
    if hasattr(torch.serialization, "add_safe_globals"):
        torch.serialization.add_safe_globals([argparse.Namespace])


def _patch_torch_load() -> None:
    allow_experiment_checkpoints()


# ---------------------------------------------------------------------------------------------- voxceleb1 cache
def cache_root() -> Path:
    """Where s3prl dataset caches go: `$ATST_S3PRL_CACHE`, default `~/.cache/atst-s3prl`."""
    return Path(os.environ.get("ATST_S3PRL_CACHE", Path.home() / ".cache" / "atst-s3prl"))


def voxceleb1_cache_dir(file_path, meta_data) -> Path:
    """The cache folder for one (data root, meta file) pair: changes when either changes."""
    root = Path(file_path).expanduser().resolve()
    digest = hashlib.sha256(str(root).encode())
    meta = Path(meta_data).expanduser()
    digest.update(meta.read_bytes() if meta.is_file() else str(meta).encode())
    for wav_dir in sorted(root.glob("*/wav")):
        for speaker in sorted(wav_dir.iterdir()):
            digest.update(f"{speaker.relative_to(root)}:{speaker.stat().st_mtime_ns}".encode())
    return cache_root() / "voxceleb1" / digest.hexdigest()[:16]


def _patch_voxceleb1_cache() -> None:
    try:
        module = importlib.import_module("s3prl.downstream.voxceleb1.dataset")
    except ImportError:  # its own dependencies (librosa) missing: nothing to patch
        return
    cls = module.SpeakerClassifiDataset
    if getattr(cls.__init__, "_atst_compat", False):
        return
    original = cls.__init__

    def __init__(self, mode, file_path, meta_data, max_timestep=None):
        module.CACHE_PATH = str(voxceleb1_cache_dir(file_path, meta_data)) + os.sep
        original(self, mode, file_path, meta_data, max_timestep)

    __init__._atst_compat = True  # type: ignore[attr-defined]
    cls.__init__ = __init__


# ---------------------------------------------------------------------------------------------- start-up time
def tensorboard_without_tensorflow() -> None:
    """Make `tensorboard.compat` use its TensorFlow stub (its documented `notf` switch), so importing
    `torch.utils.tensorboard` (done by s3prl) does not load TensorFlow when it happens to be installed (~10 s).
    The launcher calls this; s3prl itself logs through tensorboardX, which never needs TensorFlow."""
    if "tensorflow" not in sys.modules:
        sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))


# ---------------------------------------------------------------------------------------------- entry point
def apply() -> None:
    """Apply every shim (idempotent). Call before importing `s3prl.hub` or `s3prl.run_downstream`."""
    global _APPLIED
    if _APPLIED:
        return
    tensorboard_without_tensorflow()  # s3prl.hub imports torch.utils.tensorboard: 7 s and a banner otherwise
    _patch_torchaudio()
    _patch_huggingface_hub()
    _patch_torch_load()
    _patch_voxceleb1_cache()
    _APPLIED = True
