"""Miniature labelled datasets in the native layouts the downstream door reads (a handful of clips each).

    make_layout("us8k", "data/UrbanSound8K", seed=0)    # -> the dataset root to pass as `us8k=data/UrbanSound8K`

Each writer reproduces its dataset's real file names, metadata files and their quirks; the audio is generated
tones, short so that tests run fast. Output is a pure function of the seed (the file lists and labels do not
depend on it, only the audio does). What each miniature holds:

* `spcv2`      Speech Commands v0.02: words yes/no/up x 4 speakers, file names repeated across word folders,
               speaker 3 in validation_list.txt, speaker 4 in testing_list.txt, `_background_noise_/`, README.md
               -> train 6, valid 3, test 3.
* `us8k`       UrbanSound8K: 2 clips per fold (folds 1..10), every class twice; the first clip of fold 1 is
               44.1 kHz stereo, the second of fold 2 48 kHz 24-bit (the originals vary like that).
* `nsynth`     NSynth: nsynth-train (one note per family, 11), nsynth-valid (3), nsynth-test (3).
* `voxceleb1`  VoxCeleb1 identification in the SUPERB layout (`superb.make_voxceleb1`, tones): 4 speakers,
               train 20, valid 8, test 4.
* `fsd50k`     FSD50K: the 200-class vocabulary, dev.csv with 8 train and 3 val clips, eval.csv with 4; clip 1000
               carries three labels; 44.1 kHz mono like the release.
* `audioset`   AudioSet: the 527-class index, 20 balanced, 6 unbalanced and 5 eval segments with the CSVs' comment
               lines; clips named `<YTID>.wav`, `Y<YTID>.flac` and `Y<YTID>_30.000_40.000.wav` in three folders;
               eval segment `Yev00000004` has no file (downloads miss some); one balanced clip 32 kHz stereo.
* `desed`, `as_strong`  strong labels (events at known times): see `sed_layouts`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import soundfile

from ..audio_io import SAMPLE_RATE, write_wav
from ..fileio import atomic_path, atomic_write_text
from .sounds import harmonic_tone
from .sed_layouts import make_as_strong, make_desed
from .superb import make_voxceleb1

PathLike = Union[str, Path]
CLIP_SECONDS = 0.5


def write_clip(path: Path, rng: np.random.Generator, seconds: float = CLIP_SECONDS, rate: int = SAMPLE_RATE,
               channels: int = 1, subtype: Optional[str] = None) -> Path:
    """A harmonic tone at a random pitch, `seconds` long, at `rate` Hz with `channels` channels (the channels
    differ a little), written atomically in the format of the suffix. 16 kHz mono WAVs go through `write_wav`."""
    tone = harmonic_tone(float(rng.uniform(200, 1500)), seconds, sample_rate=rate, rng=rng)
    suffix = path.suffix.lower()
    if rate == SAMPLE_RATE and channels == 1 and suffix == ".wav" and subtype is None:
        return write_wav(path, tone)
    data = np.stack([tone * (1.0 - 0.1 * c) for c in range(channels)], axis=1)
    with atomic_path(path) as tmp:
        soundfile.write(str(tmp), data, rate, subtype=subtype, format=suffix.lstrip(".").upper())
    return path


def _csv_line(cells: Sequence[object]) -> str:
    return ",".join(f'"{c}"' if "," in str(c) else str(c) for c in cells) + "\n"


# ------------------------------------------------------------------------------------------------ Speech Commands

SPC_WORDS = ("yes", "no", "up")
SPC_SPEAKERS = ("0a2b4c6d", "1f3e5d7c", "2c4a6e8b", "3b5d7f9a")


def make_spcv2(root: PathLike, seed: int = 0) -> Path:
    """Speech Commands v0.02 in miniature (see the module docstring). Returns the root."""
    root, rng = Path(root), np.random.default_rng(seed)
    lists: Dict[str, List[str]] = {"validation_list.txt": [], "testing_list.txt": []}
    for s, speaker in enumerate(SPC_SPEAKERS):
        for word in SPC_WORDS:
            relative = f"{word}/{speaker}_nohash_0.wav"
            write_clip(root / relative, rng, seconds=1.0)
            if s == 2:
                lists["validation_list.txt"].append(relative)
            elif s == 3:
                lists["testing_list.txt"].append(relative)
    for name, lines in lists.items():
        atomic_write_text(root / name, "\n".join(lines) + "\n")
    write_wav(root / "_background_noise_" / "white_noise.wav", (0.05 * rng.standard_normal(2 * SAMPLE_RATE)))
    atomic_write_text(root / "README.md", "Speech Commands v0.02 (generated miniature)\n")
    return root


# ------------------------------------------------------------------------------------------------ UrbanSound8K

US8K_CLASSES = ("air_conditioner", "car_horn", "children_playing", "dog_bark", "drilling", "engine_idling",
                "gun_shot", "jackhammer", "siren", "street_music")


def make_us8k(root: PathLike, seed: int = 0) -> Path:
    """UrbanSound8K in miniature (see the module docstring). Returns the root."""
    root, rng = Path(root), np.random.default_rng(seed)
    lines = ["slice_file_name,fsID,start,end,salience,fold,classID,class\n"]
    for fold in range(1, 11):
        for j in range(2):
            class_id = (2 * (fold - 1) + j) % len(US8K_CLASSES)
            fs_id = 100000 + 10 * fold + j
            name = f"{fs_id}-{class_id}-0-{j}.wav"
            rate, channels, subtype = {(1, 0): (44100, 2, None), (2, 1): (48000, 1, "PCM_24")}.get(
                (fold, j), (SAMPLE_RATE, 1, None))
            write_clip(root / "audio" / f"fold{fold}" / name, rng, rate=rate, channels=channels, subtype=subtype)
            lines.append(_csv_line([name, fs_id, 0.0, CLIP_SECONDS, 1, fold, class_id, US8K_CLASSES[class_id]]))
    atomic_write_text(root / "metadata" / "UrbanSound8K.csv", "".join(lines))
    return root


# ------------------------------------------------------------------------------------------------ NSynth

NSYNTH_FAMILIES = ("bass", "brass", "flute", "guitar", "keyboard", "mallet", "organ", "reed", "string",
                   "synth_lead", "vocal")
NSYNTH_SOURCES = ("acoustic", "electronic", "synthetic")
NSYNTH_SPLITS = {"nsynth-train": tuple(range(11)), "nsynth-valid": (0, 3, 10), "nsynth-test": (1, 4, 8)}


def make_nsynth(root: PathLike, seed: int = 0) -> Path:
    """NSynth in miniature (see the module docstring). Returns the root."""
    root, rng = Path(root), np.random.default_rng(seed)
    for split, families in NSYNTH_SPLITS.items():
        examples = {}
        for n, family in enumerate(families):
            source = n % len(NSYNTH_SOURCES)
            pitch, velocity = 40 + 3 * n, (25, 50, 75, 100, 127)[n % 5]
            note = f"{NSYNTH_FAMILIES[family]}_{NSYNTH_SOURCES[source]}_{n:03d}-{pitch:03d}-{velocity:03d}"
            write_clip(root / split / "audio" / f"{note}.wav", rng)
            examples[note] = {"note_str": note, "instrument_family": family,
                              "instrument_family_str": NSYNTH_FAMILIES[family], "instrument_source": source,
                              "instrument_source_str": NSYNTH_SOURCES[source], "pitch": pitch, "velocity": velocity,
                              "sample_rate": SAMPLE_RATE, "qualities": [0] * 10, "qualities_str": []}
        atomic_write_text(root / split / "examples.json", json.dumps(examples, indent=2))
    return root


# ------------------------------------------------------------------------------------------------ VoxCeleb1

def make_voxceleb1_layout(root: PathLike, seed: int = 0) -> Path:
    """VoxCeleb1 identification in the SUPERB layout, tones for speech (`superb.make_voxceleb1`). Returns the
    root."""
    return Path(make_voxceleb1(root, seed=seed, source="tones")["file_path"])


# ------------------------------------------------------------------------------------------------ FSD50K

FSD50K_NAMES = ("Accelerating_and_revving_and_vroom", "Accordion", "Acoustic_guitar", "Aircraft", "Alarm",
                "Animal", "Applause", "Bark", "Bass_drum", "Bass_guitar")
FSD50K_NUM_CLASSES = 200
# (fname, labels, split): fname 1000 carries three labels
FSD50K_DEV = ((1000, ("Bark", "Animal", "Alarm"), "train"), (1001, ("Accordion",), "train"),
              (1002, ("Acoustic_guitar",), "train"), (1003, ("Aircraft",), "train"), (1004, ("Applause",), "train"),
              (1005, ("Bass_drum", "Bass_guitar"), "train"), (1006, ("Alarm",), "train"),
              (1007, ("Animal",), "train"), (1008, ("Bark",), "val"), (1009, ("Accordion", "Applause"), "val"),
              (1010, ("Aircraft",), "val"))
FSD50K_EVAL = ((2000, ("Bark", "Animal")), (2001, ("Accelerating_and_revving_and_vroom",)), (2002, ("Alarm",)),
               (2003, ("Bass_guitar",)))


def fsd50k_vocabulary() -> List[str]:
    """The miniature's 200 class names in index order (ten real ones, then `Class_NNN`)."""
    return list(FSD50K_NAMES) + [f"Class_{i:03d}" for i in range(len(FSD50K_NAMES), FSD50K_NUM_CLASSES)]


