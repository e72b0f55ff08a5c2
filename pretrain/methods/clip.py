"""ATST-Clip pre-training, the official recipe (`audiossl/methods/atst`): clip-level BYOL between the CLS tokens of
two independent crops of one clip.

Views: `--read_len` seconds are read from each file at a random offset (the whole clip when it is shorter: with the
default 10 s, an AudioSet clip); two crops are drawn from them independently: `--train_len` seconds (view 1) and
`--positive_len` seconds (view 2, 6 s as the official code hard-codes). Each crop -> log-mel -> its own Mixup and
time-and-frequency RandomResizeCrop (one instance per view, as official) -> right-padded to the width of the longer
crop. A clip shorter than a crop is read over its own samples only: its mel and augmentations cover the audio, the
rest of the tensor is zeros that attention never sees (`tokens_1` / `tokens_2` = tokens holding audio). The official
code zero-pads the waveform and counts the padding as signal (`--short_clips official` reproduces that).

Model and loss: student = encoder + projector + predictor, teacher = EMA encoder + projector (`TeacherStudent`);
both read the final-LayerNorm CLS token of the last block of both views (one forward of 2B clips); loss = the
symmetric cross-view BYOL 1/2 [BYOL(s2, t1) + BYOL(s1, t2)], no same-view pair.
"""
from __future__ import annotations

import argparse
from typing import Any, Mapping

import torch
from torch import Tensor

from atst.backbone import clip_mels
from atst.encoder import EncoderConfig, arch_config
from atst.flags import parse_bool
from atst.frontend import FrontendConfig, LogMelFrontend
from atst.training.augment import RandomResizeCrop
from atst.training.config import check_flag
from atst.training.heads import PROJECTOR_HIDDEN, PROJECTOR_OUT

from ..augment import StudentAugment
from ..teacher_student import StepOutput, TeacherStudent, byol_loss
from . import PretrainMethod
from .frame import DROP_PATH_RATE, crop_tokens

POSITIVE_LEN = 6.0  # seconds; the official `positive_len=(6, 6)`
READ_LEN = 10.0  # seconds read per file: an AudioSet clip
MAX_READ_LEN = 600.0
SHORT_CLIPS = ("masked", "official")


class ClipATST(TeacherStudent):
    """Teacher-student ATST-Clip: `forward(mel_1, mel_2, tokens_1, tokens_2)` -> StepOutput.

    mel_1 / mel_2: the two views `[B, n_mels, F]` (same F); tokens_1 / tokens_2 `[B]`: tokens holding audio (later
    tokens are masked out of attention). Output rows (`[2B, out_dim]`): view 1 of every clip, then view 2.
    """

    def __init__(self, config: EncoderConfig, hidden: int = PROJECTOR_HIDDEN, out_dim: int = PROJECTOR_OUT) -> None:
        if not config.has_cls:
            raise ValueError("ATST-Clip pre-training needs an encoder with a CLS token (family 'clip')")
        super().__init__(config, hidden, out_dim)

    @staticmethod
    def cls(encoder, mels: Tensor, tokens: Tensor) -> Tensor:
        """Final-normed CLS of the last block `[N, D]` of mels `[N, n_mels, F]` with `tokens` `[N]` valid tokens."""
        return encoder(mels, token_lengths=tokens)[:, 0]

    def forward(self, mel_1: Tensor, mel_2: Tensor, tokens_1: Tensor, tokens_2: Tensor) -> StepOutput:
        if mel_1.shape != mel_2.shape:
            raise ValueError(f"views differ in shape: {tuple(mel_1.shape)} vs {tuple(mel_2.shape)}")
        mels = torch.cat([mel_1, mel_2])
        tokens = torch.cat([tokens_1, tokens_2])
        with torch.no_grad():
            teacher = self.teacher.projector(self.cls(self.teacher.encoder, mels, tokens))
        student = self.student.predictor(self.student.projector(self.cls(self.student.encoder, mels, tokens)))
        tea_1, tea_2 = teacher.chunk(2)
        stu_1, stu_2 = student.chunk(2)
        loss = 0.5 * (byol_loss(stu_2, tea_1) + byol_loss(stu_1, tea_2))
        return StepOutput(loss, teacher, student, clips=mel_1.shape[0])

    def step(self, batch: dict) -> StepOutput:
        """A collated batch of `ClipViewMaker` samples."""
        return self(batch["mel_1"], batch["mel_2"], batch["tokens_1"], batch["tokens_2"])


