"""What `predict` writes, atomically: a CSV (one row per recording) or a JSON document.

CSV columns: `path, label_1, prob_1, ..., label_k, prob_k` (the k most probable labels, most probable first; ties
keep the model's label order), then `above_threshold` (every label whose probability is at least the threshold,
in label order, joined by `;`) when a threshold applies: always for multi-label models (default 0.5), for
single-label models when one is given. Probabilities are float32 values written in their shortest exact form.
Skipped files have no row.

JSON: `{"model", "kind", "task", "labels", "multi_label", "readout", "windows", "top_k", "threshold",
"predictions": [{"path", "seconds", "windows", "top": [{"label", "probability"}, ...], "above_threshold"?}],
"skipped": ["path: reason", ...]}`.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from torch import Tensor

from atst.fileio import atomic_write_text

from .files import FilePrediction, PredictionReport

FORMATS = ("csv", "json")


def top_labels(probabilities: Tensor, labels: Sequence[str], k: int) -> list[tuple[str, float]]:
    """The `k` most probable (label, probability) pairs of one recording `[C]`, most probable first."""
    values = probabilities.float().numpy()
    order = np.argsort(-values, kind="stable")[:k]
    return [(labels[i], float(values[i])) for i in order]


def above_threshold(probabilities: Tensor, labels: Sequence[str], threshold: float) -> list[str]:
    """The labels whose probability is >= `threshold`, in label order."""
    return [label for label, value in zip(labels, probabilities.tolist()) if value >= threshold]


def _number(value: float) -> str:
    return str(np.float32(value))  # shortest text that reads back as the same float32


def csv_text(predictions: Sequence[FilePrediction], labels: Sequence[str], top_k: int,
             threshold: Optional[float]) -> str:
    """The CSV (module docstring) as text."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = ["path"] + [name for rank in range(1, top_k + 1) for name in (f"label_{rank}", f"prob_{rank}")]
    writer.writerow(header + (["above_threshold"] if threshold is not None else []))
    for prediction in predictions:
        row = [str(prediction.path)]
        for label, value in top_labels(prediction.probabilities, labels, top_k):
            row += [label, _number(value)]
        if threshold is not None:
            row.append(";".join(above_threshold(prediction.probabilities, labels, threshold)))
        writer.writerow(row)
    return buffer.getvalue()


def json_document(report: PredictionReport, header: dict[str, Any], labels: Sequence[str], top_k: int,
                  threshold: Optional[float]) -> dict[str, Any]:
    """The JSON document (module docstring); `header`: the model and settings fields that come first."""
    predictions = []
    for prediction in report.predictions:
        entry: dict[str, Any] = {
            "path": str(prediction.path), "seconds": round(prediction.seconds, 6), "windows": prediction.windows,
            "top": [{"label": label, "probability": float(_number(value))}
                    for label, value in top_labels(prediction.probabilities, labels, top_k)]}
        if threshold is not None:
            entry["above_threshold"] = above_threshold(prediction.probabilities, labels, threshold)
        predictions.append(entry)
    return {**header, "labels": list(labels), "top_k": top_k, "threshold": threshold, "predictions": predictions,
            "skipped": list(report.skipped)}


def write_predictions(path: Path, output_format: str, report: PredictionReport, header: dict[str, Any],
                      labels: Sequence[str], top_k: int, threshold: Optional[float]) -> Path:
    """Write the CSV or JSON atomically; returns `path`."""
    if output_format not in FORMATS:
        raise ValueError(f"--format must be one of {FORMATS}, got {output_format!r}")
    if output_format == "csv":
        text = csv_text(report.predictions, labels, top_k, threshold)
    else:
        text = json.dumps(json_document(report, header, labels, top_k, threshold), indent=1) + "\n"
    return atomic_write_text(path, text)


__all__ = ["FORMATS", "above_threshold", "csv_text", "json_document", "top_labels", "write_predictions"]
