"""The s3prl upstream expert around an ATST encoder.

Input: a list of B unpadded 1-D float tensors at 16 kHz (what s3prl's runner hands an upstream).
Output: `hidden_states`, a list of `[B, T, D]` tensors (default 13: patch embedding + positions, then each block),
and `last_hidden_state`, the final LayerNorm of the last block, with T = ceil(max_len / 640) (one token per
40 ms). `get_downsample_rates(key)` is 640 for every key.

Frame padding rule: the encoder yields floor((n // 160 + 1) / 4) tokens for an n-sample utterance (one token for
anything shorter than 640 samples), which can be one less than ceil(n / 640). Each utterance's rows
[count, ceil(n / 640)) repeat its last real token; rows past ceil(n / 640) (beyond its own length, where s3prl
discards them) are zeros. The same rule applies to every returned state.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from atst import SAMPLE_RATE, Backbone, EncoderConfig, FrontendConfig, load_checkpoint
from atst.embedding import clip_window_tokens

from .options import UpstreamOptions

# input samples per token of every released checkpoint: 160-sample hop x 4 frames per patch = 40 ms
DOWNSAMPLE_RATE = FrontendConfig().hop_length * EncoderConfig().patch_w


def expected_frames(num_samples: int) -> int:
    """Frames the upstream returns for an utterance of `num_samples` samples: ceil(n / 640), at least 1."""
    return max(1, math.ceil(int(num_samples) / DOWNSAMPLE_RATE))


def _check_wavs(wavs: Sequence[Tensor]) -> list[Tensor]:
    if isinstance(wavs, Tensor) or not isinstance(wavs, (list, tuple)):
        raise TypeError(f"wavs must be a list of 1-D float tensors (16 kHz mono, one per utterance), got "
                        f"{type(wavs).__name__}")
    if len(wavs) == 0:
        raise ValueError("wavs is an empty list; pass at least one 1-D float tensor of 16 kHz samples")
    checked = []
    for index, wav in enumerate(wavs):
        if not isinstance(wav, Tensor):
            raise TypeError(f"wavs[{index}] must be a torch.Tensor, got {type(wav).__name__}")
        if wav.ndim != 1:
            raise ValueError(f"wavs[{index}] must be 1-D [samples] (mono 16 kHz), got shape {tuple(wav.shape)}")
        if not wav.is_floating_point():
            raise TypeError(f"wavs[{index}] must be a float tensor in [-1, 1], got {wav.dtype}; scale integer "
                            f"PCM by 1/32768 and convert with .float()")
        if wav.numel() == 0:
            raise ValueError(f"wavs[{index}] is empty; every utterance needs at least one sample")
        checked.append(wav.float())
    return checked


def fit_frames(state: Tensor, counts: Tensor, targets: Tensor, total: int) -> Tensor:
    """`state` `[B, T_enc, D]` with `counts[b]` real tokens -> `[B, total, D]`.

    Row t of item b is token min(t, counts[b] - 1) for t < targets[b] (repeating the last real token), zero beyond.
    """
    batch, _, dim = state.shape
    positions = torch.arange(total, device=state.device)
    counts = counts.to(state.device)
    index = torch.minimum(positions[None, :], (counts - 1)[:, None])
    gathered = state.gather(1, index[..., None].expand(batch, total, dim))
    valid = positions[None, :] < targets.to(state.device)[:, None]
    return torch.where(valid[..., None], gathered, torch.zeros((), dtype=state.dtype, device=state.device))


class UpstreamExpert(nn.Module):
    """ATST-Frame (or ATST-Clip) as an s3prl upstream.

    Args:
        ckpt: path of any checkpoint family `atst` reads (official Lightning ATST-Frame/ATST-Clip `.ckpt`,
            DINO-style, bare state dict, safetensors export).
        options: `UpstreamOptions` (window, mode, layers, final_norm, ...).
    """

    def __init__(self, ckpt: str, options: Optional[UpstreamOptions] = None) -> None:
        super().__init__()
        self.options = options or UpstreamOptions()
        # trainable: s3prl's `-f` fine-tunes the upstream; the runner itself decides when gradients flow
        loaded = load_checkpoint(str(ckpt), branch=self.options.branch, trainable=True)
        config = loaded.config
        self.depth = config.depth
        self.embed_dim = config.embed_dim
        self.family = config.family
        window_tokens = self.options.window_tokens
        if window_tokens is None and config.has_cls:  # ATST-Clip's own window: its training crop
            window_tokens = clip_window_tokens(config, loaded.clip_train_len)
        if window_tokens is not None and window_tokens > config.max_tokens:
            raise ValueError(f"window_secs {self.options.window_secs} needs {window_tokens} tokens but this "
                             f"checkpoint's positional table holds {config.max_tokens} "
                             f"({config.max_tokens * DOWNSAMPLE_RATE / SAMPLE_RATE:g} s)")
        self.backbone = Backbone(loaded.encoder, loaded.frontend_config, window_tokens,
                                 self.options.max_windows_per_call)
        layers = self.options.layers if self.options.layers is not None else list(range(self.depth + 1))
        bad = [layer for layer in layers if not 0 <= layer <= self.depth]
        if bad:
            raise ValueError(f"layers {bad} do not exist: this encoder has states 0 (patch embedding) to "
                             f"{self.depth} (after block {self.depth})")
        self.layers = layers

    @property
    def final_norm(self) -> nn.LayerNorm:
        return self.backbone.encoder.final_norm

    def get_downsample_rates(self, key: str = "hidden_states") -> int:
        """Input samples per output frame: 640 (40 ms) for every key."""
        return self.backbone.samples_per_token

    def forward(self, wavs: Sequence[Tensor]) -> dict:
        """`wavs`: B 1-D float tensors (16 kHz). Returns `hidden_states` (list of `[B, T, D]`, T = ceil(max/640))
        and `last_hidden_state` `[B, T, D]`."""
        wavs = _check_wavs(wavs)
        device = self.backbone.device
        lengths = torch.tensor([w.shape[0] for w in wavs], dtype=torch.long)
        longest = int(lengths.max())
        audio = torch.stack([nn.functional.pad(w.to(device), (0, longest - w.shape[0])) for w in wavs])
        total = expected_frames(longest)
        if self.options.mode == "hear":
            targets = torch.tensor([expected_frames(n) for n in lengths.tolist()])
            encoder_lengths: Optional[Tensor] = lengths
        else:  # official: every utterance taken at the padded batch length
            targets = torch.full_like(lengths, total)
            encoder_lengths = None
        wanted = sorted(set(self.layers) | {self.depth})
        out = self.backbone(audio, encoder_lengths, layers=wanted)
        by_layer = dict(zip(wanted, out.states))
        counts = out.counts
        last = fit_frames(self.final_norm(by_layer[self.depth]), counts, targets, total)
        hidden = []
        for layer in self.layers:
            state = by_layer[layer]
            if self.options.final_norm:
                state = self.final_norm(state)
            hidden.append(fit_frames(state, counts, targets, total))
        return {"hidden_states": hidden, "last_hidden_state": last}
