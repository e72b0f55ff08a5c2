"""Embeddings of an ATST encoder: the HEAR read-outs (scene, timestamps) in two modes.

`hear` (default): the backbone's contiguous windows (no frame dropped, all windows batched, per-clip front end),
timestamps at token centres (40 k + 15 ms, never past the clip end), scene = token-weighted mean over every token
of the clip ([CLS | mean] for ATST-Clip).

`official`: the official read-outs with their quirks (`atst.official`), for numbers comparable with published ones.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from .backbone import DEFAULT_MAX_WINDOWS_PER_CALL, Backbone, validate_audio, validate_lengths
from .encoder import ATSTEncoder, EncoderConfig
from .frontend import SAMPLE_RATE, FrontendConfig, LogMelFrontend
from .official import OfficialReadouts

MODES = ("hear", "official")
LOAD_OPTIONS = ("clip_train_len", "max_windows_per_call", "autocast")


def clip_window_tokens(config: EncoderConfig, clip_train_len: float) -> int:
    """ATST-Clip reads windows of its training crop: `train_len` seconds in whole tokens, within the table."""
    frames = int(clip_train_len * 100)
    return max(1, min(config.max_tokens, frames // config.patch_w))


class Embedder(nn.Module):
    """The HEAR model: a `Backbone` plus the scene and timestamp read-outs.

    Args:
        encoder: an `ATSTEncoder` (ATST-Frame or ATST-Clip).
        frontend_config: the log-mel settings of the checkpoint (16 kHz).
        mode: "hear" (default) or "official" (see the module docstring).
        n_blocks: read out the last `n_blocks` blocks (final LayerNorm applied to each, concatenated in order).
        clip_train_len: ATST-Clip training crop in seconds (its window length), positive and finite.
        max_windows_per_call: bound on windows per encoder call (memory).
        autocast: None, "bf16" or "fp16": run the encoder under autocast; outputs stay float32.
    """

    def __init__(self, encoder: ATSTEncoder, frontend_config: FrontendConfig = FrontendConfig(),
                 mode: str = "hear", n_blocks: int = 12, clip_train_len: float = 6.0,
                 max_windows_per_call: int = DEFAULT_MAX_WINDOWS_PER_CALL, autocast: Optional[str] = None) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        config = encoder.config
        if isinstance(n_blocks, bool) or not isinstance(n_blocks, int) or not 1 <= n_blocks <= config.depth:
            raise ValueError(f"n_blocks must be an int in [1, {config.depth}], got {n_blocks!r}")
        if isinstance(clip_train_len, bool) or not isinstance(clip_train_len, (int, float)) \
                or not 0 < float(clip_train_len) < float("inf"):
            raise ValueError(f"clip_train_len must be a positive, finite number of seconds, got {clip_train_len!r}")
        if frontend_config.sample_rate != SAMPLE_RATE:
            raise ValueError(f"the front end must run at {SAMPLE_RATE} Hz, got {frontend_config.sample_rate}")
        window_tokens = clip_window_tokens(config, clip_train_len) if config.has_cls else None
        self.backbone = Backbone(encoder, frontend_config, window_tokens, max_windows_per_call, autocast)
        self.mode = mode
        self.n_blocks = n_blocks
        self.clip_train_len = float(clip_train_len)
        self.official = OfficialReadouts(self.backbone, n_blocks, self.clip_train_len)
        self.timestamp_embedding_size = int(n_blocks * config.embed_dim)
        self.scene_embedding_size = (self.official.scene_embedding_size if mode == "official"
                                     else int(n_blocks * config.embed_dim * (2 if config.has_cls else 1)))

    sample_rate = SAMPLE_RATE  # HEAR reads the model rate as an attribute

    @property
    def encoder(self) -> ATSTEncoder:
        return self.backbone.encoder

    @property
    def frontend(self) -> LogMelFrontend:
        return self.backbone.frontend

    @property
    def family(self) -> str:
        return self.backbone.config.family

    @property
    def window_frames(self) -> int:
        """Mel frames per hear-mode window (1000; ATST-Clip: its training crop)."""
        return self.backbone.window_frames

    @property
    def device(self) -> torch.device:
        return self.backbone.device

    # ------------------------------------------------------------------------------------------ public API
    @torch.inference_mode()
    def scene_embeddings(self, audio: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        """`audio` `[B, N]` float32 16 kHz -> `[B, scene_embedding_size]` float32 (on the audio's device).

        `lengths` `[B]` (samples; hear mode and official ATST-Clip): valid samples per clip of a padded batch.
        """
        audio = validate_audio(audio)
        if self.mode == "official":
            return self.official.scene(audio, lengths).to(audio.device)
        out = self.backbone.last_blocks(audio, lengths, self.n_blocks, pooled=True)
        scene = out.states[0] if out.cls is None else torch.cat([out.cls[0], out.states[0]], dim=-1)
        return scene.to(audio.device)

    @torch.inference_mode()
    def timestamp_embeddings(self, audio: Tensor, lengths: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """`audio` `[B, N]` -> (`[B, T, timestamp_embedding_size]`, timestamps `[B, T]` in ms), float32.

        hear: T = max over clips of floor(F / 4) tokens (at least 1), rows past a shorter clip's end are zeros.
        """
        audio = validate_audio(audio)
        if self.mode == "official":
            embeddings, stamps = self.official.timestamps(audio, lengths)
            return embeddings.to(audio.device), stamps.to(audio.device)
        lengths = validate_lengths(lengths, audio)
        out = self.backbone.last_blocks(audio, lengths, self.n_blocks)
        embeddings = out.states[0]
        return embeddings.to(audio.device), self._token_centres(lengths, embeddings.shape[1]).to(audio.device)

    def token_counts(self, lengths: Sequence[int]) -> list[int]:
        """Tokens the hear mode produces for clips of these sample lengths."""
        return self.backbone.token_counts(lengths)

    def _token_centres(self, lengths: Tensor, n_tokens: int) -> Tensor:
        """Token centres `[B, T]` (40 k + 15 ms), clamped to each clip's end (only a padded sub-token clip needs
        it)."""
        backbone = self.backbone
        centre = (backbone.config.patch_w - 1) * backbone.hop_ms / 2
        centres = torch.arange(n_tokens, dtype=torch.float32) * backbone.token_ms + centre
        duration_ms = lengths.to(torch.float32) * 1000.0 / backbone.sample_rate
        return torch.minimum(centres[None, :], duration_ms[:, None])


def load_embedder(path: str, mode: str = "hear", n_blocks: int = 12, branch: str = "teacher",
                  **options) -> Embedder:
    """Read a checkpoint of any supported family and wrap its (frozen) encoder in an `Embedder` in eval mode.

    `options`: `clip_train_len` (default: the checkpoint's), `max_windows_per_call`, `autocast`.
    """
    from .checkpoint import load_checkpoint

    unknown = sorted(set(options) - set(LOAD_OPTIONS))
    if unknown:
        raise TypeError(f"unknown option(s) {unknown}; accepted: mode, n_blocks, branch, {', '.join(LOAD_OPTIONS)}")
    loaded = load_checkpoint(path, branch=branch)
    options.setdefault("clip_train_len", loaded.clip_train_len)
    return Embedder(loaded.encoder, loaded.frontend_config, mode=mode, n_blocks=n_blocks, **options).eval()


__all__ = ["Embedder", "MODES", "load_embedder", "validate_audio"]
