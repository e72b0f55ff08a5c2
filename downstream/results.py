"""`DIR/results.json` and `DIR/results.md` of a downstream run, written atomically.

results.json holds at least `{"task", "metric", "valid": {metric: value}, "test": {metric: value}}`; a k-fold run
has the fold mean in `test`, the sample standard deviation of the fold test metrics in `test_std` and each fold
under `folds`. Other keys a run may add, which
results.md shows when present: `kind`, `selected`, `grid`, `distillation`, `settings`, `checkpoint`, `extraction`, `skipped`,
`wall_time_s`, `protocol_notes`, `model_file`. Non-finite numbers (a diverged learning rate) are written as null.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

from atst.fileio import atomic_write_text

REQUIRED = ("task", "metric", "valid", "test")


def _finite(value: Any) -> Any:
    """JSON-safe copy: NaN/Inf -> None, tuples -> lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _number(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}" if math.isfinite(value) else "n/a"
    return "n/a" if value is None else str(value)


def results_markdown(results: Mapping[str, Any]) -> str:
    """A short human summary of `results` (module docstring)."""
    metric = results["metric"]
    lines = [f"# {results.get('kind', 'downstream')} on {results['task']}", "",
             f"| split | {metric} |", "|---|---|",
             f"| valid | {_number(results['valid'].get(metric))} |"]
    test = _number(results["test"].get(metric))
    if "test_std" in results:
        test += f" ± {_number(results['test_std'])} (mean ± std over {len(results.get('folds', []))} folds)"
    lines += [f"| test | {test} |", ""]
    if "selected" in results:
        selected = results["selected"]
        lines += ["Selected on validation: " + ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                                                     for k, v in selected.items()), ""]
    if results.get("folds"):
        lines += ["## Folds", "", "| fold | train / valid / test clips | lr | epoch | valid | test | note |",
                  "|---|---|---|---|---|---|---|"]
        for fold in results["folds"]:
            sizes = fold.get("sizes", {})
            lines.append(f"| {fold['fold']} | {sizes.get('train')} / {sizes.get('valid')} / {sizes.get('test')} | "
                         f"{fold.get('lr'):g} | {fold.get('epoch')} | {_number(fold.get('valid'))} | "
                         f"{_number(fold.get('test'))} | {fold.get('note', '')} |")
        lines.append("")
    if results.get("grid"):
        lines += ["## Learning-rate grid (best-validation epoch of each LR; means over folds)", "",
                  "| lr | effective lr | valid | test | best epochs |", "|---|---|---|---|---|"]
        for row in results["grid"]:
            test = _number(row.get("test")) + (f" ± {_number(row['test_std'])}" if "test_std" in row else "")
            epochs = ", ".join(str(f.get("best_epoch")) for f in row.get("folds", []))
            lines.append(f"| {row['lr']:g} | {row['effective_lr']:g} | "
                         f"{_number(row.get('valid'))} | {test} | {epochs} |")
        lines.append("")
    if results.get("checkpoint"):
        ckpt = results["checkpoint"]
        lines += [f"Checkpoint: `{ckpt.get('path')}` (sha256 {str(ckpt.get('sha256', ''))[:16]}..., "
                  f"{ckpt.get('family')}, {ckpt.get('branch')})", ""]
    if results.get("distillation"):
        lines += ["## Distillation", ""] + [f"- {k}: {_number(v) if isinstance(v, float) else v}"
                                            for k, v in results["distillation"].items()] + [""]
    if results.get("settings"):
        lines += ["## Settings", ""] + [f"- {k}: {v}" for k, v in results["settings"].items()] + [""]
    if results.get("extraction"):
        ext = results["extraction"]
        lines += [f"Embeddings: {ext.get('embedded')} clips embedded, {ext.get('reused')} reused from the cache, "
                  f"{ext.get('skipped')} skipped, {_number(ext.get('seconds'), 1)} s", ""]
    if results.get("skipped"):
        lines += [f"Skipped clips: {len(results['skipped'])} (each named in results.json)", ""]
    if "wall_time_s" in results:
        lines += [f"Wall time: {_number(results['wall_time_s'], 1)} s", ""]
    if results.get("protocol_notes"):
        lines += ["## Notes", ""] + [f"- {note}" for note in results["protocol_notes"]] + [""]
    return "\n".join(lines).rstrip("\n") + "\n"


def summary_line(results: Mapping[str, Any], out_dir: Union[str, Path], detail: str = "") -> str:
    """`TASK: test METRIC 0.9123 [± std], valid 0.9001 DETAIL; wrote OUT/results.json and best.ckpt`."""
    metric = results["metric"]
    test = f"{results['test'][metric]:.4f}" + (f" ± {results['test_std']:.4f}" if "test_std" in results else "")
    return (f"{results['task']}: test {metric} {test}, valid {results['valid'][metric]:.4f}{detail}; wrote "
            f"{Path(out_dir) / 'results.json'} and best.ckpt")


EXIT_OK, EXIT_SKIPPED = 0, 1


def report_skipped(skipped: Sequence[str], what: str) -> int:
    """Name each skipped input once on stderr (`skipped: ...`), then how many and `what` became of the others
    ("clip(s) skipped; the others were used"); returns the exit status: 1 when any was skipped, else 0."""
    for line in skipped:
        print(f"skipped: {line}", file=sys.stderr)
    if skipped:
        print(f"{len(skipped)} {what}", file=sys.stderr)
        return EXIT_SKIPPED
    return EXIT_OK


def print_outcome(results: Mapping[str, Any], out_dir: Union[str, Path], detail: str = "") -> int:
    """Print `summary_line` (stdout) and each skipped clip (stderr); returns the exit status (1: clips skipped)."""
    print(summary_line(results, out_dir, detail))
    return report_skipped(results["skipped"], "clip(s) skipped; the others were used")


def write_results(out_dir: Union[str, Path], results: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write `out_dir/results.json` and `out_dir/results.md`; returns both paths."""
    missing = [key for key in REQUIRED if key not in results]
    if missing:
        raise ValueError(f"results need the keys {list(REQUIRED)}; missing {missing}")
    out_dir = Path(out_dir)
    clean = _finite(dict(results))
    json_path = atomic_write_text(out_dir / "results.json", json.dumps(clean, indent=2) + "\n")
    md_path = atomic_write_text(out_dir / "results.md", results_markdown(results))
    return json_path, md_path


__all__ = ["EXIT_OK", "EXIT_SKIPPED", "print_outcome", "report_skipped", "results_markdown", "summary_line",
           "write_results"]
