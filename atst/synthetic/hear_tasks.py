"""Generated HEAR tasks in the exact hear-preprocess layout, built from sounds with real structure.

    make_tasks("tasks", size="tiny", seed=1234)   # -> [tasks/synth_scene-v1-full, ...]

Tasks (all 16 kHz mono 16-bit PCM, every clip of a task the same length):

* `synth_scene`   scene, multiclass, train/valid/test: low or high harmonic tone, rising or falling chirp, noise
  bursts (5 classes); scored by top1_acc and mAP.
* `synth_timbre`  scene, multiclass, k-fold (3 folds): the timbre of a harmonic tone (pure, odd harmonics,
  sawtooth-like) at a random pitch, so pitch does not give the class away.
* `synth_events`  event, multilabel, train/valid/test: tones, chirps and noise bands placed at random onsets
  (possibly overlapping) over background noise; labels `{"label", "start", "end"}` in ms; scored by
  event_onset_200ms_fms and segment_1s_er.
* `synth_words`   scene, multiclass, train/valid/test: spoken words from espeak-ng with varied voices, speeds and
  pitches; written only when `espeak-ng` is on PATH.

Layout per task (`DIR/<name>-v1-full/`): `task_metadata.json`, `labelvocabulary.csv` (`idx,label` over sorted
labels), `<split>.json` per split, `16000/<split>/<stem>.wav`. Output is a pure function of (size, seed).
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..audio_io import SAMPLE_RATE, write_wav
from ..fileio import atomic_write_text
from . import speech
from .sounds import EVENT_CLASSES, SCENE_CLASSES, TIMBRES, background, event_clip, harmonic, scene_clip

VERSION = "v1"
MODE = "full"
WORDS = ("yes", "no", "up", "down", "left", "right")
WORD_SECONDS = 1.0
TIMBRE_FOLDS = 3


@dataclass(frozen=True)
class Size:
    """Clip counts (per split or fold) and clip lengths (seconds) of one size preset."""
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

Labels = Union[List[str], List[dict]]
Split = Dict[str, Tuple[np.ndarray, Labels]]  # file name -> (audio [N], labels)


def task_dir_name(name: str) -> str:
    """The directory name hear-preprocess gives task `name` (`synth_scene-v1-full`)."""
    return f"{name}-{VERSION}-{MODE}"


def write_task(root: Path, name: str, config: dict, splits: Dict[str, Split], vocabulary: Sequence[str]) -> Path:
    """Write one task directory (replacing an existing one): metadata, vocabulary, `<split>.json` and
    `16000/<split>/*.wav`. Returns the task directory."""
    task_dir = root / task_dir_name(name)
    if task_dir.exists():
        shutil.rmtree(task_dir)
    metadata = {
        "task_name": name, "version": VERSION, **config,
        "download_urls": [], "default_mode": MODE, "tmp_dir": "_workdir", "mode": MODE,
        "splits": list(splits),
    }
    metadata.setdefault("evaluation_params", {"task_specific_param_grid": dict(SCENE_PARAM_GRID)})
    (task_dir / str(SAMPLE_RATE)).mkdir(parents=True)
    atomic_write_text(task_dir / "task_metadata.json", json.dumps(metadata, indent=4))
    labels = sorted(set(vocabulary))
    atomic_write_text(task_dir / "labelvocabulary.csv",
                      "idx,label\n" + "".join(f"{i},{label}\n" for i, label in enumerate(labels)))
    for split, clips in splits.items():
        audio_dir = task_dir / str(SAMPLE_RATE) / split
        for filename, (audio, _) in clips.items():
            write_wav(audio_dir / filename, audio)
        atomic_write_text(task_dir / f"{split}.json", json.dumps({f: lab for f, (_, lab) in clips.items()}, indent=4))
    return task_dir


def _balanced_labels(classes: Sequence[str], n: int, rng: np.random.Generator) -> List[str]:
    labels = [classes[i % len(classes)] for i in range(n)]
    return [labels[i] for i in rng.permutation(n)]


def _scene_split(prefix: str, classes: Sequence[str], n: int, seconds: float, rng: np.random.Generator,
                 make: Callable[[str, float, np.random.Generator], np.ndarray]) -> Split:
    return {f"{prefix}_{i:04d}.wav": (make(label, seconds, rng), [label])
            for i, label in enumerate(_balanced_labels(classes, n, rng))}


def _timbre_clip(label: str, seconds: float, rng: np.random.Generator) -> np.ndarray:
    return harmonic(rng.uniform(150, 1000), seconds, rng, label) + background(seconds, rng)


def _scene_config(seconds: float, **extra) -> dict:
    return {"embedding_type": "scene", "prediction_type": "multiclass", "split_mode": "trainvaltest",
            "sample_duration": seconds, "evaluation": ["top1_acc", "mAP"], **extra}


def build_synth_scene(root: Path, size: Size, rng: np.random.Generator) -> Path:
    splits = {s: _scene_split(s, SCENE_CLASSES, size.scene_per_split, size.scene_seconds, rng, scene_clip)
              for s in ("train", "valid", "test")}
    return write_task(root, "synth_scene", _scene_config(size.scene_seconds), splits, SCENE_CLASSES)


def build_synth_timbre(root: Path, size: Size, rng: np.random.Generator) -> Path:
    classes = tuple(TIMBRES)
    splits = {f"fold{k:02d}": _scene_split(f"fold{k:02d}", classes, size.fold_clips, size.scene_seconds, rng,
                                           _timbre_clip) for k in range(TIMBRE_FOLDS)}
    config = _scene_config(size.scene_seconds, split_mode="new_split_kfold", nfolds=TIMBRE_FOLDS)
    return write_task(root, "synth_timbre", config, splits, classes)


def build_synth_events(root: Path, size: Size, rng: np.random.Generator) -> Path:
    splits = {s: {f"{s}_{i:04d}.wav": event_clip(size.event_seconds, rng) for i in range(size.event_per_split)}
              for s in ("train", "valid", "test")}
    config = {"embedding_type": "event", "prediction_type": "multilabel", "split_mode": "trainvaltest",
              "sample_duration": size.event_seconds, "evaluation": ["event_onset_200ms_fms", "segment_1s_er"],
              "evaluation_params": {"task_specific_param_grid": dict(EVENT_PARAM_GRID)}}
    return write_task(root, "synth_events", config, splits, EVENT_CLASSES)


def build_synth_words(root: Path, size: Size, rng: np.random.Generator) -> Path:
    splits = {s: _scene_split(s, WORDS, size.word_per_split, WORD_SECONDS, rng, speech.spoken_word)
              for s in ("train", "valid", "test")}
    return write_task(root, "synth_words", _scene_config(WORD_SECONDS), splits, WORDS)


BUILDERS: Dict[str, Callable[[Path, Size, np.random.Generator], Path]] = {
    "synth_scene": build_synth_scene,
    "synth_timbre": build_synth_timbre,
    "synth_events": build_synth_events,
    "synth_words": build_synth_words,
}
NEEDS_ESPEAK = ("synth_words",)


def default_tasks() -> List[str]:
    """All task names this machine can build (`synth_words` needs espeak-ng)."""
    return [name for name in BUILDERS if name not in NEEDS_ESPEAK or speech.espeak_available()]


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
    for name in names:
        if name in NEEDS_ESPEAK:
            speech.require_espeak(name)
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        rng = np.random.default_rng([seed, list(BUILDERS).index(name)])
        print(f"  writing {name} ({size})", flush=True)
        written.append(BUILDERS[name](root, SIZES[size], rng))
    return written
