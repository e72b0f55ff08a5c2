"""`python -m atst.demo --out demo_out [--quick] [--stages ...]`: pre-train, validate, benchmark, one command."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import List, Optional, Sequence

from .driver import Demo
from .settings import PRESETS, STAGE_HELP, STAGES

DESCRIPTION = """Every stage runs one command line of the project in a subprocess, logs its full output to
OUT/logs/<stage>.log, shows progress on the console, and reports its wall time. A stage whose command is missing
or fails is reported with the reason; stages that do not depend on it still run, the ones that do are skipped,
and the exit status is 1.

Stages, in order:
""" + "\n".join(f"  {name:<10}  {text}" for name, text in STAGE_HELP.items())


def parse_stages(text: str) -> List[str]:
    """Comma-separated stage names -> those stages in pipeline order; unknown names are an error naming them."""
    chosen = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in STAGES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown stage(s) {unknown}; stages: {','.join(STAGES)}")
    return [s for s in STAGES if s in chosen]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m atst.demo", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    parser.add_argument("--quick", action="store_true", help="smallest settings (CI); every stage still runs")
    parser.add_argument("--stages", type=parse_stages, default=list(STAGES),
                        help=f"comma-separated subset of {','.join(STAGES)} (default: all)")
    parser.add_argument("--max-steps", type=int, default=None, help="pre-training steps (overrides the preset)")
    parser.add_argument("--verbose", action="store_true", help="echo every line of every command")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    preset = "quick" if args.quick else "full"
    settings = PRESETS[preset]
    if args.max_steps is not None:
        settings = dataclasses.replace(settings, max_steps=args.max_steps)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    print(f"hear-atst demo -> {out} ({preset} settings: {settings})", flush=True)
    return Demo(out, settings, verbose=args.verbose).execute(args.stages)
