"""Audio -> windows -> per-layer token states: the one path every door takes from waveforms to encoder outputs.

    backbone = Backbone(encoder, frontend_config)
    out = backbone(audio, lengths, layers=[0, 12])            # un-normalised states, autograd when enabled
    out = backbone.last_blocks(audio, lengths, n_blocks=12)   # final LayerNorm on each of the last 12 blocks
    out = backbone.last_blocks_mels(mels, n_blocks=1, pooled=True)  # the same from per-clip log-mels (fine-tuning)

How a batch `[B, N]` travels:
1. front end per clip over its own valid samples (each clip gets its own top_db floor; clips of equal length share
   one call; a clip shorter than the STFT needs is zero-padded to one token);
2. each clip's mel is cut into contiguous windows of `window_tokens` tokens (no frame dropped between windows;
   a partial token at the clip end is dropped, as the patch embedding does);
3. the windows of all clips go through the encoder together, at most `max_windows_per_call` per call: windows of
   equal length stack without a mask, the others are padded to the longest and masked in attention;
4. each window's rows are written back to their clip's positions, giving `[B, T, E]` with T the most tokens of any
   clip and zeros past a clip's own count (or, pooled, each clip's mean token `[B, E]` without materialising T).

Nothing here switches autograd on or off: the caller decides (`torch.inference_mode()` for embeddings, plain
autograd for fine-tuning and s3prl's `-f`).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence

import torch
from torch import Tensor, nn

from .encoder import ATSTEncoder
from .frontend import FrontendConfig, LogMelFrontend

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


def check_mel_finite(mel: Tensor, audio: Tensor, clips: Sequence[int]) -> None:
    """Raise if a clip's log-mel `[n_mels, F]` (row of `mel` `[b, n_mels, F]`) is not finite: its power overflowed
    float32 (amplitudes near 1e16 and above). Names the clip (`clips[row]`) and its peak amplitude `audio[row]`."""
    finite = torch.isfinite(mel).flatten(1).all(dim=1)
    if not bool(finite.all()):
        row = int((~finite).nonzero()[0])
        peak = float(audio[row].abs().max())
        raise ValueError(f"clip {clips[row]} has peak amplitude {peak:.3g}: its power spectrum overflows float32; "
                         f"waveforms are expected in [-1, 1] (scale the audio down)")


def validate_lengths(lengths: Optional[Tensor], audio: Tensor) -> Tensor:
    """Valid samples per clip of a padded batch, `[B]` long on the CPU (default: every clip full length)."""
    batch, samples = audio.shape
    if lengths is None:
        return torch.full((batch,), samples, dtype=torch.long)
    lengths = torch.as_tensor(lengths).detach().to("cpu", torch.long)
    if lengths.shape != (batch,):
        raise ValueError(f"lengths must have shape [{batch}], got {tuple(lengths.shape)}")
    if bool((lengths < 1).any()) or bool((lengths > samples).any()):
        raise ValueError(f"lengths must lie in [1, {samples}] samples, got {lengths.tolist()}")
    return lengths


@dataclass(frozen=True)
class WindowBatch:
    """One encoder call's worth of windows.

    `mel` `[W, n_mels, frames]` (zero-padded to the longest window of the call); `token_lengths` `[W]` valid tokens
    per window, or None when every window is full; `clips`, `first_tokens`, `tokens` `[W]` (CPU, long): the clip
    each window belongs to, the clip position of its first token, and its token count.
    """

    mel: Tensor
    token_lengths: Optional[Tensor]
    clips: Tensor
    first_tokens: Tensor
    tokens: Tensor


@dataclass
class TokenStates:
    """What the backbone returns for a batch of B clips.

    `states`: one tensor per requested output: `[B, T, E]` per-token rows (T = the most tokens of any clip, rows
    past `counts[b]` are zeros) or, pooled, `[B, E]` each clip's mean token. `counts` `[B]` (CPU, long): tokens per
    clip. `cls`: ATST-Clip only, one `[B, E]` per output: the windows' CLS rows averaged with token weights
    (None for ATST-Frame). All float32.
    """

    states: list[Tensor]
    counts: Tensor
    cls: Optional[list[Tensor]]


# encode(mel [W, n_mels, f], token_lengths [W] | None) -> one [W, t (+1 CLS), E] tensor per output
Encode = Callable[[Tensor, Optional[Tensor]], Sequence[Tensor]]


def effective_samples(frontend: LogMelFrontend, patch_w: int, num_samples: int) -> int:
    """Samples a clip of `num_samples` is read with: a clip too short for the STFT is zero-padded to one token."""
    too_short = num_samples < frontend.min_samples
    return max(num_samples, frontend.config.hop_length * patch_w) if too_short else num_samples


def clip_mels(frontend: LogMelFrontend, patch_w: int, audio: Tensor, lengths: Tensor) -> list[Tensor]:
    """Per-clip mel `[n_mels, F_b]` over each clip's valid samples of `audio` `[B, N]` (`lengths` `[B]`), each
    with its own top_db floor; clips of equal length share one front-end call. Clips too short for the STFT are
    zero-padded to one token (`patch_w` frames). The front end of `Backbone` and of fine-tuning's data loaders."""
    mels: list[Optional[Tensor]] = [None] * audio.shape[0]
    effective = [effective_samples(frontend, patch_w, int(n)) for n in lengths]
    for length in sorted(set(effective)):
        rows = [b for b, n in enumerate(effective) if n == length]
        waves = audio[rows, : min(length, audio.shape[1])]
        if waves.shape[1] < length:
            waves = torch.nn.functional.pad(waves, (0, length - waves.shape[1]))
        group = frontend(waves)
        check_mel_finite(group, waves, rows)
        for row, mel in zip(rows, group):
            mels[row] = mel
    return mels  # type: ignore[return-value]


