"""ATST-Frame pre-training, the official recipe: frame-level BYOL on masked tokens of two views of one crop.

Views: one `--anchor_len` crop -> log-mel -> teacher view (identity unless `--aug_tea`) and student view
(Mixup then frequency RandomResizeCrop, `--aug_stu`), one token mask shared by both views. Model and loss:
the student sees masked tokens replaced by `mask_embed`, the teacher sees everything; symmetric cross-view
BYOL over the masked tokens.
"""
from __future__ import annotations

import argparse
import math
from typing import Any, Mapping

import torch
from torch import Tensor

from atst.encoder import LIMITS, ATSTEncoder, EncoderConfig, arch_config
from atst.flags import parse_bool
from atst.frontend import FrontendConfig, LogMelFrontend
from atst.training.config import check_flag
from atst.training.heads import PROJECTOR_HIDDEN, PROJECTOR_OUT

from ..augment import StudentAugment
from ..masking import MASK_TYPES, make_mask
from ..teacher_student import StepOutput, TeacherStudent, byol_loss
from . import PretrainMethod

DROP_PATH_RATE = 0.1


class FrameATST(TeacherStudent):
    """Teacher-student ATST-Frame: `forward(mel_t, mel_s, mask, valid_tokens)` -> StepOutput.

    mel_t / mel_s: the two views `[B, n_mels, F]`; mask: bool `[B, T]` shared by both views (True = masked, only
    within the first `valid_tokens[b]` tokens); the student sees masked tokens replaced by `mask_embed`, the teacher
    sees everything. Loss (symmetric): mean of BYOL(student(view 2), teacher(view 1)) and BYOL(student(view 1),
    teacher(view 2)) over the masked tokens. Non-symmetric: only the first pair. Output rows (`[2M, out_dim]`):
    the M masked tokens of view 1, then those of view 2.
    """

    def __init__(self, config: EncoderConfig, symmetric: bool = True, hidden: int = PROJECTOR_HIDDEN,
                 out_dim: int = PROJECTOR_OUT) -> None:
        super().__init__(config, hidden, out_dim)
        self.symmetric = symmetric

    def _rows(self, encoder: ATSTEncoder, mel: Tensor, lengths: Tensor, mask: Tensor, masked_input: bool) -> Tensor:
        out = encoder(mel, token_lengths=lengths, token_mask=mask if masked_input else None)  # [B, T, D]
        return out[mask]  # [M, D]

    def forward(self, mel_t: Tensor, mel_s: Tensor, mask: Tensor, valid_tokens: Tensor) -> StepOutput:
        if mel_t.shape != mel_s.shape:
            raise ValueError(f"views differ in shape: {tuple(mel_t.shape)} vs {tuple(mel_s.shape)}")
        mels = torch.cat([mel_t, mel_s])
        masks = torch.cat([mask, mask])
        lengths = torch.cat([valid_tokens, valid_tokens])
        if not bool(mask.any()):
            raise ValueError("the mask selects no token; nothing to train on")
        with torch.no_grad():
            teacher = self.teacher.projector(self._rows(self.teacher.encoder, mels, lengths, masks, False))
        student = self.student.predictor(self.student.projector(
            self._rows(self.student.encoder, mels, lengths, masks, True)))
        tea_1, tea_2 = teacher.chunk(2)
        stu_1, stu_2 = student.chunk(2)
        if self.symmetric:
            loss = 0.5 * (byol_loss(stu_2, tea_1) + byol_loss(stu_1, tea_2))
        else:
            loss = byol_loss(stu_2, tea_1)
        return StepOutput(loss, teacher, student, clips=mel_t.shape[0])

    def step(self, batch: dict) -> StepOutput:
        """A collated batch of `ViewMaker` samples."""
        return self(batch["mel_t"], batch["mel_s"], batch["mask"], batch["valid_tokens"])


class ViewMaker:
    """Waveform crop -> log-mel -> teacher view, student view, one token mask shared by both views.

    Returns `mel_t`, `mel_s` `[n_mels, F]` (F = crop samples // hop + 1), `mask` bool `[T]` (T = F // patch_w),
    `valid_tokens` (tokens holding real audio; only those are masked and attended to).
    """

    def __init__(self, anchor_len: float, n_mels: int = 64, win_length: int = 1024, patch_w: int = 4,
                 mask_type: str = "block", mask_ratio: float = 0.65, mask_len: int = 5, min_mask_len: int = 2,
                 aug_tea: bool = False, aug_stu: bool = True, mix_up: bool = True, freq_wrap: bool = True,
                 mixup_bank: int = 2000) -> None:
        self.anchor_len = anchor_len
        self.frontend = LogMelFrontend(FrontendConfig(n_mels=n_mels, win_length=win_length))
        self.patch_w = patch_w
        self.mask_args = dict(mask_type=mask_type, mask_ratio=mask_ratio, mask_len=mask_len, min_masks=min_mask_len)
        self.aug_tea = StudentAugment(mix_up, freq_wrap, mixup_bank) if aug_tea else None
        self.aug_stu = StudentAugment(mix_up, freq_wrap, mixup_bank) if aug_stu else None
        config = self.frontend.config
        self.samples_per_token = config.hop_length * patch_w
        self.n_tokens = self.frontend.num_frames(int(round(anchor_len * config.sample_rate))) // patch_w

    @property
    def crop_seconds(self) -> float:
        return self.anchor_len

    def __call__(self, wave: Tensor, valid_samples: int) -> dict:
        with torch.no_grad():
            mel = self.frontend(wave[None])[0]
        valid_tokens = max(1, min(self.n_tokens, math.ceil(valid_samples / self.samples_per_token)))
        return {
            "mel_t": self.aug_tea(mel) if self.aug_tea else mel,
            "mel_s": self.aug_stu(mel) if self.aug_stu else mel.clone(),
            "mask": make_mask(self.n_tokens, valid_tokens, **self.mask_args),
            "valid_tokens": valid_tokens,
        }


