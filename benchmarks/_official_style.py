"""An official-style baseline for the embedding benchmark (written from a description of the official front end,
encoder and embedding code; no code of the official repository is used).

It reproduces the *computation pattern* of `audiossl.methods.atstframe.embedding`, not just its numbers:

* `load_official_style(path)`: reads the file with `torch.load` twice (no mmap, as `load_model` + Lightning's
  `load_from_checkpoint` do), builds the whole pre-training module at full size (student and teacher encoders,
  projectors, the student predictor), initialises it, loads every tensor, and returns the teacher encoder.
* `get_timestamp_embedding` / `get_scene_embedding`: torchaudio MelSpectrogram -> AmplitudeToDB(top_db=80) ->
  MinMax over the whole clip, then a Python loop over 1001-frame chunks, one encoder call per chunk, attention
  written out as `q @ k^T * scale + mask -> softmax -> @ v` (no SDPA), the length mask rebuilt in every block,
  and a `get_intermediate_layers` read-out (final norm applied to each of the last n blocks).

The benchmark checks that these numbers equal `atst` mode="official" before it times anything.
"""
from __future__ import annotations

import torch
import torchaudio
from torch import Tensor, nn

N_BLOCKS = 12
CHUNK_FRAMES = 1001
DB_MIN, DB_MAX = -79.6482, 50.6842
SIZES = {"tiny": (192, 3), "small": (384, 6), "base": (768, 12)}


def attention_mask(length: Tensor, n_tokens: int) -> Tensor:
    """Additive key mask `[B, 1, N, N]`: -10000 for keys at or past each item's length."""
    padded = torch.arange(n_tokens, device=length.device)[None, :] >= length[:, None]
    return (padded.float() * -10000.0)[:, None, None, :].expand(-1, 1, n_tokens, -1)


class ExplicitAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, length: Tensor) -> Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        logits = (q @ k.transpose(-2, -1)) * self.scale
        logits = logits + attention_mask(length, n)  # rebuilt in every block, as the official code does
        weights = logits.softmax(dim=-1)
        return self.proj((weights @ v).transpose(1, 2).reshape(b, n, c))


class MlpBlock(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ViTBlock(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = ExplicitAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MlpBlock(dim, 4 * dim)

    def forward(self, x: Tensor, length: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x), length)
        return x + self.mlp(self.norm2(x))


class LinearPatch(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.patch_embed = nn.Linear(64 * 4, dim)

    def forward(self, mel: Tensor) -> Tensor:
        # mel [B, 1, 64, W] -> [B, W // 4, 256], feature index = mel_bin * 4 + frame offset
        b, _, h, w = mel.shape
        t = w // 4
        x = mel[:, 0, :, : t * 4].reshape(b, h, t, 4).permute(0, 2, 1, 3).reshape(b, t, h * 4)
        return self.patch_embed(x)


class FrameEncoder(nn.Module):
    """ATST-Frame encoder with the official parameter names."""

    def __init__(self, arch: str) -> None:
        super().__init__()
        dim, heads = SIZES[arch]
        self.patch_embed = LinearPatch(dim)
        self.mask_embed = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 251, dim))
        self.blocks = nn.ModuleList(ViTBlock(dim, heads) for _ in range(12))
        self.norm_frame = nn.LayerNorm(dim, eps=1e-6)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.mask_embed, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def get_intermediate_layers(self, mel: Tensor, length: Tensor, n: int, scene: bool) -> Tensor:
        patch_length = torch.div(length - length % 4, 4, rounding_mode="floor")
        x = self.patch_embed(mel)
        x = x + self.pos_embed[:, 1 : x.shape[1] + 1]
        outputs = []
        for i, block in enumerate(self.blocks):
            x = block(x, patch_length)
            if len(self.blocks) - i <= n:
                z = self.norm_frame(x)
                if scene:
                    valid = (torch.arange(z.shape[1], device=z.device)[None, :] < patch_length[:, None]).float()
                    z = (z * valid[..., None]).sum(dim=1) / (patch_length[:, None].float() + 1e-6)
                outputs.append(z)
        return torch.cat(outputs, dim=-1)


