"""`python -m atst.synthetic COMMAND`: write generated data (no download, deterministic for a seed).

    python -m atst.synthetic tasks OUT [--size small] [--seed 1234] [--tasks synth_scene ...]   HEAR tasks
    python -m atst.synthetic corpus OUT [--n-clips 64] [--seconds 6] [--seed 0]                 pre-training clips
    python -m atst.synthetic speech_commands ROOT [--seed 0] [--source auto|espeak|tones]       s3prl KS layout
    python -m atst.synthetic voxceleb1 ROOT [--seed 0] [--source auto|espeak|tones]             s3prl SID layout
    python -m atst.synthetic layout NAME ROOT [--seed 0]                                         a labelled dataset
                                                       in miniature, native layout (spcv2, us8k, nsynth, ...)
    python -m atst.synthetic checkpoint PATH [--arch tiny] [--family frame] [--seed 0]          random weights

The doors offer the same commands under their own names (`atst-hear make-tasks | make-corpus`,
`python -m s3prl_upstream.datasets`): they add these parsers with `add_command`.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence

from ..encoder import ARCHS, FAMILIES
from .checkpoints import write_official_checkpoint
from .corpus import make_corpus
from .downstream_layouts import LAYOUTS, make_layout
from .hear_tasks import BUILDERS, SIZES, make_tasks
from .superb import SOURCES, make_speech_commands, make_voxceleb1

PROG = "python -m atst.synthetic"


@dataclass(frozen=True)
class Command:
    """One subcommand: its help line, the arguments it adds to a parser, and what it runs (exit status)."""
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _tasks_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="tasks directory to create (task folders of the same name are replaced)")
    p.add_argument("--size", choices=list(SIZES), default="small", help="clip counts and lengths (default small)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--tasks", nargs="*", choices=list(BUILDERS), default=None,
                   help="subset of task names (default: all this machine can build)")


def _run_tasks(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    paths = make_tasks(args.out, size=args.size, seed=args.seed, tasks=args.tasks)
    for path in paths:
        print(f"  {path}")
    print(f"[synthetic] wrote {len(paths)} {args.size} task(s) in {time.perf_counter() - start:.1f} s", flush=True)
    return 0


def _corpus_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="corpus directory (clip_NNNNN.wav and manifest.csv)")
    p.add_argument("--n-clips", type=int, default=64)
    p.add_argument("--seconds", type=float, default=6.0, help="length of every clip")
    p.add_argument("--seed", type=int, default=0)


def _run_corpus(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    make_corpus(args.out, n_clips=args.n_clips, seconds=args.seconds, seed=args.seed, progress=True)
    print(f"[synthetic] wrote {args.n_clips} clips of {args.seconds:g} s to {args.out} in "
          f"{time.perf_counter() - start:.1f} s", flush=True)
    return 0


def _superb_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("root", help="output directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--source", choices=SOURCES, default="auto",
                   help="espeak-ng speech or generated tones (auto: espeak-ng when installed)")


def _superb_runner(make: Callable[..., dict]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        info = make(args.root, seed=args.seed, source=args.source)
        print("[synthetic] " + " ".join(f"{key}={value}" for key, value in info.items()), flush=True)
        return 0
    return run


def _layout_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", choices=list(LAYOUTS), help="the dataset whose native layout to write")
    p.add_argument("root", help="the dataset root to write (pass it as NAME=ROOT to atst-downstream)")
    p.add_argument("--seed", type=int, default=0, help="seed of the audio (file lists and labels are fixed)")


def _run_layout(args: argparse.Namespace) -> int:
    root = make_layout(args.name, args.root, seed=args.seed)
    print(f"[synthetic] wrote a miniature {args.name} to {root}", flush=True)
    return 0


def _checkpoint_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="checkpoint file to write")
    p.add_argument("--arch", choices=list(ARCHS), default="tiny")
    p.add_argument("--family", choices=FAMILIES, default="frame")
    p.add_argument("--seed", type=int, default=0, help="initialisation seed of the encoder")


def _run_checkpoint(args: argparse.Namespace) -> int:
    path = write_official_checkpoint(args.path, arch=args.arch, family=args.family, seed=args.seed)
    print(f"[synthetic] wrote {path} ({args.arch} ATST-{args.family}, seed {args.seed})", flush=True)
    return 0


COMMANDS: Dict[str, Command] = {
    "tasks": Command("write generated HEAR tasks (hear-preprocess layout)", _tasks_arguments, _run_tasks),
    "corpus": Command("write an unlabelled pre-training corpus (wavs + manifest.csv)", _corpus_arguments,
                      _run_corpus),
    "speech_commands": Command("write a tiny dataset in s3prl's speech_commands (KS) layout", _superb_arguments,
                               _superb_runner(make_speech_commands)),
    "voxceleb1": Command("write a tiny dataset in s3prl's voxceleb1 (SID) layout", _superb_arguments,
                         _superb_runner(make_voxceleb1)),
    "layout": Command("write a labelled dataset in miniature in its native layout (downstream registry)",
                      _layout_arguments, _run_layout),
    "checkpoint": Command("write a random-weight checkpoint in the official Lightning layout",
                          _checkpoint_arguments, _run_checkpoint),
}


def add_command(subparsers: argparse._SubParsersAction, name: str, command: str) -> argparse.ArgumentParser:
    """Add `COMMANDS[command]` to `subparsers` under `name`; `args.func(args)` runs it."""
    spec = COMMANDS[command]
    parser = subparsers.add_parser(name, help=spec.help, description=spec.help)
    spec.add_arguments(parser)
    parser.set_defaults(func=spec.run)
    return parser


def build_parser(prog: str = PROG, commands: Optional[Sequence[str]] = None,
                 description: Optional[str] = None) -> argparse.ArgumentParser:
    """A parser with `commands` (default: all of `COMMANDS`) as subcommands (`description`: this module's doc)."""
    parser = argparse.ArgumentParser(prog=prog, description=description or __doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in commands or COMMANDS:
        add_command(sub, name, name)
    return parser


def main(argv: Optional[Sequence[str]] = None, prog: str = PROG, commands: Optional[Sequence[str]] = None,
         description: Optional[str] = None) -> int:
    """Parse `argv` (default: sys.argv) and run the chosen command; returns its exit status."""
    args = build_parser(prog, commands, description).parse_args(argv)
    return int(args.func(args) or 0)
