"""Downstream throughput. Linear evaluation (default): a 3-LR grid on cached embeddings against the official way
(one extraction per LR). Fine-tuning (`--finetune`): training samples per second.

    python benchmarks/downstream_throughput.py                       # small arch, the `small` synth_scene task
    python benchmarks/downstream_throughput.py --size full --arch base --device cuda --json out.json
    python benchmarks/downstream_throughput.py --finetune            # tiny and small on CPU (+ small, base bf16 on GPU)
    python benchmarks/downstream_throughput.py --finetune --archs small --ft-batch 8 --seconds 10 --steps 5

Runs, in one process, on a generated HEAR task and a random-weight checkpoint in the official layout:

1. official way: `atst-downstream linear` once per LR, each with an empty cache, so every run extracts every clip
   again (the official scripts keep embeddings in RAM for one process, one LR);
2. ours, cold: one run with the whole LR grid (one extraction into the cache, then the heads);
3. ours, warm: the same grid again (the cache is hit: no extraction).

An untimed warm-up run comes first, so one-time import costs fall in no row.
Prints each run's wall time and extraction time, and the ratio official / ours. No assertions; timings on a shared
machine are noisy (see benchmarks/README.md).

`--finetune` times what one fine-tuning step of `atst-downstream finetune` does, on a random-weight checkpoint in the
official layout: the official read-out of a batch of centre-cropped `--seconds` mels (ATST-Frame, 1 block), the head,
BCE, backward, gradient clipping at 3 and SGD over the layer-wise decay groups with the per-step LR (DropPath 0.1
active), after one untimed step (`step`: the training step; samples/s = batch / step). Separately, `loader` is what
one data-loader worker delivers per second of the same clips: decoding a WAV, the log-mel, mixup and RandomResizeCrop
(the official training transform). A run trains at about min(step rate, workers x loader rate).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from _timing import seconds_per_step
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


def finetune_step_rate(arch: str, device: str, batch: int, seconds: float, steps: int, bf16: bool) -> dict:
    """Samples/s of the fine-tuning training step (see the module docstring)."""
    import torch

    from atst import load_checkpoint
    from atst.training.optim import set_learning_rate
    from downstream.finetune.evaluate import autocast, clip_loss
    from downstream.finetune.model import FinetuneModel
    from downstream.finetune.module import MOMENTUM, optimizer_groups
    from downstream.finetune.schedule import FinetuneSchedule

    with tempfile.TemporaryDirectory() as tmp:
        loaded = load_checkpoint(write_official_checkpoint(Path(tmp) / "model.ckpt", arch=arch))
    torch.manual_seed(0)
    model = FinetuneModel.from_checkpoint(loaded, "official", 1, num_labels=527).to(device).train()
    optimizer = torch.optim.SGD(optimizer_groups(model, 0.75), lr=1.0, momentum=MOMENTUM, weight_decay=0.0)
    schedule = FinetuneSchedule.build(2.0, 10, 1, 100, 100, "exact")
    frames = int(seconds * 100) + 1
    mel = torch.rand(batch, 64, frames, device=device)
    lengths = torch.full((batch,), frames)
    targets = (torch.rand(batch, 527, device=device) < 0.01).float()
    precision = "bf16-mixed" if bf16 else "32-true"

    def one_step(step: int) -> None:
        set_learning_rate(optimizer, schedule.lr(step))
        with autocast(precision, torch.device(device)):
            loss = clip_loss(model(mel, lengths), targets, bce=True)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 3.0)
        optimizer.step()

    step_s = seconds_per_step(one_step, steps, device)
    return {"arch": arch, "device": device, "precision": precision, "batch": batch, "seconds": seconds,
            "step_s": step_s, "samples_per_s": batch / step_s}


def finetune_loader_rate(seconds: float, clips: int = 24) -> float:
    """Clips per second one data-loader worker delivers: decode, log-mel, mixup, RandomResizeCrop."""
    import numpy as np

    from atst.audio_io import write_wav
    from atst.frontend import FrontendConfig, LogMelFrontend
    from downstream.datasets import Clip, LabelSpace
    from downstream.finetune.augment import MixupSpecLabel, RandomResizeCrop, TrainAugment
    from downstream.finetune.data import ClipMels, MelClipDataset

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        waves = [0.1 * rng.standard_normal(int(seconds * 16000)) for _ in range(clips)]
        items = [Clip(f"{i}.wav", str(write_wav(Path(tmp) / f"{i}.wav", wave)), (i % 10,))
                 for i, wave in enumerate(waves)]
        labels = LabelSpace(tuple(str(c) for c in range(10)), multi_label=False)
        augment = TrainAugment(MixupSpecLabel(10.0, 5000), RandomResizeCrop())
        dataset = MelClipDataset(items, labels, ClipMels(LogMelFrontend(FrontendConfig()), 4, "official", "frame"),
                                 one_hot=True, augment=augment)
        dataset[0]
        start = time.perf_counter()
        for index in range(clips):
            dataset[index]
        return clips / (time.perf_counter() - start)


def finetune_main(args: argparse.Namespace) -> None:
    import torch

    runs = [("cpu", arch, args.ft_batch or 4, False) for arch in (args.archs or ["tiny", "small"])]
    if torch.cuda.is_available():
        runs += [("cuda", arch, args.ft_batch or 64, True) for arch in (args.archs or ["small", "base"])]
    print(f"fine-tuning step, official read-out of {args.seconds:g} s clips, torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads, {args.steps} timed steps, load average {os.getloadavg()[0]:.1f}")
    print("| arch | device | precision | batch | step (s) | samples/s |")
    print("|---|---|---|---|---|---|")
    rows = []
    for device, arch, batch, bf16 in runs:
        row = finetune_step_rate(arch, device, batch, args.seconds, args.steps, bf16)
        rows.append(row)
        print(f"| {arch} | {device} | {row['precision']} | {batch} | {row['step_s']:.3f} | "
              f"{row['samples_per_s']:.2f} |")
    loader = finetune_loader_rate(args.seconds)
    print(f"loader: {loader:.1f} clips/s per worker (decode + log-mel + mixup + RandomResizeCrop, {args.seconds:g} s)")
    if args.json:
        atomic_write_text(args.json, json.dumps({"settings": vars(args), "steps": rows, "loader_clips_per_s": loader},
                                                indent=2))


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
    parser.add_argument("--finetune", action="store_true", help="time fine-tuning instead of linear evaluation")
    parser.add_argument("--archs", nargs="+", default=None, help="--finetune: archs (default tiny small on CPU)")
    parser.add_argument("--ft-batch", type=int, default=None, help="--finetune: batch (CPU 4, GPU 64)")
    parser.add_argument("--seconds", type=float, default=10.0, help="--finetune: clip length (AudioSet: 10)")
    parser.add_argument("--steps", type=int, default=3, help="--finetune: timed steps")
    args = parser.parse_args()
    if args.finetune:
        finetune_main(args)
        return
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
