"""Log-mel front end shared by ATST-Frame and ATST-Clip.

waveform (16 kHz, float32) -> power mel spectrogram -> dB with an 80 dB floor below each clip's own peak
-> MinMax scaling with the fixed constants the official models were trained with.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torchaudio
from torch import Tensor, nn

from .limits import check_float, check_int

# MinMax constants of the official training transform (the same for every n_mels).
OFFICIAL_DB_MIN = -79.6482
OFFICIAL_DB_MAX = 50.6842


@dataclass(frozen=True)
class FrontendConfig:
    """Parameters of the log-mel front end; the defaults are those of every released checkpoint."""

    sample_rate: int = 16000
    n_fft: int = 1024
    win_length: int = 1024
    hop_length: int = 160
    f_min: float = 60.0
    f_max: float = 7800.0
    n_mels: int = 64
    top_db: float = 80.0

    def __post_init__(self) -> None:
        check_int("FrontendConfig", "sample_rate", self.sample_rate, 1000, 384_000)
        check_int("FrontendConfig", "n_fft", self.n_fft, 16, 65536)
        check_int("FrontendConfig", "win_length", self.win_length, 1, self.n_fft)
        check_int("FrontendConfig", "hop_length", self.hop_length, 1, self.n_fft)
        check_int("FrontendConfig", "n_mels", self.n_mels, 1, 512)
        check_float("FrontendConfig", "f_min", self.f_min, 0.0, self.sample_rate / 2)
        check_float("FrontendConfig", "f_max", self.f_max, self.f_min, self.sample_rate / 2, low_open=True)
        check_float("FrontendConfig", "top_db", self.top_db, 0.0, 200.0, low_open=True)


SAMPLE_RATE = FrontendConfig.sample_rate  # 16 kHz: the rate every released checkpoint was trained at


class LogMelFrontend(nn.Module):
    """Waveform `[B, N]` (16 kHz) -> normalised log-mel `[B, n_mels, F]` with `F = N // hop + 1`.

    Reproduces torchaudio's `MelSpectrogram` (centred, reflect padding, periodic Hann, power 2, HTK mel scale,
    no filterbank norm) followed by `AmplitudeToDB(top_db=80)` and the official MinMax scaling. Long clips are
    transformed in segments of frames so the complex STFT of a one-hour clip never has to exist at once; the
    result is the same as one call because frames are independent once the clip ends are reflect-padded.
    """

    def __init__(self, config: FrontendConfig = FrontendConfig(), segment_frames: int = 8192) -> None:
        super().__init__()
        self.config = config
        self.segment_frames = segment_frames
        self.register_buffer("window", torch.hann_window(config.win_length), persistent=False)
        fbank = torchaudio.functional.melscale_fbanks(
            n_freqs=config.n_fft // 2 + 1,
            f_min=config.f_min,
            f_max=config.f_max,
            n_mels=config.n_mels,
            sample_rate=config.sample_rate,
            norm=None,
            mel_scale="htk",
        )
        self.register_buffer("mel_fbank", fbank, persistent=False)  # [n_freqs, n_mels]

    @property
    def min_samples(self) -> int:
        """Shortest waveform the centred STFT accepts (reflect padding needs more than n_fft / 2 samples)."""
        return self.config.n_fft // 2 + 1

    def num_frames(self, num_samples: int) -> int:
        return num_samples // self.config.hop_length + 1

    def power_mel(self, waveform: Tensor) -> Tensor:
        """`[B, N]` -> power mel `[B, n_mels, F]` (float32)."""
        cfg = self.config
        if waveform.shape[-1] < self.min_samples:
            raise ValueError(
                f"audio of {waveform.shape[-1]} samples is too short for the STFT: at least {self.min_samples} "
                f"samples ({1000 * self.min_samples / cfg.sample_rate:.1f} ms) are needed"
            )
        pad = cfg.n_fft // 2
        num_samples = waveform.shape[-1]
        total_frames = self.num_frames(num_samples)
        out = waveform.new_empty(waveform.shape[0], cfg.n_mels, total_frames)
        for start in range(0, total_frames, self.segment_frames):
            stop = min(start + self.segment_frames, total_frames)
            spec = torch.stft(
                self._padded_piece(waveform, start * cfg.hop_length - pad,
                                   (stop - 1) * cfg.hop_length + cfg.n_fft - pad),
                n_fft=cfg.n_fft,
                hop_length=cfg.hop_length,
                win_length=cfg.win_length,
                window=self.window,
                center=False,
                normalized=False,
                onesided=True,
                return_complex=True,
            )
            power = spec.real.square() + spec.imag.square()  # [B, n_freqs, frames]
            out[..., start:stop] = torch.matmul(power.transpose(-1, -2), self.mel_fbank).transpose(-1, -2)
        return out

    @staticmethod
    def _padded_piece(waveform: Tensor, first: int, stop: int) -> Tensor:
        """Samples [first, stop) of the waveform reflect-padded at both ends (as a centred STFT pads it), built
        for this piece only: the padded copy of a whole long clip never exists."""
        num_samples = waveform.shape[-1]
        if first >= 0 and stop <= num_samples:
            return waveform[:, first:stop]
        index = torch.arange(first, stop, device=waveform.device)
        index = torch.where(index < 0, -index, index)
        index = torch.where(index >= num_samples, 2 * (num_samples - 1) - index, index)
        return waveform[:, index]

    def normalise(self, power_mel: Tensor) -> Tensor:
        """Power mel `[B, n_mels, F]` -> dB floored at (each item's peak - top_db) -> MinMax scaled.

        Works in place on its own intermediate when no gradient is recorded (a one-hour mel is 92 MB per copy)."""
        in_place = not (torch.is_grad_enabled() and power_mel.requires_grad)
        db = torch.clamp(power_mel, min=1e-10)
        db = db.log10_().mul_(10.0) if in_place else 10.0 * torch.log10(db)
        floor = db.amax(dim=(-2, -1), keepdim=True) - self.config.top_db
        if in_place:
            db.clamp_(min=floor)
            return db.sub_(OFFICIAL_DB_MIN).div_(OFFICIAL_DB_MAX - OFFICIAL_DB_MIN).mul_(2.0).sub_(1.0)
        db = torch.maximum(db, floor)
        return (db - OFFICIAL_DB_MIN) / (OFFICIAL_DB_MAX - OFFICIAL_DB_MIN) * 2.0 - 1.0

    def forward(self, waveform: Tensor) -> Tensor:
        """`[B, N]` float32 -> `[B, n_mels, N // hop + 1]`; every item gets its own top_db floor."""
        return self.normalise(self.power_mel(waveform.float()))
