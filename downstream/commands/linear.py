"""Linear evaluation of a frozen ATST encoder (the ATST papers' protocol): embed every clip of TASK once (cached on
disk), train the official linear head for each learning rate of the grid and each fold, choose the LR and epoch on
the validation split, report the test metric.

    atst-downstream linear --ckpt atstframe_base.ckpt --task us8k=/data/UrbanSound8K --out runs/us8k
    atst-downstream linear --ckpt CKPT --task hear_tasks/esc50-v2.0.0-full --out runs/esc50 --protocol hear

Writes OUT/results.json, OUT/results.md, OUT/curves.png, OUT/curves/*.csv and OUT/best.ckpt (encoder + head +
labels + read-out; `hear_atst.load_model` and `atst info` read it). Embeddings go to --cache (default:
$ATST_EMBEDDING_CACHE, else .embedding_cache beside OUT); a second run with other LRs embeds nothing.

Exit status: 0 done; 1 done but some clips were skipped (each named); 2 a usage error (nothing was done).
"""
from __future__ import annotations

import argparse
import sys

from ..linear.defaults import parse_lrs
from ..linear.extract import EXTRACT_BATCH
from ..linear.readout import PRECISIONS, PROTOCOLS
from ..linear.run import BRANCHES, LinearConfig, run_linear
from ..linear.train import BATCH_SIZE, MAX_EPOCHS
from ..results import print_outcome

HELP = "linear evaluation (official protocol or hear read-out) on cached embeddings"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ckpt", required=True, help="ATST checkpoint (any family atst reads)")
    parser.add_argument("--task", required=True, help="NAME=PATH, a HEAR task directory, a CSV/TSV manifest or a "
                                                      "folder of class folders")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--lrs", type=_lrs, default=None,
                        help="comma-separated base LRs, e.g. 2e-3,1e-2 (scaled by batch/256); default: the official "
                             "grid of a registered dataset, else 2e-3,2e-2,2e-1")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="official",
                        help="official: the papers' read-out (12 s crop, official chunks; k-fold validated on the "
                             "test fold); hear: the whole clip, a validation fold kept apart (default: official)")
    parser.add_argument("--n_last_blocks", type=int, default=12, help="blocks read out (default 12)")
    parser.add_argument("--use_encoder", choices=BRANCHES, default="teacher", help="checkpoint branch")
    parser.add_argument("--batch_size_per_gpu", type=int, default=BATCH_SIZE, help="head training batch (1024)")
    parser.add_argument("--max_epochs", type=int, default=MAX_EPOCHS, help="head training epochs (100)")
    parser.add_argument("--extract_batch", type=int, default=EXTRACT_BATCH, help="clips per encoder batch (64)")
    parser.add_argument("--seed", type=int, default=0, help="head init and shuffling seed")
    parser.add_argument("--cache", default=None, help="embedding cache folder")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="encoder precision: auto = bf16 autocast on CUDA (official), fp32 on CPU")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--num_workers", type=int, default=2, help="decoding workers")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def _lrs(text: str) -> tuple[float, ...]:
    try:
        return parse_lrs(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    fields = ("ckpt", "task", "out", "lrs", "protocol", "n_last_blocks", "use_encoder", "batch_size_per_gpu",
              "max_epochs", "extract_batch", "seed", "cache", "precision", "device", "num_workers")
    outcome = run_linear(LinearConfig(**{name: getattr(args, name) for name in fields}),
                         log=None if args.quiet else _log)
    selected = outcome.results["selected"]
    return print_outcome(outcome.results, outcome.out_dir, f" (lr {selected['lr']:g}, epoch {selected['epoch']})")