class ViewAugment(StudentAugment):
    """One view's pipeline: Mixup (own memory bank) then time-and-frequency RandomResizeCrop, each optional."""

    def __init__(self, mix_up: bool, rrc: bool, bank_size: int) -> None:
        super().__init__(mix_up, freq_wrap=False, bank_size=bank_size)
        self.crop = RandomResizeCrop() if rrc else None


def random_crop(wave: Tensor, valid: int, samples: int) -> tuple[Tensor, int]:
    """A random `samples`-long crop of the first `valid` samples of `wave` `[N]`, zero-padded at the end when they
    are fewer: (`[samples]`, samples of audio in it). The start is uniform over every position (torch's RNG)."""
    start = int(torch.randint(valid - samples + 1, ())) if valid > samples else 0
    taken = min(samples, valid - start)
    crop = wave.new_zeros(samples)
    crop[:taken] = wave[start : start + taken]
    return crop, taken


class ClipViewMaker:
    """A read of `read_len` s -> two independent crops -> two augmented log-mel views of one width.

    Returns `mel_1`, `mel_2` `[n_mels, W]` (W = frames of the longer crop) and `tokens_1`, `tokens_2` (tokens
    holding audio; `short_clips="official"`: every token of each crop, padding included).
    """

    def __init__(self, train_len: float, positive_len: float = POSITIVE_LEN, read_len: float = READ_LEN,
                 mix_up: bool = True, rrc: bool = True, mixup_bank: int = 2000, short_clips: str = "masked",
                 patch_w: int = 4) -> None:
        if short_clips not in SHORT_CLIPS:
            raise ValueError(f"short_clips must be one of {SHORT_CLIPS}, got {short_clips!r}")
        self.frontend = LogMelFrontend(FrontendConfig())
        rate = self.frontend.config.sample_rate
        self.crop_samples = (int(round(train_len * rate)), int(round(positive_len * rate)))
        self.read_len = read_len
        self.patch_w = patch_w
        self.short_clips = short_clips
        self.width = self.frontend.num_frames(max(self.crop_samples))
        self.augments = (ViewAugment(mix_up, rrc, mixup_bank), ViewAugment(mix_up, rrc, mixup_bank))

    @property
    def crop_seconds(self) -> float:
        return self.read_len

    def crops(self, wave: Tensor, valid_samples: int) -> list[tuple[Tensor, int]]:
        """The two independent crops (view 1 `train_len`, view 2 `positive_len`), each (`[samples]`, audio
        samples)."""
        return [random_crop(wave, valid_samples, samples) for samples in self.crop_samples]

    def view(self, crop: Tensor, valid: int, index: int) -> tuple[Tensor, int]:
        """(augmented mel `[n_mels, W]`, tokens holding audio) of one crop, for view `index` (0 or 1)."""
        with torch.no_grad():
            if self.short_clips == "masked":  # the mel of the audio alone (its own dB floor), padded afterwards
                mel = clip_mels(self.frontend, self.patch_w, crop[None], torch.tensor([valid]))[0]
            else:
                mel = self.frontend(crop[None])[0]
            mel = self.augments[index](mel)
        tokens = mel.shape[-1] // self.patch_w
        return torch.nn.functional.pad(mel, (0, self.width - mel.shape[-1])), tokens

    def __call__(self, wave: Tensor, valid_samples: int) -> dict:
        (mel_1, tokens_1), (mel_2, tokens_2) = (self.view(crop, valid, index) for index, (crop, valid)
                                                in enumerate(self.crops(wave, valid_samples)))
        return {"mel_1": mel_1, "mel_2": mel_2, "tokens_1": tokens_1, "tokens_2": tokens_2}


