"""List the registered datasets: name, the layout each reads, its classes, whether it is multi-label, its folds.

Also accepted as TASK, without registration: a HEAR task directory, a CSV/TSV manifest, a folder of class folders.
"""
from __future__ import annotations

import argparse
import json

from ..datasets import list_all_datasets

HELP = "list the registered datasets (name, layout, classes, folds)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    rows = [{"name": info.name, "classes": info.num_labels, "multi_label": info.multi_label,
             "folds": info.num_folds, "labels": info.kind, "layout": info.layout} for info in list_all_datasets()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        kind = "multi-label" if row["multi_label"] else "single-label"
        if row["labels"] == "strong":
            kind = "strong labels (events, sed)"
        print(f"{row['name']:<12} {row['classes']:>5} classes, {kind}, {row['folds']} fold(s)  {row['layout']}")
    print("also accepted as TASK: a HEAR task directory, a CSV/TSV manifest (path,label[,split][,fold]), a folder "
          "with one sub-folder per class")
    return 0
