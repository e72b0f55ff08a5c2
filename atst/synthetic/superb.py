"""Tiny datasets in the layouts of s3prl's `speech_commands` (KS) and `voxceleb1` (SID) downstreams.

For tests and demos: a few dozen 16 kHz mono 16-bit wavs, deterministic for a seed. Speech comes from espeak-ng
when it is installed (different voices / pitches / speeds play the speakers); otherwise every word or speaker is a
generated harmonic tone pattern, so the tasks stay learnable without any system package.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import List, Tuple, Union

import numpy as np

from ..audio_io import SAMPLE_RATE, write_wav
from ..fileio import atomic_write_text
from . import speech as tts
from .sounds import fit, harmonic_tone, num_samples, peak_normalise

KS_WORDS = ["yes", "no", "up", "down", "left", "right"]
KS_UNKNOWN_WORD = "cat"  # any folder outside the 10 command words is `_unknown_` for s3prl
KS_CLIP_SECONDS = 1.0
SOURCES = ("auto", "espeak", "tones")
SPEECH_PEAK = 0.5
MAX_UTTERANCE_SECONDS = 4.0
# espeak-ng voices that play the speakers: (voice, pitch 0-99, words per minute)
SPEAKERS = [("en-us", 40, 150), ("en-gb", 60, 170), ("en-gb-scotland", 30, 140), ("en-029", 70, 160),
            ("en-gb-x-rp", 50, 180), ("en-us", 80, 135), ("en-gb", 25, 155), ("en-029", 45, 175),
            ("en-gb-scotland", 65, 165), ("en-gb-x-rp", 35, 145)]
SENTENCES = ["the quick brown fox jumps over the lazy dog", "please call stella and ask her to bring these things",
             "she sells sea shells by the sea shore", "a rainbow is a division of white light",
             "we will meet at the station after lunch", "the birch canoe slid on the smooth planks",
             "glue the sheet to the dark blue background", "it is easy to tell the depth of a well"]
PathLike = Union[str, Path]


def resolve_source(source: str) -> str:
    """"espeak" or "tones" for a `source` of `SOURCES` ("auto": espeak-ng when it is on PATH)."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    if source == "auto":
        return "espeak" if tts.espeak_available() else "tones"
    if source == "espeak":
        tts.require_espeak("source='espeak'", "use source='tones' or 'auto'")
    return source


def _speaker_says(text: str, speaker: int) -> np.ndarray:
    voice, pitch, speed = SPEAKERS[speaker % len(SPEAKERS)]
    return peak_normalise(tts.speak(text, voice, pitch, speed), SPEECH_PEAK).astype(np.float32)


