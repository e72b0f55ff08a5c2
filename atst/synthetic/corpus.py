"""An unlabelled pre-training corpus of generated clips (scenes, events and espeak-ng speech) with its manifest."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Union

import numpy as np
from tqdm import tqdm

from ..audio_io import SAMPLE_RATE, write_wav
from ..fileio import atomic_write_text
from . import speech as tts
from .sounds import SCENE_CLASSES, add_at, background, event_clip, scene_clip

# Pre-training speech avoids the `synth_words` vocabulary: what the corpus teaches must transfer to unseen words.
CORPUS_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "stop", "go",
                "on", "off", "cat", "dog", "bird", "house", "tree", "happy", "water", "music", "green", "morning")
MANIFEST = "manifest.csv"


def speech_clip(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Background noise with a run of `CORPUS_WORDS` (espeak-ng, varied voices), one every 0.6-1.0 s:
    float32 `[round(seconds * 16000)]`."""
    out = background(seconds, rng).astype(np.float64)
    start = 0
    while start < len(out) - SAMPLE_RATE // 2:
        add_at(out, tts.spoken_word(str(rng.choice(CORPUS_WORDS)), 1.0, rng), start)
        start += int(rng.uniform(0.6, 1.0) * SAMPLE_RATE)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def make_corpus(out: Union[str, Path], n_clips: int = 64, seconds: float = 6.0, seed: int = 0,
                speech: Optional[bool] = None, progress: bool = False) -> List[Path]:
    """Write `n_clips` clips of `seconds` to `out/clip_NNNNN.wav` and list them (absolute paths) in
    `out/manifest.csv` (header `files`); returns the clip paths.

    Clips take turns: a scene clip, an event clip (1-3 sounds over noise) and, with `speech` (default:
    when espeak-ng is on PATH), a run of spoken words. Output is a pure function of the arguments.
    """
    if n_clips < 1 or seconds <= 0:
        raise ValueError(f"make_corpus needs n_clips >= 1 and seconds > 0, got n_clips={n_clips}, seconds={seconds}")
    if speech is None:
        speech = tts.espeak_available()
    elif speech:
        tts.require_espeak("make_corpus(speech=True)")
    kinds = ("scene", "event", "speech") if speech else ("scene", "event")
    rng = np.random.default_rng([seed, 99])
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in tqdm(range(n_clips), desc="corpus", unit="clip", disable=not progress):
        kind = kinds[i % len(kinds)]
        if kind == "scene":
            audio = scene_clip(str(rng.choice(SCENE_CLASSES)), seconds, rng)
        elif kind == "event":
            audio, _ = event_clip(seconds, rng)
        else:
            audio = speech_clip(seconds, rng)
        paths.append(write_wav(root / f"clip_{i:05d}.wav", audio))
    atomic_write_text(root / MANIFEST, "files\n" + "".join(f"{p.resolve()}\n" for p in paths))
    return paths
