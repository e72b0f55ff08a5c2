"""The official read-outs, quirks included, for numbers comparable with published ones.

* ATST-Frame embeddings (`audiossl.methods.atstframe.embedding`): the mel of the whole clip cut into chunks of
  1001 frames; a chunk too short for one token still counts (as zeros) in the scene mean; timestamps `40 k` ms from
  0, so they drift 10 ms per chunk; the scene always reads 12 blocks whatever `n_blocks` says.
* ATST-Clip linear evaluation: each clip centre-cropped to 12 s, chunks of `train_len * 100 + 1` frames, per-item
  lengths not clipped to the chunk (the over-long mean is kept), `[CLS | masked token mean]`, chunk weights.
* ATST-Frame linear evaluation (`PretrainedEncoderPLModule`): 12 s centre crop, 1001-frame chunks with per-item
  lengths clipped to the chunk, chunks of 20 frames or fewer skipped.

`hear` mode (atst.embedding) fixes these for users; this module exists so published numbers can be reproduced.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import torch
from torch import Tensor

from .backbone import Backbone, check_mel_finite, validate_audio, validate_lengths

if TYPE_CHECKING:
    from .embedding import Embedder

CHUNK_FRAMES = 1001  # official embedding.py chunk (anchor_len 10 s * 100 + 1)
SCENE_BLOCKS = 12  # official get_scene_embedding ignores N_BLOCKS
CROP_SECONDS = 12.0  # official downstream FreezingTransform centre crop
LINEAR_EVAL_MIN_CHUNK_FRAMES = 20  # PretrainedEncoderPLModule skips chunks this short


class OfficialReadouts:
    """The official read-outs of one encoder.

    Args:
        backbone: the front end and encoder (its window settings are not used: chunks are the official ones).
        n_blocks: blocks read out for timestamps and linear evaluation (the ATST-Frame scene reads 12).
        clip_train_len: ATST-Clip training crop in seconds (its chunk length).
    """

    def __init__(self, backbone: Backbone, n_blocks: int, clip_train_len: float) -> None:
        self.backbone = backbone
        self.n_blocks = n_blocks
        self.clip_train_len = float(clip_train_len)
        config = backbone.config
        scene_blocks = SCENE_BLOCKS if config.family == "frame" else n_blocks
        self.scene_embedding_size = int(scene_blocks * config.embed_dim * (2 if config.has_cls else 1))
        self.timestamp_embedding_size = int(n_blocks * config.embed_dim)

    # ------------------------------------------------------------------------------------------ public
    def scene(self, audio: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        """`[B, N]` -> `[B, scene_embedding_size]`: ATST-Frame embedding.py scene, or the ATST-Clip linear-evaluation
        read-out (which honours `lengths`; ATST-Frame treats every clip as full length, as the official code)."""
        audio = validate_audio(audio).to(self.backbone.device)
        if self.backbone.config.has_cls:
            return self.linear_eval_mels(*self._centre_cropped_mels(audio, validate_lengths(lengths, audio)))
        _reject_lengths(lengths, audio)
        outputs = self._chunk_outputs(self._mel(audio), SCENE_BLOCKS)
        # masked mean with the official +1e-6 (a zero-token chunk gives zeros and still counts)
        means = [out.sum(dim=1) / (out.shape[1] + 1e-6) for out in outputs]
        return torch.stack(means).mean(dim=0)

    def timestamps(self, audio: Tensor, lengths: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """`[B, N]` -> (`[B, T, n_blocks * D]`, timestamps `[B, T]` ms at `40 k` from 0, drifting per chunk)."""
        audio = validate_audio(audio).to(self.backbone.device)
        _reject_lengths(lengths, audio)
        outputs = self._chunk_outputs(self._mel(audio), self.n_blocks)
        if self.backbone.config.has_cls:
            outputs = [out[:, 1:] if out.shape[1] else out for out in outputs]
        embeddings = torch.cat(outputs, dim=1)
        stamps = torch.arange(embeddings.shape[1], dtype=torch.float32) * self.backbone.token_ms
        return embeddings, stamps.to(audio.device)[None].expand(audio.shape[0], -1)

    def frame_linear_eval(self, audio: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        """The ATST-Frame linear-evaluation embedding: `[B, N]` -> `[B, n_blocks * D]`."""
        audio = validate_audio(audio).to(self.backbone.device)
        return self.linear_eval_mels(*self._centre_cropped_mels(audio, validate_lengths(lengths, audio)))

    def linear_eval_mels(self, mel: Tensor, frame_lengths: Tensor) -> Tensor:
        """The official clip read-out of linear evaluation and fine-tuning (`PretrainedEncoderPLModule`) on a
        zero-padded batch of (centre-cropped) mels `[B, n_mels, F]` with valid frames `frame_lengths` `[B]`:
        ATST-Frame `[B, n_blocks * D]` (1001-frame chunks, lengths clipped to the chunk, chunks of <= 20 frames
        skipped), ATST-Clip `[B, 2 * n_blocks * D]` = [CLS | token mean] (chunks of `clip_train_len * 100 + 1`
        frames, the official average-scaling quirk). Autograd flows when enabled."""
        if self.backbone.config.has_cls:
            return self._chunked_scene(mel, frame_lengths, int(self.clip_train_len * 100 + 1),
                                       clip_lengths_to_chunk=False, min_chunk_frames=0)
        return self._chunked_scene(mel, frame_lengths, CHUNK_FRAMES, clip_lengths_to_chunk=True,
                                   min_chunk_frames=LINEAR_EVAL_MIN_CHUNK_FRAMES)

    # ------------------------------------------------------------------------------------------ pieces
    def _mel(self, audio: Tensor) -> Tensor:
        frontend = self.backbone.frontend
        if audio.shape[1] < frontend.min_samples:
            raise ValueError(
                f"audio of {audio.shape[1]} samples is too short for official mode: the official front end needs "
                f"at least {frontend.min_samples} samples ({frontend.min_samples / 16:.2f} ms); "
                f"mode='hear' pads shorter clips to one token"
            )
        mel = frontend(audio)
        check_mel_finite(mel, audio, range(audio.shape[0]))
        return mel

    def _chunk_outputs(self, mel: Tensor, n_blocks: int) -> list[Tensor]:
        """Normed last-n outputs `[B, t_i (+1), n * D]` of every official chunk; full chunks share encoder calls."""
        frames = mel.shape[-1]
        chunks = [mel[..., start : min(start + CHUNK_FRAMES, frames)] for start in range(0, frames, CHUNK_FRAMES)]
        outputs: list[Optional[Tensor]] = [None] * len(chunks)
        full = [i for i, chunk in enumerate(chunks) if chunk.shape[-1] == CHUNK_FRAMES]
        batch = mel.shape[0]
        per_call = max(1, self.backbone.max_windows_per_call // batch)
        for start in range(0, len(full), per_call):
            ids = full[start : start + per_call]
            out = self.backbone.encode_last_blocks(torch.cat([chunks[i] for i in ids]), n_blocks)
            for i, part in zip(ids, out.split(batch)):
                outputs[i] = part
        width = n_blocks * self.backbone.config.embed_dim
        for i, chunk in enumerate(chunks):
            if outputs[i] is None:
                if chunk.shape[-1] < self.backbone.config.patch_w:  # zero-token tail chunk
                    outputs[i] = mel.new_zeros(batch, 0, width)
                else:
                    outputs[i] = self.backbone.encode_last_blocks(chunk, n_blocks)
        return outputs  # type: ignore[return-value]

    def _centre_cropped_mels(self, audio: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Each clip centre-cropped to 12 s, its own mel, zero-padded (in normalised space) to the longest:
        (`[B, n_mels, F_max]`, frame lengths `[B]`)."""
        frontend = self.backbone.frontend
        mels = []
        for row, length in zip(audio, lengths.tolist()):
            wave = centre_crop(row[:length], self.backbone.sample_rate)
            if wave.shape[0] < frontend.min_samples:
                raise ValueError(f"audio of {wave.shape[0]} samples is too short for official mode (at least "
                                 f"{frontend.min_samples} samples)")
            mel = frontend(wave[None])
            check_mel_finite(mel, wave[None], [len(mels)])
            mels.append(mel[0])
        frame_lengths = torch.tensor([m.shape[-1] for m in mels], device=audio.device)
        longest = int(frame_lengths.max())
        return torch.stack([torch.nn.functional.pad(m, (0, longest - m.shape[-1])) for m in mels]), frame_lengths

    def _chunked_scene(self, mel: Tensor, frame_lengths: Tensor, chunk_frames: int, clip_lengths_to_chunk: bool,
                       min_chunk_frames: int) -> Tensor:
        """The official linear-evaluation read-out over a zero-padded mel batch `[B, n_mels, F]`.

        Chunk i covers frames [i*C, (i+1)*C); item b's valid length in it is max(len_b - i*C, 0), clipped to C
        for ATST-Frame but not for ATST-Clip. Chunk 0 counts for items with frames in it, later chunks only for
        items with more than C // 2 frames there. Result: per-item weighted mean over chunks of [CLS |] masked
        token mean of the last `n_blocks` normed blocks.
        """
        has_cls, patch_w = self.backbone.config.has_cls, self.backbone.config.patch_w
        sums: Optional[Tensor] = None
        weight_total = torch.zeros(mel.shape[0], 1, device=mel.device)
        for index in range(mel.shape[-1] // chunk_frames + 1):
            chunk = mel[..., index * chunk_frames : (index + 1) * chunk_frames]
            if chunk.shape[-1] <= min_chunk_frames:
                continue
            cur = torch.clamp(frame_lengths - index * chunk_frames, min=0)
            if clip_lengths_to_chunk:
                cur = torch.clamp(cur, max=chunk_frames)
            weight = (cur > 0) if index == 0 else (cur > chunk_frames // 2)
            if not bool(weight.any()):  # no item counts this chunk: its (weight 0) terms add exactly nothing
                continue
            patch_lengths = cur // patch_w
            out = self.backbone.encode_last_blocks(chunk, self.n_blocks, patch_lengths)
            tokens = out[:, int(has_cls):]
            positions = torch.arange(tokens.shape[1], device=mel.device)
            valid = (positions[None, :] < patch_lengths[:, None]).to(tokens.dtype)
            mean = (tokens * valid[..., None]).sum(dim=1) / (patch_lengths[:, None].to(tokens.dtype) + 1e-6)
            pieces = torch.cat([out[:, 0], mean], dim=-1) if has_cls else mean
            weights = weight.to(pieces.dtype)[:, None]
            sums = pieces * weights if sums is None else sums + pieces * weights
            weight_total = weight_total + weights
        assert sums is not None  # chunk 0 always exists: every clip has at least min_samples samples
        return sums / weight_total


def centre_crop(wave: Tensor, sample_rate: int, seconds: float = CROP_SECONDS) -> Tensor:
    """The official downstream `CentralCrop(seconds, pad=False)` of one waveform `[N]`: a clip longer than
    `seconds` keeps samples `[(N - crop) // 2, + crop)`; a shorter one is returned whole (not padded)."""
    crop = int(seconds * sample_rate)
    start = max(0, (wave.shape[-1] - crop) // 2)
    return wave[..., start : start + crop]


def _reject_lengths(lengths: Optional[Tensor], audio: Tensor) -> None:
    if lengths is not None and bool((torch.as_tensor(lengths) != audio.shape[1]).any()):
        raise ValueError("official ATST-Frame embeddings treat every clip as full length (as the official code "
                         "does); per-clip lengths need mode='hear'")


def official_frame_linear_eval(embedder: "Embedder", audio: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
    """The official ATST-Frame linear-evaluation embedding of an `Embedder`'s encoder, reading its last
    `embedder.n_blocks` blocks: `[B, N]` (+ `lengths` `[B]` samples) -> `[B, n_blocks * D]`."""
    readouts = OfficialReadouts(embedder.backbone, embedder.n_blocks, embedder.clip_train_len)
    with torch.inference_mode():
        return readouts.frame_linear_eval(audio, lengths)
