"""Miniature strong-label datasets in their native layouts (`desed`, `as_strong`), events at known times.

    make_desed("data/desed", seed=0)          # -> pass as desed=data/desed
    make_as_strong("data/as_strong", seed=0)  # -> pass as as_strong=data/as_strong

Every event is a harmonic tone whose pitch is fixed by its class (class k at 220 * 2^(k / 2.5) Hz) over faint
noise, so a detector can learn the classes. The file lists, labels and times are fixed; the seed changes only the
audio. What each miniature holds (times in seconds):

* `desed`  (DCASE 2021 task 4 layout, distributed folder names, 10 s clips except where said)
  synthetic train 4 clips (`synth_2.wav` at 44.1 kHz; `synth_0.wav` has two overlapping Speech rows, merged by
  the reader; events on the 40 ms frame boundaries and past 10 s), weak 10 clips (the official 90 % split leaves
  one for validation), unlabelled in-domain 2, synthetic validation 2 (+ durations.tsv), real validation 4 with
  validation_durations.tsv: `val_short.wav` lasts 7.5 s, `val_quiet.wav` has no event (an empty TSV row).
* `as_strong`  (Google's strong TSVs with MIDs at the root, clips under train/ and eval/, 10 s, 16 kHz)
  24 train and 6 eval segments over the MIDs /m/0k, /m/09x0r, /m/07yv9 (common, first seen in that unsorted
  order), /m/train_only (in train segment `trainonly_000`) and /m/eval_only (in eval segment `evalonly_000`):
  those two segments are dropped by the reader. Train segment `train_000_0` lists /m/0k as 4.0-6.0, 1.0-3.0 and
  2.5-4.5 (unsorted, overlapping: merged into 1.0-6.0). Eval segment `eval_001_0` is stored as `Yeval_001_0.wav`;
  train segment `train_023_0` is listed but has no file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import soundfile

from ..audio_io import SAMPLE_RATE
from ..fileio import atomic_path, atomic_write_text
from .sounds import harmonic_tone

PathLike = Union[str, Path]
Event = Tuple[float, float, str]
CLIP_SECONDS = 10.0

DESED_CLASSES = ("Alarm_bell_ringing", "Blender", "Cat", "Dishes", "Dog", "Electric_shaver_toothbrush", "Frying",
                 "Running_water", "Speech", "Vacuum_cleaner")


def class_pitch(index: int) -> float:
    return 220.0 * 2 ** (index / 2.5)


def write_events_clip(path: Path, events: Sequence[Event], classes: Sequence[str], rng: np.random.Generator,
                      seconds: float = CLIP_SECONDS, rate: int = SAMPLE_RATE) -> Path:
    """Faint noise with each event's class tone between its onset and offset (clipped to the clip), 16-bit PCM
    at `rate`, written atomically."""
    total = int(round(seconds * rate))
    audio = 0.01 * rng.standard_normal(total)
    for onset, offset, label in events:
        start, stop = int(round(onset * rate)), min(total, int(round(offset * rate)))
        if stop > start:
            audio[start:stop] += harmonic_tone(class_pitch(classes.index(label)), (stop - start) / rate,
                                               sample_rate=rate, rng=rng)[: stop - start]
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        soundfile.write(str(tmp), np.clip(audio, -1, 1).astype(np.float32), rate, subtype="PCM_16", format="WAV")
    return path


def _strong_tsv(rows: Dict[str, Sequence[Event]], columns: str = "filename\tonset\toffset\tevent_label") -> str:
    lines = [columns]
    for name, events in rows.items():
        if not events:
            lines.append(f"{name}\t\t\t")
        lines.extend(f"{name}\t{onset:.3f}\t{offset:.3f}\t{label}" for onset, offset, label in events)
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ DESED

DESED_SYNTH_TRAIN: Dict[str, List[Event]] = {
    "synth_0.wav": [(0.12, 1.0, "Dog"), (2.0, 4.5, "Speech"), (4.0, 5.0, "Speech")],
    "synth_1.wav": [(0.0, 0.5, "Cat"), (8.5, 10.0, "Alarm_bell_ringing")],
    "synth_2.wav": [(3.01, 3.99, "Blender"), (9.9, 10.3, "Frying")],
    "synth_3.wav": [(1.0, 1.5, "Dishes"), (5.0, 7.0, "Running_water"), (6.0, 6.8, "Vacuum_cleaner")],
}
DESED_SYNTH_44K = "synth_2.wav"
DESED_SYNTH_VALID: Dict[str, List[Event]] = {
    "synth_val_0.wav": [(1.0, 2.0, "Cat"), (3.0, 6.0, "Blender")],
    "synth_val_1.wav": [(0.5, 4.0, "Electric_shaver_toothbrush"), (6.0, 7.0, "Dog")],
}
DESED_VALIDATION: Dict[str, List[Event]] = {
    "val_0.wav": [(0.5, 2.5, "Speech"), (4.0, 4.6, "Dishes")],
    "val_1.wav": [(2.0, 9.0, "Frying"), (3.0, 3.4, "Dog")],
    "val_short.wav": [(1.0, 3.0, "Alarm_bell_ringing"), (5.0, 7.5, "Cat")],
    "val_quiet.wav": [],
}
DESED_SHORT = ("val_short.wav", 7.5)
DESED_WEAK_CLIPS = 10
DESED_UNLABELLED_CLIPS = 2


def desed_weak_labels() -> Dict[str, List[str]]:
    """{filename: labels} of the weak clips (one or two classes each)."""
    labels = {}
    for i in range(DESED_WEAK_CLIPS):
        names = [DESED_CLASSES[i % 10]] + ([DESED_CLASSES[(i + 3) % 10]] if i % 3 == 0 else [])
        labels[f"Y{i:02d}weak_0.000_10.000.wav"] = names
    return labels


def make_desed(root: PathLike, seed: int = 0) -> Path:
    """The DESED miniature (see the module docstring). Returns the dataset root."""
    root, rng = Path(root), np.random.default_rng(seed)
    audio, meta = root / "audio", root / "metadata"
    for name, events in DESED_SYNTH_TRAIN.items():
        write_events_clip(audio / "train/synthetic21_train/soundscapes" / name, events, DESED_CLASSES, rng,
                          rate=44100 if name == DESED_SYNTH_44K else SAMPLE_RATE)
    atomic_write_text(meta / "train/synthetic21_train/soundscapes.tsv", _strong_tsv(DESED_SYNTH_TRAIN))
    weak = desed_weak_labels()
    for name, labels in weak.items():
        write_events_clip(audio / "train/weak" / name, [(1.0 + 2 * k, 3.0 + 2 * k, label)
                                                         for k, label in enumerate(labels)], DESED_CLASSES, rng)
    atomic_write_text(meta / "train/weak.tsv", "filename\tevent_labels\n" + "".join(
        f"{name}\t{','.join(labels)}\n" for name, labels in weak.items()))
    for i in range(DESED_UNLABELLED_CLIPS):
        write_events_clip(audio / "train/unlabel_in_domain" / f"Yunlabelled{i}.wav", [(2.0, 4.0, DESED_CLASSES[i])],
                          DESED_CLASSES, rng)
    for name, events in DESED_SYNTH_VALID.items():
        write_events_clip(audio / "validation/synthetic21_validation/soundscapes" / name, events, DESED_CLASSES, rng)
    atomic_write_text(meta / "validation/synthetic21_validation/soundscapes.tsv", _strong_tsv(DESED_SYNTH_VALID))
    atomic_write_text(meta / "validation/synthetic21_validation/durations.tsv", "filename\tduration\n" + "".join(
        f"{name}\t{CLIP_SECONDS}\n" for name in DESED_SYNTH_VALID))
    durations = {}
    for name, events in DESED_VALIDATION.items():
        seconds = DESED_SHORT[1] if name == DESED_SHORT[0] else CLIP_SECONDS
        write_events_clip(audio / "validation/validation" / name, events, DESED_CLASSES, rng, seconds=seconds)
        durations[name] = seconds
    atomic_write_text(meta / "validation/validation.tsv", _strong_tsv(DESED_VALIDATION))
    atomic_write_text(meta / "validation/validation_durations.tsv", "filename\tduration\n" + "".join(
        f"{name}\t{seconds}\n" for name, seconds in durations.items()))
    return root


# ------------------------------------------------------------------------------------------------ AudioSet strong

AS_COMMON = ("/m/0k", "/m/09x0r", "/m/07yv9")  # first-seen order; sorted: /m/07yv9, /m/09x0r, /m/0k
AS_TRAIN_ONLY, AS_EVAL_ONLY = "/m/train_only", "/m/eval_only"
AS_TRAIN_SEGMENTS = 24
AS_EVAL_SEGMENTS = 6
AS_MISSING = "train_023_0"
AS_Y_PREFIXED = "eval_001_0"


def as_strong_rows() -> Dict[str, Dict[str, List[Event]]]:
    """{"train"|"eval": {segment_id: [(start, end, MID)]}} in file order."""
    rows: Dict[str, Dict[str, List[Event]]] = {"train": {}, "eval": {}}
    rows["train"]["train_000_0"] = [(4.0, 6.0, "/m/0k"), (1.0, 3.0, "/m/0k"), (2.5, 4.5, "/m/0k")]
    for i in range(1, AS_TRAIN_SEGMENTS):
        a, b = AS_COMMON[i % 3], AS_COMMON[(i + 1) % 3]
        rows["train"][f"train_{i:03d}_0"] = [(0.5 + i % 4, 2.5 + i % 4, a), (5.0, 8.0, b)]
    rows["train"]["trainonly_000"] = [(1.0, 2.0, "/m/0k"), (3.0, 4.0, AS_TRAIN_ONLY)]
    for i in range(AS_EVAL_SEGMENTS):
        rows["eval"][f"eval_{i:03d}_0"] = [(1.0 + i % 3, 4.0 + i % 3, AS_COMMON[i % 3]),
                                          (6.0, 9.0, AS_COMMON[(i + 2) % 3])]
    rows["eval"]["evalonly_000"] = [(1.0, 2.0, AS_EVAL_ONLY)]
    return rows


def make_as_strong(root: PathLike, seed: int = 0, classes: Optional[Sequence[str]] = None) -> Path:
    """The AudioSet-strong miniature (see the module docstring). Returns the dataset root."""
    root, rng = Path(root), np.random.default_rng(seed)
    every = tuple(classes or AS_COMMON + (AS_TRAIN_ONLY, AS_EVAL_ONLY))
    header = "segment_id\tstart_time_seconds\tend_time_seconds\tlabel"
    for part, segments in as_strong_rows().items():
        atomic_write_text(root / f"audioset_{part}_strong.tsv", _strong_tsv(segments, header))
        for segment, events in segments.items():
            if segment == AS_MISSING:
                continue
            name = f"Y{segment}.wav" if segment == AS_Y_PREFIXED else f"{segment}.wav"
            write_events_clip(root / part / name, events, every, rng)
    return root


__all__ = ["AS_COMMON", "DESED_CLASSES", "DESED_SYNTH_TRAIN", "DESED_VALIDATION", "as_strong_rows",
           "desed_weak_labels", "make_as_strong", "make_desed", "write_events_clip"]
