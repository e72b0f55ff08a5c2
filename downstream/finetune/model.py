"""The fine-tuned network: the checkpoint's encoder (unfrozen, DropPath 0.1), the clip read-out, the official head.

    model = FinetuneModel.from_checkpoint(loaded, protocol="official", n_blocks=1, num_labels=35)
    logits = model(mel, frames)          # mel [B, n_mels, F] normalised log-mels, frames [B] -> [B, C]

Read-outs (the linear evaluation's, now with gradients):

* `official` (the official `PretrainedEncoderPLModule`, unfrozen): `atst.official.OfficialReadouts.linear_eval_mels`
  on the 12 s centre crops the loader made. ATST-Frame: 1001-frame chunks, the mean token of the last `n_blocks`
  normed blocks, `[B, n_blocks * D]`. ATST-Clip: chunks of 6 s (601 frames), hard-coded in the official
  fine-tuning whatever the checkpoint's train_len, [CLS | token mean] with the official average-scaling quirk,
  `[B, 2 * n_blocks * D]`.
* `hear`: the whole clip through `Backbone.last_blocks_mels(pooled=True)` (contiguous windows: 10 s, ATST-Clip its
  train_len; no frame dropped), token mean (ATST-Clip [CLS | token mean]).

Head: `downstream.linear.LinearHead` (BatchNorm1d without affine + Linear, N(0, 0.01^2)) whose batch statistics
cover every DDP rank (`GlobalBatchNorm1d`: the official `sync_batchnorm=True`, on CPU too).

The encoder is rebuilt with `drop_path_rate = 0.1` (stochastic depth linspace(0, 0.1, depth)), the official class
default that the checkpoints do not override, active in train mode only. `mask_embed` is frozen: no read-out uses
it (the official run gave it no gradient either), and DDP needs every trainable tensor to take part.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Optional

import torch
from torch import Tensor, nn

from atst import LoadedCheckpoint
from atst.backbone import Backbone
from atst.checkpoint import build_encoder
from atst.embedding import clip_window_tokens
from atst.encoder import ATSTEncoder
from atst.frontend import FrontendConfig
from atst.official import OfficialReadouts
from atst.training.distributed import GlobalBatchNorm1d

from ..linear.head import LinearHead
from ..linear.readout import PROTOCOLS

DROP_PATH_RATE = 0.1  # the official encoder class default, not overridden by the checkpoints
OFFICIAL_CLIP_CHUNK_SECONDS = 6.0  # C/downstream/train_finetune.py hard-codes 6 s chunks (601 frames)


def readout_train_len(loaded: LoadedCheckpoint, protocol: str) -> float:
    """ATST-Clip: the chunk (official: 6 s) or window (hear: the checkpoint's train_len) length in seconds."""
    return OFFICIAL_CLIP_CHUNK_SECONDS if protocol == "official" else loaded.clip_train_len


def trainable_encoder(loaded: LoadedCheckpoint, drop_path_rate: float = DROP_PATH_RATE) -> ATSTEncoder:
    """A copy of the checkpoint's encoder with `drop_path_rate`, every tensor but `mask_embed` trainable."""
    config = replace(loaded.config, drop_path_rate=drop_path_rate)
    encoder = build_encoder(config, loaded.encoder.state_dict(), loaded.path, trainable=True)
    encoder.mask_embed.requires_grad_(False)
    return encoder


class FinetuneModel(nn.Module):
    """Encoder + read-out + head (module docstring). `clip_train_len`: see `readout_train_len`."""

    def __init__(self, encoder: ATSTEncoder, frontend_config: FrontendConfig, protocol: str, n_blocks: int,
                 num_labels: int, clip_train_len: float, generator: Optional[torch.Generator] = None) -> None:
        super().__init__()
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        config = encoder.config
        if isinstance(n_blocks, bool) or not isinstance(n_blocks, int) or not 1 <= n_blocks <= config.depth:
            raise ValueError(f"--n_last_blocks must be an integer in [1, {config.depth}] (the encoder's blocks), got "
                             f"{n_blocks!r}")
        window_tokens = clip_window_tokens(config, clip_train_len) if config.has_cls else None
        self.backbone = Backbone(encoder, frontend_config, window_tokens)
        self.official = OfficialReadouts(self.backbone, n_blocks, clip_train_len)
        self.protocol, self.n_blocks, self.clip_train_len = protocol, n_blocks, float(clip_train_len)
        self.embed_dim = n_blocks * config.embed_dim * (2 if config.has_cls else 1)
        self.head = LinearHead(self.embed_dim, num_labels, generator=generator, batch_norm=GlobalBatchNorm1d)
        self.train()  # the checkpoint's encoder comes in eval mode; DropPath and batch statistics need train mode

    @classmethod
    def from_checkpoint(cls, loaded: LoadedCheckpoint, protocol: str, n_blocks: int, num_labels: int,
                        frontend_config: Optional[FrontendConfig] = None,
                        generator: Optional[torch.Generator] = None) -> "FinetuneModel":
        return cls(trainable_encoder(loaded), frontend_config or loaded.frontend_config, protocol, n_blocks,
                   num_labels, readout_train_len(loaded, protocol), generator)

    @property
    def encoder(self) -> ATSTEncoder:
        return self.backbone.encoder

    def embed(self, mel: Tensor, frames: Tensor) -> Tensor:
        """`mel` `[B, n_mels, F]` zero-padded, `frames` `[B]` valid frames -> clip embeddings `[B, embed_dim]`."""
        if self.protocol == "official":
            return self.official.linear_eval_mels(mel, frames.to(mel.device))
        out = self.backbone.last_blocks_mels([m[:, :n] for m, n in zip(mel, frames.tolist())], self.n_blocks,
                                             pooled=True)
        return out.states[0] if out.cls is None else torch.cat([out.cls[0], out.states[0]], dim=-1)

    def forward(self, mel: Tensor, frames: Tensor) -> Tensor:
        """Logits `[B, num_labels]`."""
        return self.head(self.embed(mel, frames))


__all__ = ["DROP_PATH_RATE", "FinetuneModel", "OFFICIAL_CLIP_CHUNK_SECONDS", "readout_train_len",
           "trainable_encoder"]
