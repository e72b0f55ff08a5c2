"""Synthetic HEAR tasks in the exact hear-preprocess layout, built from sounds with real structure.

    make_tasks("tasks", size="tiny", seed=1234)   # -> [tasks/synth_scene-v1-full, ...]

Tasks (all 16 kHz mono 16-bit PCM, every clip of a task the same length):

* `synth_scene`   scene, multiclass, train/valid/test: low or high harmonic tone, rising or falling chirp, noise
  bursts (5 classes); scored by top1_acc and mAP.
* `synth_timbre`  scene, multiclass, k-fold (3 folds): the timbre of a harmonic tone (pure, odd harmonics,
  sawtooth-like) at a random pitch, so pitch does not give the class away.
* `synth_events`  event, multilabel, train/valid/test: tones, chirps and noise bursts placed at random onsets
  (possibly overlapping) over background noise; labels `{"label", "start", "end"}` in ms; scored by
  event_onset_200ms_fms and segment_1s_er.
* `synth_words`   scene, multiclass, train/valid/test: spoken words from espeak-ng with varied voices, speeds and
  pitches; written only when `espeak-ng` is on PATH.

Layout per task (`DIR/<name>-v1-full/`): `task_metadata.json`, `labelvocabulary.csv` (`idx,label` over sorted
labels), `<split>.json` per split, `16000/<split>/<stem>.wav`. Output is a pure function of (size, seed).
"""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from tqdm import tqdm

SAMPLE_RATE = 16000
VERSION = "v1"
MODE = "full"


@dataclass(frozen=True)
class Size:
    """Clip counts and lengths for one size preset."""
    scene_per_split: int
    scene_seconds: float
    fold_clips: int
    event_per_split: int
    event_seconds: float
    word_per_split: int


SIZES: Dict[str, Size] = {
    "tiny": Size(scene_per_split=10, scene_seconds=1.0, fold_clips=6, event_per_split=6, event_seconds=3.0,
                 word_per_split=8),
    "small": Size(scene_per_split=25, scene_seconds=2.0, fold_clips=15, event_per_split=12, event_seconds=4.0,
                  word_per_split=20),
    "full": Size(scene_per_split=60, scene_seconds=2.0, fold_clips=40, event_per_split=40, event_seconds=5.0,
                 word_per_split=60),
}


# heareval's grids train with batch 1024, so a scene task this small takes one optimizer step per epoch and the
# 10-epoch points of its `fast`/`faster` grids barely move the MLP off its initialisation: the scores would then
# rank embeddings by their scale, not their content. Like the task-specific grids heareval keeps for real tasks
# (read from `evaluation_params.task_specific_param_grid`), these override the epochs and learning rate only.
SCENE_PARAM_GRID = {"max_epochs": [150], "check_val_every_n_epoch": [5], "patience": [10], "lr": [1e-3, 3.2e-4]}
# An event task has a few batches of frames per epoch, and each validation runs sed_eval (slow): fewer epochs,
# validated less often (heareval does the same for dcase2016_task2)
EVENT_PARAM_GRID = {**SCENE_PARAM_GRID, "max_epochs": [100], "check_val_every_n_epoch": [10], "patience": [5]}


# ------------------------------------------------------------------------------------------------ sounds
# Every generator returns float32 `[round(seconds * 16000)]` samples in about [-1, 1].

def _time(seconds: float) -> np.ndarray:
    return np.arange(int(round(seconds * SAMPLE_RATE))) / SAMPLE_RATE


