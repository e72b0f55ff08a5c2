"""Linear evaluation: a 3-LR grid on cached embeddings against the official way (one extraction per LR).

    python benchmarks/downstream_throughput.py                       # small arch, the `small` synth_scene task
    python benchmarks/downstream_throughput.py --size full --arch base --device cuda --json out.json

Runs, in one process, on a generated HEAR task and a random-weight checkpoint in the official layout:

1. official way: `atst-downstream linear` once per LR, each with an empty cache, so every run extracts every clip
   again (the official scripts keep embeddings in RAM for one process, one LR);
2. ours, cold: one run with the whole LR grid (one extraction into the cache, then the heads);
3. ours, warm: the same grid again (the cache is hit: no extraction).

An untimed warm-up run comes first, so one-time import costs fall in no row.
Prints each run's wall time and extraction time, and the ratio official / ours. No assertions; timings on a shared
machine are noisy (see benchmarks/README.md).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from atst.fileio import atomic_write_text
from atst.synthetic import make_tasks, write_official_checkpoint
from downstream.linear.run import LinearConfig, run_linear


def timed_run(config: LinearConfig) -> dict:
    start = time.perf_counter()
    outcome = run_linear(config)
    extraction = outcome.extraction
    return {"seconds": time.perf_counter() - start, "extraction_seconds": extraction.seconds,
            "embedded": extraction.embedded, "reused": extraction.reused,
            "test": outcome.results["test"][outcome.results["metric"]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="small", choices=["tiny", "small", "base"])
    parser.add_argument("--family", default="frame", choices=["frame", "clip"])
    parser.add_argument("--size", default="small", choices=["tiny", "small", "full"], help="synth_scene size")
    parser.add_argument("--lrs", default="2e-3,2e-2,2e-1")
    parser.add_argument("--max-epochs", type=int, default=100)
    parser.add_argument("--protocol", default="official", choices=["official", "hear"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args()
    lrs = [float(x) for x in args.lrs.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        task = make_tasks(root / "tasks", size=args.size, seed=0, tasks=["synth_scene"])[0]
        ckpt = write_official_checkpoint(root / "model.ckpt", arch=args.arch, family=args.family)
        common = dict(ckpt=str(ckpt), task=str(task), protocol=args.protocol, max_epochs=args.max_epochs,
                      device=args.device, num_workers=args.num_workers)
        # untimed warm-up: one-time import and initialisation costs (optimiser, plotting) count in no row
        run_linear(LinearConfig(out=str(root / "warmup"), lrs=lrs[:1], cache=str(root / "warmup_cache"),
                                **{**common, "max_epochs": 1}))
        official = [timed_run(LinearConfig(out=str(root / f"official_{i}"), lrs=[lr], cache=str(root / f"c{i}"),
                                           **common)) for i, lr in enumerate(lrs)]
        cold = timed_run(LinearConfig(out=str(root / "ours_cold"), lrs=lrs, cache=str(root / "shared"), **common))
        warm = timed_run(LinearConfig(out=str(root / "ours_warm"), lrs=lrs, cache=str(root / "shared"), **common))

    clips = official[0]["embedded"]
    official_total = sum(run["seconds"] for run in official)
    print(f"task synth_scene ({args.size}, {clips} clips), ATST-{args.family.capitalize()} {args.arch}, "
          f"{args.protocol} read-out, {len(lrs)} LRs x {args.max_epochs} epochs, device {args.device}, "
          f"load average {os.getloadavg()[0]:.1f}")
    for lr, run in zip(lrs, official):
        print(f"  official way, lr {lr:g}: {run['seconds']:7.1f} s (extraction {run['extraction_seconds']:.1f} s, "
              f"{run['embedded']} clips embedded)")
    print(f"  official way, total:  {official_total:7.1f} s ({len(lrs)} extractions)")
    for name, run in (("ours, cold cache", cold), ("ours, warm cache", warm)):
        print(f"  {name}:     {run['seconds']:7.1f} s (extraction {run['extraction_seconds']:.1f} s, "
              f"{run['embedded']} embedded, {run['reused']} reused)  ratio official / ours: "
              f"{official_total / run['seconds']:.2f}x")
    if args.json:
        atomic_write_text(args.json, json.dumps({"settings": vars(args), "clips": clips, "official": official,
                                               "cold": cold, "warm": warm}, indent=2))


if __name__ == "__main__":
    main()
