"""Distillation against plain fine-tuning of the same student, on a generated task, in one process.

    python benchmarks/distill_vs_finetune.py                          # tiny fixtures, synth_scene `full`
    python benchmarks/distill_vs_finetune.py --size small --epochs 5 --json out.json
    python benchmarks/distill_vs_finetune.py --steps-only --archs tiny small --batch 8 --seconds 2

1. teacher: `atst-downstream finetune` of the ATST-Clip checkpoint (--clip) on the task;
2. baseline: `atst-downstream finetune` of the ATST-Frame checkpoint (--frame), the same settings and seed;
3. distill: `atst-downstream distill` of the same student towards the teacher, the same settings and seed
   (--distill-weight, default the command's: 0.5 on a generated task).

Prints each run's valid / test metric, the top-1 agreement of each student with the teacher on the test clips
(from the model files, through `downstream.predict.Predictor`), and the training speed (median optimizer steps per
second from the runs' CSV logs) with the ratio distill / finetune. Whole runs on a shared machine see its load
change between them; `--steps-only` times the two training steps alone, interleaved round by round in one process
(random-weight checkpoints of `--archs` in the official layout, `--batch` mels of `--seconds`, official read-outs):
finetune = student forward, loss, backward, clipping, SGD; distill = the same plus the teacher's forward (ATST-Clip
of the same arch, no_grad) and the two-term loss. Settings default to the demo's fine-tuning
(lr 1.0 per 256 clips, batch 16, warm-up 1 epoch); `--protocol` official (the C2F read-outs: ATST-Clip 6 s chunks
CLS + mean, ATST-Frame 1001-frame chunks). No assertions; timings on a shared machine are noisy.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from atst.fileio import atomic_write_text
from atst.synthetic import make_tasks

FIXTURES = Path(os.environ.get("ATST_FIXTURES", Path(__file__).resolve().parents[2] / "shared" / "fixtures"))


def steps_per_second(folder: Path, global_batch: int) -> float:
    """Median training steps per second of a run folder's CSV log (samples_per_sec / global batch)."""
    rates = []
    for path in sorted((folder / "csv_logs").glob("version_*/metrics.csv")):
        with open(path, newline="") as handle:
            rates += [float(row["samples_per_sec"]) for row in csv.DictReader(handle) if row.get("samples_per_sec")]
    return statistics.median(rates) / global_batch if rates else float("nan")


def test_agreement(teacher: Path, student: Path, clips: list) -> float:
    """Top-1 agreement of two model files on `clips` (paths of 16 kHz WAVs)."""
    from atst.audio_io import load_mono_16k
    from downstream.predict import Predictor

    waves = [load_mono_16k(path) for path in clips]
    teach = Predictor.load(teacher).recording_probabilities(waves)[0].argmax(-1)
    learn = Predictor.load(student).recording_probabilities(waves)[0].argmax(-1)
    return float((teach == learn).float().mean()) if len(waves) else float("nan")


def step_rates(arch: str, batch: int, seconds: float, rounds: int, classes: int = 10) -> dict:
    """Median seconds per training step of finetune and distill, the two interleaved (module docstring)."""
    import torch

    from atst import load_checkpoint
    from atst.synthetic import write_official_checkpoint
    from downstream.distill.loss import distillation_loss
    from downstream.distill.teacher import FrozenTeacher
    from downstream.finetune.evaluate import clip_loss
    from downstream.finetune.model import FinetuneModel
    from downstream.finetune.module import MOMENTUM, optimizer_groups

    with tempfile.TemporaryDirectory() as tmp:
        frame = load_checkpoint(write_official_checkpoint(Path(tmp) / "f.ckpt", arch=arch))
        clip = load_checkpoint(write_official_checkpoint(Path(tmp) / "c.ckpt", arch=arch, family="clip"))
    torch.manual_seed(0)
    student = FinetuneModel.from_checkpoint(frame, "official", 1, classes).train()
    teacher = FrozenTeacher(FinetuneModel.from_checkpoint(clip, "official", 1, classes))
    optimizer = torch.optim.SGD(optimizer_groups(student, 0.75), lr=0.01, momentum=MOMENTUM, weight_decay=0.0)
    frames = int(seconds * 100) + 1
    mel, lengths = torch.rand(batch, 64, frames), torch.full((batch,), frames)
    targets = torch.nn.functional.one_hot(torch.arange(batch) % classes, classes).float()

    def step(distill: bool) -> float:
        start = time.perf_counter()
        logits = student(mel, lengths)
        loss = distillation_loss(logits, teacher(mel, lengths), targets, True, 0.5)[0] if distill else \
            clip_loss(logits, targets, True)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 3.0)
        optimizer.step()
        return time.perf_counter() - start

    step(False), step(True)  # untimed warm-up
    times: dict[str, list] = {"finetune": [], "distill": []}
    for index in range(rounds):
        order = (False, True) if index % 2 == 0 else (True, False)
        for distill in order:
            times["distill" if distill else "finetune"].append(step(distill))
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {"arch": arch, "batch": batch, "seconds": seconds, "rounds": rounds,
            **{f"{name}_steps_per_s": 1 / value for name, value in medians.items()},
            "ratio_distill_over_finetune": medians["finetune"] / medians["distill"]}


