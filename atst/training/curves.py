"""Training curves from a run's CSV logs (`save_path/csv_logs/version_*/metrics.csv`) -> one PNG.

Several versions (a resumed run writes a new one) are merged by step; a later version wins on overlapping steps.
The figure: the loss (raw, faint, with its smoothed curve over it), the learning rate, the teacher / student std
statistics (`std_*`; the collapse threshold drawn as a dashed line), validation metrics (`valid_*`, per epoch), then
any of weight decay, EMA momentum and throughput that were logged. Written atomically.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

from atst.fileio import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Series = list[tuple[int, float]]
EXTRA_CURVES = ("wd", "ema", "samples_per_sec")
SMOOTHING = 0.9  # weight of the running average on long runs (TensorBoard's default slider)
SMOOTHING_SPAN = 10  # short runs: about a tenth of the points carries the average
TITLES = {"loss": "loss (smoothed over raw)", "lr": "learning rate", "std": "embedding std (collapse < threshold)",
          "wd": "weight decay", "ema": "EMA momentum", "samples_per_sec": "samples / s"}


def read_metrics(logdir: Union[str, Path]) -> dict[str, Series]:
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


def logged_hyper_parameters(logdir: Union[str, Path]) -> dict:
    """The hyper-parameters the CSV logger saved (`hparams.yaml` of the newest version under `logdir`), or {}."""
    files = sorted(Path(logdir).rglob("hparams.yaml"), key=lambda p: (p.stat().st_mtime, str(p)))
    if not files:
        return {}
    import yaml

    try:
        loaded = yaml.safe_load(files[-1].read_text())
    except yaml.YAMLError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def smoothing_weight(points: int) -> float:
    """0.9 for 100 points and more, less for shorter runs (so a 30-step demo's curve does not lag its loss)."""
    return min(SMOOTHING, max(0.0, 1.0 - SMOOTHING_SPAN / max(points, 1)))


def smooth(values: list[float], weight: Optional[float] = None) -> list[float]:
    """Debiased exponential running average (TensorBoard's smoothing): the first value is kept as is;
    `weight` defaults to `smoothing_weight(len(values))`."""
    weight = smoothing_weight(len(values)) if weight is None else weight
    if weight == 0.0:
        return list(values)
    out, average = [], 0.0
    for count, value in enumerate(values, start=1):
        average = weight * average + (1.0 - weight) * value
        out.append(average / (1.0 - weight**count))
    return out


def panels(metrics: dict[str, Series]) -> list[str]:
    """The panels a figure of these metrics shows, in order: loss, lr, std (any `std_*`), validation metrics (each
    `valid_*`, logged once per epoch by fine-tuning), then extras."""
    names = [name for name in ("loss", "lr") if name in metrics]
    if any(key.startswith("std_") for key in metrics):
        names.append("std")
    names += sorted(key for key in metrics if key.startswith("valid_"))
    return names + [name for name in EXTRA_CURVES if name in metrics]


def curves_figure(metrics: dict[str, Series], collapse_std: Optional[float] = None) -> "Figure":
    """A matplotlib Figure with one axis per `panels(metrics)`, titled by `TITLES`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = panels(metrics)
    if not names:
        raise ValueError(f"the logs hold none of the plotted metrics (loss, lr, std_*, valid_*, "
                         f"{', '.join(EXTRA_CURVES)}); "
                         f"they hold: {', '.join(sorted(metrics)) or 'nothing'}")
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        if name == "std":
            for key in sorted(k for k in metrics if k.startswith("std_")):
                ax.plot(*zip(*metrics[key]), lw=1, label=key)
            if collapse_std:
                ax.axhline(collapse_std, color="red", ls="--", lw=1, label=f"collapse {collapse_std:g}")
            ax.legend(fontsize=7)
        elif name == "loss":
            steps, values = zip(*metrics[name])
            ax.plot(steps, values, lw=1, alpha=0.3, label="raw")
            ax.plot(steps, smooth(list(values)), lw=1.5, label="smoothed")
            ax.legend(fontsize=7)
        elif name.startswith("valid_"):
            ax.plot(*zip(*metrics[name]), lw=1.2, marker="o", ms=3)
        else:
            ax.plot(*zip(*metrics[name]), lw=1)
        ax.set_title(TITLES.get(name, f"validation {name[len('valid_'):]} (per epoch)"))
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.remove()
    fig.tight_layout()
    return fig


def plot_curves(logdir: Union[str, Path], out: Optional[Union[str, Path]] = None,
                collapse_std: Optional[float] = None) -> Path:
    """Write the curves of the CSV logs under `logdir` to `out` (PNG, default `logdir/curves.png`); returns it."""
    figure = curves_figure(read_metrics(logdir), collapse_std)
    import matplotlib.pyplot as plt

    out = Path(out) if out else Path(logdir) / "curves.png"
    try:
        with atomic_path(out) as tmp:
            figure.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(figure)
    return out
