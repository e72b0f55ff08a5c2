"""Embeddings from an ATST encoder: windows over long clips, read-outs, timestamps, in two modes.

`hear` (default): contiguous 1000-frame windows (250 tokens) with no frame dropped, timestamps at token centres
(40 k + 15 ms), scene = token-weighted mean over every token of the clip, per-clip front end over the valid
samples only, every window of every clip batched through the encoder (bounded by `max_windows_per_call`).

`official`: reproduces `audiossl.methods.atstframe.embedding` (ATST-Frame) and the official ATST-Clip downstream
read-out, quirks included (1001-frame chunks, zero-token tail chunks counted in the scene mean, timestamps
40 k from 0 with 10 ms drift per chunk, ATST-Frame scene always over 12 blocks), for numbers comparable with
published ones.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import torch
from torch import Tensor, nn

from .encoder import ATSTEncoder
from .frontend import FrontendConfig, LogMelFrontend

MODES = ("hear", "official")
OFFICIAL_CHUNK_FRAMES = 1001  # official embedding.py chunk (anchor_len 10 s * 100 + 1)
OFFICIAL_SCENE_BLOCKS = 12  # official get_scene_embedding ignores N_BLOCKS
OFFICIAL_CROP_SECONDS = 12.0  # official downstream FreezingTransform centre crop
DEFAULT_MAX_WINDOWS_PER_CALL = 32
AUTOCAST_DTYPES = {"float32": None, "fp32": None, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
                   "float16": torch.float16, "fp16": torch.float16}


def validate_audio(audio: object, name: str = "audio") -> Tensor:
    """Check a batch of mono 16 kHz waveforms: float32 `[B, N]` (or `[B, 1, N]`), finite, non-empty.

    Returns the `[B, N]` view. Raises TypeError/ValueError naming what is wrong and what is accepted.
    """
    if not isinstance(audio, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [batch, samples], got {type(audio).__name__}")
    if audio.ndim == 3:
        if audio.shape[1] != 1:
            raise ValueError(
                f"{name} has shape {tuple(audio.shape)}: {audio.shape[1]} channels where mono is required; "
                f"pass [batch, samples] (downmix stereo with .mean(dim=1))"
            )
        audio = audio[:, 0]
    if audio.ndim != 2:
        raise ValueError(f"{name} must have shape [batch, samples] (mono 16 kHz), got rank {audio.ndim} "
                         f"shape {tuple(audio.shape)}")
    if audio.dtype != torch.float32:
        raise TypeError(f"{name} must be float32 in [-1, 1], got {audio.dtype}; convert with "
                        f"`audio.float()` (and scale integer PCM by 1/32768)")
    if audio.shape[0] == 0 or audio.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(audio.shape)}; at least one sample per clip is needed")
    if not bool(torch.isfinite(audio).all()):
        raise ValueError(f"{name} contains NaN or Inf samples; clean the waveform before embedding")
    return audio


def _validate_lengths(lengths: Optional[Tensor], audio: Tensor) -> Tensor:
    batch, samples = audio.shape
    if lengths is None:
        return torch.full((batch,), samples, dtype=torch.long)
    lengths = torch.as_tensor(lengths).detach().to("cpu", torch.long)
    if lengths.shape != (batch,):
        raise ValueError(f"lengths must have shape [{batch}], got {tuple(lengths.shape)}")
    if bool((lengths < 1).any()) or bool((lengths > samples).any()):
        raise ValueError(f"lengths must lie in [1, {samples}] samples, got {lengths.tolist()}")
    return lengths


@dataclass
class TokenOutputs:
    """Per-token read-out of a batch: `tokens` `[B, T, E]` (zeros past `counts[b]`), `cls` `[B, W?]` sums."""

    tokens: Optional[Tensor]
    token_sums: Tensor  # [B, E] sum of token vectors per clip
    cls_sums: Optional[Tensor]  # [B, E] token-weighted sum of window CLS vectors (ATST-Clip)
    counts: Tensor  # [B] tokens per clip


class Embedder(nn.Module):
    """Front end + encoder + read-outs.

    Args:
        encoder: an `ATSTEncoder` (ATST-Frame or ATST-Clip).
        frontend_config: the log-mel settings of the checkpoint.
        mode: "hear" (default) or "official" (see the module docstring).
        n_blocks: read out the last `n_blocks` blocks (final LayerNorm applied to each, concatenated in order).
        clip_train_len: ATST-Clip training crop in seconds; sets its windows (official downstream chunking).
        max_windows_per_call: bound on windows per encoder call (memory), hear mode.
        autocast: None, "bf16" or "fp16": run the encoder under autocast; outputs stay float32.
    """

    sample_rate = 16000

    def __init__(
        self,
        encoder: ATSTEncoder,
        frontend_config: FrontendConfig = FrontendConfig(),
        mode: str = "hear",
        n_blocks: int = 12,
        clip_train_len: float = 6.0,
        max_windows_per_call: int = DEFAULT_MAX_WINDOWS_PER_CALL,
        autocast: Optional[str] = None,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        depth = encoder.config.depth
        if isinstance(n_blocks, bool) or not isinstance(n_blocks, int) or not 1 <= n_blocks <= depth:
            raise ValueError(f"n_blocks must be an int in [1, {depth}], got {n_blocks!r}")
        if max_windows_per_call < 1:
            raise ValueError(f"max_windows_per_call must be >= 1, got {max_windows_per_call}")
        if autocast not in AUTOCAST_DTYPES and autocast is not None:
            raise ValueError(f"autocast must be one of {sorted(AUTOCAST_DTYPES)} or None, got {autocast!r}")
        if frontend_config.sample_rate != self.sample_rate:
            raise ValueError(f"the front end must run at {self.sample_rate} Hz, got {frontend_config.sample_rate}")
        self.encoder = encoder
        self.frontend = LogMelFrontend(frontend_config)
        self.mode = mode
        self.n_blocks = n_blocks
        self.clip_train_len = float(clip_train_len)
        self.max_windows_per_call = max_windows_per_call
        self.autocast_dtype = AUTOCAST_DTYPES[autocast] if autocast else None
        config = encoder.config
        self.family = config.family
        self.patch_w = config.patch_w
        self.hop_ms = 1000.0 * frontend_config.hop_length / frontend_config.sample_rate  # 10 ms
        self.token_ms = self.hop_ms * config.patch_w  # 40 ms
        if self.family == "clip":
            # the official ATST-Clip read-out works in windows of its training crop
            frames = int(self.clip_train_len * 100)
            self.window_frames = max(config.patch_w, min(config.window_frames, frames - frames % config.patch_w))
        else:
            self.window_frames = config.window_frames
        self.timestamp_embedding_size = int(n_blocks * config.embed_dim)
        scene_blocks = OFFICIAL_SCENE_BLOCKS if (mode == "official" and self.family == "frame") else n_blocks
        self.scene_embedding_size = int(scene_blocks * config.embed_dim * (2 if self.family == "clip" else 1))

    # ------------------------------------------------------------------ helpers
    @property
    def device(self) -> torch.device:
        return self.encoder.pos_embed.device

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def _normed_blocks(self, mel: Tensor, n_blocks: int, token_lengths: Optional[Tensor] = None) -> Tensor:
        """`[W, n_mels, f]` -> concatenated normed last blocks `[W, t (+1), n_blocks * D]` in float32."""
        with self._autocast():
            return self.encoder.last_blocks_normed(mel, n_blocks, token_lengths).float()

    def _clip_mels(self, audio: Tensor, lengths: Tensor) -> tuple[list[Tensor], list[int]]:
        """Per-clip mel `[n_mels, F_b]` over each clip's valid samples (own top_db floor); clips of equal length
        share one front-end call. Clips too short for the STFT are zero-padded to one token (640 samples)."""
        min_samples = self.frontend.min_samples
        one_token = int(self.frontend.config.hop_length * self.patch_w)
        mels: list[Optional[Tensor]] = [None] * audio.shape[0]
        effective = [max(int(n), one_token) if int(n) < min_samples else int(n) for n in lengths]
        for length in sorted(set(effective)):
            rows = [b for b, n in enumerate(effective) if n == length]
            waves = audio[rows, : min(length, audio.shape[1])]
            if waves.shape[1] < length:
                waves = torch.nn.functional.pad(waves, (0, length - waves.shape[1]))
            for row, mel in zip(rows, self.frontend(waves)):
                mels[row] = mel
        return mels, effective  # type: ignore[return-value]

    # ------------------------------------------------------------------ hear mode core
    def _windows(self, mels: Sequence[Tensor]) -> list[tuple[int, int, Tensor]]:
        """Contiguous windows (clip index, first token, mel `[n_mels, frames]`) covering every whole token."""
        windows = []
        for clip, mel in enumerate(mels):
            usable = (mel.shape[-1] // self.patch_w) * self.patch_w
            for start in range(0, usable, self.window_frames):
                stop = min(start + self.window_frames, usable)
                windows.append((clip, start // self.patch_w, mel[:, start:stop]))
        return windows

    def _window_batches(self, windows: list[tuple[int, int, Tensor]]) -> Iterator[tuple[list, Tensor, Optional[Tensor]]]:
        """Group windows into encoder calls: equal token counts stack without a mask; the rest are padded to the
        longest and masked. At most `max_windows_per_call` windows per call."""
        by_length: dict[int, list] = {}
        for window in windows:
            by_length.setdefault(window[2].shape[-1], []).append(window)
        full = self.window_frames
        groups = [by_length.pop(full)] if full in by_length else []
        if len(by_length) == 1:
            groups.append(next(iter(by_length.values())))
        elif by_length:
            groups.append([w for length in sorted(by_length, reverse=True) for w in by_length[length]])
        for group in groups:
            for start in range(0, len(group), self.max_windows_per_call):
                part = group[start : start + self.max_windows_per_call]
                frames = [w[2].shape[-1] for w in part]
                longest = max(frames)
                mel = torch.stack([torch.nn.functional.pad(w[2], (0, longest - w[2].shape[-1])) for w in part])
                token_lengths = None
                if min(frames) != longest:
                    token_lengths = torch.tensor([f // self.patch_w for f in frames], device=mel.device)
                yield part, mel, token_lengths

    def _hear_token_outputs(self, audio: Tensor, lengths: Tensor, keep_tokens: bool,
                            n_blocks: int) -> TokenOutputs:
        mels, _ = self._clip_mels(audio, lengths)
        counts = torch.tensor([m.shape[-1] // self.patch_w for m in mels], dtype=torch.long)
        width = n_blocks * self.encoder.config.embed_dim
        batch = audio.shape[0]
        device = audio.device
        tokens = torch.zeros(batch, int(counts.max()), width, device=device) if keep_tokens else None
        token_sums = torch.zeros(batch, width, device=device)
        cls_sums = torch.zeros(batch, width, device=device) if self.family == "clip" else None
        offset = int(self.encoder.config.has_cls)
        for part, mel, token_lengths in self._window_batches(self._windows(mels)):
            out = self._normed_blocks(mel, n_blocks, token_lengths)
            for (clip, first, window_mel), row in zip(part, out):
                n = window_mel.shape[-1] // self.patch_w
                window_tokens = row[offset : offset + n]
                token_sums[clip] += window_tokens.sum(dim=0)
                if cls_sums is not None:
                    cls_sums[clip] += row[0] * n
                if tokens is not None:
                    tokens[clip, first : first + n] = window_tokens
        return TokenOutputs(tokens, token_sums, cls_sums, counts)

    def layer_states(self, audio: Tensor, lengths: Optional[Tensor] = None,
                     layers: Optional[Sequence[int]] = None) -> tuple[list[Tensor], Tensor]:
        """Un-normalised per-token hidden states over hear-mode windows, with autograd when enabled.

        `audio` `[B, N]`, `lengths` `[B]` valid samples. Returns (states, counts): one `[B, T, D]` tensor per
        requested layer (0 = patch embedding + positions, i = after block i; default all `depth + 1`), T = the
        most tokens of any clip, positions past `counts[b]` zero; the CLS token of ATST-Clip is not included.
        Every window of every clip goes through the encoder in batched calls (`max_windows_per_call`).
        """
        audio = validate_audio(audio).to(self.device)
        lengths = _validate_lengths(lengths, audio)
        layers = list(range(self.encoder.config.depth + 1)) if layers is None else list(layers)
        mels, _ = self._clip_mels(audio, lengths)
        counts = torch.tensor([m.shape[-1] // self.patch_w for m in mels], dtype=torch.long)
        offset = int(self.encoder.config.has_cls)
        unique = sorted(set(layers))
        total, dim = int(counts.max()), self.encoder.config.embed_dim
        outputs = [torch.zeros(audio.shape[0], total, dim, device=audio.device) for _ in unique]
        for part, mel, token_lengths in self._window_batches(self._windows(mels)):
            with self._autocast():
                states = self.encoder.hidden_states(mel, token_lengths, unique)
            for output, state in zip(outputs, states):
                for (clip, first, window_mel), row in zip(part, state.float()):
                    n = window_mel.shape[-1] // self.patch_w
                    output[clip, first : first + n] = row[offset : offset + n]
        by_layer = dict(zip(unique, outputs))
        return [by_layer[layer] for layer in layers], counts

    def _hear_timestamps(self, lengths: Tensor, n_tokens: int, device: torch.device) -> Tensor:
        """Token centres (40 k + 15 ms), clamped to each clip's end (only a padded sub-token clip needs it)."""
        centres = torch.arange(n_tokens, dtype=torch.float32) * self.token_ms + (self.patch_w - 1) * self.hop_ms / 2
        duration_ms = lengths.to(torch.float32) * 1000.0 / self.sample_rate
        return torch.minimum(centres[None, :], duration_ms[:, None]).to(device)

    # ------------------------------------------------------------------ public API
    @torch.inference_mode()
    def scene_embeddings(self, audio: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
        """`audio` `[B, N]` float32 16 kHz -> `[B, scene_embedding_size]` float32 (on the audio's device).

        `lengths` `[B]` (samples, hear mode or official ATST-Clip): valid samples per clip of a padded batch.
        """
        audio = validate_audio(audio)
        source_device = audio.device
        audio = audio.to(self.device)
        if self.mode == "official":
            if self.family == "clip":
                result = self._official_clip_scene(audio, _validate_lengths(lengths, audio))
            else:
                self._reject_lengths(lengths, audio)
                result = self._official_frame_scene(audio)
        else:
            out = self._hear_token_outputs(audio, _validate_lengths(lengths, audio), False, self.n_blocks)
            counts = out.counts.to(out.token_sums.device, torch.float32)[:, None]
            result = out.token_sums / counts
            if out.cls_sums is not None:
                result = torch.cat([out.cls_sums / counts, result], dim=-1)
        return result.to(source_device)

    @torch.inference_mode()
    def timestamp_embeddings(self, audio: Tensor, lengths: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """`audio` `[B, N]` -> (`[B, T, timestamp_embedding_size]`, timestamps `[B, T]` in ms), float32.

        hear: T = max over clips of floor(F / 4) tokens (at least 1), rows past a shorter clip's end are zeros.
        """
        audio = validate_audio(audio)
        source_device = audio.device
        audio = audio.to(self.device)
        if self.mode == "official":
            self._reject_lengths(lengths, audio)
            embeddings, timestamps = self._official_timestamps(audio)
        else:
            lengths = _validate_lengths(lengths, audio)
            out = self._hear_token_outputs(audio, lengths, True, self.n_blocks)
            embeddings = out.tokens
            timestamps = self._hear_timestamps(lengths, embeddings.shape[1], embeddings.device)
        return embeddings.to(source_device), timestamps.to(source_device)

    @torch.inference_mode()
    def token_counts(self, lengths: Sequence[int]) -> list[int]:
        """Tokens the hear mode produces for clips of these sample lengths."""
        short = self.frontend.min_samples
        return [max(1, self.frontend.num_frames(int(n) if int(n) >= short else 640) // self.patch_w)
                for n in lengths]

    def _reject_lengths(self, lengths: Optional[Tensor], audio: Tensor) -> None:
        if lengths is not None and bool((torch.as_tensor(lengths) != audio.shape[1]).any()):
            raise ValueError("official ATST-Frame embeddings treat every clip as full length (as the official code "
                             "does); per-clip lengths need mode='hear'")

    # ------------------------------------------------------------------ official mode
    def _official_mel(self, audio: Tensor) -> Tensor:
        if audio.shape[1] < self.frontend.min_samples:
            raise ValueError(
                f"audio of {audio.shape[1]} samples is too short for official mode: the official front end needs "
                f"at least {self.frontend.min_samples} samples ({self.frontend.min_samples / 16:.2f} ms); "
                f"mode='hear' pads shorter clips to one token"
            )
        return self.frontend(audio)

    def _official_chunks(self, mel: Tensor) -> list[Tensor]:
        frames = mel.shape[-1]
        return [mel[..., start : min(start + OFFICIAL_CHUNK_FRAMES, frames)]
                for start in range(0, frames, OFFICIAL_CHUNK_FRAMES)]

    def _official_chunk_outputs(self, mel: Tensor, n_blocks: int) -> list[Tensor]:
        """Normed last-n outputs `[B, t_i, n * D]` of every official chunk; full chunks share encoder calls."""
        chunks = self._official_chunks(mel)
        outputs: list[Optional[Tensor]] = [None] * len(chunks)
        full = [i for i, c in enumerate(chunks) if c.shape[-1] == OFFICIAL_CHUNK_FRAMES]
        batch = mel.shape[0]
        per_call = max(1, self.max_windows_per_call // batch)
        for start in range(0, len(full), per_call):
            ids = full[start : start + per_call]
            out = self._normed_blocks(torch.cat([chunks[i] for i in ids]), n_blocks)
            for i, part in zip(ids, out.split(batch)):
                outputs[i] = part
        width = n_blocks * self.encoder.config.embed_dim
        for i, chunk in enumerate(chunks):
            if outputs[i] is None:
                if chunk.shape[-1] < self.patch_w:  # zero-token tail chunk
                    outputs[i] = mel.new_zeros(batch, 0, width)
                else:
                    outputs[i] = self._normed_blocks(chunk, n_blocks)
        return outputs  # type: ignore[return-value]

    def _official_frame_scene(self, audio: Tensor) -> Tensor:
        outputs = self._official_chunk_outputs(self._official_mel(audio), OFFICIAL_SCENE_BLOCKS)
        # masked mean with the official +1e-6 (a zero-token chunk gives zeros and still counts)
        means = [out.sum(dim=1) / (out.shape[1] + 1e-6) for out in outputs]
        return torch.stack(means).mean(dim=0)

    def _official_timestamps(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        outputs = self._official_chunk_outputs(self._official_mel(audio), self.n_blocks)
        if self.family == "clip":
            outputs = [out[:, 1:] if out.shape[1] else out for out in outputs]
        embeddings = torch.cat(outputs, dim=1)
        timestamps = (torch.arange(embeddings.shape[1], dtype=torch.float32) * self.token_ms).to(audio.device)
        return embeddings, timestamps[None].expand(audio.shape[0], -1)

    def _official_clip_scene(self, audio: Tensor, lengths: Tensor) -> Tensor:
        """Official ATST-Clip downstream read-out: 12 s centre crop, chunks of train_len*100+1 frames with
        per-item lengths not clipped to the chunk, [CLS | masked mean] of the last n blocks, chunk weights."""
        mel, frame_lengths = self._centre_cropped_mels(audio, lengths)
        return official_chunked_scene(self, mel, frame_lengths, int(self.clip_train_len * 100 + 1),
                                      clip_lengths_to_chunk=False, min_chunk_frames=0)


    def _centre_cropped_mels(self, audio: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Official downstream input: each clip centre-cropped to 12 s, its own mel, zero-padded (in normalised
        space) to the longest: (`[B, n_mels, F_max]`, frame lengths `[B]`)."""
        crop = int(OFFICIAL_CROP_SECONDS * self.sample_rate)
        mels = []
        for row, length in zip(audio, lengths.tolist()):
            start = max(0, (length - crop) // 2)
            wave = row[start : start + min(length, crop)]
            if wave.shape[0] < self.frontend.min_samples:
                raise ValueError(f"audio of {wave.shape[0]} samples is too short for official mode (at least "
                                 f"{self.frontend.min_samples} samples)")
            mels.append(self.frontend(wave[None])[0])
        frame_lengths = torch.tensor([m.shape[-1] for m in mels], device=audio.device)
        longest = int(frame_lengths.max())
        return torch.stack([torch.nn.functional.pad(m, (0, longest - m.shape[-1])) for m in mels]), frame_lengths


def official_chunked_scene(embedder: Embedder, mel: Tensor, frame_lengths: Tensor, chunk_frames: int,
                           clip_lengths_to_chunk: bool, min_chunk_frames: int) -> Tensor:
    """The official linear-evaluation read-out over a zero-padded mel batch `[B, n_mels, F]`.

    Chunk i covers frames [i*C, (i+1)*C); item b's valid length in it is max(len_b - i*C, 0), clipped to C for
    ATST-Frame but not for ATST-Clip (whose over-long averaging quirk is kept). Chunk 0 counts for items with
    frames in it, later chunks only for items with more than C // 2 frames there. Result: per-item weighted mean
    over chunks of [CLS |] masked token mean of the last `n_blocks` normed blocks.
    """
    encoder = embedder.encoder
    n_blocks = embedder.n_blocks
    has_cls = encoder.config.has_cls
    patch_w = encoder.config.patch_w
    frames = mel.shape[-1]
    sums = None
    weight_total = torch.zeros(mel.shape[0], 1, device=mel.device)
    for index in range(frames // chunk_frames + 1):
        chunk = mel[..., index * chunk_frames : (index + 1) * chunk_frames]
        if chunk.shape[-1] <= min_chunk_frames:
            continue
        cur = torch.clamp(frame_lengths - index * chunk_frames, min=0)
        if clip_lengths_to_chunk:
            cur = torch.clamp(cur, max=chunk_frames)
        patch_lengths = cur // patch_w
        out = embedder._normed_blocks(chunk, n_blocks, patch_lengths)
        tokens = out[:, int(has_cls):]
        positions = torch.arange(tokens.shape[1], device=mel.device)
        valid = (positions[None, :] < patch_lengths[:, None]).to(tokens.dtype)
        mean = (tokens * valid[..., None]).sum(dim=1) / (patch_lengths[:, None].to(tokens.dtype) + 1e-6)
        pieces = torch.cat([out[:, 0], mean], dim=-1) if has_cls else mean
        weight = (cur > 0) if index == 0 else (cur > chunk_frames // 2)
        weight = weight.to(pieces.dtype)[:, None]
        sums = pieces * weight if sums is None else sums + pieces * weight
        weight_total = weight_total + weight
    return sums / weight_total


def official_frame_linear_eval(embedder: Embedder, audio: Tensor, lengths: Optional[Tensor] = None) -> Tensor:
    """The official ATST-Frame linear-evaluation embedding (`PretrainedEncoderPLModule`): 12 s centre crop,
    1001-frame chunks with per-item lengths clipped to the chunk, chunks of 20 frames or fewer skipped,
    last `n_blocks` blocks. `[B, N]` -> `[B, n_blocks * D]`."""
    audio = validate_audio(audio).to(embedder.device)
    lengths = _validate_lengths(lengths, audio)
    mel, frame_lengths = embedder._centre_cropped_mels(audio, lengths)
    with torch.inference_mode():
        return official_chunked_scene(embedder, mel, frame_lengths, OFFICIAL_CHUNK_FRAMES,
                                      clip_lengths_to_chunk=True, min_chunk_frames=20)


def load_embedder(path: str, mode: str = "hear", n_blocks: int = 12, branch: str = "teacher",
                  **options) -> Embedder:
    """Read a checkpoint of any supported family and wrap its encoder in an `Embedder` (eval mode)."""
    from .checkpoint import load_checkpoint

    accepted = {"clip_train_len", "max_windows_per_call", "autocast"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise TypeError(f"unknown option(s) {unknown}; accepted: mode, n_blocks, branch, {', '.join(sorted(accepted))}")
    loaded = load_checkpoint(path, branch=branch)
    options.setdefault("clip_train_len", loaded.clip_train_len)
    embedder = Embedder(loaded.encoder, loaded.frontend_config, mode=mode, n_blocks=n_blocks, **options)
    embedder.checkpoint_info = loaded  # type: ignore[attr-defined]
    return embedder.eval()


__all__ = ["Embedder", "validate_audio", "load_embedder", "official_frame_linear_eval", "MODES"]
