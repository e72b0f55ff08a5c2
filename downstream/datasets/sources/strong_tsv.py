"""Your own strongly (and weakly) labelled audio: a strong-label TSV, or a folder of them.

One TSV file: the columns `filename onset offset event_label` (seconds), optionally `split` (train, valid or
test). Without a `split` column each recording's split is drawn from the hash of its filename (80 % train,
10 % valid, 10 % test; `splitting.split_of`, stable as files are added).

A folder:

    DIR/train.tsv          strong labels for training            (train.tsv or train_weak.tsv, or both)
    DIR/train_weak.tsv     `filename event_labels` (comma-separated) for weakly labelled training recordings
    DIR/valid.tsv          strong labels for model selection     (optional: else 10 % of train.tsv by hash)
    DIR/valid_weak.tsv     weakly labelled validation recordings (optional; scored with the clip-level F1)
    DIR/test.tsv           strong labels for the reported scores (optional: else 10 % of train.tsv by hash)
    DIR/unlabelled.txt     one audio path per line, no labels    (optional)
    DIR/durations.tsv      `filename duration` (seconds)         (optional; else read from the files when needed)
    DIR/classes.txt        one class per line, in index order    (optional: else the sorted labels of the strong
                                                                  tables)

Filenames are paths relative to the TSV's folder (or absolute), any audio format and rate. A row with empty
onset, offset and label lists a recording without events. A weak label that is not a class, onset >= offset, a
missing column or a missing file named in a split is an error naming the file and line; recordings that are
missing, empty or unreadable on disk are skipped and named.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..splitting import split_of
from ..strong import StrongTask
from ..types import LabelSpace
from .common import read_table
from .strong_common import STRONG_COLUMNS, StrongCollector, read_durations, read_strong_table, read_weak_table, \
    strong_events

SPLITS = {"train": "train_strong", "valid": "valid", "test": "test"}
FOLDER_FILES = ("train.tsv", "train_weak.tsv", "valid.tsv", "valid_weak.tsv", "test.tsv", "unlabelled.txt",
                "durations.tsv", "classes.txt")
ACCEPTED = ("a strong-label TSV (filename onset offset event_label [split]) or a folder with train.tsv and/or "
            "train_weak.tsv (optional valid.tsv, valid_weak.tsv, test.tsv, unlabelled.txt, durations.tsv, "
            "classes.txt)")
HASH_FRACTIONS = {("valid", "test"): (("valid", 0.1), ("test", 0.1)), ("valid",): (("valid", 0.1),),
                  ("test",): (("test", 0.1),)}

Events = dict[str, list[tuple[float, float, str]]]


def is_strong_folder(path: Path) -> bool:
    return path.is_dir() and ((path / "train.tsv").is_file() or (path / "train_weak.tsv").is_file())


def _classes(folder: Path, strong: dict[str, Events]) -> LabelSpace:
    listing = folder / "classes.txt"
    if listing.is_file():
        names = [line.strip() for line in listing.read_text(encoding="utf-8").splitlines() if line.strip()]
        return LabelSpace(tuple(names), multi_label=True)
    names = sorted({label for rows in strong.values() for events in rows.values() for *_, label in events})
    if not names:
        raise ValueError(f"{folder}: the strong tables hold no event, so there are no classes; add classes.txt "
                         f"(one class per line) or strong labels")
    return LabelSpace(tuple(names), multi_label=True)


def _carve(strong: dict[str, Events]) -> dict[str, Events]:
    """Draw valid/test recordings from train by filename hash when their tables are not given."""
    missing = tuple(name for name in ("valid", "test") if name not in strong)
    if not missing or "train" not in strong:
        return strong
    out: dict[str, Events] = {name: dict(rows) for name, rows in strong.items()}
    out["train"] = {}
    for name in missing:
        out[name] = {}
    for filename, events in strong["train"].items():
        out[split_of(filename, HASH_FRACTIONS[missing])][filename] = events
    return out


def _build(folder: Path, name: str, strong: dict[str, Events], weak: dict[str, dict[str, list[str]]],
           weak_tables: dict[str, Path], unlabelled: list[Path], durations: dict[str, float],
           tables: dict[str, Path]) -> StrongTask:
    labels = _classes(folder, strong)
    for split, rows in weak.items():  # now that the classes are known
        read_weak_table(weak_tables[split], labels)
    collector = StrongCollector(name, folder)
    for split, rows in _carve(strong).items():
        table = tables.get(split, tables.get("train"))
        for filename, events in rows.items():
            collector.add(SPLITS[split], _resolve(folder, filename),
                          strong_events(events, labels, f"{table} ({filename})"), duration=durations.get(filename),
                          listed_in=table.name if table else "")
    for split, rows in weak.items():
        for filename, names in rows.items():
            collector.add("train_weak" if split == "train" else "valid", _resolve(folder, filename),
                          weak=labels.encode(names, f"{weak_tables[split]} ({filename})"),
                          duration=durations.get(filename), listed_in=weak_tables[split].name)
    for path in unlabelled:
        collector.add("train_unlabelled", path)
    return collector.task(labels, source=f"strong-label TSV {name}")


def _resolve(folder: Path, filename: str) -> Path:
    path = Path(filename).expanduser()
    return path if path.is_absolute() else folder / path


def load_strong_folder(folder: Path, protocol: str = "hear") -> StrongTask:
    """Read a folder of strong/weak TSVs (see the module docstring); `protocol` changes nothing here."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; expected {ACCEPTED}")
    if not is_strong_folder(folder):
        raise FileNotFoundError(f"{folder}: neither train.tsv nor train_weak.tsv is there; expected {ACCEPTED}")
    strong, tables = {}, {}
    for split in SPLITS:
        table = folder / f"{split}.tsv"
        if table.is_file():
            strong[split], tables[split] = read_strong_table(table).events, table
    weak_tables = {split: folder / f"{split}_weak.tsv" for split in ("train", "valid")
                   if (folder / f"{split}_weak.tsv").is_file()}
    weak = {split: read_weak_table(table) for split, table in weak_tables.items()}
    unlabelled: list[Path] = []
    listing = folder / "unlabelled.txt"
    if listing.is_file():
        unlabelled = [_resolve(folder, line.strip()) for line in listing.read_text(encoding="utf-8").splitlines()
                      if line.strip() and not line.startswith("#")]
    durations_file = folder / "durations.tsv"
    durations = read_durations(durations_file) if durations_file.is_file() else {}
    if "test" not in strong and "train" not in strong:
        raise ValueError(f"{folder}: no strong labels to test on (test.tsv, or train.tsv to draw a test set from); "
                         f"expected {ACCEPTED}")
    return _build(folder, folder.name, strong, weak, weak_tables, unlabelled, durations, tables)


def load_strong_tsv(path: Path, protocol: str = "hear") -> StrongTask:
    """Read one strong-label TSV with an optional `split` column (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; expected {ACCEPTED}")
    rows = read_strong_table(path)
    splits: Optional[dict[str, str]] = None
    header = read_table(path, STRONG_COLUMNS, delimiter="\t")
    if header and "split" in header[0]:
        splits = {}
        for line, row in enumerate(header, start=2):
            value = row["split"]
            if value not in SPLITS:
                raise ValueError(f"{path}:{line}: split must be one of {sorted(SPLITS)}, got {value!r}")
            if splits.setdefault(row["filename"], value) != value:
                raise ValueError(f"{path}:{line}: {row['filename']} is listed in split {splits[row['filename']]!r} "
                                 f"and {value!r}")
    if splits is None:
        strong = {"train": rows.events}
    else:
        strong = {name: {} for name in SPLITS}
        for filename, events in rows.events.items():
            strong[splits[filename]][filename] = events
        strong = {name: events for name, events in strong.items() if events}
    return _build(path.parent, path.stem, strong, {}, {}, [], {}, {name: path for name in SPLITS})