def make_fsd50k(root: PathLike, seed: int = 0) -> Path:
    """FSD50K in miniature (see the module docstring). Returns the root."""
    root, rng = Path(root), np.random.default_rng(seed)
    names = fsd50k_vocabulary()
    mid = {name: f"/m/f{i:04d}" for i, name in enumerate(names)}
    truth = root / "FSD50K.ground_truth"
    atomic_write_text(truth / "vocabulary.csv", "".join(_csv_line([i, n, mid[n]]) for i, n in enumerate(names)))
    dev = ["fname,labels,mids,split\n"]
    for fname, labels, split in FSD50K_DEV:
        write_clip(root / "FSD50K.dev_audio" / f"{fname}.wav", rng, rate=44100)
        dev.append(_csv_line([fname, ",".join(labels), ",".join(mid[n] for n in labels), split]))
    evaluation = ["fname,labels,mids\n"]
    for fname, labels in FSD50K_EVAL:
        write_clip(root / "FSD50K.eval_audio" / f"{fname}.wav", rng, rate=44100)
        evaluation.append(_csv_line([fname, ",".join(labels), ",".join(mid[n] for n in labels)]))
    atomic_write_text(truth / "dev.csv", "".join(dev))
    atomic_write_text(truth / "eval.csv", "".join(evaluation))
    return root