def _tone_word(index: int, speaker: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Tone stand-in for word `index`: two notes whose pitches name the word, shifted a little per speaker."""
    shift = 1.0 + 0.04 * ((speaker % 5) - 2)
    low, high = 220.0 * 2 ** (index / 4), 330.0 * 2 ** (index / 5)
    half = seconds / 2
    return np.concatenate([harmonic_tone(low * shift, half, rng=rng), harmonic_tone(high * shift, half, rng=rng)])


def _tone_sentence(speaker: int, sentence: int, rng: np.random.Generator) -> np.ndarray:
    """Tone stand-in for a sentence of `speaker`: syllable-like bursts around the speaker's own pitch."""
    f0 = 110.0 * 2 ** (speaker / 3)
    pieces = []
    for _ in range(6 + sentence % 4):
        pieces.append(harmonic_tone(f0 * rng.uniform(0.95, 1.05), rng.uniform(0.15, 0.3), rng=rng,
                                    harmonics=3 + speaker % 3))
        pieces.append(0.003 * rng.standard_normal(int(rng.uniform(0.03, 0.08) * SAMPLE_RATE)).astype(np.float32))
    return np.concatenate(pieces).astype(np.float32)


def speech_commands_split(speaker: str) -> str:
    """Which split s3prl's speech_commands puts a speaker id in ("dev", "dropped" or "train"), by its sha1 rule."""
    value = int(hashlib.sha1(speaker.encode("utf-8")).hexdigest(), 16) % (2 ** 27)
    percentage = value * (100.0 / (2 ** 27 - 1))
    return "dev" if percentage < 10 else ("dropped" if percentage < 20 else "train")


def _speakers(rng: np.random.Generator, n_train: int, n_dev: int) -> Tuple[List[str], List[str]]:
    train: List[str] = []
    dev: List[str] = []
    while len(train) < n_train or len(dev) < n_dev:
        speaker = f"{int(rng.integers(0, 2 ** 32)):08x}"
        split = speech_commands_split(speaker)
        if split == "train" and len(train) < n_train:
            train.append(speaker)
        elif split == "dev" and len(dev) < n_dev:
            dev.append(speaker)
    return train, dev


def make_speech_commands(root: PathLike, seed: int = 0, n_train_speakers: int = 6, n_dev_speakers: int = 2,
                         test_per_class: int = 2, source: str = "auto") -> dict:
    """Write a tiny Speech Commands v0.01-style dataset under `root`.

    `root/train/<word>/<speaker>_nohash_0.wav` for yes/no/up/down/left/right and an unknown word, with speaker
    ids chosen so s3prl's hash split yields `n_train_speakers` train and `n_dev_speakers` dev speakers;
    `root/train/_background_noise_/` (3 s noises, the `_silence_` class); `root/test/<class>/*.wav` with
    `test_per_class` clips of unseen voices per class, `_unknown_` and `_silence_` included. Every clip is 1 s.
    Returns {"train": path, "test": path, "source": "espeak"|"tones", "files": count}.
    """
    source = resolve_source(source)
    root = Path(root)
    rng = np.random.default_rng(seed)
    train_speakers, dev_speakers = _speakers(rng, n_train_speakers, n_dev_speakers)
    words = KS_WORDS + [KS_UNKNOWN_WORD]
    clip = num_samples(KS_CLIP_SECONDS)
    files = 0

    def word_wave(word_index: int, speaker_index: int) -> np.ndarray:
        if source == "espeak":
            wave = _speaker_says(words[word_index], speaker_index)
        else:
            wave = _tone_word(word_index, speaker_index, 0.8, rng)
        return fit(wave + 0.002 * rng.standard_normal(len(wave)).astype(np.float32), clip)

    for speaker_index, speaker in enumerate(train_speakers + dev_speakers):
        for word_index, word in enumerate(words):
            write_wav(root / "train" / word / f"{speaker}_nohash_0.wav", word_wave(word_index, speaker_index))
            files += 1
    for k in range(2):
        noise = (0.05 * rng.standard_normal(3 * SAMPLE_RATE)).astype(np.float32)
        if k == 1:  # pinkish: integrate white noise a little
            noise = np.convolve(noise, np.ones(8) / 8, mode="same").astype(np.float32) * 3
        write_wav(root / "train" / "_background_noise_" / f"noise_{k}.wav", noise)
        files += 1
    first_test_voice = len(train_speakers) + len(dev_speakers)
    for j in range(test_per_class):
        for word_index, word in enumerate(words):
            label = word if word in KS_WORDS else "_unknown_"
            write_wav(root / "test" / label / f"test{j}_{word}.wav", word_wave(word_index, first_test_voice + j))
            files += 1
        silence = np.cumsum(0.002 * rng.standard_normal(clip)).astype(np.float32)  # brown noise
        write_wav(root / "test" / "_silence_" / f"silence_{j}.wav", peak_normalise(silence, 0.3))
        files += 1
    return {"train": root / "train", "test": root / "test", "source": source, "files": files}


def make_voxceleb1(root: PathLike, seed: int = 0, n_speakers: int = 4, n_train: int = 5, n_dev: int = 2,
                   n_test: int = 1, source: str = "auto") -> dict:
    """Write a tiny VoxCeleb1-style identification dataset under `root`.

    Speakers id10001.. (at most 10); `n_train + n_dev` utterances each under `root/dev/wav/<id>/<ytid>/`,
    `n_test` under `root/test/wav/<id>/<ytid>/`, each 1-4 s; `root/iden_split.txt` with lines
    `<1|2|3> <id>/<ytid>/<NNNNN>.wav` (1 train, 2 dev, 3 test).
    Returns {"file_path": root, "meta_data": split file, "source": ..., "files": count}.
    """
    source = resolve_source(source)
    if not 1 <= n_speakers <= len(SPEAKERS):
        raise ValueError(f"n_speakers must lie in [1, {len(SPEAKERS)}], got {n_speakers}")
    per_speaker = n_train + n_dev + n_test
    if per_speaker > len(SENTENCES):
        raise ValueError(f"n_train + n_dev + n_test must be at most {len(SENTENCES)}, got {per_speaker}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    longest = num_samples(MAX_UTTERANCE_SECONDS)
    lines = []
    for speaker in range(n_speakers):
        speaker_id = f"id{10001 + speaker}"
        for utterance in range(per_speaker):
            split = 1 if utterance < n_train else (2 if utterance < n_train + n_dev else 3)
            youtube_id = f"yt{speaker:02d}{utterance // 2:02d}x"
            relative = f"{speaker_id}/{youtube_id}/{utterance + 1:05d}.wav"
            if source == "espeak":
                wave = _speaker_says(SENTENCES[utterance], speaker)
            else:
                wave = _tone_sentence(speaker, utterance, rng)
            wave = wave[:longest] + 0.002 * rng.standard_normal(min(len(wave), longest))
            write_wav(root / ("test" if split == 3 else "dev") / "wav" / relative, wave.astype(np.float32))
            lines.append(f"{split} {relative}")
    meta = atomic_write_text(root / "iden_split.txt", "\n".join(lines) + "\n")
    return {"file_path": root, "meta_data": meta, "source": source, "files": len(lines)}
