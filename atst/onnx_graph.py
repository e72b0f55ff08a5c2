"""The hear-mode timestamp embeddings of one window as a module that exports to ONNX with dynamic batch and length.

    graph = WindowGraph(embedder)              # an `Embedder` (fp32): its encoder, front end, n_blocks, window
    tokens = graph(audio)                      # [B, N] float32 16 kHz -> [B, T, n_blocks * D] float32

It computes exactly what `Embedder.timestamp_embeddings` computes in `hear` mode for clips of one window
(`graph.min_samples` <= N <= `graph.max_samples`: 513 samples to 10.03 s for ATST-Frame, the training crop for
ATST-Clip), with operators every ONNX runtime has:

* the STFT as a strided convolution with a DFT basis (cos and -sin rows times the Hann window, `[2 F, 1, n_fft]`)
  after reflect padding: the ONNX STFT operator also exports, but not every runtime or execution provider has it,
  and onnxruntime runs the convolution as fast on CPU (0.36 s against 0.48 s for 8 x 10 s on 2 threads);
* the HTK mel filterbank, the dB floor 80 dB below each clip's peak (every clip of the batch is all valid samples:
  one length per call) and the MinMax scaling of `LogMelFrontend.normalise`;
* the encoder's patch embedding, blocks and the final LayerNorm of each of the last `n_blocks` blocks
  (`ATSTEncoder.last_blocks_normed`); the ATST-Clip CLS row is dropped, as the timestamp read-out drops it.

The positional table holds exactly one window (ATST-Clip's is cut to its crop), so a longer input fails in the
runtime (a broadcast error in the position add) instead of giving embeddings hear mode would not give. Shorter
inputs than `min_samples` cannot be reflect-padded: hear mode zero-pads such a clip to one token (640 samples),
and a caller of the graph does the same.
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .embedding import Embedder
from .encoder import ATSTEncoder
from .frontend import FrontendConfig


def dft_basis(config: FrontendConfig) -> Tensor:
    """`[2 * (n_fft // 2 + 1), 1, n_fft]` float32: rows `w[n] cos(2 pi k n / n_fft)` then `-w[n] sin(...)`, with
    the periodic Hann window of `win_length` centred in `n_fft` (as `torch.stft` pads it). Built in float64."""
    n_freqs = config.n_fft // 2 + 1
    window = torch.hann_window(config.win_length, dtype=torch.float64)
    left = (config.n_fft - config.win_length) // 2
    window = F.pad(window, (left, config.n_fft - config.win_length - left))
    angle = 2 * math.pi * torch.outer(torch.arange(n_freqs, dtype=torch.float64),
                                      torch.arange(config.n_fft, dtype=torch.float64)) / config.n_fft
    return torch.cat([torch.cos(angle) * window, -torch.sin(angle) * window])[:, None, :].float()


def window_encoder(encoder: ATSTEncoder, window_tokens: int) -> ATSTEncoder:
    """`encoder` itself when its positional table is one window, else an encoder sharing its weights whose table is
    cut to `window_tokens` (ATST-Clip reads windows of its training crop)."""
    if window_tokens == encoder.config.max_tokens:
        return encoder
    from .checkpoint import build_encoder

    state = dict(encoder.state_dict())
    state["pos_embed"] = state["pos_embed"][:, : window_tokens + 1]
    config = dataclasses.replace(encoder.config, max_tokens=window_tokens)
    return build_encoder(config, state, "the encoder cut to one window")


class WindowGraph(nn.Module):
    """Audio `[B, N]` float32 16 kHz -> hear-mode timestamp embeddings `[B, T, n_blocks * D]` of one window.

    T = floor((N // hop + 1) / patch_w) tokens (40 ms each, centred at 40 k + 15 ms). Raises ValueError for an
    embedder in reduced precision (the graph is float32).
    """

    def __init__(self, embedder: Embedder) -> None:
        super().__init__()
        backbone = embedder.backbone
        if backbone.autocast_dtype is not None:
            raise ValueError("the ONNX graph is float32: load the embedder without autocast")
        config = backbone.frontend.config
        self.frontend = backbone.frontend
        self.encoder = window_encoder(backbone.encoder, backbone.window_tokens)
        self.n_blocks = embedder.n_blocks
        self.skip = int(backbone.config.has_cls)
        self.register_buffer("dft_basis", dft_basis(config), persistent=False)
        self.min_samples = backbone.frontend.min_samples
        # the most samples whose whole tokens fit one window: N // hop + 1 < (window_tokens + 1) * patch_w
        self.max_samples = config.hop_length * ((backbone.window_tokens + 1) * backbone.config.patch_w - 1) - 1
        self.sample_rate = config.sample_rate

    def forward(self, audio: Tensor) -> Tensor:
        """`[B, N]` float32 -> `[B, T, n_blocks * D]` float32."""
        config = self.frontend.config
        pad = config.n_fft // 2
        padded = F.pad(audio[:, None, :], (pad, pad), mode="reflect")
        spectrum = F.conv1d(padded, self.dft_basis, stride=config.hop_length)  # [B, 2 F, frames]
        real, imag = spectrum.chunk(2, dim=1)
        power = real * real + imag * imag
        mel = torch.matmul(power.transpose(1, 2), self.frontend.mel_fbank).transpose(1, 2)
        tokens = self.encoder.last_blocks_normed(self.frontend.normalise(mel), self.n_blocks)
        return tokens[:, self.skip :]


__all__ = ["WindowGraph", "dft_basis", "window_encoder"]
