"""Training curves from a run's CSV logs (`save_path/csv_logs/version_*/metrics.csv`) -> one PNG.

Several versions (a resumed run writes a new one) are merged by step; a later version wins on overlapping steps.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Optional, Union

CURVES = ("loss", "lr", "wd", "ema", "std_frm_tea", "std_frm_stu", "samples_per_sec")


def read_metrics(logdir: Union[str, Path]) -> dict[str, list[tuple[int, float]]]:
    """{metric: [(step, value), ...] sorted by step} from every metrics.csv under `logdir`."""
    logdir = Path(logdir)
    files = sorted(logdir.rglob("metrics.csv"), key=lambda p: (p.stat().st_mtime, str(p)))
    if not files:
        raise FileNotFoundError(f"no metrics.csv under {logdir} (expected SAVE_PATH or SAVE_PATH/csv_logs)")
    merged: dict[str, dict[int, float]] = {}
    for path in files:
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                step_text = row.get("step", "")
                if not step_text:
                    continue
                step = int(float(step_text))
                for key, text in row.items():
                    if key in ("step", "epoch") or text in ("", None):
                        continue
                    try:
                        merged.setdefault(key, {})[step] = float(text)
                    except ValueError:
                        continue
    return {key: sorted(values.items()) for key, values in merged.items()}


def plot_curves(logdir: Union[str, Path], out: Optional[Union[str, Path]] = None) -> Path:
    """Write a grid of the run's curves (loss, lr, wd, ema, std statistics, throughput) to `out` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = read_metrics(logdir)
    names = [name for name in CURVES if name in metrics] or sorted(metrics)
    if not names:
        raise ValueError(f"the CSV logs under {logdir} hold no metric")
    out = Path(out) if out else Path(logdir) / "curves.png"
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        steps, values = zip(*metrics[name])
        ax.plot(steps, values, lw=1)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(out)
    return out
