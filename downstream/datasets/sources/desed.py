"""DESED (`desed`), the DCASE 2021 task 4 folder layout as distributed; ROOT is its `dataset` folder.

    ROOT/audio/train/synthetic21_train/soundscapes/          ROOT/metadata/train/synthetic21_train/soundscapes.tsv
    ROOT/audio/train/weak/                                   ROOT/metadata/train/weak.tsv
    ROOT/audio/train/unlabel_in_domain/                      (no labels; optional)
    ROOT/audio/validation/synthetic21_validation/soundscapes/
                                      ROOT/metadata/validation/synthetic21_validation/soundscapes.tsv (+ durations.tsv)
    ROOT/audio/validation/validation/                        ROOT/metadata/validation/validation.tsv
                                                             ROOT/metadata/validation/validation_durations.tsv

Strong tables: `filename onset offset event_label` (seconds); weak: `filename event_labels` (comma-separated).
Audio is read as distributed (44.1 kHz) and resampled once through the audio cache; the official code needs
pre-resampled `_16k` copies. An audio folder may also be named with `_44k` or `_16k` (the DCASE scripts' copies):
the distributed name is used when present, else `_44k`, else `_16k`.

Splits (as the official protocol, spec `downstream_frame_spec.md` 1.2):
* train_strong = synthetic train; train_weak = 90 % of weak.tsv, the clips pandas' `sample(frac=0.9,
  random_state=42)` draws from the table as read (the official membership: 1 420 of 1 578); train_unlabelled =
  unlabel_in_domain (not used by the official recipe).
* valid = synthetic validation (strong) + the other 10 % of weak.tsv, kept as weak-only clips (events None,
  weak set): `sed` scores them with the clip-level macro-F1, as the official validation does.
* test = the real validation set with the durations of validation_durations.tsv. A file with no event (listed
  with an empty row, or only in the durations file) stays in the test set by default: its false alarms count.
  The official code drops those files (`dropna`, 15 of 1 168) while their durations stay in the false-positive-
  rate denominator; `protocol="official"` drops them as it did.
Recordings that are missing, empty or whose audio header cannot be read are skipped and named in `skipped`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import pandas as pd
import soundfile

from atst.audio_io import is_audio_path

from ..registry import register_dataset
from ..strong import StrongTask
from ..types import LabelSpace
from .common import require_file
from .strong_common import StrongCollector, read_durations, read_strong_table, read_weak_table, strong_events

NAME = "desed"
LAYOUT = ("the DESED (DCASE 2021 task 4) dataset folder: audio/train/{synthetic21_train/soundscapes,weak,"
          "unlabel_in_domain}, audio/validation/{synthetic21_validation/soundscapes,validation} (or their _16k/_44k "
          "copies) and the metadata/ TSVs incl. validation_durations.tsv")
# index order of the official class dict (spec 1.3)
CLASSES = ("Alarm_bell_ringing", "Blender", "Cat", "Dishes", "Dog", "Electric_shaver_toothbrush", "Frying",
           "Running_water", "Speech", "Vacuum_cleaner")
WEAK_TRAIN_FRACTION = 0.9
WEAK_SPLIT_SEED = 42
FOLDER_SUFFIXES = ("", "_44k", "_16k")

SYNTH_TRAIN = ("audio/train/synthetic21_train/soundscapes", "metadata/train/synthetic21_train/soundscapes.tsv")
WEAK = ("audio/train/weak", "metadata/train/weak.tsv")
UNLABELLED = "audio/train/unlabel_in_domain"
SYNTH_VALID = ("audio/validation/synthetic21_validation/soundscapes",
               "metadata/validation/synthetic21_validation/soundscapes.tsv")
SYNTH_VALID_DURATIONS = "metadata/validation/synthetic21_validation/durations.tsv"
TEST = ("audio/validation/validation", "metadata/validation/validation.tsv")
TEST_DURATIONS = "metadata/validation/validation_durations.tsv"


def audio_folder(root: Path, relative: str, required: bool = True) -> Optional[Path]:
    """The audio folder `relative` (or its `_44k` / `_16k` copy); missing and required: FileNotFoundError."""
    for suffix in FOLDER_SUFFIXES:
        folder = root / (relative + suffix)
        if folder.is_dir():
            return folder
    if required:
        raise FileNotFoundError(f"dataset {NAME}: {root / relative} is missing (nor its _44k/_16k copy); "
                                f"expected {LAYOUT}")
    return None


def weak_train_files(table: Path) -> set[str]:
    """The weak files the official split trains on: `sample(frac=0.9, random_state=42)` of the table as pandas
    reads it (the DCASE baseline's split, so the membership is the published one)."""
    frame = pd.read_csv(table, sep="\t")
    return set(frame.sample(frac=WEAK_TRAIN_FRACTION, random_state=WEAK_SPLIT_SEED)["filename"].astype(str))


def _add_strong(collector: StrongCollector, split: str, root: Path, pair: tuple[str, str], labels: LabelSpace,
                durations: Optional[dict[str, float]] = None, keep_empty: bool = True) -> dict[str, Optional[float]]:
    """Add the recordings of a strong table; returns the files without events left out: {key: their duration in
    `durations`, else None}."""
    folder = audio_folder(root, pair[0])
    table = require_file(root / pair[1], NAME, LAYOUT)
    rows = read_strong_table(table)
    names = list(rows.events)
    if durations is not None:
        names += [name for name in durations if name not in rows.events]
    dropped: dict[str, Optional[float]] = {}
    for name in names:
        events = rows.events.get(name, [])
        if not events and not keep_empty:
            dropped[collector.key(folder / name)] = durations.get(name) if durations is not None else None
            continue
        duration = durations.get(name) if durations is not None else None
        path = folder / name
        if durations is not None and duration is None and path.is_file():
            try:
                duration = soundfile.info(str(path)).duration
            except Exception:  # the collector names the unreadable file
                pass
        collector.add(split, path, strong_events(events, labels, f"{table} ({name})"), duration=duration,
                      listed_in=table.name)
    return dropped


@register_dataset(NAME, multi_label=True, num_labels=len(CLASSES), layout=LAYOUT, kind="strong")
def load_desed(root: Path, protocol: str = "hear") -> StrongTask:
    """Read DESED (see the module docstring)."""
    labels = LabelSpace(CLASSES, multi_label=True)
    collector = StrongCollector(NAME, root)
    _add_strong(collector, "train_strong", root, SYNTH_TRAIN, labels)

    weak_folder = audio_folder(root, WEAK[0])
    weak_table = require_file(root / WEAK[1], NAME, LAYOUT)
    in_train = weak_train_files(weak_table)
    for name, names in read_weak_table(weak_table, labels).items():
        collector.add("train_weak" if name in in_train else "valid", weak_folder / name,
                      weak=labels.encode(names, f"{weak_table} ({name})"), listed_in=weak_table.name)

    unlabelled = audio_folder(root, UNLABELLED, required=False)
    if unlabelled is not None:
        for path in sorted(p for p in unlabelled.rglob("*") if p.is_file() and is_audio_path(p)):
            collector.add("train_unlabelled", path)

    synth_durations = root / SYNTH_VALID_DURATIONS
    _add_strong(collector, "valid", root, SYNTH_VALID, labels,
                read_durations(synth_durations) if synth_durations.is_file() else None)
    durations = read_durations(require_file(root / TEST_DURATIONS, NAME, LAYOUT))
    dropped = _add_strong(collector, "test", root, TEST, labels, durations, keep_empty=protocol != "official")
    note = (f"; official protocol: {len(dropped)} test file(s) without events dropped, their durations kept in "
            f"the PSDS false-positive-rate denominator" if dropped else "")
    task = collector.task(labels, source=f"{NAME} at {root} (protocol {protocol}{note})")
    task.unscored_test_durations = {key: seconds for key, seconds in dropped.items() if seconds is not None}
    return task
