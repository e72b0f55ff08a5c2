"""Checkpoints and audio made from nothing, for tests, demos and benchmarks (no download needed).

`write_official_checkpoint` writes the exact official Lightning layout (`model.student.*`, `model.teacher.*`,
`hyper_parameters`, Lightning bookkeeping keys), so every door reads it as it reads a released checkpoint.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from torch import nn

from .encoder import ATSTEncoder, EncoderConfig, arch_config

PROJECTOR_HIDDEN = 4096
PROJECTOR_OUT = 256
FRAME_HPARAMS = dict(
    arch="small", learning_rate=0.0016, warmup_steps=1950, max_steps=58500, ema=0.997, symmetric=True,
    pos_type="cut", avg_blocks=0, patch_embed="Linear", save_path="", nproc=1, patch_h=64, patch_w=4, nprompt=0,
    data_path="", batch_size_per_gpu=256, num_workers=10, subset=200000, win_length=1024, aug_tea=False,
    aug_stu=True, freq_wrap=True, mix_up=True, anchor_len=10.0, mask_ratio=0.65, mask_len=5, min_mask_len=2,
    n_mels=64, mask_type="block", spec_h=64,
)
CLIP_HPARAMS = dict(arch="small", learning_rate=0.003, warmup_steps=1300, max_steps=39100, ema=0.99, save_path="",
                    nproc=1, data_path="", batch_size_per_gpu=384, num_workers=10, subset=200000, train_len=6.0)


def mlp_head_state(prefix: str, in_dim: int, hidden: int, out_dim: int, generator: torch.Generator) -> dict:
    """State of the official projector/predictor MLP: Linear(no bias) -> BN -> ReLU -> Linear(no bias)."""
    return {
        f"{prefix}.0.weight": torch.randn(hidden, in_dim, generator=generator) * 0.02,
        f"{prefix}.1.weight": torch.ones(hidden),
        f"{prefix}.1.bias": torch.zeros(hidden),
        f"{prefix}.1.running_mean": torch.zeros(hidden),
        f"{prefix}.1.running_var": torch.ones(hidden),
        f"{prefix}.1.num_batches_tracked": torch.tensor(0, dtype=torch.long),
        f"{prefix}.3.weight": torch.randn(out_dim, hidden, generator=generator) * 0.02,
    }


def random_encoder(config: EncoderConfig, seed: int = 0) -> ATSTEncoder:
    """A freshly initialised encoder (truncated normal 0.02), deterministic for a seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ATSTEncoder(config).eval()


def official_state_dict(teacher: ATSTEncoder, student: Optional[ATSTEncoder] = None, seed: int = 0,
                        projector_hidden: int = PROJECTOR_HIDDEN, projector_out: int = PROJECTOR_OUT) -> dict:
    """The 297/299-key official state dict around a teacher (and student; default: a copy of the teacher)."""
    student = teacher if student is None else student
    generator = torch.Generator().manual_seed(seed + 1)
    dim = teacher.config.embed_dim
    state: dict = {}
    state.update({f"model.student.encoder.{k}": v.detach().clone() for k, v in student.state_dict().items()})
    state.update(mlp_head_state("model.student.projector", dim, projector_hidden, projector_out, generator))
    state.update(mlp_head_state("model.student.predictor", projector_out, projector_hidden, projector_out, generator))
    state.update({f"model.teacher.encoder.{k}": v.detach().clone() for k, v in teacher.state_dict().items()})
    state.update(mlp_head_state("model.teacher.projector", dim, projector_hidden, projector_out, generator))
    return state


def write_official_checkpoint(path: Union[str, os.PathLike], arch: str = "tiny", family: str = "frame",
                              seed: int = 0, hyper_parameters: Optional[dict] = None,
                              projector_hidden: int = 256, projector_out: int = 64) -> Path:
    """Write a random-weight checkpoint in the official Lightning layout (atomic). Returns the path."""
    config = arch_config(arch, family=family)
    teacher = random_encoder(config, seed)
    hparams = dict(FRAME_HPARAMS if family == "frame" else CLIP_HPARAMS)
    hparams["arch"] = arch
    hparams.update(hyper_parameters or {})
    checkpoint = {
        "epoch": 0,
        "global_step": 0,
        "pytorch-lightning_version": "2.6.6",
        "state_dict": official_state_dict(teacher, seed=seed, projector_hidden=projector_hidden,
                                          projector_out=projector_out),
        "loops": {},
        "callbacks": {},
        "optimizer_states": [],
        "lr_schedulers": [],
        "hparams_name": "kwargs",
        "hyper_parameters": hparams,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(checkpoint, tmp)
    os.replace(tmp, path)
    return path


def harmonic_tone(freq_hz: float, seconds: float, sample_rate: int = 16000, harmonics: int = 4,
                  amplitude: float = 0.3, rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """A harmonic tone with a short fade in/out and a little noise, float32 `[N]`."""
    rng = rng or np.random.default_rng(0)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    wave = sum(np.sin(2 * math.pi * freq_hz * k * t + rng.uniform(0, 2 * math.pi)) / k for k in range(1, harmonics + 1))
    fade = np.minimum(1.0, np.minimum(t, t[::-1] if len(t) else t) / 0.01)
    wave = amplitude * wave / harmonics * fade + 0.005 * rng.standard_normal(len(t))
    return wave.astype(np.float32)