# ------------------------------------------------------------------------------------------------ AudioSet

AUDIOSET_NUM_CLASSES = 527
AUDIOSET_MISSING = "Yev00000004"  # an eval segment whose clip was never downloaded (its id starts with Y, too)


def audioset_ids() -> Dict[str, List[str]]:
    """The miniature's YouTube ids (11 characters, `-` and `_` included) per segment list."""
    return {"balanced_train": [f"b{i:02d}-_xQz{i:03d}"[:11] for i in range(20)],
            "unbalanced_train": [f"u{i:02d}_-Qzx{i:03d}"[:11] for i in range(6)],
            "eval": [f"Yev0000000{i}" for i in range(5)]}


def audioset_mid(index: int) -> str:
    return f"/m/a{index:04d}"


def make_audioset(root: PathLike, seed: int = 0) -> Path:
    """AudioSet in miniature (see the module docstring). Returns the root."""
    root, rng = Path(root), np.random.default_rng(seed)
    index = ["index,mid,display_name\n"] + [
        _csv_line([i, audioset_mid(i), "Speech, male" if i == 1 else f"Sound {i:03d}"])
        for i in range(AUDIOSET_NUM_CLASSES)]
    atomic_write_text(root / "class_labels_indices.csv", "".join(index))
    naming = {"balanced_train": "{}.wav", "unbalanced_train": "Y{}.flac", "eval": "Y{}_30.000_40.000.wav"}
    for segments, ids in audioset_ids().items():
        lines = [f"# Segments csv created (generated miniature)\n", f"# num_ytids={len(ids)}, num_segs={len(ids)}, "
                 f"num_unique_labels=10, num_positive_labels=0\n", "# YTID, start_seconds, end_seconds, "
                 "positive_labels\n"]
        for i, ytid in enumerate(ids):
            count = 3 if (segments, i) == ("eval", 0) else 1 + i % 2
            labels = ",".join(audioset_mid((i + k) % 10) for k in range(count))
            lines.append(f'{ytid}, 30.000, 40.000, "{labels}"\n')
            if ytid == AUDIOSET_MISSING:
                continue
            stereo = (segments, i) == ("balanced_train", 0)
            write_clip(root / "audio" / segments / naming[segments].format(ytid), rng, seconds=0.25,
                       rate=32000 if stereo else SAMPLE_RATE, channels=2 if stereo else 1)
        atomic_write_text(root / f"{segments}_segments.csv", "".join(lines))
    return root


LAYOUTS: Dict[str, Callable[[PathLike, int], Path]] = {
    "spcv2": make_spcv2, "us8k": make_us8k, "nsynth": make_nsynth, "voxceleb1": make_voxceleb1_layout,
    "fsd50k": make_fsd50k, "audioset": make_audioset,
}
LAYOUTS.update({"desed": make_desed, "as_strong": make_as_strong})  # strong labels (sed_layouts)


def make_layout(name: str, root: PathLike, seed: int = 0) -> Path:
    """Write the miniature of dataset `name` (one of `LAYOUTS`; `audioset` serves `audioset_b` too) under
    `root`; returns the root."""
    if name not in LAYOUTS:
        raise ValueError(f"unknown layout {name!r}; layouts: {', '.join(LAYOUTS)}")
    return LAYOUTS[name](root, seed)
