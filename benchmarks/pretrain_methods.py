"""ATST-Clip vs ATST-Frame pre-training throughput: samples/s of each method's training step and of its sample
maker, same arch, same batch, one process, and the ratio clip / frame.

The step is what `pretrain.module` does per batch: the method's teacher + student forward on a collated batch of
its own samples, backward, AdamW (official groups), EMA update. The samples come from the method's sample maker
(`--method frame`: one 10 s crop, two views, block masks; `--method clip`: two crops of `--train_len` and 6 s,
Mixup and RandomResizeCrop on both) fed with noise, so the shapes are the recipes' own. "maker" is the CPU cost of
building one sample in a data-loader worker (front end and augmentations), timed separately.

    python benchmarks/pretrain_methods.py [--arch tiny] [--batch 4] [--steps 3] [--train_len 6] [--device cpu]
"""
from __future__ import annotations

import argparse
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


def bench(method_name: str, arch: str, batch: int, steps: int, train_len: float, device: str) -> dict:
    torch.manual_seed(0)
    method = get_method(method_name)
    hp = method_hp(method_name, arch, batch, train_len)
    maker = method.sample_maker(hp)
    samples = int(round(maker.crop_seconds * 16000))
    waves = [torch.randn(samples) * 0.1 for _ in range(batch)]
    for wave in waves[:2]:  # fill the Mixup banks so the timed samples are mixed
        maker(wave, samples)
    start = time.perf_counter()
    batch_samples = [maker(wave, samples) for wave in waves]
    maker_s = (time.perf_counter() - start) / batch
    collated = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in collate(batch_samples).items()}
    model = method.build_model(hp).to(device).train()
    optimizer = official_adamw(model.student, lr=1e-4, weight_decay=weight_decay(0, 1000))

    def one_step(step: int) -> None:
        loss = model.step(collated).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        model.update_teacher(ema_momentum(step, hp["ema"], 1000))

    step_s = seconds_per_step(one_step, steps, device)
    return dict(method=method_name, views=method.describe(hp), step_s=step_s, step_sps=batch / step_s,
                maker_sps=1.0 / maker_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="tiny")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--train_len", type=float, default=6.0, help="ATST-Clip view 1 seconds (small recipe: 9)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, arch {args.arch}, batch {args.batch}, "
          f"{args.steps} timed steps, device {args.device}, 1 process")
    print("| method | samples | step (s) | step samples/s | sample maker samples/s (1 worker) |")
    print("|---|---|---|---|---|")
    results = {}
    for name in ("frame", "clip"):
        r = results[name] = bench(name, args.arch, args.batch, args.steps, args.train_len, args.device)
        print(f"| {name} | {r['views']} | {r['step_s']:.3f} | {r['step_sps']:.2f} | {r['maker_sps']:.1f} |")
    print(f"ratio clip / frame: step samples/s x{results['clip']['step_sps'] / results['frame']['step_sps']:.2f}, "
          f"sample maker x{results['clip']['maker_sps'] / results['frame']['maker_sps']:.2f}")


if __name__ == "__main__":
    main()
