"""Random-weight checkpoints in the official Lightning layout, for tests, demos and benchmarks (no download).

`write_official_checkpoint` writes the exact official layout (`model.student.*`, `model.teacher.*`,
`hyper_parameters`, Lightning bookkeeping keys), so every door reads it as it reads a released checkpoint.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import torch

from ..encoder import ATSTEncoder, EncoderConfig, arch_config
from ..fileio import atomic_open

PROJECTOR_HIDDEN = 4096
PROJECTOR_OUT = 256
INIT_STD = 0.02
LIGHTNING_VERSION = "2.6.6"
FRAME_HPARAMS = dict(
    arch="small", learning_rate=0.0016, warmup_steps=1950, max_steps=58500, ema=0.997, symmetric=True,
    pos_type="cut", avg_blocks=0, patch_embed="Linear", save_path="", nproc=1, patch_h=64, patch_w=4, nprompt=0,
    data_path="", batch_size_per_gpu=256, num_workers=10, subset=200000, win_length=1024, aug_tea=False,
    aug_stu=True, freq_wrap=True, mix_up=True, anchor_len=10.0, mask_ratio=0.65, mask_len=5, min_mask_len=2,
    n_mels=64, mask_type="block", spec_h=64,
)
CLIP_HPARAMS = dict(arch="small", learning_rate=0.003, warmup_steps=1300, max_steps=39100, ema=0.99, save_path="",
                    nproc=1, data_path="", batch_size_per_gpu=384, num_workers=10, subset=200000, train_len=6.0)
HPARAMS = {"frame": FRAME_HPARAMS, "clip": CLIP_HPARAMS}

# The official projector / predictor MLP, Sequential(Linear(in, hidden, bias=False), BatchNorm1d(hidden), ReLU,
# Linear(hidden, out, bias=False)): every state key (the ReLU, index 2, holds none), its shape in named
# dimensions, and its initial value ("normal": N(0, INIT_STD^2); "count": the BN step counter, a long 0).
HEAD_LAYOUT: Tuple[Tuple[str, Tuple[str, ...], str], ...] = (
    ("0.weight", ("hidden", "in"), "normal"),
    ("1.weight", ("hidden",), "ones"),
    ("1.bias", ("hidden",), "zeros"),
    ("1.running_mean", ("hidden",), "zeros"),
    ("1.running_var", ("hidden",), "ones"),
    ("1.num_batches_tracked", (), "count"),
    ("3.weight", ("out", "hidden"), "normal"),
)


def mlp_head_state(prefix: str, in_dim: int, hidden: int, out_dim: int,
                   generator: torch.Generator) -> Dict[str, torch.Tensor]:
    """State of one official projector/predictor MLP (`HEAD_LAYOUT`) under `prefix.`; normal weights are drawn
    from `generator` in layout order."""
    dims = {"in": in_dim, "hidden": hidden, "out": out_dim}
    state = {}
    for key, shape_names, init in HEAD_LAYOUT:
        shape = tuple(dims[name] for name in shape_names)
        if init == "normal":
            value = torch.randn(*shape, generator=generator) * INIT_STD
        elif init == "count":
            value = torch.tensor(0, dtype=torch.long)
        else:
            value = torch.ones(shape) if init == "ones" else torch.zeros(shape)
        state[f"{prefix}.{key}"] = value
    return state


def random_encoder(config: EncoderConfig, seed: int = 0) -> ATSTEncoder:
    """A freshly initialised encoder (truncated normal 0.02) in eval mode, deterministic for a seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ATSTEncoder(config).eval()


def _encoder_state(prefix: str, encoder: ATSTEncoder) -> Dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v.detach().clone() for k, v in encoder.state_dict().items()}


def official_state_dict(teacher: ATSTEncoder, student: Optional[ATSTEncoder] = None, seed: int = 0,
                        projector_hidden: int = PROJECTOR_HIDDEN, projector_out: int = PROJECTOR_OUT) -> dict:
    """The 297/299-key official state dict around a teacher (and student; default: a copy of the teacher), with
    random heads drawn from `seed + 1`."""
    student = teacher if student is None else student
    generator = torch.Generator().manual_seed(seed + 1)
    dim = teacher.config.embed_dim
    state: dict = {}
    state.update(_encoder_state("model.student.encoder", student))
    state.update(mlp_head_state("model.student.projector", dim, projector_hidden, projector_out, generator))
    state.update(mlp_head_state("model.student.predictor", projector_out, projector_hidden, projector_out, generator))
    state.update(_encoder_state("model.teacher.encoder", teacher))
    state.update(mlp_head_state("model.teacher.projector", dim, projector_hidden, projector_out, generator))
    return state


def write_official_checkpoint(path: Union[str, os.PathLike], arch: str = "tiny", family: str = "frame",
                              seed: int = 0, hyper_parameters: Optional[dict] = None,
                              projector_hidden: int = 256, projector_out: int = 64) -> Path:
    """Write a random-weight checkpoint (encoder from `seed`) in the official Lightning layout, atomically.

    `arch` is one of `atst.encoder.ARCHS`, `family` "frame" or "clip"; `hyper_parameters` update the official
    ones of the family. Returns the path.
    """
    config = arch_config(arch, family=family)
    teacher = random_encoder(config, seed)
    hparams = {**HPARAMS[family], "arch": arch, **(hyper_parameters or {})}
    checkpoint = {
        "epoch": 0,
        "global_step": 0,
        "pytorch-lightning_version": LIGHTNING_VERSION,
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
    # a file object, not the temporary's name: torch names the archive inside after the file it is given
    with atomic_open(path, "wb") as handle:
        torch.save(checkpoint, handle)
    return path
