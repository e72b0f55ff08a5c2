"""Generated sounds with real structure, and the clips that place them.

Tones (harmonic, with a timbre), exponential chirps, noise bursts and bands, background noise, and the two clip
kinds built from them: a scene clip of one class and an event clip with labelled onsets. Every generator returns
float32 `[round(seconds * sample_rate)]` samples in about [-1, 1] (16 kHz unless it takes a `sample_rate`) and draws
all its randomness from the `rng` passed in, so a clip is a pure function of its arguments and the generator state.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np

from ..audio_io import SAMPLE_RATE

FADE_MS = 10.0


# ---------------------------------------------------------------------------------------------- helpers

def num_samples(seconds: float, sample_rate: int = SAMPLE_RATE) -> int:
    """Samples in `seconds` at `sample_rate` Hz (rounded to the nearest sample)."""
    return int(round(seconds * sample_rate))


def time_axis(seconds: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Sample times in seconds, float64 `[num_samples(seconds, sample_rate)]`."""
    return np.arange(num_samples(seconds, sample_rate)) / sample_rate


def fade(x: np.ndarray, ms: float = FADE_MS, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Linear fade in and out over `ms` milliseconds (at most half the clip each), in place; returns `x`."""
    n = min(len(x) // 2, int(ms * sample_rate / 1000))
    if n > 0:
        ramp = np.linspace(0.0, 1.0, n)
        x[:n] *= ramp
        x[-n:] *= ramp[::-1]
    return x


def add_at(out: np.ndarray, x: np.ndarray, start: int) -> np.ndarray:
    """Add `x` into `out` from sample `start` on, cut at the end of `out`, in place; returns `out`."""
    piece = x[: max(0, len(out) - start)]
    out[start:start + len(piece)] += piece
    return out


def fit(x: np.ndarray, length: int, offset: int = 0) -> np.ndarray:
    """`x` placed at sample `offset` of `length` zeros (cut at the end), float32 `[length]`."""
    return add_at(np.zeros(length, dtype=np.float32), x.astype(np.float32), offset)


def peak_normalise(x: np.ndarray, peak: float) -> np.ndarray:
    """`x` scaled so its largest magnitude is `peak` (silence stays silence)."""
    return peak * x / (np.max(np.abs(x)) + 1e-9)


def partials(phase: np.ndarray, gains: Iterable[Tuple[int, float]], rng: np.random.Generator) -> np.ndarray:
    """Sum of `gain * sin(k * phase + random phase)` over the `(k, gain)` pairs, float64 like `phase`."""
    x = np.zeros_like(phase)
    for k, gain in gains:
        x += gain * np.sin(k * phase + rng.uniform(0, 2 * math.pi))
    return x


# ------------------------------------------------------------------------------------------------ tones

def harmonic_tone(freq_hz: float, seconds: float, sample_rate: int = SAMPLE_RATE, harmonics: int = 4,
                  amplitude: float = 0.3, rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """A steady tone at `freq_hz` with `harmonics` partials (gain 1/k), faded in/out, with a little noise."""
    rng = rng or np.random.default_rng(0)
    t = time_axis(seconds, sample_rate)
    wave = partials(2 * math.pi * freq_hz * t, [(k, 1.0 / k) for k in range(1, harmonics + 1)], rng)
    wave = fade(amplitude * wave / harmonics, sample_rate=sample_rate) + 0.005 * rng.standard_normal(len(t))
    return wave.astype(np.float32)


# Harmonic amplitude laws: gain of partial k (1 = the fundamental)
TIMBRES: Dict[str, Callable[[int], float]] = {
    "pure": lambda k: 1.0 if k == 1 else 0.0,
    "odd_harmonics": lambda k: 1.0 / k if k % 2 == 1 else 0.0,
    "sawtooth": lambda k: 1.0 / k,
}
MAX_PARTIAL = 15
NYQUIST_MARGIN_HZ = 500.0  # partials closer than this to Nyquist are left out (no aliasing)


def harmonic(f0: float, seconds: float, rng: np.random.Generator, timbre: str = "sawtooth",
             amplitude: float = 0.5) -> np.ndarray:
    """A tone at `f0` Hz with a timbre (one of `TIMBRES`), slight vibrato and an exponential decay."""
    if timbre not in TIMBRES:
        raise ValueError(f"unknown timbre {timbre!r}; timbres: {', '.join(TIMBRES)}")
    t = time_axis(seconds)
    vibrato = 1.0 + 0.004 * np.sin(2 * math.pi * rng.uniform(4, 7) * t)
    phase = 2 * math.pi * f0 * np.cumsum(vibrato) / SAMPLE_RATE
    gains = [(k, TIMBRES[timbre](k)) for k in range(1, MAX_PARTIAL + 1)]
    x = partials(phase, [(k, g) for k, g in gains if g and k * f0 < SAMPLE_RATE / 2 - NYQUIST_MARGIN_HZ], rng)
    x = peak_normalise(x, 1.0) * np.exp(-t * rng.uniform(0.2, 1.0))  # decaying envelope
    return fade(amplitude * x).astype(np.float32)


def chirp(f_start: float, f_end: float, seconds: float, rng: np.random.Generator,
          amplitude: float = 0.5) -> np.ndarray:
    """An exponential sweep from `f_start` to `f_end` Hz with a second harmonic."""
    t = time_axis(seconds)
    freq = f_start * (f_end / f_start) ** (t / max(seconds, 1e-3))
    phase = 2 * math.pi * np.cumsum(freq) / SAMPLE_RATE
    x = np.sin(phase) + 0.3 * np.sin(2 * phase + rng.uniform(0, 2 * math.pi))
    return fade(amplitude * x / 1.3).astype(np.float32)


# ------------------------------------------------------------------------------------------------ noise

def noise_bursts(seconds: float, rng: np.random.Generator, amplitude: float = 0.4) -> np.ndarray:
    """Several 30-150 ms bursts of white noise, each with a fast exponential decay (claps, clicks)."""
    n = num_samples(seconds)
    x = np.zeros(n)
    for _ in range(max(1, int(seconds * rng.uniform(2, 5)))):
        length = min(n, int(rng.uniform(0.03, 0.15) * SAMPLE_RATE))
        start = int(rng.integers(0, n - length + 1))
        add_at(x, rng.standard_normal(length) * np.exp(-np.arange(length) / (length / 4)), start)
    return np.clip(amplitude * x / 3.0, -1, 1).astype(np.float32)


def noise_band(seconds: float, rng: np.random.Generator, amplitude: float = 0.4) -> np.ndarray:
    """Steady noise for `seconds`, low-passed (first-order) or high-passed (first difference) at random."""
    white = rng.standard_normal(num_samples(seconds))
    coef = rng.uniform(0.5, 0.95)
    if rng.random() < 0.5:
        y = np.empty_like(white)
        acc = 0.0
        for i, v in enumerate(white):
            acc = coef * acc + (1 - coef) * v
            y[i] = acc
    else:
        y = np.diff(white, prepend=0.0)
    y = y / (np.std(y) + 1e-9)
    return fade(amplitude * 0.3 * y).astype(np.float32)


def background(seconds: float, rng: np.random.Generator, sigma: float = 0.02) -> np.ndarray:
    """White background noise of standard deviation `sigma`."""
    return (sigma * rng.standard_normal(num_samples(seconds))).astype(np.float32)


# ------------------------------------------------------------------------------------------------ clips

SCENE_CLASSES = ("low_tone", "high_tone", "chirp_up", "chirp_down", "noise_bursts")


def scene_clip(label: str, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """One clip of scene class `label` (one of `SCENE_CLASSES`) over background noise."""
    timbre = str(rng.choice(list(TIMBRES)))
    if label == "low_tone":
        x = harmonic(rng.uniform(110, 220), seconds, rng, timbre)
    elif label == "high_tone":
        x = harmonic(rng.uniform(880, 1760), seconds, rng, timbre)
    elif label == "chirp_up":
        x = chirp(rng.uniform(200, 500), rng.uniform(2000, 5000), seconds, rng)
    elif label == "chirp_down":
        x = chirp(rng.uniform(2000, 5000), rng.uniform(200, 500), seconds, rng)
    elif label == "noise_bursts":
        x = noise_bursts(seconds, rng)
    else:
        raise ValueError(f"unknown scene class {label!r}; classes: {SCENE_CLASSES}")
    return x + background(seconds, rng)


EVENT_CLASSES = ("tone", "chirp", "noise")


def event_sound(label: str, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """One sound of event class `label` (one of `EVENT_CLASSES`), `seconds` long, no background."""
    if label == "tone":
        return harmonic(rng.uniform(200, 1200), seconds, rng, str(rng.choice(list(TIMBRES))))
    if label == "chirp":
        low, high = rng.uniform(300, 800), rng.uniform(2000, 4000)
        return chirp(low, high, seconds, rng) if rng.random() < 0.5 else chirp(high, low, seconds, rng)
    if label == "noise":
        return noise_band(seconds, rng)
    raise ValueError(f"unknown event class {label!r}; classes: {EVENT_CLASSES}")


def event_clip(seconds: float, rng: np.random.Generator) -> Tuple[np.ndarray, List[dict]]:
    """Background noise with 1-3 events (they may overlap), each 300-1000 ms.

    Returns the audio and its events `[{"label", "start", "end"}]` in ms, sorted by start then label.
    """
    n = num_samples(seconds)
    audio = background(seconds, rng).astype(np.float64)
    events = []
    for _ in range(int(rng.integers(1, 4))):
        label = str(rng.choice(EVENT_CLASSES))
        start_ms = float(round(rng.uniform(0, seconds * 1000 - 300)))
        end_ms = float(min(seconds * 1000, start_ms + round(rng.uniform(300, 1000))))
        a, b = int(start_ms * SAMPLE_RATE / 1000), min(n, int(end_ms * SAMPLE_RATE / 1000))
        add_at(audio, event_sound(label, (b - a) / SAMPLE_RATE, rng)[: b - a], a)
        events.append({"label": label, "start": start_ms, "end": end_ms})
    events.sort(key=lambda e: (e["start"], e["label"]))
    return audio.astype(np.float32), events
