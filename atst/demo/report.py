"""The demo's report: scores from the runners' outputs, the pre-training loss curve, and the results table
(`OUT/results.md`, `OUT/results.json`, `OUT/loss_curve.png`)."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..fileio import atomic_path, atomic_write_text
from ..synthetic.hear_tasks import BUILDERS
from .settings import MODELS


def task_scores(scores_path: Path, metrics: Sequence[str]) -> Dict[str, str]:
    """`{metric: "0.873"}` (or `"0.873 ± 0.020"` for k-fold) from a `test.predicted-scores.json`."""
    scores = json.loads(scores_path.read_text())
    out = {}
    for metric in metrics:
        if "test" in scores:
            out[metric] = f"{scores['test'][f'test_{metric}']:.3f}"
        else:
            agg = scores["aggregated_scores"]
            out[metric] = f"{agg[f'test_{metric}_mean']:.3f} ± {agg[f'test_{metric}_std']:.3f}"
    return out


S3PRL_ACC = re.compile(r"test[^\n]*?acc\w*\D{0,5}([01]?\.\d+)", re.IGNORECASE)


def s3prl_accuracy(log_path: Path) -> Optional[str]:
    """The last test accuracy printed in an s3prl run log, or None."""
    if not log_path.is_file():
        return None
    found = S3PRL_ACC.findall(log_path.read_text(errors="replace"))
    return f"{float(found[-1]):.3f}" if found else None


LOSS_LINE = re.compile(r"step\D{0,5}(\d+)\D[^\n]*?loss\D{0,5}(-?\d+\.\d+(?:e-?\d+)?)", re.IGNORECASE)


def loss_curve(out: Path) -> List[tuple]:
    """(step, loss) pairs: from a Lightning `metrics.csv` under OUT/pretrain, else from the pre-training log."""
    for metrics in sorted((out / "pretrain").rglob("metrics.csv")) if (out / "pretrain").is_dir() else []:
        with metrics.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        key = next((k for k in (rows[0] if rows else {}) if "loss" in k and "val" not in k), None)
        if key:
            points = [(int(float(r.get("step") or i)), float(r[key])) for i, r in enumerate(rows) if r.get(key)]
            if points:
                return points
    log = out / "logs" / "pretrain.log"
    if log.is_file():
        return [(int(a), float(b)) for a, b in LOSS_LINE.findall(log.read_text(errors="replace"))]
    return []


def plot_loss(points: List[tuple], path: Path) -> bool:
    """Plot (step, loss) pairs to a PNG at `path`; False (nothing written) when there are none."""
    if not points:
        return False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([p[0] for p in points], [p[1] for p in points], marker=".")
    ax.set_xlabel("step")
    ax.set_ylabel("pre-training loss")
    ax.set_title("tiny ATST-Frame pre-training")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return True


S3PRL_ROW = "speech_commands (s3prl)"
DOWNSTREAM_ROWS = (("linear", "atst-downstream linear"), ("finetune", "atst-downstream finetune"),
                   ("clip_finetune", "ATST-Clip, atst-downstream finetune"),
                   ("distill", "atst-downstream distill, the pre-trained ATST-Clip row above as teacher"))


def downstream_score(results_path: Path) -> Optional[tuple]:
    """(task, metric, "0.873" or "0.873 ± 0.020") from an atst-downstream results.json, or None."""
    if not results_path.is_file():
        return None
    results = json.loads(results_path.read_text())
    metric = results["metric"]
    cell = f"{results['test'][metric]:.3f}"
    if "test_std" in results:
        cell += f" ± {results['test_std']:.3f}"
    return results["task"], metric, cell
SED_ROWS = (("psds1.sed_scores_eval", "PSDS1"), ("event_f1_200ms.macro", "event F1 (200 ms)"))


def sed_scores(results_path: Path) -> Optional[tuple]:
    """(task, {results key: "0.873"}) from an atst-downstream sed results.json, or None."""
    if not results_path.is_file():
        return None
    results = json.loads(results_path.read_text())
    test = results["test"]
    return results["task"], {key: f"{test[key]:.3f}" for key, _ in SED_ROWS if test.get(key) is not None}


WINNER_LABELS = {"pretrained": "pre-trained", "random_init": "random-init", "tie": "tie"}


def result_rows(out: Path) -> List[dict]:
    """One row per (task, metric): `{"task", "metric", "pretrained", "random_init", "winner"}`, cells as printed
    (`"—"` where a score is missing); the HEAR tasks embedded for the pre-trained model, then the s3prl run."""
    rows = []
    root = out / "embeddings" / MODELS[0] / "hear_atst"
    for task in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        metrics = json.loads((task / "task_metadata.json").read_text())["evaluation"]
        cells = {}
        for model in MODELS:
            path = out / "embeddings" / model / "hear_atst" / task.name / "test.predicted-scores.json"
            cells[model] = task_scores(path, metrics) if path.is_file() else {}
        for metric in metrics:
            rows.append({"task": task.name, "metric": metric, **{m: cells[m].get(metric, "—") for m in MODELS}})
    rows.append({"task": S3PRL_ROW, "metric": "test acc",
                 **{m: s3prl_accuracy(out / "logs" / f"s3prl_{m}.log") or "—" for m in MODELS}})
    for kind, label in DOWNSTREAM_ROWS:
        cells = {m: downstream_score(out / "downstream" / m / kind / "results.json") for m in MODELS}
        task = next((c[0] for c in cells.values() if c), None)
        if task:
            rows.append({"task": f"{task} ({label})", "metric": next(c[1] for c in cells.values() if c),
                         **{m: cells[m][2] if cells[m] else "—" for m in MODELS}})
    sed = {m: sed_scores(out / "sed" / m / "results.json") for m in MODELS}
    task = next((c[0] for c in sed.values() if c), None)
    for key, label in SED_ROWS if task else ():
        rows.append({"task": f"{task} (atst-downstream sed)", "metric": label,
                     **{m: sed[m][1].get(key, "—") if sed[m] else "—" for m in MODELS}})
    for row in rows:
        row["winner"] = winner(row["metric"], row["pretrained"], row["random_init"])
    return rows


def markdown_table(rows: List[dict]) -> str:
    """The results table, the better score of a row in bold."""
    lines = ["| task | metric | pre-trained | random-init | better |", "|---|---|---|---|---|"]
    for r in rows:
        cells = {m: f"**{r[m]}**" if r["winner"] == m else r[m] for m in MODELS}
        direction = " (lower is better)" if lower_is_better(r["metric"]) else ""
        lines.append(f"| {r['task']} | {r['metric']}{direction} | {cells['pretrained']} | {cells['random_init']} | "
                     f"{WINNER_LABELS.get(r['winner'], '—')} |")
    return "\n".join(lines)


def is_generated_task(task: str) -> bool:
    """Whether a row's task (`synth_scene-v1-full`, `synth_timbre (atst-downstream linear)`) is a generated task."""
    return re.split(r"[-\s]", task, maxsplit=1)[0] in BUILDERS


