"""Label recordings with a trained downstream model: the top labels of each file, with their probabilities.

    atst-downstream predict --model runs/us8k recordings/ extra.flac --out labels.csv
    atst-downstream predict --model runs/as20k/best.ckpt long.wav --out labels.json --windows --aggregate max

--model is the --out folder of an `atst-downstream linear|finetune` run (its best.ckpt) or a best.ckpt file: the
encoder, read-out, head and labels all come from it. AUDIO: files and folders (recursive), any format, sample rate
and channel count. Each recording is read out as the model was trained: `official` models read its 12 s centre
crop, `hear` models the whole recording; --windows reads long recordings in windows of --window_seconds (default
12) and aggregates the windows' probabilities (--aggregate mean|max).

Output (--format, default from the --out suffix: .json -> json, else csv): one row per file, `path, label_1,
prob_1, ..., label_k, prob_k` (--top_k, default min(5, labels)), plus `above_threshold` (labels with probability
>= --threshold, joined by ';'; multi-label models default to 0.5). Probabilities: softmax (single-label models)
or per-label sigmoid (multi-label).

Exit status: 0 every file predicted; 1 some files were skipped (each named once on stderr, the others written);
2 a usage error (nothing was done).
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Optional

from atst.official import CROP_SECONDS

from ..linear.readout import PRECISIONS
from ..linear.run import prepare_out, resolve_device
from ..predict import AGGREGATES, FORMATS, Predictor, find_inputs, predict_files, write_predictions
from . import report_skipped

HELP = "label recordings with a trained model (top labels and probabilities to CSV or JSON)"
DEFAULT_TOP_K = 5
MULTI_LABEL_THRESHOLD = 0.5
MIN_WINDOW_SECONDS = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("audio", nargs="+", metavar="AUDIO", help="audio files and/or folders (searched recursively)")
    parser.add_argument("--model", required=True, help="a run's --out folder (its best.ckpt) or a best.ckpt file")
    parser.add_argument("--out", required=True, help="the CSV (or JSON) file to write")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="csv or json (default: json for a .json --out, else csv)")
    parser.add_argument("--top_k", "--top-k", type=int, default=None,
                        help=f"labels per file, most probable first (default: min({DEFAULT_TOP_K}, labels))")
    parser.add_argument("--threshold", type=float, default=None,
                        help="also list every label with probability >= this (default: 0.5 for multi-label "
                             "models, none for single-label ones)")
    parser.add_argument("--windows", action="store_true",
                        help="read long recordings in windows and aggregate them (default: as trained: the 12 s "
                             "centre crop for official models, the whole recording for hear models)")
    parser.add_argument("--window_seconds", "--window-seconds", type=float, default=None,
                        help=f"window length with --windows (default {CROP_SECONDS:g} s, the official crop)")
    parser.add_argument("--aggregate", choices=AGGREGATES, default="mean",
                        help="how --windows combines the windows' probabilities (default mean)")
    parser.add_argument("--batch_seconds", "--batch-seconds", type=float, default=120.0,
                        help="audio per batch, counted as longest clip x clips (default 120 s)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="encoder precision: auto = the model's on CUDA, fp32 on a CPU")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def check_options(args: argparse.Namespace) -> None:
    """Options that need no model: ranges and combinations, each error naming the option."""
    if args.top_k is not None and args.top_k < 1:
        raise ValueError(f"--top_k must be an integer >= 1, got {args.top_k}")
    if args.threshold is not None and not 0.0 < args.threshold <= 1.0:
        raise ValueError(f"--threshold must be a probability in (0, 1], got {args.threshold}")
    if not (args.batch_seconds > 0 and math.isfinite(args.batch_seconds)):
        raise ValueError(f"--batch_seconds must be a positive number of seconds, got {args.batch_seconds}")
    if args.window_seconds is not None and not args.windows:
        raise ValueError("--window_seconds needs --windows")
    if args.aggregate != "mean" and not args.windows:
        raise ValueError("--aggregate needs --windows")
    out = Path(args.out)
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; name the CSV or JSON file to write")


def window_seconds(args: argparse.Namespace, protocol: str) -> Optional[float]:
    """The window length of --windows, checked against the model's read-out (None without --windows)."""
    if not args.windows:
        return None
    seconds = CROP_SECONDS if args.window_seconds is None else args.window_seconds
    longest = CROP_SECONDS if protocol == "official" else math.inf
    if not MIN_WINDOW_SECONDS <= seconds <= longest:
        raise ValueError(f"--window_seconds must be in [{MIN_WINDOW_SECONDS:g}, {longest:g}] for a model trained "
                         f"with the {protocol} read-out, got {seconds:g}"
                         + (" (the official read-out crops each clip to 12 s)" if protocol == "official" else ""))
    return seconds


def top_k(args: argparse.Namespace, num_labels: int) -> int:
    if args.top_k is None:
        return min(DEFAULT_TOP_K, num_labels)
    if args.top_k > num_labels:
        raise ValueError(f"--top_k {args.top_k}: the model has {num_labels} labels; pass 1..{num_labels}")
    return args.top_k


def run(args: argparse.Namespace) -> int:
    check_options(args)
    out = Path(args.out)
    sources = find_inputs(args.audio)
    if out.resolve() in {source.resolve() for source in sources}:
        raise ValueError(f"--out {out} is one of the audio inputs; name another file")
    predictor = Predictor.load(args.model, resolve_device(args.device), args.precision)
    labels, protocol = predictor.labels, predictor.model.readout.protocol
    k = top_k(args, len(labels))
    window = window_seconds(args, protocol)
    threshold = args.threshold if args.threshold is not None else (
        MULTI_LABEL_THRESHOLD if predictor.multi_label else None)
    output_format = args.format or ("json" if out.suffix.lower() == ".json" else "csv")
    prepare_out(out.parent)  # the last check: a folder that cannot be written is named before any work

    report = predict_files(predictor, sources, args.batch_seconds, window, args.aggregate, progress=not args.quiet)
    info = predictor.model.info
    header = {"model": str(predictor.model.path), "kind": predictor.model.kind, "task": info.get("task"),
              "multi_label": predictor.multi_label, "readout": predictor.describe(),
              "windows": None if window is None else {"seconds": window, "aggregate": args.aggregate}}
    write_predictions(out, output_format, report, header, labels, k, threshold)

    windows = f"; {window:g} s windows, {args.aggregate}" if window else ""
    print(f"wrote {len(report.predictions)} prediction(s) to {out} ({predictor.model.kind} model of "
          f"{info.get('task')}, {len(labels)} labels; {predictor.describe()}{windows})")
    return report_skipped(report.skipped, "file(s) skipped; the others were written")
