"""`atst` command: embed audio files, export an encoder, inspect a checkpoint, fetch released checkpoints.

    atst embed PATHS... --ckpt CKPT --out DIR [--mode hear|official] [--n-blocks 12] [--device cpu]
    torchrun --nproc_per_node N -m atst embed ...    # N processes (GPUs), each its share; OUT/index.json by rank 0
    atst export CKPT OUT.safetensors [--branch teacher|student] [--force]
    atst export CKPT OUT.onnx [--format onnx] [--n-blocks 12]   # front end + encoder, one 10 s window, no PyTorch
    atst info CKPT [--json]
    atst download NAME...|all [--cache DIR]          # fetch released checkpoints ahead of time
    atst download --list                             # the released checkpoints and whether they are cached

CKPT is a file or a released checkpoint's name (atstframe_small, atstframe_base, atstclip_small, atstclip_base),
downloaded once into the cache ($ATST_CACHE); `--offline` (or ATST_OFFLINE=1) never touches the network.

Exit status: 0 done; 1 some input files were skipped (each named on stderr; the others were written), `info`
found the default branch unusable, or `download` could not fetch some names; 2 a usage error or a checkpoint that
cannot be had (nothing was done).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch

from .backbone import AUTOCAST_DTYPES
from .batch_embed import FileEmbedder, Outcome, embed_files, write_index
from .checkpoint import (BRANCHES, CheckpointError, LoadedCheckpoint, describe_checkpoint, export_encoder,
                         load_checkpoint)
from .download import DownloadError
from .embed_inputs import ACCEPTED
from .embed_ranks import Topology, gather_outcomes, process_group, rank_device
from .embedding import MODES, Embedder, load_embedder
from .hub import cache_dir, cached_release, resolve_checkpoint
from .onnx_export import INPUT_NAME, OUTPUT_NAME, export_onnx
from .releases import RELEASES, release

EXIT_OK, EXIT_SKIPPED, EXIT_USAGE = 0, 1, 2
EXPORT_FORMATS = ("safetensors", "onnx")


def _cmd_embed(args: argparse.Namespace) -> int:
    topology = Topology.from_env()
    device = rank_device(args.device, topology)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda requested but CUDA is not available")
    embedder = load_embedder(args.ckpt, mode=args.mode, n_blocks=args.n_blocks, branch=args.branch,
                             autocast=args.autocast).to(device)
    out = Path(args.out)
    with process_group(topology):
        report = embed_files(embedder, args.paths, out, args.batch_seconds, not args.scene_only,
                             progress=not args.quiet, overwrite=args.overwrite, rank=topology.rank,
                             world_size=topology.world_size)
        outcomes = gather_outcomes(report.outcomes, topology)
    skipped = [outcome for outcome in outcomes if outcome.status == "skipped"]
    if topology.is_main:
        run = {"checkpoint": args.ckpt, "branch": args.branch, "mode": embedder.mode, "n_blocks": args.n_blocks,
               "autocast": args.autocast, "outputs": list(FileEmbedder(embedder, not args.scene_only).kinds),
               "scene_embedding_size": embedder.scene_embedding_size,
               "timestamp_embedding_size": embedder.timestamp_embedding_size, "world_size": topology.world_size}
        index = write_index(out, outcomes, run)
        _print_embed_summary(embedder, out, outcomes, topology.world_size, index)
    return EXIT_SKIPPED if skipped else EXIT_OK


def _print_embed_summary(embedder: Embedder, out: Path, outcomes: list[Outcome], world_size: int,
                         index: Path) -> None:
    """What the run did (all processes), each skipped clip named once."""
    written = sum(len(outcome.outputs) for outcome in outcomes if outcome.status == "written")
    kept = sum(outcome.status == "kept" for outcome in outcomes)
    across = f" by {world_size} processes" if world_size > 1 else ""
    print(f"wrote {written} files under {out}{across} (scene {embedder.scene_embedding_size}-d, timestamp "
          f"{embedder.timestamp_embedding_size}-d, mode {embedder.mode}); index {index}")
    if kept:
        print(f"kept the complete outputs of {kept} file(s) from an earlier run (--overwrite redoes them)")
    skipped = [outcome.reason for outcome in sorted(outcomes, key=lambda o: (o.unit, o.order))
               if outcome.status == "skipped"]
    for message in skipped:
        print(f"skipped: {message}", file=sys.stderr)
    if skipped:
        print(f"{len(skipped)} file(s) skipped; the others were written", file=sys.stderr)


def export_format(out: str, requested: Optional[str]) -> str:
    """The export format: `requested`, else from the suffix of `out` (.onnx -> onnx, else safetensors); a suffix
    that names the other format is refused."""
    suffix = Path(out).suffix.lower()
    implied = {".onnx": "onnx", ".safetensors": "safetensors"}.get(suffix)
    if requested is None:
        return implied or "safetensors"
    if implied is not None and implied != requested:
        raise ValueError(f"the suffix of {out} says {implied} but --format is {requested}; pass --format {implied} "
                         f"or name the file otherwise")
    return requested


def _cmd_export(args: argparse.Namespace) -> int:
    fmt = export_format(args.out, args.format)
    if fmt != "onnx" and args.n_blocks is not None:
        raise ValueError("--n-blocks applies to --format onnx (the safetensors export holds the whole encoder)")
    loaded = load_checkpoint(args.ckpt, branch=args.branch)
    if fmt == "onnx":
        return _export_onnx(args, loaded)
    path = export_encoder(loaded, args.out, overwrite=args.force)
    print(f"exported the {loaded.branch} encoder of {args.ckpt} (ATST-{loaded.family}, "
          f"{sum(p.numel() for p in loaded.encoder.parameters()):,} parameters) to {path}")
    return EXIT_OK


def _export_onnx(args: argparse.Namespace, loaded: LoadedCheckpoint) -> int:
    n_blocks = 12 if args.n_blocks is None else args.n_blocks
    embedder = Embedder(loaded.encoder, loaded.frontend_config, n_blocks=n_blocks,
                        clip_train_len=loaded.clip_train_len)
    done = export_onnx(embedder, args.out, source=loaded.path, branch=loaded.branch, overwrite=args.force)
    meta = done.metadata
    print(f"exported the {loaded.branch} encoder of {args.ckpt} (ATST-{loaded.family.capitalize()}) with its front "
          f"end to {done.path} (ONNX): {INPUT_NAME} float32 [B, N] at 16 kHz, {meta['min_samples']} <= N <= "
          f"{meta['max_samples']} samples -> {OUTPUT_NAME} float32 [B, T, {n_blocks * loaded.config.embed_dim}] "
          f"(hear mode, token k at 40 k + 15 ms)")
    if done.max_abs_diff is None:
        print("not checked with onnxruntime (not installed)")
    else:
        print(f"checked with onnxruntime on a {done.checked_shape} batch: max |diff| to PyTorch "
              f"{done.max_abs_diff:.2g}")
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


def _cmd_download(args: argparse.Namespace) -> int:
    folder = cache_dir(args.cache)
    if args.list:
        print(f"cache: {folder}")
        for found in RELEASES.values():
            cached = "cached" if (folder / found.filename).is_file() else "not cached"
            print(f"{found.name:16s} ATST-{found.family.capitalize():6s} {found.arch:6s} "
                  f"{found.encoder_parameters() / 1e6:5.1f} M  {cached}  {found.official_location}")
        return EXIT_OK
    if not args.names:
        raise ValueError(f"name the checkpoints to download ({', '.join(RELEASES)}) or `all`")
    names = list(RELEASES) if "all" in args.names else [release(name).name for name in args.names]
    failed = 0
    for name in names:
        try:
            path = cached_release(RELEASES[name], offline=False, cache=folder, progress=not args.quiet, rehash=True)
        except (DownloadError, CheckpointError) as error:
            print(f"atst download: {name}: {error}", file=sys.stderr)
            failed += 1
            continue
        print(f"{name}: {path} (verified)")
    return EXIT_SKIPPED if failed else EXIT_OK


def _offline_option(command: argparse.ArgumentParser) -> None:
    command.add_argument("--offline", action="store_true",
                         help="never touch the network: a released checkpoint must be in the cache already "
                              "(also ATST_OFFLINE=1)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="atst", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    embed = commands.add_parser("embed", help="embed audio files or folders (wav/flac/ogg, any sample rate)")
    embed.add_argument("paths", nargs="+", help=f"inputs: {ACCEPTED}; folders are searched recursively")
    embed.add_argument("--ckpt", required=True, help="checkpoint file (official .ckpt, DINO-style, or atst export) "
                       f"or a released checkpoint's name ({', '.join(RELEASES)})")
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
    _offline_option(embed)
    embed.set_defaults(func=_cmd_embed)

    export = commands.add_parser("export", help="write the encoder as safetensors (no pickle, no Lightning) or, "
                                               "with its front end, as an ONNX graph (no PyTorch)")
    export.add_argument("ckpt", help="checkpoint file or released checkpoint name")
    export.add_argument("out")
    export.add_argument("--format", choices=EXPORT_FORMATS, default=None,
                        help="safetensors: the encoder's weights and config; onnx: audio [B, N] (16 kHz, one window "
                             "of up to 10 s) -> hear-mode timestamp embeddings [B, T, n_blocks x D] (default: from "
                             "the suffix of OUT, else safetensors)")
    export.add_argument("--n-blocks", type=int, default=None,
                        help="onnx: read out the last N blocks (default 12)")
    export.add_argument("--branch", choices=BRANCHES, default="teacher")
    export.add_argument("--force", action="store_true", help="replace an existing output file")
    _offline_option(export)
    export.set_defaults(func=_cmd_export)

    info = commands.add_parser("info", help="family, architecture, parameter count and contents of a checkpoint")
    info.add_argument("ckpt", help="checkpoint file or released checkpoint name")
    info.add_argument("--json", action="store_true")
    _offline_option(info)
    info.set_defaults(func=_cmd_info)

    download = commands.add_parser("download", help="fetch released checkpoints into the cache ahead of time "
                                                    "(for machines without network)")
    download.add_argument("names", nargs="*", metavar="NAME", help=f"{', '.join(RELEASES)} or all")
    download.add_argument("--cache", default=None, help="cache folder (default: $ATST_CACHE, else "
                                                        "<torch hub dir>/atst)")
    download.add_argument("--list", action="store_true", help="list the released checkpoints and exit")
    download.add_argument("--quiet", action="store_true", help="no progress bar")
    download.set_defaults(func=_cmd_download)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "ckpt", None):
            # fetch a released checkpoint (or refuse, offline) before any work; the command then finds it cached
            resolve_checkpoint(args.ckpt, offline=True if args.offline else None)
        return args.func(args)
    except (FileNotFoundError, ValueError, TypeError, DownloadError, ImportError) as error:
        print(f"atst {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
