"""`atst-downstream` / `python -m downstream`: labelled training and use of ATST encoders.

    atst-downstream datasets                                  # the registry: name, layout, classes, folds
    atst-downstream linear --ckpt CKPT --task TASK --out DIR  # linear evaluation (official protocol or hear)
    atst-downstream finetune --ckpt CKPT --task TASK --out DIR
    atst-downstream distill --teacher FINETUNED_DIR --ckpt CKPT --task TASK --out DIR   # ATST-C2F
    atst-downstream predict --model DIR AUDIO... --out FILE.csv
    atst-downstream sed --ckpt CKPT --task TASK --out DIR     # sound event detection training
    atst-downstream detect --model DIR AUDIO... --out DIR     # events in recordings of any length

TASK: NAME=PATH for a registered dataset in its native layout, a HEAR task directory, a CSV/TSV manifest
(path,label[,split][,fold]) or a folder with one sub-folder per class.

Exit status: 0 done; 1 done but some input files were skipped (each named); 2 a usage error (nothing was done).
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

PROG = "atst-downstream"
# each subcommand lives in downstream.commands.<module>, which defines HELP, add_arguments(parser) and run(args) -> int
COMMANDS = {
    "datasets": "datasets",
    "linear": "linear",
    "finetune": "finetune",
    "distill": "distill",
    "pack": "pack",
    "predict": "predict",
    "sed": "sed",
    "detect": "detect",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"downstream.commands.{module_name}")
        sub = commands.add_parser(name, help=module.HELP, description=module.__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sub)
        sub.set_defaults(func=module.run)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, KeyError, ValueError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"{PROG} {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
