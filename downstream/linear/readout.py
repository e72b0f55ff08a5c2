"""The clip embeddings a linear head is trained on: one fixed-width vector per clip, from a frozen encoder.

Two protocols:

* `official` (the paper's linear evaluation, through `atst.official`): ATST-Frame ->
  `OfficialReadouts.frame_linear_eval` (12 s centre crop, 1001-frame chunks, chunks of <= 20 frames skipped, mean of
  the last `n_blocks` normed blocks) `[B, n_blocks * D]`; ATST-Clip -> `OfficialReadouts.scene` (12 s centre crop,
  chunks of `train_len` seconds, the official average-scaling quirk) `[B, 2 * n_blocks * D]` = [CLS | mean]. The
  official extraction runs under bf16 autocast on a GPU; `precision="auto"` does the same on CUDA and runs fp32 on
  a CPU (bf16 matmuls there are slow and not what anyone compares with).
* `hear`: the whole clip through `Backbone.last_blocks(pooled=True)` (contiguous 10 s windows, no crop, no frame
  dropped): ATST-Frame `[B, n_blocks * D]`, ATST-Clip `[B, 2 * n_blocks * D]` = [CLS | mean].
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import torch
from torch import Tensor

from atst import Embedder, LoadedCheckpoint
from atst.frontend import LogMelFrontend
from atst.official import LINEAR_EVAL_MIN_CHUNK_FRAMES, official_frame_linear_eval

PROTOCOLS = ("official", "hear")
PRECISIONS = ("auto", "fp32", "bf16")
READOUT_VERSION = 1  # bump when a read-out changes its numbers: cached embeddings of older versions are not reused


@dataclass(frozen=True)
class ReadoutSettings:
    """Everything that decides a clip's embedding besides the encoder weights and the audio (the cache key)."""

    protocol: str
    family: str  # "frame" or "clip"
    branch: str  # the checkpoint branch the encoder came from (official flag: --use_encoder)
    n_blocks: int
    precision: str  # "fp32" or "bf16" (resolved, never "auto")
    win_length: int
    clip_train_len: Optional[float]  # ATST-Clip only: its chunk (official) / window (hear) length in seconds
    version: int = READOUT_VERSION

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """One line for results.md."""
        family = f"ATST-{self.family.capitalize()}"
        if self.protocol == "official":
            what = ("12 s centre crop, 1001-frame chunks, token mean" if self.family == "frame" else
                    f"12 s centre crop, {self.clip_train_len:g} s chunks, [CLS | token mean]")
        else:
            pooled = "[CLS | token mean]" if self.family == "clip" else "token mean"
            what = f"whole clip, contiguous windows, {pooled}"
        return (f"{self.protocol} read-out of {family} ({self.branch}): {what}, last {self.n_blocks} blocks, "
                f"{self.precision}")


def unusable_reason(protocol: str, family: str, frontend: LogMelFrontend, num_samples: int) -> Optional[str]:
    """Why a clip of `num_samples` samples (16 kHz) cannot go through the `protocol` read-out of an ATST-`family`
    encoder, or None: empty audio; for `official`, a clip too short for the STFT, and (ATST-Frame) one of <= 20 mel
    frames (the official read-out skips such chunks; a batch of them crashes it)."""
    if protocol == "hear" or num_samples <= 0:
        return None if num_samples > 0 else "empty audio"
    if num_samples < frontend.min_samples:
        return (f"{num_samples} samples is too short for the official read-out (its STFT needs at least "
                f"{frontend.min_samples}); --protocol hear pads such clips")
    if family == "frame" and frontend.num_frames(num_samples) <= LINEAR_EVAL_MIN_CHUNK_FRAMES:
        return (f"{num_samples} samples gives {frontend.num_frames(num_samples)} mel frames: the official "
                f"ATST-Frame linear evaluation skips chunks of <= {LINEAR_EVAL_MIN_CHUNK_FRAMES} frames (a batch "
                f"of such clips crashes it); --protocol hear embeds them")
    return None


def resolve_precision(precision: str, device: torch.device) -> str:
    """"auto" -> "bf16" on CUDA (the official extraction's autocast) and "fp32" elsewhere."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


class Readout:
    """A frozen encoder and one protocol's read-out: `readout(audio [B, N], lengths [B]) -> [B, dim]` float32 (CPU).

    Args:
        loaded: the checkpoint's encoder (`atst.load_checkpoint`).
        protocol: "official" or "hear" (module docstring).
        n_blocks: last blocks read out (official shell: 12).
        precision: "auto", "fp32" or "bf16" (autocast of the encoder).
        device: where the encoder runs.
        clip_train_len: ATST-Clip chunk / window length in seconds (default: the checkpoint's `train_len`).
    """

    def __init__(self, loaded: LoadedCheckpoint, protocol: str, n_blocks: int = 12, precision: str = "auto",
                 device: torch.device | str = "cpu", clip_train_len: Optional[float] = None) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        device = torch.device(device)
        resolved = resolve_precision(precision, device)
        clip_train_len = loaded.clip_train_len if clip_train_len is None else clip_train_len
        self.embedder = Embedder(loaded.encoder, loaded.frontend_config, mode="hear", n_blocks=n_blocks,
                                 clip_train_len=clip_train_len,
                                 autocast="bf16" if resolved == "bf16" else None).to(device).eval()
        self.settings = ReadoutSettings(
            protocol=protocol, family=loaded.family, branch=loaded.branch, n_blocks=n_blocks, precision=resolved,
            win_length=loaded.frontend_config.win_length,
            clip_train_len=clip_train_len if loaded.config.has_cls else None)
        self.dim = int(n_blocks * loaded.config.embed_dim * (2 if loaded.config.has_cls else 1))
        self.device = device

    def unusable(self, num_samples: int) -> Optional[str]:
        """Why a clip of `num_samples` samples (16 kHz) cannot be embedded by this read-out, or None."""
        return unusable_reason(self.settings.protocol, self.settings.family, self.embedder.frontend, num_samples)

    @torch.inference_mode()
    def __call__(self, audio: Tensor, lengths: Tensor) -> Tensor:
        audio = audio.to(self.device)
        if self.settings.protocol == "hear":
            out = self.embedder.scene_embeddings(audio, lengths)
        elif self.settings.family == "frame":
            out = official_frame_linear_eval(self.embedder, audio, lengths)
        else:
            out = self.embedder.official.scene(audio, lengths)
        return out.float().cpu()


__all__ = ["PRECISIONS", "PROTOCOLS", "READOUT_VERSION", "Readout", "ReadoutSettings", "resolve_precision",
           "unusable_reason"]