def crop_tokens(anchor_len: float, patch_w: int, frontend: FrontendConfig = FrontendConfig()) -> int:
    """Tokens of one `anchor_len`-second crop (frames = samples // hop + 1, tokens = frames // patch_w)."""
    return (int(round(anchor_len * frontend.sample_rate)) // frontend.hop_length + 1) // patch_w


class FrameMethod(PretrainMethod):
    name = "frame"
    description = "ATST-Frame: frame-level BYOL on masked tokens of two views of one crop"
    std_names = ("std_frm_tea", "std_frm_stu")
    structural_flags = ("arch", "n_mels", "patch_h", "patch_w")
    defaults = dict(batch_size_per_gpu=256, warmup_steps=1950, max_steps=58500, ema=0.997, subset=200000,
                    learning_rate=4e-4)

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        a = parser.add_argument_group("ATST-Frame (official train.py flags)").add_argument
        a("--patch_h", type=int, default=64)
        a("--patch_w", type=int, default=4)
        a("--pos_type", default="cut", choices=["cut"])
        a("--mask_type", default="block", choices=MASK_TYPES)
        a("--mask_ratio", type=float, default=0.65)
        a("--mask_len", type=int, default=5)
        a("--min_mask_len", type=int, default=2, help="minimum number of mask spans (official name)")
        a("--symmetric", type=parse_bool, default=True)
        a("--n_mels", type=int, default=64)
        a("--anchor_len", type=float, default=10.0, help="crop length in seconds (at most 10)")
        a("--aug_tea", type=parse_bool, default=False)
        a("--aug_stu", type=parse_bool, default=True)
        a("--mix_up", type=parse_bool, default=True)
        a("--freq_wrap", type=parse_bool, default=True)
        a("--win_length", type=int, default=1024)
        a("--avg_blocks", type=int, default=0, choices=[0])
        a("--patch_embed", default="Linear", choices=["Linear"])
        a("--nprompt", type=int, default=0, choices=[0])
        a("--mixup_bank", type=int, default=2000, help="Mixup memory-bank size per data-loader worker")

    def check(self, args: argparse.Namespace) -> None:
        check_flag("--n_mels", args.n_mels, *LIMITS["n_mels"], integer=True)
        if args.patch_h != args.n_mels:
            raise ValueError(f"--patch_h ({args.patch_h}) must equal --n_mels ({args.n_mels}): one patch row "
                             f"(spec_h = n_mels)")
        check_flag("--patch_w", args.patch_w, *LIMITS["patch_w"], integer=True, note="mel frames per token")
        check_flag("--win_length", args.win_length, 1, FrontendConfig.n_fft, integer=True,
                   note="STFT window in samples, at most n_fft")
        check_flag("--anchor_len", args.anchor_len, 0.0, low_open=True, note="crop length in seconds")
        max_tokens = EncoderConfig.max_tokens
        tokens = crop_tokens(args.anchor_len, args.patch_w)
        if not 1 <= tokens <= max_tokens:
            seconds = max_tokens * args.patch_w * FrontendConfig.hop_length / FrontendConfig.sample_rate
            raise ValueError(f"--anchor_len {args.anchor_len} s gives {tokens} tokens; it must give 1..{max_tokens} "
                             f"(at most {seconds:g} s with --patch_w {args.patch_w})")
        check_flag("--mask_ratio", args.mask_ratio, 0.0, 1.0, low_open=True, high_open=True)
        check_flag("--mask_len", args.mask_len, 1, tokens, integer=True,
                   note=f"tokens per mask span; a crop of --anchor_len {args.anchor_len} s has {tokens}")
        check_flag("--min_mask_len", args.min_mask_len, 0, integer=True, note="minimum number of mask spans")
        check_flag("--mixup_bank", args.mixup_bank, 1, integer=True, note="Mixup memory-bank size per worker")

    def build_model(self, hp: Mapping[str, Any]) -> FrameATST:
        config = arch_config(hp["arch"], drop_path_rate=DROP_PATH_RATE, n_mels=hp["n_mels"], patch_h=hp["patch_h"],
                             patch_w=hp["patch_w"])
        return FrameATST(config, symmetric=hp["symmetric"], hidden=hp.get("projector_hidden", PROJECTOR_HIDDEN))

    def sample_maker(self, hp: Mapping[str, Any]) -> ViewMaker:
        return ViewMaker(anchor_len=hp["anchor_len"], n_mels=hp["n_mels"], win_length=hp["win_length"],
                         patch_w=hp["patch_w"], mask_type=hp["mask_type"], mask_ratio=hp["mask_ratio"],
                         mask_len=hp["mask_len"], min_mask_len=hp["min_mask_len"], aug_tea=hp["aug_tea"],
                         aug_stu=hp["aug_stu"], mix_up=hp["mix_up"], freq_wrap=hp["freq_wrap"],
                         mixup_bank=hp["mixup_bank"])

    def describe(self, hp: Mapping[str, Any]) -> str:
        return f"clips of {hp['anchor_len']} s"
