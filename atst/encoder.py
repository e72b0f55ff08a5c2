"""The ATST transformer over 64x4 log-mel patches (ATST-Frame, and ATST-Clip with its CLS token).

Parameter names match the official checkpoints (`patch_embed.patch_embed`, `blocks.i.attn.qkv`, `norm_frame` for
ATST-Frame, `norm` and `cls_token` for ATST-Clip), so a state dict moves between the two without renaming.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, Iterator, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .limits import check_float, check_int

# The official models add this to the attention logits of padded keys (not -inf: a row with no valid key
# degrades to uniform attention instead of NaN).
PADDED_KEY_LOGIT = -10000.0

FAMILIES = ("frame", "clip")
# accepted ranges of the integer fields: generous for any model one could train, small enough that a crafted config
# cannot make the constructor allocate without bound
LIMITS = {"embed_dim": (1, 8192), "depth": (1, 128), "num_heads": (1, 256), "mlp_hidden_dim": (1, 65536),
          "n_mels": (1, 512), "patch_h": (1, 512), "patch_w": (1, 64), "max_tokens": (1, 100_000)}


@dataclass(frozen=True)
class EncoderConfig:
    """Shape of an ATST encoder. `family` is "frame" (ATST-Frame) or "clip" (ATST-Clip, with a CLS token)."""

    family: str = "frame"
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_hidden_dim: int = 3072
    qkv_bias: bool = False
    n_mels: int = 64
    patch_h: int = 64
    patch_w: int = 4
    max_tokens: int = 250
    layer_norm_eps: float = 1e-6
    drop_path_rate: float = 0.0

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        for name, (low, high) in LIMITS.items():
            check_int("EncoderConfig", name, getattr(self, name), low, high)
        if not isinstance(self.qkv_bias, bool):
            raise ValueError(f"EncoderConfig.qkv_bias must be a bool, got {self.qkv_bias!r}")
        check_float("EncoderConfig", "layer_norm_eps", self.layer_norm_eps, 0.0, 1.0, low_open=True)
        check_float("EncoderConfig", "drop_path_rate", self.drop_path_rate, 0.0, 0.99)
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.n_mels != self.patch_h:
            raise ValueError(
                f"only one patch row is supported: n_mels ({self.n_mels}) must equal patch_h ({self.patch_h})"
            )

    @property
    def has_cls(self) -> bool:
        return self.family == "clip"

    @property
    def final_norm_name(self) -> str:
        return "norm" if self.has_cls else "norm_frame"

    @property
    def window_frames(self) -> int:
        """Mel frames covered by the longest token sequence the positional table allows."""
        return self.max_tokens * self.patch_w

    def to_dict(self) -> dict:
        return asdict(self)


ARCHS = {
    "tiny": dict(embed_dim=192, depth=12, num_heads=3, mlp_hidden_dim=768),
    "small": dict(embed_dim=384, depth=12, num_heads=6, mlp_hidden_dim=1536),
    "base": dict(embed_dim=768, depth=12, num_heads=12, mlp_hidden_dim=3072),
}


def arch_config(arch: str, family: str = "frame", **overrides) -> EncoderConfig:
    """The config of a named architecture (`tiny`, `small`, `base`)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(ARCHS)}")
    return EncoderConfig(family=family, **{**ARCHS[arch], **overrides})


def arch_name(config: EncoderConfig) -> str:
    """`small`/`base`/`tiny` when the config is exactly one of them, else a descriptive string."""
    for name, shape in ARCHS.items():
        if all(getattr(config, key) == value for key, value in shape.items()):
            return name
    return f"custom(D={config.embed_dim}, depth={config.depth}, heads={config.num_heads})"


