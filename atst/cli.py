"""`atst` command: embed audio files, export an encoder, inspect a checkpoint.

    atst embed PATHS... --ckpt CKPT --out DIR [--mode hear|official] [--n-blocks 12] [--device cpu]
    atst export CKPT OUT.safetensors [--branch teacher|student] [--force]
    atst info CKPT [--json]

Exit status: 0 done; 1 some input files were skipped (each named on stderr; the others were written), or `info`
found the default branch unusable; 2 a usage error (nothing was done).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch

from .audio_io import AUDIO_SUFFIXES
from .backbone import AUTOCAST_DTYPES
from .batch_embed import embed_files
from .checkpoint import BRANCHES, describe_checkpoint, export_encoder, load_checkpoint
from .embedding import MODES, load_embedder

EXIT_OK, EXIT_SKIPPED, EXIT_USAGE = 0, 1, 2


def _cmd_embed(args: argparse.Namespace) -> int:
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda requested but CUDA is not available")
    embedder = load_embedder(args.ckpt, mode=args.mode, n_blocks=args.n_blocks, branch=args.branch,
                             autocast=args.autocast).to(args.device)
    out = Path(args.out)
    report = embed_files(embedder, args.paths, out, args.batch_seconds, not args.scene_only,
                         progress=not args.quiet, overwrite=args.overwrite)
    print(f"wrote {len(report.written)} files under {out} (scene {embedder.scene_embedding_size}-d, timestamp "
          f"{embedder.timestamp_embedding_size}-d, mode {embedder.mode})")
    if report.kept:
        print(f"kept the complete outputs of {len(report.kept)} file(s) from an earlier run (--overwrite redoes "
              f"them)")
    for message in report.skipped:
        print(f"skipped: {message}", file=sys.stderr)
    if report.skipped:
        print(f"{len(report.skipped)} file(s) skipped; the others were written", file=sys.stderr)
    return EXIT_SKIPPED if report.skipped else EXIT_OK


def _cmd_export(args: argparse.Namespace) -> int:
    loaded = load_checkpoint(args.ckpt, branch=args.branch)
    path = export_encoder(loaded, args.out, overwrite=args.force)
    print(f"exported the {loaded.branch} encoder of {args.ckpt} (ATST-{loaded.family}, "
          f"{sum(p.numel() for p in loaded.encoder.parameters()):,} parameters) to {path}")
    return EXIT_OK


def _cmd_info(args: argparse.Namespace) -> int:
    info = describe_checkpoint(args.ckpt)
    # the default branch (teacher) is what every door loads: a file where it is unusable fails the check
    status = EXIT_OK if info["branches"].get(BRANCHES[0]) == "ok" else EXIT_SKIPPED
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return status
    for key, value in info.items():
        if key == "hyper_parameters":
            continue
        if isinstance(value, list):
            print(f"{key}:")
            for item in value:
                print(f"  - {item}")
        elif key == "branches":
            print("branches:")
            for branch, health in value.items():
                print(f"  - {branch}: {health}")
        else:
            print(f"{key}: {value:,}" if isinstance(value, int) and not isinstance(value, bool) else f"{key}: {value}")
    if info.get("hyper_parameters"):
        print("hyper_parameters: " + ", ".join(f"{k}={v}" for k, v in info["hyper_parameters"].items()))
    if status != EXIT_OK:
        print(f"atst info: the default branch ({BRANCHES[0]}) cannot be used: {info['branches'].get(BRANCHES[0])}",
              file=sys.stderr)
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="atst", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    embed = commands.add_parser("embed", help="embed audio files or folders (wav/flac/ogg, any sample rate)")
    embed.add_argument("paths", nargs="+", help="audio files and/or folders (searched recursively; "
                       f"{', '.join(suffix.lstrip('.') for suffix in AUDIO_SUFFIXES)})")
    embed.add_argument("--ckpt", required=True, help="checkpoint (official .ckpt, DINO-style, or atst export)")
    embed.add_argument("--out", required=True, help="output folder; mirrors the input folder structure")
    embed.add_argument("--mode", choices=MODES, default="hear")
    embed.add_argument("--n-blocks", type=int, default=12, help="read out the last N blocks (default 12)")
    embed.add_argument("--branch", choices=BRANCHES, default="teacher")
    embed.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    embed.add_argument("--autocast", choices=sorted(k for k in AUTOCAST_DTYPES if AUTOCAST_DTYPES[k]), default=None,
                       help="run the encoder in reduced precision (outputs stay float32)")
    embed.add_argument("--batch-seconds", type=float, default=120.0,
                       help="audio per batch, counted as longest clip x clips (default 120 s)")
    embed.add_argument("--scene-only", action="store_true", help="write only scene embeddings")
    embed.add_argument("--overwrite", action="store_true",
                       help="redo files whose outputs a previous run completed (default: keep them)")
    embed.add_argument("--quiet", action="store_true", help="no progress bars")
    embed.set_defaults(func=_cmd_embed)

    export = commands.add_parser("export", help="write the encoder as safetensors (no pickle, no Lightning)")
    export.add_argument("ckpt")
    export.add_argument("out")
    export.add_argument("--branch", choices=BRANCHES, default="teacher")
    export.add_argument("--force", action="store_true", help="replace an existing output file")
    export.set_defaults(func=_cmd_export)

    info = commands.add_parser("info", help="family, architecture, parameter count and contents of a checkpoint")
    info.add_argument("ckpt")
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=_cmd_info)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, TypeError) as error:
        print(f"atst {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
