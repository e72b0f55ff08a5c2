"""Pack a task into WebDataset tar shards that training streams (for AudioSet-2M scale):

    atst-downstream pack audioset=/data/audioset --out /data/as2m_shards [--shard-size 1000] [--format flac]

Each clip is decoded once (any format, rate, channels -> 16 kHz mono) and stored as 24-bit FLAC (`flac`, the
default; a clip peaking at full scale is stored as float32 .npy instead) or float32 .npy (`npy`, exact), with its
key and target. Shards are written atomically; re-running the command keeps the complete shards and writes the
rest, so an interrupted pack resumes. Missing and undecodable files are skipped and named.
Exit status: 0 done; 1 done but some clips were skipped; 2 a usage error.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..datasets.codec import FORMATS
from ..datasets.pack import DEFAULT_SHARD_SIZE, PACK_FILE, pack_task
from ..datasets.resolve import load_task

HELP = "write a task into WebDataset tar shards (resumable)"
SHOWN_SKIPS = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", help="NAME=PATH, a HEAR task directory, a CSV/TSV manifest or a class-folder tree")
    parser.add_argument("--out", required=True, type=Path, help="folder for the shards and pack.json")
    parser.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE,
                        help=f"clips per shard (default {DEFAULT_SHARD_SIZE})")
    parser.add_argument("--format", choices=FORMATS, default="flac", dest="fmt",
                        help="audio format in the shards (default flac: 24-bit; npy: float32, exact)")
    parser.add_argument("--quiet", action="store_true", help="no line per shard")


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    task = load_task(args.task)
    progress = None if args.quiet else (lambda line: print(f"  {line}", flush=True))
    report = pack_task(task, args.out, shard_size=args.shard_size, fmt=args.fmt, progress=progress)
    print(f"packed {task.name}: {report.clips} clips in {report.written + report.kept} shards ({report.written} "
          f"written, {report.kept} complete from before) -> {args.out / PACK_FILE} in "
          f"{time.perf_counter() - start:.1f} s")
    if report.skipped:
        print(f"skipped {len(report.skipped)} clip(s):", file=sys.stderr)
        for reason in report.skipped[:SHOWN_SKIPS]:
            print(f"  {reason}", file=sys.stderr)
        if len(report.skipped) > SHOWN_SKIPS:
            print(f"  ... and {len(report.skipped) - SHOWN_SKIPS} more (all listed in {args.out / PACK_FILE})",
                  file=sys.stderr)
        return 1
    return 0