def key_padding_bias(token_lengths: Optional[Tensor], seq_len: int, offset: int = 0) -> Optional[Tensor]:
    """Additive attention bias `[B, 1, 1, seq_len]` masking keys at positions >= length + offset.

    Returns None when no key is padded, so attention can take the unmasked (flash) path.
    """
    if token_lengths is None:
        return None
    valid = token_lengths.to(torch.long) + offset
    if bool((valid >= seq_len).all()):
        return None
    positions = torch.arange(seq_len, device=token_lengths.device)
    padded = positions[None, :] >= valid[:, None]
    return (padded.to(torch.float32) * PADDED_KEY_LOGIT)[:, None, None, :]


class PatchEmbed(nn.Module):
    """Mel `[B, n_mels, F]` -> tokens `[B, F // patch_w, D]`, one 64x4 patch per 40 ms, time-major."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.patch_w = config.patch_w
        # named like the official module so checkpoint keys read `patch_embed.patch_embed.*`
        self.patch_embed = nn.Linear(config.patch_h * config.patch_w, config.embed_dim)

    def forward(self, mel: Tensor) -> Tensor:
        batch, n_mels, frames = mel.shape
        tokens = frames // self.patch_w
        patches = mel[:, :, : tokens * self.patch_w].reshape(batch, n_mels, tokens, self.patch_w)
        # feature index = mel_bin * patch_w + frame_offset, as in the official flattening
        patches = patches.permute(0, 2, 1, 3).reshape(batch, tokens, n_mels * self.patch_w)
        return self.patch_embed(patches)


class Attention(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.qkv = nn.Linear(config.embed_dim, 3 * config.embed_dim, bias=config.qkv_bias)
        self.proj = nn.Linear(config.embed_dim, config.embed_dim)

    def forward(self, x: Tensor, attn_bias: Optional[Tensor]) -> Tensor:
        batch, seq, dim = x.shape
        qkv = self.qkv(x).reshape(batch, seq, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        if attn_bias is not None:
            attn_bias = attn_bias.to(qkv.dtype)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=attn_bias)
        return self.proj(out.transpose(1, 2).reshape(batch, seq, dim))


class Mlp(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(config.embed_dim, config.mlp_hidden_dim)
        self.fc2 = nn.Linear(config.mlp_hidden_dim, config.embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class DropPath(nn.Module):
    """Stochastic depth on the residual branch, per sample; identity in eval mode."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, config: EncoderConfig, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(config.embed_dim, eps=config.layer_norm_eps)
        self.attn = Attention(config)
        self.norm2 = nn.LayerNorm(config.embed_dim, eps=config.layer_norm_eps)
        self.mlp = Mlp(config)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor, attn_bias: Optional[Tensor] = None) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), attn_bias))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class ATSTEncoder(nn.Module):
    """ATST-Frame / ATST-Clip encoder.

    Input mel `[B, n_mels, F]` (normalised log-mel, 10 ms frames); tokens T = F // 4 <= `config.max_tokens`.
    Hidden states are `[B, T (+1 CLS for ATST-Clip, first), D]`.
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.embed_dim
        self.patch_embed = PatchEmbed(config)
        self.mask_embed = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, config.max_tokens + 1, dim))
        if config.has_cls:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        steps = max(config.depth - 1, 1)
        rates = [config.drop_path_rate * i / steps for i in range(config.depth)]  # linear 0 -> rate
        self.blocks = nn.ModuleList(Block(config, rate) for rate in rates)
        self.add_module(config.final_norm_name, nn.LayerNorm(dim, eps=config.layer_norm_eps))
        if not self.pos_embed.is_meta:
            # a meta-device skeleton (checkpoint loading) gets its tensors from load_state_dict(assign=True);
            # initialising meta tensors goes through slow Python decompositions (about 1.5 s per fresh process)
            self.reset_parameters()

    @property
    def final_norm(self) -> nn.LayerNorm:
        return getattr(self, self.config.final_norm_name)

    def reset_parameters(self) -> None:
        """Truncated-normal(0.02) weights as in the official initialisation (for pre-training from scratch)."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.mask_embed, std=0.02)
        if self.config.has_cls:
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def embed(self, mel: Tensor, token_mask: Optional[Tensor] = None) -> Tensor:
        """Patch embedding + positions (+ CLS first for ATST-Clip): `[B, T (+1), D]`.

        `token_mask` `[B, T]` (bool) replaces the masked patch embeddings with `mask_embed` (pre-training student).
        """
        tokens = self.patch_embed(mel)
        n_tokens = tokens.shape[1]
        if n_tokens > self.config.max_tokens:
            raise ValueError(
                f"{n_tokens} tokens exceed the positional table ({self.config.max_tokens} tokens = "
                f"{self.config.window_frames} frames); split the input into windows"
            )
        if token_mask is not None:
            tokens = torch.where(token_mask[..., None], self.mask_embed.to(tokens.dtype), tokens)
        tokens = tokens + self.pos_embed[:, 1 : n_tokens + 1]
        if self.config.has_cls:
            cls = (self.cls_token + self.pos_embed[:, :1]).expand(tokens.shape[0], -1, -1)
            tokens = torch.cat([cls, tokens], dim=1)
        return tokens

    def hidden_states(
        self,
        mel: Tensor,
        token_lengths: Optional[Tensor] = None,
        layers: Optional[Iterable[int]] = None,
        token_mask: Optional[Tensor] = None,
    ) -> list[Tensor]:
        """Un-normalised hidden states at the requested layers (0 = embedding, i = after block i).

        `token_lengths` `[B]`: valid patch tokens per item; later keys are masked in attention (the CLS token of
        ATST-Clip is always valid). Default `layers`: all `depth + 1` states.
        """
        wanted = sorted(set(range(self.config.depth + 1) if layers is None else layers))
        if wanted and not 0 <= wanted[0] <= wanted[-1] <= self.config.depth:
            raise ValueError(f"layers must lie in [0, {self.config.depth}], got {wanted}")
        return [x for index, x in self._layer_outputs(mel, token_lengths, wanted[-1] if wanted else 0, token_mask)
                if index in wanted]

    def _layer_outputs(self, mel: Tensor, token_lengths: Optional[Tensor], last: int,
                       token_mask: Optional[Tensor] = None) -> Iterator[tuple[int, Tensor]]:
        """(layer index, `[B, T (+1), D]` state) for layers 0..`last`, one at a time (nothing kept here)."""
        x = self.embed(mel, token_mask)
        bias = key_padding_bias(token_lengths, x.shape[1], offset=int(self.config.has_cls))
        yield 0, x
        for index, block in enumerate(self.blocks[:last], start=1):
            x = block(x, bias)
            yield index, x

    def last_blocks_normed(self, mel: Tensor, n_blocks: int, token_lengths: Optional[Tensor] = None) -> Tensor:
        """The final LayerNorm applied to each of the last `n_blocks` block outputs, concatenated in block order:
        `[B, T (+1), n_blocks * D]`, columns `[j*D, (j+1)*D)` from block `depth - n_blocks + 1 + j`.

        Each block's normed output is written into one preallocated tensor as the block finishes, so peak memory
        is that output plus one state, not every state twice plus their concatenation."""
        depth, width = self.config.depth, self.config.embed_dim
        if not 1 <= n_blocks <= depth:
            raise ValueError(f"n_blocks must lie in [1, {depth}], got {n_blocks}")
        first = depth - n_blocks + 1
        out: Optional[Tensor] = None
        for index, x in self._layer_outputs(mel, token_lengths, depth):
            if index < first:
                continue
            normed = self.final_norm(x)
            if out is None:
                out = normed.new_empty(*normed.shape[:-1], n_blocks * width)
            column = (index - first) * width
            out[..., column : column + width] = normed
        assert out is not None
        return out

    def forward(
        self, mel: Tensor, token_lengths: Optional[Tensor] = None, token_mask: Optional[Tensor] = None
    ) -> Tensor:
        """Final-normed output of the last block `[B, T (+1), D]` (the pre-training read-out)."""
        (last,) = self.hidden_states(mel, token_lengths, [self.config.depth], token_mask)
        return self.final_norm(last)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