def steps_main(args: argparse.Namespace) -> None:
    import torch

    print(f"training step, official read-outs, {args.batch} mels of {args.seconds:g} s, {torch.get_num_threads()} "
          f"CPU threads, {args.rounds} interleaved rounds, load average {os.getloadavg()[0]:.1f}")
    print("| arch | finetune steps/s | distill steps/s | distill / finetune |")
    print("|---|---|---|---|")
    rows = []
    for arch in args.archs:
        row = step_rates(arch, args.batch, args.seconds, args.rounds)
        rows.append(row)
        print(f"| {arch} | {row['finetune_steps_per_s']:.3f} | {row['distill_steps_per_s']:.3f} | "
              f"{row['ratio_distill_over_finetune']:.2f} |")
    if args.json:
        atomic_write_text(args.json, json.dumps({"settings": vars(args), "steps": rows}, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", default=str(FIXTURES / "atstclip_tiny.ckpt"), help="the teacher's encoder")
    parser.add_argument("--frame", default=str(FIXTURES / "atstframe_tiny.ckpt"), help="the student's encoder")
    parser.add_argument("--task", default="synth_scene")
    parser.add_argument("--size", default="full", help="generated task size: tiny, small, full")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--teacher-epochs", type=int, default=None, help="default: --epochs")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1.0)
    parser.add_argument("--protocol", default="official")
    parser.add_argument("--distill-weight", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=None, help="default: a temporary folder")
    parser.add_argument("--json", default=None)
    parser.add_argument("--steps-only", action="store_true", help="time the two training steps only")
    parser.add_argument("--archs", nargs="+", default=["tiny", "small"], help="--steps-only: encoder sizes")
    parser.add_argument("--seconds", type=float, default=2.0, help="--steps-only: clip length")
    parser.add_argument("--rounds", type=int, default=10, help="--steps-only: interleaved rounds")
    args = parser.parse_args()
    if args.steps_only:
        steps_main(args)
        return

    from downstream.cli import main as cli
    from downstream.datasets import load_task

    work = Path(args.workdir or tempfile.mkdtemp(prefix="distill_bench_"))
    task = make_tasks(work / "tasks", size=args.size, seed=5, tasks=[args.task])[0]
    common = ["--task", str(task), "--protocol", args.protocol, "--warmup_epochs", "1", "--batch_size_per_gpu",
              str(args.batch), "--learning_rate", str(args.lr), "--seed", str(args.seed), "--num_workers", "0",
              "--accelerator", "cpu", "--progress", "false", "--progress_every", "0"]
    epochs = ["--max_epochs", str(args.epochs)]
    runs = {
        "teacher": ["finetune", "--ckpt", args.clip, "--max_epochs", str(args.teacher_epochs or args.epochs)],
        "finetune": ["finetune", "--ckpt", args.frame, *epochs],
        "distill": ["distill", "--teacher", str(work / "teacher"), "--ckpt", args.frame, *epochs]
                   + (["--distill-weight", str(args.distill_weight)] if args.distill_weight is not None else []),
    }
    report: dict = {"task": str(task), "settings": vars(args)}
    for name, command in runs.items():
        start = time.perf_counter()
        status = cli([*command, *common, "--out", str(work / name)])
        if status not in (0, 1):
            raise SystemExit(f"{name} failed with exit status {status}")
        results = json.loads((work / name / "results.json").read_text())
        metric = results["metric"]
        report[name] = {"valid": results["valid"][metric], "test": results["test"][metric],
                        "wall_s": round(time.perf_counter() - start, 1),
                        "steps_per_s": steps_per_second(work / name, results["hyper_parameters"]["global_batch"])}
        if name == "distill":
            report[name]["initial_valid_agreement"] = results["distillation"]["valid_agreement"]["before"]
    test_clips = [clip.path for clip in load_task(str(task)).fold(0, args.protocol).test]
    for name in ("finetune", "distill"):
        report[name]["test_agreement_with_teacher"] = test_agreement(work / "teacher", work / name, test_clips)
    report["ratio_steps_per_s_distill_over_finetune"] = report["distill"]["steps_per_s"] / \
        report["finetune"]["steps_per_s"]
    print(f"task {task.name} ({args.size}), {args.protocol} read-outs, {args.epochs} epochs, batch {args.batch}, "
          f"lr {args.lr:g}, seed {args.seed}")
    print(f"{'run':10s} {'valid':>7s} {'test':>7s} {'agree':>7s} {'steps/s':>8s} {'wall s':>7s}")
    for name in runs:
        row = report[name]
        agree = row.get("test_agreement_with_teacher", float("nan"))
        print(f"{name:10s} {row['valid']:7.4f} {row['test']:7.4f} {agree:7.4f} {row['steps_per_s']:8.2f} "
              f"{row['wall_s']:7.1f}")
    print(f"distill / finetune steps per second: {report['ratio_steps_per_s_distill_over_finetune']:.2f}")
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