def _fade(x: np.ndarray, ms: float = 10.0) -> np.ndarray:
    n = min(len(x) // 2, int(ms * SAMPLE_RATE / 1000))
    if n > 0:
        ramp = np.linspace(0.0, 1.0, n)
        x[:n] *= ramp
        x[-n:] *= ramp[::-1]
    return x


TIMBRES: Dict[str, Callable[[int], float]] = {
    "pure": lambda k: 1.0 if k == 1 else 0.0,
    "odd_harmonics": lambda k: 1.0 / k if k % 2 == 1 else 0.0,
    "sawtooth": lambda k: 1.0 / k,
}


def harmonic(f0: float, seconds: float, rng: np.random.Generator, timbre: str = "sawtooth",
             amplitude: float = 0.5) -> np.ndarray:
    """A harmonic tone at `f0` Hz with a timbre (harmonic amplitude law), slight vibrato and decay."""
    t = _time(seconds)
    vibrato = 1.0 + 0.004 * np.sin(2 * math.pi * rng.uniform(4, 7) * t)
    phase = 2 * math.pi * f0 * np.cumsum(vibrato) / SAMPLE_RATE
    x = np.zeros_like(t)
    for k in range(1, 16):
        gain = TIMBRES[timbre](k)
        if gain and k * f0 < SAMPLE_RATE / 2 - 500:
            x += gain * np.sin(k * phase + rng.uniform(0, 2 * math.pi))
    envelope = np.exp(-t * rng.uniform(0.2, 1.0))
    x = x / (np.max(np.abs(x)) + 1e-9) * envelope
    return _fade(amplitude * x).astype(np.float32)


def chirp(f_start: float, f_end: float, seconds: float, rng: np.random.Generator,
          amplitude: float = 0.5) -> np.ndarray:
    """An exponential sweep from `f_start` to `f_end` Hz with two harmonics."""
    t = _time(seconds)
    duration = max(seconds, 1e-3)
    freq = f_start * (f_end / f_start) ** (t / duration)
    phase = 2 * math.pi * np.cumsum(freq) / SAMPLE_RATE
    x = np.sin(phase) + 0.3 * np.sin(2 * phase + rng.uniform(0, 2 * math.pi))
    return _fade(amplitude * x / 1.3).astype(np.float32)


def noise_bursts(seconds: float, rng: np.random.Generator, amplitude: float = 0.4) -> np.ndarray:
    """Several 30-150 ms bursts of white noise, each with a fast exponential decay (claps, clicks)."""
    n = len(_time(seconds))
    x = np.zeros(n)
    for _ in range(max(1, int(seconds * rng.uniform(2, 5)))):
        length = int(rng.uniform(0.03, 0.15) * SAMPLE_RATE)
        if length >= n:
            length = n
        start = int(rng.integers(0, n - length + 1))
        decay = np.exp(-np.arange(length) / (length / 4))
        x[start:start + length] += rng.standard_normal(length) * decay
    return np.clip(amplitude * x / 3.0, -1, 1).astype(np.float32)


def noise_burst(seconds: float, rng: np.random.Generator, amplitude: float = 0.4) -> np.ndarray:
    """One steady band of noise (a crude first-order low- or high-passed white noise) for `seconds`."""
    white = rng.standard_normal(len(_time(seconds)))
    coef = rng.uniform(0.5, 0.95)
    if rng.random() < 0.5:  # low-passed
        y = np.empty_like(white)
        acc = 0.0
        for i, v in enumerate(white):
            acc = coef * acc + (1 - coef) * v
            y[i] = acc
    else:  # high-passed (first difference)
        y = np.diff(white, prepend=0.0)
    y = y / (np.std(y) + 1e-9)
    return _fade(amplitude * 0.3 * y).astype(np.float32)


def background(seconds: float, rng: np.random.Generator, sigma: float = 0.02) -> np.ndarray:
    return (sigma * rng.standard_normal(len(_time(seconds)))).astype(np.float32)


SCENE_CLASSES = ("low_tone", "high_tone", "chirp_up", "chirp_down", "noise_bursts")


def scene_clip(label: str, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """One clip of a `synth_scene` class, with background noise."""
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
    if label == "tone":
        return harmonic(rng.uniform(200, 1200), seconds, rng, str(rng.choice(list(TIMBRES))))
    if label == "chirp":
        low, high = rng.uniform(300, 800), rng.uniform(2000, 4000)
        return chirp(low, high, seconds, rng) if rng.random() < 0.5 else chirp(high, low, seconds, rng)
    if label == "noise":
        return noise_burst(seconds, rng)
    raise ValueError(f"unknown event class {label!r}; classes: {EVENT_CLASSES}")


def event_clip(seconds: float, rng: np.random.Generator) -> Tuple[np.ndarray, List[dict]]:
    """Background noise with 1-3 events (may overlap); returns audio and `[{"label", "start", "end"}]` in ms."""
    n = len(_time(seconds))
    audio = background(seconds, rng).astype(np.float64)
    events = []
    for _ in range(int(rng.integers(1, 4))):
        label = str(rng.choice(EVENT_CLASSES))
        start_ms = float(round(rng.uniform(0, seconds * 1000 - 300)))
        end_ms = float(min(seconds * 1000, start_ms + round(rng.uniform(300, 1000))))
        a, b = int(start_ms * SAMPLE_RATE / 1000), min(n, int(end_ms * SAMPLE_RATE / 1000))
        audio[a:b] += event_sound(label, (b - a) / SAMPLE_RATE, rng)[: b - a]
        events.append({"label": label, "start": start_ms, "end": end_ms})
    events.sort(key=lambda e: (e["start"], e["label"]))
    return audio.astype(np.float32), events


# ---------------------------------------------------------------------------------------------- speech

WORDS = ("yes", "no", "up", "down", "left", "right")
VOICES = ("en", "en-us", "en+m3", "en+f2", "en+f4", "en-gb")


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def spoken_word(word: str, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """`word` spoken by espeak-ng (random voice, speed, pitch), resampled to 16 kHz, centred in `seconds`."""
    voice = str(rng.choice(VOICES))
    speed, pitch = int(rng.integers(120, 200)), int(rng.integers(20, 80))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "w.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(path), word],
                       check=True, capture_output=True)
        with wave.open(str(path), "rb") as f:
            sr, width = f.getframerate(), f.getsampwidth()
            raw = f.readframes(f.getnframes())
    if width != 2:
        raise RuntimeError(f"espeak-ng wrote {8 * width}-bit audio; expected 16-bit")
    x = np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768.0
    positions = np.arange(int(len(x) * SAMPLE_RATE / sr)) * sr / SAMPLE_RATE
    x = np.interp(positions, np.arange(len(x)), x)
    out = np.zeros(len(_time(seconds)))
    x = x[: len(out)]
    offset = int(rng.integers(0, len(out) - len(x) + 1))
    out[offset:offset + len(x)] = 0.8 * x / (np.max(np.abs(x)) + 1e-9)
    return (out + background(seconds, rng, 0.005)).astype(np.float32)


# --------------------------------------------------------------------------------------------- writing

def write_wav(path: Path, audio: np.ndarray) -> None:
    """Mono 16-bit PCM at 16 kHz (stdlib `wave`); `audio` float in [-1, 1] (clipped)."""
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).round().astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(SAMPLE_RATE)
        f.writeframes(pcm.tobytes())


Labels = Union[List[str], List[dict]]


def write_task(root: Path, name: str, config: dict, splits: Dict[str, Dict[str, Tuple[np.ndarray, Labels]]],
               vocabulary: Sequence[str]) -> Path:
    """Write one task directory: metadata, vocabulary, `<split>.json` and `16000/<split>/*.wav`."""
    task_dir = root / f"{name}-{VERSION}-{MODE}"
    if task_dir.exists():
        shutil.rmtree(task_dir)
    metadata = {
        "task_name": name, "version": VERSION, **config,
        "download_urls": [], "default_mode": MODE, "tmp_dir": "_workdir", "mode": MODE,
        "splits": list(splits),
    }
    metadata.setdefault("evaluation_params", {"task_specific_param_grid": dict(SCENE_PARAM_GRID)})
    (task_dir / str(SAMPLE_RATE)).mkdir(parents=True)
    (task_dir / "task_metadata.json").write_text(json.dumps(metadata, indent=4))
    labels = sorted(set(vocabulary))
    (task_dir / "labelvocabulary.csv").write_text("idx,label\n" + "".join(f"{i},{l}\n" for i, l in enumerate(labels)))
    for split, clips in splits.items():
        audio_dir = task_dir / str(SAMPLE_RATE) / split
        audio_dir.mkdir(parents=True)
        for filename, (audio, _) in clips.items():
            write_wav(audio_dir / filename, audio)
        (task_dir / f"{split}.json").write_text(json.dumps({f: lab for f, (_, lab) in clips.items()}, indent=4))
    return task_dir


def _balanced_labels(classes: Sequence[str], n: int, rng: np.random.Generator) -> List[str]:
    labels = [classes[i % len(classes)] for i in range(n)]
    return [labels[i] for i in rng.permutation(n)]


def _scene_split(prefix: str, classes: Sequence[str], n: int, seconds: float, rng: np.random.Generator,
                 make: Callable[[str, float, np.random.Generator], np.ndarray]):
    return {f"{prefix}_{i:04d}.wav": (make(label, seconds, rng), [label])
            for i, label in enumerate(_balanced_labels(classes, n, rng))}


def _timbre_clip(label: str, seconds: float, rng: np.random.Generator) -> np.ndarray:
    return harmonic(rng.uniform(150, 1000), seconds, rng, label) + background(seconds, rng)


def build_synth_scene(root: Path, size: Size, rng: np.random.Generator) -> Path:
    splits = {s: _scene_split(s, SCENE_CLASSES, size.scene_per_split, size.scene_seconds, rng, scene_clip)
              for s in ("train", "valid", "test")}
    config = {"embedding_type": "scene", "prediction_type": "multiclass", "split_mode": "trainvaltest",
              "sample_duration": size.scene_seconds, "evaluation": ["top1_acc", "mAP"]}
    return write_task(root, "synth_scene", config, splits, SCENE_CLASSES)


def build_synth_timbre(root: Path, size: Size, rng: np.random.Generator, nfolds: int = 3) -> Path:
    classes = tuple(TIMBRES)
    splits = {f"fold{k:02d}": _scene_split(f"fold{k:02d}", classes, size.fold_clips, size.scene_seconds, rng,
                                           _timbre_clip) for k in range(nfolds)}
    config = {"embedding_type": "scene", "prediction_type": "multiclass", "split_mode": "new_split_kfold",
              "sample_duration": size.scene_seconds, "evaluation": ["top1_acc", "mAP"], "nfolds": nfolds}
    return write_task(root, "synth_timbre", config, splits, classes)


def build_synth_events(root: Path, size: Size, rng: np.random.Generator) -> Path:
    splits = {s: {f"{s}_{i:04d}.wav": event_clip(size.event_seconds, rng) for i in range(size.event_per_split)}
              for s in ("train", "valid", "test")}
    config = {"embedding_type": "event", "prediction_type": "multilabel", "split_mode": "trainvaltest",
              "sample_duration": size.event_seconds, "evaluation": ["event_onset_200ms_fms", "segment_1s_er"],
              "evaluation_params": {"task_specific_param_grid": dict(EVENT_PARAM_GRID)}}
    return write_task(root, "synth_events", config, splits, EVENT_CLASSES)


def build_synth_words(root: Path, size: Size, rng: np.random.Generator) -> Path:
    seconds = 1.0
    splits = {s: _scene_split(s, WORDS, size.word_per_split, seconds, rng, spoken_word)
              for s in ("train", "valid", "test")}
    config = {"embedding_type": "scene", "prediction_type": "multiclass", "split_mode": "trainvaltest",
              "sample_duration": seconds, "evaluation": ["top1_acc", "mAP"]}
    return write_task(root, "synth_words", config, splits, WORDS)


# Pre-training speech avoids the `synth_words` vocabulary: what the corpus teaches must transfer to unseen words.
CORPUS_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "stop", "go",
                "on", "off", "cat", "dog", "bird", "house", "tree", "happy", "water", "music", "green", "morning")