class Backbone(nn.Module):
    """Front end + encoder + contiguous windows over clips of any length, with per-item lengths.

    Args:
        encoder: an `ATSTEncoder` (ATST-Frame or ATST-Clip); its parameters are used as they are (trainable or not).
        frontend_config: the log-mel settings of the checkpoint (16 kHz).
        window_tokens: tokens per encoder window (default: the positional table, 250 = 10 s); at most that.
        max_windows_per_call: bound on windows per encoder call (memory stays flat for hour-long clips).
        autocast: None, "bf16" or "fp16": the encoder runs under autocast; outputs are float32.
    """

    def __init__(self, encoder: ATSTEncoder, frontend_config: FrontendConfig = FrontendConfig(),
                 window_tokens: Optional[int] = None, max_windows_per_call: int = DEFAULT_MAX_WINDOWS_PER_CALL,
                 autocast: Optional[str] = None) -> None:
        super().__init__()
        config = encoder.config
        window_tokens = config.max_tokens if window_tokens is None else window_tokens
        if isinstance(window_tokens, bool) or not isinstance(window_tokens, int) \
                or not 1 <= window_tokens <= config.max_tokens:
            raise ValueError(f"window_tokens must be an int in [1, {config.max_tokens}] (the positional table), "
                             f"got {window_tokens!r}")
        if isinstance(max_windows_per_call, bool) or not isinstance(max_windows_per_call, int) \
                or max_windows_per_call < 1:
            raise ValueError(f"max_windows_per_call must be a positive int, got {max_windows_per_call!r}")
        if autocast is not None and autocast not in AUTOCAST_DTYPES:
            raise ValueError(f"autocast must be one of {sorted(AUTOCAST_DTYPES)} or None, got {autocast!r}")
        if frontend_config.n_mels != config.n_mels:
            raise ValueError(f"the front end makes {frontend_config.n_mels} mel bins but the encoder takes "
                             f"{config.n_mels}")
        self.encoder = encoder
        self.frontend = LogMelFrontend(frontend_config)
        self.window_tokens = window_tokens
        self.max_windows_per_call = max_windows_per_call
        self.autocast_dtype = AUTOCAST_DTYPES[autocast] if autocast else None

    # ------------------------------------------------------------------------------------------ units
    @property
    def config(self):
        """The encoder's `EncoderConfig`."""
        return self.encoder.config

    @property
    def sample_rate(self) -> int:
        return self.frontend.config.sample_rate

    @property
    def hop_ms(self) -> float:
        """Milliseconds per mel frame (10)."""
        return 1000.0 * self.frontend.config.hop_length / self.sample_rate

    @property
    def token_ms(self) -> float:
        """Milliseconds per token (40)."""
        return self.hop_ms * self.config.patch_w

    @property
    def samples_per_token(self) -> int:
        """Input samples per token (640)."""
        return self.frontend.config.hop_length * self.config.patch_w

    @property
    def window_frames(self) -> int:
        """Mel frames per encoder window (1000 = 10 s by default)."""
        return self.window_tokens * self.config.patch_w

    @property
    def device(self) -> torch.device:
        return self.encoder.pos_embed.device

    def token_counts(self, lengths: Sequence[int]) -> list[int]:
        """Tokens a clip of each sample length gets: floor((n // hop + 1) / patch_w), at least 1."""
        return [self._frames(int(n)) // self.config.patch_w for n in lengths]

    def _frames(self, num_samples: int) -> int:
        """Mel frames of a clip after padding a too-short one to one token."""
        return self.frontend.num_frames(effective_samples(self.frontend, self.config.patch_w, num_samples))

    # ------------------------------------------------------------------------------------------ encoder
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def encode_states(self, mel: Tensor, token_lengths: Optional[Tensor], layers: Sequence[int]) -> list[Tensor]:
        """`[W, n_mels, f]` -> un-normalised states `[W, t (+1), D]` (float32) at the sorted unique `layers`."""
        with self._autocast():
            return [state.float() for state in self.encoder.hidden_states(mel, token_lengths, layers)]

    def encode_last_blocks(self, mel: Tensor, n_blocks: int, token_lengths: Optional[Tensor] = None) -> Tensor:
        """`[W, n_mels, f]` -> final LayerNorm of each of the last `n_blocks` blocks, concatenated in block order:
        `[W, t (+1), n_blocks * D]` float32."""
        with self._autocast():
            return self.encoder.last_blocks_normed(mel, n_blocks, token_lengths).float()

    # ------------------------------------------------------------------------------------------ windows
    def clip_mels(self, audio: Tensor, lengths: Tensor) -> list[Tensor]:
        """Per-clip mel `[n_mels, F_b]` over each clip's valid samples (`clip_mels`)."""
        return clip_mels(self.frontend, self.config.patch_w, audio, lengths)

    def window_batches(self, mels: Sequence[Tensor]) -> Iterator[WindowBatch]:
        """Contiguous windows of every clip covering all its whole tokens, grouped into encoder calls: full windows
        stack unmasked; shorter ones (clip tails) share padded, masked calls; at most `max_windows_per_call` each."""
        patch_w = self.config.patch_w
        full, partial = [], []
        for clip, mel in enumerate(mels):
            usable = (mel.shape[-1] // patch_w) * patch_w
            for start in range(0, usable, self.window_frames):
                window = (clip, start // patch_w, mel[:, start : min(start + self.window_frames, usable)])
                (full if window[2].shape[-1] == self.window_frames else partial).append(window)
        partial.sort(key=lambda window: -window[2].shape[-1])
        for group in (full, partial):
            for start in range(0, len(group), self.max_windows_per_call):
                part = group[start : start + self.max_windows_per_call]
                frames = [window[2].shape[-1] for window in part]
                longest = max(frames)
                mel = torch.stack([torch.nn.functional.pad(w[2], (0, longest - w[2].shape[-1])) for w in part])
                tokens = torch.tensor([f // patch_w for f in frames], dtype=torch.long)
                token_lengths = None if min(frames) == longest else tokens.to(mel.device)
                yield WindowBatch(mel, token_lengths, torch.tensor([w[0] for w in part], dtype=torch.long),
                                  torch.tensor([w[1] for w in part], dtype=torch.long), tokens)

    def _run(self, audio: Tensor, lengths: Optional[Tensor], encode: Encode, widths: Sequence[int],
             pooled: bool) -> TokenStates:
        """Front end per clip, then the window loop (`_run_mels`)."""
        audio = validate_audio(audio).to(self.device)
        lengths = validate_lengths(lengths, audio)
        return self._run_mels(self.clip_mels(audio, lengths), encode, widths, pooled)

    def _run_mels(self, mels: Sequence[Tensor], encode: Encode, widths: Sequence[int],
                  pooled: bool) -> TokenStates:
        """The window loop: encode every window batch of the clips' mels `[n_mels, F_b]` and write its rows back
        to `[B, T, E]` (or pooled sums)."""
        patch_w, offset = self.config.patch_w, int(self.config.has_cls)
        counts = torch.tensor([mel.shape[-1] // patch_w for mel in mels], dtype=torch.long)
        batch, total, device = len(mels), int(counts.max()), mels[0].device
        # the CLS row (ATST-Clip) is averaged over windows with their token counts as weights
        shape = (batch,) if pooled else (batch, total)
        outputs = [torch.zeros(*shape, width, device=device) for width in widths]
        cls = [torch.zeros(batch, width, device=device) for width in widths] if offset else None
        for windows in self.window_batches(mels):
            results = encode(windows.mel, windows.token_lengths)
            # one copy per window (at most max_windows_per_call): no [W, t, E] temporaries, and sums accumulate in
            # window order, so results are deterministic on every device
            placement = zip(windows.clips.tolist(), windows.first_tokens.tolist(), windows.tokens.tolist())
            for window, (clip, first, n) in enumerate(placement):
                for index, result in enumerate(results):
                    rows = result[window, offset : offset + n]
                    if pooled:
                        outputs[index][clip] += rows.sum(dim=0)
                    else:
                        outputs[index][clip, first : first + n] = rows
                    if cls is not None:
                        cls[index][clip] += result[window, 0] * n
        divisor = counts.to(device, torch.float32)[:, None]
        if pooled:
            outputs = [output / divisor for output in outputs]
        return TokenStates(outputs, counts, [c / divisor for c in cls] if cls is not None else None)

    # ------------------------------------------------------------------------------------------ public read-outs
    def forward(self, audio: Tensor, lengths: Optional[Tensor] = None,
                layers: Optional[Sequence[int]] = None) -> TokenStates:
        """Un-normalised hidden states over contiguous windows.

        `audio` `[B, N]` float32 16 kHz, `lengths` `[B]` valid samples (default: all N). `layers` (default all
        `depth + 1`): 0 = patch embedding + positions, i = after block i; `states` follows the requested order,
        each `[B, T, D]` (the ATST-Clip CLS row is not included; see `cls`).
        """
        depth = self.config.depth
        wanted = list(range(depth + 1)) if layers is None else [int(layer) for layer in layers]
        if not wanted or min(wanted) < 0 or max(wanted) > depth:
            raise ValueError(f"layers must be indices in [0, {depth}] (0 = patch embedding, i = after block i), "
                             f"got {wanted}")
        unique = sorted(set(wanted))
        out = self._run(audio, lengths, lambda mel, token_lengths: self.encode_states(mel, token_lengths, unique),
                        [self.config.embed_dim] * len(unique), pooled=False)
        order = [unique.index(layer) for layer in wanted]
        return TokenStates([out.states[i] for i in order], out.counts,
                           [out.cls[i] for i in order] if out.cls is not None else None)

    def last_blocks(self, audio: Tensor, lengths: Optional[Tensor] = None, n_blocks: int = 1,
                    pooled: bool = False) -> TokenStates:
        """The final LayerNorm on each of the last `n_blocks` blocks, concatenated: one output of width
        `n_blocks * D`, per token `[B, T, n_blocks * D]` or, `pooled`, each clip's mean token `[B, n_blocks * D]`."""
        self._check_blocks(n_blocks)
        return self._run(audio, lengths, self._last_blocks_encode(n_blocks), [n_blocks * self.config.embed_dim],
                         pooled)

    def last_blocks_mels(self, mels: Sequence[Tensor], n_blocks: int = 1, pooled: bool = False) -> TokenStates:
        """`last_blocks` of clips given as their own normalised log-mels `[n_mels, F_b]` (each at least one token,
        all on the encoder's device): what fine-tuning feeds after augmenting the mels. Same windows, same
        outputs."""
        self._check_blocks(n_blocks)
        if not mels:
            raise ValueError("last_blocks_mels needs at least one clip")
        n_mels, patch_w = self.config.n_mels, self.config.patch_w
        for index, mel in enumerate(mels):
            if mel.ndim != 2 or mel.shape[0] != n_mels or mel.shape[1] < patch_w:
                raise ValueError(f"mel {index} must be [{n_mels}, frames >= {patch_w}] (one token at least), got "
                                 f"{tuple(mel.shape)}")
        return self._run_mels(mels, self._last_blocks_encode(n_blocks), [n_blocks * self.config.embed_dim], pooled)

    def _check_blocks(self, n_blocks: int) -> None:
        depth = self.config.depth
        if isinstance(n_blocks, bool) or not isinstance(n_blocks, int) or not 1 <= n_blocks <= depth:
            raise ValueError(f"n_blocks must be an int in [1, {depth}], got {n_blocks!r}")

    def _last_blocks_encode(self, n_blocks: int) -> Encode:
        return lambda mel, token_lengths: [self.encode_last_blocks(mel, n_blocks, token_lengths)]
