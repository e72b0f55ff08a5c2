"""The one espeak-ng wrapper: text -> float32 speech at 16 kHz, and a spoken word placed in a clip.

espeak-ng is a system program (`apt-get install espeak-ng`); what needs it checks `espeak_available()` first or
calls `require_espeak`, which raises a RuntimeError saying how to install it.
"""
from __future__ import annotations

import io
import shutil
import subprocess
from typing import Sequence

import numpy as np

from ..audio_io import read_audio
from .sounds import background, fit, num_samples, peak_normalise

PROGRAM = "espeak-ng"
INSTALL_HINT = "apt-get install espeak-ng"
PITCH_RANGE = (0, 99)      # espeak-ng -p
SPEED_RANGE = (80, 450)    # espeak-ng -s, words per minute
# Voices that say the `spoken_word`s: accents and male/female variants
WORD_VOICES = ("en", "en-us", "en+m3", "en+f2", "en+f4", "en-gb")


def espeak_available() -> bool:
    """Whether the espeak-ng program is on PATH."""
    return shutil.which(PROGRAM) is not None


def require_espeak(what: str, alternative: str = "") -> None:
    """Unless espeak-ng is on PATH, raise a RuntimeError saying `what` needs it, how to install it, and the
    `alternative` when there is one."""
    if not espeak_available():
        hint = f"; {alternative}" if alternative else ""
        raise RuntimeError(f"{what} needs {PROGRAM} on PATH ({INSTALL_HINT}){hint}")


def speak(text: str, voice: str = "en", pitch: int = 50, speed: int = 175) -> np.ndarray:
    """`text` said by espeak-ng: float32 mono `[N]` at 16 kHz, at the level espeak-ng speaks it.

    `voice` is an espeak-ng voice name (`espeak-ng --voices`), `pitch` 0-99, `speed` 80-450 words per minute.
    """
    for name, value, (low, high) in (("pitch", pitch, PITCH_RANGE), ("speed", speed, SPEED_RANGE)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
            raise ValueError(f"espeak-ng {name} must be an integer in [{low}, {high}], got {value!r}")
    require_espeak(f"speech ({text!r})")
    result = subprocess.run([PROGRAM, "-v", voice, "-p", str(pitch), "-s", str(speed), "--stdout", text],
                            capture_output=True)
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"{PROGRAM} -v {voice} failed (exit {result.returncode}): {message}; voices: "
                           f"`{PROGRAM} --voices`")
    return read_audio(io.BytesIO(result.stdout), name=f"{PROGRAM} -v {voice} {text!r}").numpy()


def spoken_word(word: str, seconds: float, rng: np.random.Generator,
                voices: Sequence[str] = WORD_VOICES) -> np.ndarray:
    """`word` said by a random voice at a random speed (120-199 wpm) and pitch (20-79), peak 0.8, placed at a
    random offset in a `seconds` clip of faint background noise: float32 `[round(seconds * 16000)]`."""
    voice = str(rng.choice(list(voices)))
    speed, pitch = int(rng.integers(120, 200)), int(rng.integers(20, 80))
    length = num_samples(seconds)
    x = speak(word, voice, pitch, speed)[:length]
    offset = int(rng.integers(0, length - len(x) + 1))
    return fit(peak_normalise(x, 0.8), length, offset) + background(seconds, rng, 0.005)