def speech_clip(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Background noise with a run of `CORPUS_WORDS` (espeak-ng, varied voices) every 0.6-1.0 s."""
    out = background(seconds, rng).astype(np.float64)
    start = 0
    while start < len(out) - SAMPLE_RATE // 2:
        word = spoken_word(str(rng.choice(CORPUS_WORDS)), 1.0, rng)[: len(out) - start]
        out[start:start + len(word)] += word
        start += int(rng.uniform(0.6, 1.0) * SAMPLE_RATE)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def make_corpus(out: Union[str, Path], n_clips: int = 64, seconds: float = 6.0, seed: int = 0,
                speech: Optional[bool] = None, progress: bool = False) -> List[Path]:
    """An unlabelled pre-training corpus: `n_clips` wavs of `seconds`, written to `out/` with `out/manifest.csv`
    (header `files`). Clips take turns: a scene clip, an event clip (1-3 sounds over noise) and, with `speech`
    (default: when espeak-ng is on PATH), a run of spoken words."""
    if n_clips < 1 or seconds <= 0:
        raise ValueError(f"make_corpus needs n_clips >= 1 and seconds > 0, got n_clips={n_clips}, seconds={seconds}")
    speech = espeak_available() if speech is None else speech
    if speech and not espeak_available():
        raise RuntimeError("speech=True needs espeak-ng on PATH (apt-get install espeak-ng)")
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
        path = root / f"clip_{i:05d}.wav"
        write_wav(path, audio)
        paths.append(path)
    (root / "manifest.csv").write_text("files\n" + "".join(f"{p.resolve()}\n" for p in paths))
    return paths


BUILDERS: Dict[str, Callable[[Path, Size, np.random.Generator], Path]] = {
    "synth_scene": build_synth_scene,
    "synth_timbre": build_synth_timbre,
    "synth_events": build_synth_events,
    "synth_words": build_synth_words,
}


def default_tasks() -> List[str]:
    """All task names this machine can build (`synth_words` needs espeak-ng)."""
    return [name for name in BUILDERS if name != "synth_words" or espeak_available()]


def make_tasks(out: Union[str, Path], size: str = "small", seed: int = 1234,
               tasks: Optional[Sequence[str]] = None) -> List[Path]:
    """Write the tasks into `out` (created; existing task dirs of the same name are replaced); return their dirs.

    Each task draws from its own generator seeded by (seed, task index), so choosing a subset of tasks never
    changes the audio of the others.
    """
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}")
    names = list(tasks) if tasks else default_tasks()
    unknown = [n for n in names if n not in BUILDERS]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; available: {', '.join(BUILDERS)}")
    if "synth_words" in names and not espeak_available():
        raise RuntimeError("synth_words needs espeak-ng on PATH (apt-get install espeak-ng)")
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        rng = np.random.default_rng([seed, list(BUILDERS).index(name)])
        print(f"  writing {name} ({size})", flush=True)
        written.append(BUILDERS[name](root, SIZES[size], rng))
    return written