def write_report(out: Path, timings: Dict[str, float], status: Dict[str, str]) -> str:
    """Write OUT/results.md, OUT/results.json and OUT/loss_curve.png; return the markdown table.

    `timings` are wall seconds per stage, `status` "ok" or "failed: why" per stage.
    """
    rows = result_rows(out)
    table = markdown_table(rows)
    wins = sorted({r["task"] for r in rows if is_generated_task(r["task"]) and r["winner"] == "pretrained"})
    curve = loss_curve(out)
    has_png = plot_loss(curve, out / "loss_curve.png")
    stage_lines = "".join(f"| {k} | {status.get(k, '?')} | {v:.1f} |\n" for k, v in timings.items())
    atomic_write_text(out / "results.md", (
        f"# hear-atst demo results\n\n{table}\n\n## Stages\n\n| stage | status | wall (s) |\n|---|---|---|\n"
        f"{stage_lines}\nPre-trained beats random init on: {', '.join(wins) or 'no generated task'} "
        "(bold: the better score of a row).\n"
        + ("\n![pre-training loss](loss_curve.png)\n" if has_png else "\n(no pre-training loss found for a curve)\n")))
    atomic_write_text(out / "results.json", json.dumps({
        "results": rows, "pretrained_wins_on": wins,
        "stages": {k: {"status": status.get(k), "wall_s": v} for k, v in timings.items()},
        "loss_curve": curve}, indent=2))
    return table


def score_value(cell: str) -> Optional[float]:
    """The leading number of a table cell (`"0.873"`, `"0.873 ± 0.020"`), or None for `"—"`."""
    match = re.match(r"\s*(-?\d+(?:\.\d+)?)", cell or "")
    return float(match.group(1)) if match else None


def lower_is_better(metric: str) -> bool:
    """Error rates and losses (`segment_1s_er`) improve downwards; accuracies, mAP and F-measures upwards."""
    return metric.endswith("_er") or "error" in metric or "loss" in metric


def winner(metric: str, pretrained: str, random_init: str) -> Optional[str]:
    """`"pretrained"`, `"random_init"`, `"tie"` (same printed score), or None when a score is missing."""
    a, b = score_value(pretrained), score_value(random_init)
    if a is None or b is None:
        return None
    if a == b:
        return "tie"
    return "pretrained" if (a < b) == lower_is_better(metric) else "random_init"