def projection_mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, out_dim, bias=False))


class Branch(nn.Module):
    def __init__(self, arch: str, hidden: int, out: int, predictor: bool) -> None:
        super().__init__()
        self.encoder = FrameEncoder(arch)
        self.projector = projection_mlp(SIZES[arch][0], hidden, out)
        self.predictor = projection_mlp(out, hidden, out) if predictor else nn.Identity()


class PretrainModule(nn.Module):
    """What `FrameATSTLightningModule` holds: `model.student` and `model.teacher` (no predictor)."""

    def __init__(self, arch: str, hidden: int, out: int) -> None:
        super().__init__()
        self.model = nn.Module()
        self.model.student = Branch(arch, hidden, out, predictor=True)
        self.model.teacher = Branch(arch, hidden, out, predictor=False)
        self.model.teacher.requires_grad_(False)


class MinMax(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return (x - DB_MIN) / (DB_MAX - DB_MIN) * 2 - 1


def make_transform() -> nn.Module:
    return nn.Sequential(
        torchaudio.transforms.MelSpectrogram(16000, n_fft=1024, win_length=1024, hop_length=160, f_min=60,
                                             f_max=7800, n_mels=64),
        torchaudio.transforms.AmplitudeToDB(stype="power", top_db=80),
        MinMax(),
    )


def load_official_style(path: str) -> FrameEncoder:
    """Official-style `load_model`: two full reads of the file, the full pre-training module, the teacher back."""
    first = torch.load(path)  # the embedding API's own read (hyper-parameters)
    hparams = first["hyper_parameters"]
    state = first["state_dict"]
    hidden = state["model.teacher.projector.0.weight"].shape[0]
    out = state["model.teacher.projector.3.weight"].shape[0]
    module = PretrainModule(hparams["arch"], hidden, out)  # built (and initialised) in full, like Lightning
    second = torch.load(path)  # load_from_checkpoint reads the file again
    module.load_state_dict(second["state_dict"])
    del second
    encoder = module.model.teacher.encoder
    encoder.eval()
    encoder.transform = make_transform()
    encoder.n_blocks = N_BLOCKS
    del first
    return encoder


def _chunks(mel: Tensor):
    frames = mel.shape[-1]
    for i in range(frames // CHUNK_FRAMES + 1):
        chunk = mel[..., i * CHUNK_FRAMES : (i + 1) * CHUNK_FRAMES]
        if chunk.shape[-1] > 0:
            yield chunk


def get_timestamp_embedding(audio: Tensor, model: FrameEncoder) -> tuple[Tensor, Tensor]:
    """`[B, N]` -> (`[B, T, 12 D]`, timestamps `[B, T]` ms), one encoder call per 1001-frame chunk."""
    audio = audio.unsqueeze(1)
    model = model.to(audio.device)
    mel = model.transform.to(audio.device)(audio)  # [B, 1, 64, F]
    outputs = []
    for chunk in _chunks(mel):
        length = torch.full((audio.shape[0],), chunk.shape[-1], device=audio.device, dtype=torch.long)
        outputs.append(model.get_intermediate_layers(chunk, length, n=model.n_blocks, scene=False))
    embeddings = torch.cat(outputs, dim=1)
    timestamps = (torch.arange(embeddings.shape[1], device=audio.device) * 40.0)[None].expand(audio.shape[0], -1)
    return embeddings, timestamps


def get_scene_embedding(audio: Tensor, model: FrameEncoder) -> Tensor:
    audio = audio.unsqueeze(1)
    model = model.to(audio.device)
    mel = model.transform.to(audio.device)(audio)
    outputs = []
    for chunk in _chunks(mel):
        length = torch.full((audio.shape[0],), chunk.shape[-1], device=audio.device, dtype=torch.long)
        outputs.append(model.get_intermediate_layers(chunk, length, n=12, scene=True))
    return torch.stack(outputs).mean(dim=0)


__all__ = ["load_official_style", "get_timestamp_embedding", "get_scene_embedding"]