class ClipMethod(PretrainMethod):
    name = "clip"
    description = "ATST-Clip: clip-level BYOL on the CLS tokens of two independent crops"
    std_names = ("std_cls_t", "std_cls_s")
    structural_flags = ("arch", "projector_hidden")
    # train_small.sh (train_len aside: the argparse default 6.0; the small shell passes 9.0)
    defaults = dict(batch_size_per_gpu=384, warmup_steps=1300, max_steps=39100, ema=0.99, subset=200000,
                    learning_rate=5e-4)
    find_unused_parameters = True  # mask_embed gets no gradient (official: ddp_find_unused_parameters_true)

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        a = parser.add_argument_group("ATST-Clip (official train.py flags, then this project's)").add_argument
        a("--train_len", type=float, default=6.0, help="seconds of view 1 (the official small recipe: 9)")
        a("--positive_len", type=float, default=POSITIVE_LEN, help="seconds of view 2 (official: always 6)")
        a("--read_len", type=float, default=READ_LEN,
          help="seconds read from each file at a random offset (the whole file when shorter); both crops are drawn "
               "from them independently")
        a("--mix_up", type=parse_bool, default=True, help="Mixup on both views")
        a("--rrc", type=parse_bool, default=True, help="time-and-frequency RandomResizeCrop on both views")
        a("--mixup_bank", type=int, default=2000, help="Mixup memory-bank size per view and data-loader worker")
        a("--short_clips", default="masked", choices=SHORT_CLIPS,
          help="a clip shorter than a crop: 'masked' (its padding is left out of the mel, the augmentations and "
               "attention) or 'official' (zero padding counted as audio, the official behaviour)")

    def check(self, args: argparse.Namespace) -> None:
        max_tokens = EncoderConfig.max_tokens
        longest = max_tokens * 4 * FrontendConfig.hop_length / FrontendConfig.sample_rate
        for flag, value in (("--train_len", args.train_len), ("--positive_len", args.positive_len)):
            check_flag(flag, value, 0.0, low_open=True, note="crop length in seconds")
            if not 1 <= crop_tokens(value, 4) <= max_tokens:
                raise ValueError(f"{flag} {value} s gives {crop_tokens(value, 4)} tokens; it must give "
                                 f"1..{max_tokens} (at most {longest:g} s)")
        longer = max(args.train_len, args.positive_len)
        check_flag("--read_len", args.read_len, longer, MAX_READ_LEN,
                   note=f"seconds read per file: at least the longer crop ({longer:g} s)")
        check_flag("--mixup_bank", args.mixup_bank, 1, integer=True, note="Mixup memory-bank size per worker")

    def build_model(self, hp: Mapping[str, Any]) -> ClipATST:
        config = arch_config(hp["arch"], family="clip", drop_path_rate=DROP_PATH_RATE)
        return ClipATST(config, hidden=hp.get("projector_hidden", PROJECTOR_HIDDEN))

    def sample_maker(self, hp: Mapping[str, Any]) -> ClipViewMaker:
        return ClipViewMaker(train_len=hp["train_len"], positive_len=hp["positive_len"], read_len=hp["read_len"],
                             mix_up=hp["mix_up"], rrc=hp["rrc"], mixup_bank=hp["mixup_bank"],
                             short_clips=hp["short_clips"])

    def describe(self, hp: Mapping[str, Any]) -> str:
        return (f"clips (crops of {hp['train_len']} s and {hp['positive_len']} s from {hp['read_len']} s reads, "
                f"short clips {hp['short_clips']})")
