"""ATST-Clip vs ATST-Frame pre-training throughput: samples/s of each method's training step and of its sample
maker, same arch, same batch, one process, and the ratio clip / frame.

The step is what `pretrain.module` does per batch: the method's teacher + student forward on a collated batch of
its own samples, backward, AdamW (official groups), EMA update. The samples come from the method's sample maker
(`--method frame`: one 10 s crop, two views, block masks; `--method clip`: two crops of `--train_len` and 6 s,
Mixup and RandomResizeCrop on both) fed with noise, so the shapes are the recipes' own. "maker" is the CPU cost of
building one sample in a data-loader worker (front end and augmentations), timed separately.

    python benchmarks/pretrain_methods.py [--arch tiny] [--batch 4] [--steps 2] [--rounds 3] [--train_len 6] [--device cpu]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from _timing import seconds_per_step
from atst.training.corpus_datasets import collate
from atst.training.optim import official_adamw
from atst.training.schedules import ema_momentum, weight_decay
from pretrain.cli import build_parser, check_args, hyper_parameters
from pretrain.methods import get_method


def method_hp(method: str, arch: str, batch: int, train_len: float) -> dict:
    flags = ["--method", method, "--arch", arch, "--data_path", "x", "--save_path", "/tmp/unused",
             "--batch_size_per_gpu", str(batch), "--nproc", "1", "--accelerator", "cpu"]
    if method == "clip":
        flags += ["--train_len", str(train_len)]
    args = build_parser(method).parse_args(flags)
    return hyper_parameters(args, check_args(args))


class MethodBench:
    """One method's model, optimizer and a collated batch of its own samples; `maker_seconds` and `step_seconds`
    time one round each."""

    def __init__(self, method_name: str, arch: str, batch: int, train_len: float, device: str) -> None:
        torch.manual_seed(0)
        method = get_method(method_name)
        self.hp = method_hp(method_name, arch, batch, train_len)
        self.name, self.views, self.batch, self.device = method_name, method.describe(self.hp), batch, device
        self.maker = method.sample_maker(self.hp)
        samples = int(round(self.maker.crop_seconds * 16000))
        self.waves = [(torch.randn(samples) * 0.1, samples) for _ in range(batch)]
        for wave, valid in self.waves[:2]:  # fill the Mixup banks so the timed samples are mixed
            self.maker(wave, valid)
        collated = collate([self.maker(wave, valid) for wave, valid in self.waves])
        self.collated = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in collated.items()}
        self.model = method.build_model(self.hp).to(device).train()
        self.optimizer = official_adamw(self.model.student, lr=1e-4, weight_decay=weight_decay(0, 1000))

    def maker_seconds(self) -> float:
        """Seconds per sample built by the sample maker."""
        start = time.perf_counter()
        for wave, valid in self.waves:
            self.maker(wave, valid)
        return (time.perf_counter() - start) / self.batch

    def one_step(self, step: int) -> None:
        loss = self.model.step(self.collated).loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.model.update_teacher(ema_momentum(step, self.hp["ema"], 1000))

    def step_seconds(self, steps: int) -> float:
        return seconds_per_step(self.one_step, steps, self.device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="tiny")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--train_len", type=float, default=6.0, help="ATST-Clip view 1 seconds (small recipe: 9)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, arch {args.arch}, batch {args.batch}, "
          f"{args.steps} timed steps, device {args.device}, 1 process")
    benches = [MethodBench(name, args.arch, args.batch, args.train_len, args.device) for name in ("frame", "clip")]
    steps: dict[str, list[float]] = {b.name: [] for b in benches}
    makers: dict[str, list[float]] = {b.name: [] for b in benches}
    for _ in range(args.rounds):  # round-robin, so background load hits both methods alike
        for b in benches:
            steps[b.name].append(b.step_seconds(args.steps))
            makers[b.name].append(b.maker_seconds())
    print(f"{args.rounds} rounds; median (best) over rounds")
    print("| method | samples | step (s) | step samples/s | sample maker samples/s (1 worker) |")
    print("|---|---|---|---|---|")
    rate = {}
    for b in benches:
        step, maker = statistics.median(steps[b.name]), statistics.median(makers[b.name])
        rate[b.name] = (args.batch / step, 1.0 / maker)
        print(f"| {b.name} | {b.views} | {step:.3f} ({min(steps[b.name]):.3f}) | {args.batch / step:.2f} "
              f"({args.batch / min(steps[b.name]):.2f}) | {1.0 / maker:.1f} ({1.0 / min(makers[b.name]):.1f}) |")
    print(f"ratio clip / frame (medians): step samples/s x{rate['clip'][0] / rate['frame'][0]:.2f}, "
          f"sample maker x{rate['clip'][1] / rate['frame'][1]:.2f}")


if __name__ == "__main__":
    main()
