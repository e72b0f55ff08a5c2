"""Generated sound-event tasks for the `sed` / `detect` tests: a loud 1 kHz tone and a noise burst at known times
over faint noise, as WAV files, read into `StrongTask`s directly (no source needed)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from atst.audio_io import SAMPLE_RATE, write_wav
from downstream.datasets.strong import Event, StrongClip, StrongTask
from downstream.datasets.types import LabelSpace

CLASSES = ("noise", "tone")
TONE_HZ = 1000.0


def render(seconds: float, events: Sequence[Event], seed: int) -> np.ndarray:
    """Faint noise with each event (class 1: a 1 kHz tone at 0.5, class 0: white noise at 0.3) at its time."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * SAMPLE_RATE))
    audio = rng.normal(0.0, 0.003, n).astype(np.float32)
    for event in events:
        start, stop = int(round(event.onset * SAMPLE_RATE)), min(int(round(event.offset * SAMPLE_RATE)), n)
        t = np.arange(stop - start) / SAMPLE_RATE
        sound = 0.5 * np.sin(2 * np.pi * TONE_HZ * t) if event.label == 1 else rng.normal(0.0, 0.3, stop - start)
        audio[start:stop] += sound.astype(np.float32)
    return np.clip(audio, -1.0, 1.0)


def write_clip(folder: Path, key: str, seconds: float, events: Sequence[Event], seed: int, strong: bool = True,
               labelled: bool = True) -> StrongClip:
    path = write_wav(folder / f"{key}.wav", render(seconds, events, seed))
    weak = tuple(sorted({event.label for event in events}))
    return StrongClip(key=f"{key}.wav", path=str(path), events=tuple(events) if strong else None,
                      weak=weak if labelled else None, duration=seconds)


def random_events(rng: np.random.Generator, seconds: float, every_class: bool = False) -> list[Event]:
    events = []
    for label in (0, 1):
        if every_class or rng.random() < 0.8:
            length = float(rng.uniform(1.0, 3.0))
            onset = float(np.round(rng.uniform(0.0, seconds - length), 2))
            events.append(Event(onset, round(onset + length, 2), label))
    return events or [Event(1.0, 2.0, 1)]


def make_event_task(root: Union[str, Path], strong: int = 4, weak: int = 4, unlabelled: int = 0, valid: int = 2,
                    test: int = 2, seed: int = 0, long_test: Optional[float] = None,
                    official_selects_on_test: bool = False) -> StrongTask:
    """A task with `strong` strongly / `weak` weakly labelled / `unlabelled` training clips (10 s, one of 12 s to be
    cropped), `valid` and `test` strongly labelled recordings with both classes (a test one of `long_test` seconds
    when given)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    splits: dict[str, list[StrongClip]] = {name: [] for name in ("train_strong", "train_weak", "train_unlabelled",
                                                                  "valid", "test")}
    counter = 0
    for name, count in (("train_strong", strong), ("train_weak", weak), ("train_unlabelled", unlabelled),
                        ("valid", valid), ("test", test)):
        for i in range(count):
            seconds = 12.0 if (name == "train_strong" and i == 0) else 10.0
            if name == "test" and i == 0 and long_test:
                seconds = long_test
            counter += 1
            splits[name].append(write_clip(root, f"{name}_{i:02d}", seconds, random_events(rng, seconds, name in ("valid", "test")),
                                           seed * 1000 + counter, strong=name not in ("train_weak",
                                                                                       "train_unlabelled"),
                                           labelled=name != "train_unlabelled"))
    return StrongTask(name="synth_events", labels=LabelSpace(CLASSES, multi_label=True),
                      splits={k: tuple(v) for k, v in splits.items() if v}, source=str(root),
                      official_selects_on_test=official_selects_on_test)


def cli_script(path: Path, task_dir: Path, tests_dir: Path, **sizes: int) -> Path:
    """A script at `path` running `atst-downstream` ARGS with the task `make_event_task(task_dir, **sizes)`: each DDP
    process builds it from the generated files (same seed) in place of `--task`."""
    sizes_text = ", ".join(f"{key}={value}" for key, value in sizes.items())
    path.write_text(
        "import sys\nsys.path.insert(0, %r)\nfrom sed_tasks import make_event_task\n"
        "from downstream.cli import build_parser\nimport downstream.sed.run as run\n"
        "run.load_task = lambda *args: make_event_task(%r, %s)\n"
        "args = build_parser().parse_args(sys.argv[1:])\nsys.exit(args.func(args))\n"
        % (str(tests_dir), str(task_dir), sizes_text))
    return path


def ddp_env() -> dict:
    """The environment of a 2-process CPU run started from a test (a free port, no audio cache)."""
    from conftest import free_port, subprocess_env

    env = subprocess_env(PYTHONUNBUFFERED="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()),
                         ATST_AUDIO_CACHE="off")
    env.pop("LOCAL_RANK", None)
    return env

