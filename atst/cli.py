"""`atst` command: embed audio files, export an encoder, inspect a checkpoint.

    atst embed PATHS... --ckpt CKPT --out DIR [--mode hear|official] [--n-blocks 12] [--device cpu]
    atst export CKPT OUT.safetensors [--branch teacher|student]
    atst info CKPT [--json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

from .audio_io import find_audio_files, load_mono_16k
from .checkpoint import BRANCHES, describe_checkpoint, export_encoder, load_checkpoint
from .backbone import AUTOCAST_DTYPES
from .embedding import MODES, Embedder, load_embedder


def _batches(lengths: Sequence[int], budget_samples: int, equal_only: bool) -> list[list[int]]:
    """Indices grouped so that (longest in batch) x (batch size) <= budget; sorted by length to limit padding.
    With `equal_only`, only clips of identical length share a batch (official mode has no per-clip lengths)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    for index in order:
        if batches:
            current = batches[-1]
            longest = max(lengths[index], lengths[current[-1]])
            fits = longest * (len(current) + 1) <= budget_samples
            if fits and (not equal_only or lengths[index] == lengths[current[0]]):
                current.append(index)
                continue
        batches.append([index])
    return batches


def embed_files(embedder: Embedder, paths: Sequence[str], out_dir: Path, batch_seconds: float = 120.0,
                timestamps: bool = True, progress: bool = True) -> tuple[list[Path], list[str]]:
    """Embed every audio file under `paths`; write `<rel>.scene.npy`, `<rel>.timestamp_embeddings.npy`,
    `<rel>.timestamps.npy` (ms) under `out_dir`. Returns (files written, error messages of skipped files)."""
    files = find_audio_files(paths)
    if not files:
        raise FileNotFoundError(f"no audio files ({', '.join(('.wav', '.flac', '.ogg'))}) under {list(paths)}")
    waves: dict[int, torch.Tensor] = {}
    errors: list[str] = []
    for index, (path, _) in enumerate(tqdm(files, desc="reading", unit="file", disable=not progress)):
        try:
            waves[index] = load_mono_16k(path)
        except ValueError as error:
            errors.append(str(error))
    ids = sorted(waves)
    lengths = [waves[i].shape[0] for i in ids]
    budget = max(1, int(batch_seconds * embedder.sample_rate))
    written: list[Path] = []
    bar = tqdm(total=len(ids), desc="embedding", unit="file", disable=not progress)
    for batch in _batches(lengths, budget, equal_only=embedder.mode == "official"):
        members = [ids[i] for i in batch]
        clip_lengths = torch.tensor([waves[i].shape[0] for i in members])
        audio = torch.zeros(len(members), int(clip_lengths.max()))
        for row, i in enumerate(members):
            audio[row, : waves[i].shape[0]] = waves[i]
        is_ragged = bool((clip_lengths != clip_lengths.max()).any())
        scene = embedder.scene_embeddings(audio, clip_lengths if is_ragged else None).cpu()
        if timestamps:
            emb, stamps = embedder.timestamp_embeddings(audio, clip_lengths if is_ragged else None)
            emb, stamps = emb.cpu(), stamps.cpu()
            counts = embedder.token_counts(clip_lengths.tolist()) if embedder.mode == "hear" else [emb.shape[1]] * len(members)
        for row, i in enumerate(members):
            target = out_dir / files[i][1]
            target.parent.mkdir(parents=True, exist_ok=True)
            outputs = {"scene": scene[row]}
            if timestamps:
                outputs["timestamp_embeddings"] = emb[row, : counts[row]]
                outputs["timestamps"] = stamps[row, : counts[row]]
            for kind, value in outputs.items():
                path = target.with_name(f"{target.name}.{kind}.npy")
                np.save(path, value.numpy().astype(np.float32))
                written.append(path)
        bar.update(len(members))
    bar.close()
    return written, errors


def _cmd_embed(args: argparse.Namespace) -> int:
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda requested but CUDA is not available")
    embedder = load_embedder(args.ckpt, mode=args.mode, n_blocks=args.n_blocks, branch=args.branch,
                             autocast=args.autocast).to(args.device)
    out = Path(args.out)
    written, errors = embed_files(embedder, args.paths, out, args.batch_seconds, not args.scene_only,
                                  progress=not args.quiet)
    print(f"wrote {len(written)} files under {out} (scene {embedder.scene_embedding_size}-d, timestamp "
          f"{embedder.timestamp_embedding_size}-d, mode {embedder.mode})")
    for message in errors:
        print(f"skipped: {message}", file=sys.stderr)
    return 1 if errors else 0


def _cmd_export(args: argparse.Namespace) -> int:
    loaded = load_checkpoint(args.ckpt, branch=args.branch)
    path = export_encoder(loaded, args.out)
    print(f"exported the {loaded.branch} encoder of {args.ckpt} (ATST-{loaded.family}, "
          f"{sum(p.numel() for p in loaded.encoder.parameters()):,} parameters) to {path}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    info = describe_checkpoint(args.ckpt)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    for key, value in info.items():
        if key == "hyper_parameters":
            continue
        if isinstance(value, list):
            print(f"{key}:")
            for item in value:
                print(f"  - {item}")
        else:
            print(f"{key}: {value:,}" if isinstance(value, int) and not isinstance(value, bool) else f"{key}: {value}")
    if info.get("hyper_parameters"):
        print("hyper_parameters: " + ", ".join(f"{k}={v}" for k, v in info["hyper_parameters"].items()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="atst", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    embed = commands.add_parser("embed", help="embed audio files or folders (wav/flac/ogg, any sample rate)")
    embed.add_argument("paths", nargs="+", help="audio files and/or folders (searched recursively)")
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
    embed.add_argument("--quiet", action="store_true", help="no progress bars")
    embed.set_defaults(func=_cmd_embed)

    export = commands.add_parser("export", help="write the encoder as safetensors (no pickle, no Lightning)")
    export.add_argument("ckpt")
    export.add_argument("out")
    export.add_argument("--branch", choices=BRANCHES, default="teacher")
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
        return 2


if __name__ == "__main__":
    sys.exit(main())
