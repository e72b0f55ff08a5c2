"""Per-epoch training curves of a downstream run: one CSV per trained head and one PNG, written atomically."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Mapping, Sequence, Union

from atst.fileio import atomic_path, atomic_write_text

Series = Sequence[tuple[int, float]]


def write_csv(path: Union[str, Path], rows: Sequence[Mapping[str, object]], columns: Sequence[str]) -> Path:
    """Rows (dicts with at least `columns`) as a CSV with a header line; floats with 6 significant digits."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([f"{row[c]:.6g}" if isinstance(row[c], float) else row[c] for c in columns])
    return atomic_write_text(path, buffer.getvalue())


def plot_curves(path: Union[str, Path], panels: Mapping[str, Mapping[str, Series]], xlabel: str = "epoch") -> Path:
    """A PNG with one axis per panel (title -> {line label: [(x, y), ...]}); non-finite points are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(panels), figsize=(5.0 * len(panels), 3.6), squeeze=False)
    try:
        for ax, (title, lines) in zip(axes[0], panels.items()):
            for label, points in lines.items():
                finite = [(x, y) for x, y in points if math.isfinite(y)]
                if finite:
                    ax.plot(*zip(*finite), lw=1.2, label=label)
            ax.set_title(title)
            ax.set_xlabel(xlabel)
            ax.grid(alpha=0.3)
            if lines:
                ax.legend(fontsize=7)
        figure.tight_layout()
        with atomic_path(path) as tmp:
            figure.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(figure)
    return Path(path)


__all__ = ["plot_curves", "write_csv"]
