"""NSynth (`nsynth`), read in its distributed layout: ROOT holds the three extracted archives.

    ROOT/nsynth-{train,valid,test}/examples.json   {note_str: {"instrument_family": int,
                                                    "instrument_family_str": str, ...}}
    ROOT/nsynth-{split}/audio/<note_str>.wav       16 kHz mono, 4 s

Splits: nsynth-train / nsynth-valid / nsynth-test as distributed (the official protocol uses the same ones).
Labels: the 11 instrument families in NSynth's `instrument_family` index order (bass = 0 ... vocal = 10), checked
against `instrument_family_str`. The official code numbered them in order of first appearance in its BYOL-A
metadata copy, which changes no score. Notes whose file is not on disk are skipped and named.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..registry import register_dataset
from ..types import LabelSpace, Task
from .common import ClipCollector, require_file

NAME = "nsynth"
LAYOUT = "a folder holding nsynth-train/, nsynth-valid/, nsynth-test/ (each examples.json and audio/)"
FAMILIES = ("bass", "brass", "flute", "guitar", "keyboard", "mallet", "organ", "reed", "string", "synth_lead",
            "vocal")
SPLITS = {"train": "nsynth-train", "valid": "nsynth-valid", "test": "nsynth-test"}


def _family(note: str, meta: object, where: Path) -> int:
    if not isinstance(meta, dict) or not isinstance(meta.get("instrument_family"), int):
        raise ValueError(f"{where}: note {note!r} has no integer instrument_family")
    family = meta["instrument_family"]
    if not 0 <= family < len(FAMILIES):
        raise ValueError(f"{where}: note {note!r} has instrument_family {family}; NSynth's families are 0..10")
    name = meta.get("instrument_family_str", FAMILIES[family])
    if name != FAMILIES[family]:
        raise ValueError(f"{where}: note {note!r}: instrument_family {family} is {FAMILIES[family]!r} in NSynth, "
                         f"but instrument_family_str says {name!r}")
    return family


@register_dataset(NAME, multi_label=False, num_labels=len(FAMILIES), num_folds=1, layout=LAYOUT)
def load_nsynth(root: Path) -> Task:
    """Read NSynth (see the module docstring)."""
    labels = LabelSpace(FAMILIES, multi_label=False)
    collector = ClipCollector(NAME, root)
    for split, folder in SPLITS.items():
        listing = require_file(root / folder / "examples.json", NAME, LAYOUT)
        examples = json.loads(listing.read_text(encoding="utf-8"))
        if not isinstance(examples, dict):
            raise ValueError(f"{listing}: expected a JSON object {{note_str: metadata}}")
        for note in sorted(examples):
            target = (_family(note, examples[note], listing),)
            collector.add(split, root / folder / "audio" / f"{note}.wav", target, listed_in=str(listing))
    return collector.task(labels, tuple(SPLITS))
