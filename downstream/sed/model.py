"""The sound-event model of `atst-downstream sed` / `detect`: ATST-Frame's last block (final LayerNorm) per 40 ms
token, then `heads.StrongWeakHead`.

    model = SedModel.from_checkpoint(loaded, num_classes=10, scope="last_block")
    strong, weak, counts = model(audio)         # audio [B, N] 16 kHz -> [B, T, C], [B, C], tokens per clip [B]
    scores = model.recording_scores([wave])    # any length -> [[T_i, C]] at 40 ms, T_i = duration / 40 ms

`scope` says what trains: "last_block" (the official DESED protocol, spec 1.6: the last block and the final norm
trainable and in train mode, every other encoder tensor frozen and kept in eval mode, so stochastic depth acts on the
last block only) or "all" (full fine-tuning, AudioSet-strong; `mask_embed` stays frozen as no read-out uses it).
Recordings are scored in contiguous 10 s windows, each window as a training clip (its own front end, 250 tokens):
the recording is zero-padded to whole windows, as training pads its clips, and the scores are trimmed to the
recording's own tokens, so consecutive windows join without drift.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from atst import LoadedCheckpoint
from atst.backbone import Backbone
from atst.encoder import ATSTEncoder
from atst.frontend import FrontendConfig

from ..finetune.model import DROP_PATH_RATE, trainable_encoder
from .heads import StrongWeakHead

SCOPES = ("last_block", "all")
WINDOWS_PER_CALL = 16


class SedModel(nn.Module):
    """ATST-Frame encoder + strong/weak head (module docstring)."""

    def __init__(self, encoder: ATSTEncoder, frontend_config: FrontendConfig, num_classes: int, scope: str = "all",
                 generator: Optional[torch.Generator] = None) -> None:
        super().__init__()
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
        if encoder.config.has_cls:
            raise ValueError("sound event detection reads ATST-Frame tokens; this checkpoint is ATST-Clip (pass an "
                             "ATST-Frame checkpoint)")
        self.backbone = Backbone(encoder, frontend_config)
        self.head = StrongWeakHead(encoder.config.embed_dim, num_classes, generator=generator)
        self.scope = scope
        self.apply_scope()
        self.train()

    @classmethod
    def from_checkpoint(cls, loaded: LoadedCheckpoint, num_classes: int, scope: str = "all",
                        drop_path_rate: float = DROP_PATH_RATE,
                        generator: Optional[torch.Generator] = None) -> "SedModel":
        return cls(trainable_encoder(loaded, drop_path_rate), loaded.frontend_config, num_classes, scope, generator)

    @property
    def encoder(self) -> ATSTEncoder:
        return self.backbone.encoder

    @property
    def num_classes(self) -> int:
        return self.head.strong.out_features

    def trained_parts(self) -> list[nn.Module]:
        """The encoder modules that train under `last_block`: the last block and the final norm."""
        return [self.encoder.blocks[-1], self.encoder.final_norm]

    def apply_scope(self) -> None:
        """requires_grad per `scope` (module docstring)."""
        if self.scope == "last_block":
            self.encoder.requires_grad_(False)
            for part in self.trained_parts():
                part.requires_grad_(True)
        else:
            self.encoder.requires_grad_(True)
            self.encoder.mask_embed.requires_grad_(False)

    def train(self, mode: bool = True) -> "SedModel":
        super().train(mode)
        if mode and self.scope == "last_block":  # frozen blocks deterministic (no drop-path, as the official)
            self.encoder.eval()
            for part in self.trained_parts():
                part.train()
        return self

    def forward(self, audio: Tensor, lengths: Optional[Tensor] = None) -> tuple[Tensor, Tensor, Tensor]:
        """`audio` `[B, N]` float32 16 kHz (`lengths` `[B]` valid samples) -> strong `[B, T, C]`, weak `[B, C]`
        (probabilities), tokens per clip `[B]`."""
        out = self.backbone.last_blocks(audio, lengths, n_blocks=1)
        tokens = out.states[0]
        counts = out.counts.to(tokens.device)
        mask = torch.arange(tokens.shape[1], device=tokens.device)[None] < counts[:, None]
        strong, weak = self.head(tokens, mask)
        return strong, weak, out.counts

    @property
    def window_samples(self) -> int:
        """Samples of one encoder window (160 000 = 10 s)."""
        return self.backbone.window_tokens * self.backbone.samples_per_token

    @torch.no_grad()
    def recording_scores(self, waves: Sequence[Tensor], trim: bool = True,
                         windows_per_call: int = WINDOWS_PER_CALL) -> list[Tensor]:
        """Strong probabilities `[T_i, C]` (40 ms tokens, float32, CPU) of recordings of any length (`[N_i]` 16 kHz).

        Each recording is zero-padded to whole 10 s windows and every window is scored as a training clip is (its
        own front end, 250 tokens), at most `windows_per_call` at a time; window k's scores are tokens
        250 k .. 250 k + 249, so windows join without drift. The scores are trimmed to the recording's own tokens
        (`trim` False: the padding's are kept, as the official DESED test keeps them). Call in eval mode."""
        window, per_window = self.window_samples, self.backbone.window_tokens
        out = []
        for wave in waves:
            n = int(wave.shape[-1])
            count = max(-(-n // window), 1)
            padded = torch.nn.functional.pad(wave.float().reshape(-1), (0, count * window - n))
            chunks = padded.reshape(count, window)
            parts = []
            for start in range(0, count, windows_per_call):
                strong, _, _ = self(chunks[start : start + windows_per_call].to(self.backbone.device))
                parts.append(strong[:, :per_window].float().cpu().reshape(-1, self.num_classes))
            scores = torch.cat(parts)
            keep = self.backbone.token_counts([n])[0] if trim else count * per_window
            out.append(scores[:keep])
        return out


__all__ = ["SCOPES", "SedModel", "WINDOWS_PER_CALL"]
