"""Sound event detection throughput: `atst-downstream sed` training steps per second and `detect`'s real-time factor.

    python benchmarks/sed_throughput.py                              # tiny and small on CPU, batch 4 + 4, 95 s detect
    python benchmarks/sed_throughput.py --archs small --batch 8 --device cuda --json out.json

Runs in one process on random-weight checkpoints in the official layout (speed does not depend on the weights):

1. `train`: one optimizer step as `sed` takes it: a batch of `--batch` strong + `--batch` weak 10 s windows through
   the front end, the encoder and both heads, BCE on each half (`SedModule.losses`), backward, gradient clipping at 3
   and SGD, after one untimed step. Two rows per arch: `last_block` (the desed-official recipe: only the last block
   and the final norm train) and `all` (as-strong-official: full fine-tuning over the 15 layer-decay groups); the
   ratio all / last_block is the same-run baseline.
2. `detect`: the strong scores of one `--detect-seconds` recording in contiguous 10 s windows
   (`Detector.scores`), real-time factor = wall seconds / audio seconds; baseline: the encoder alone reading the
   same recording out through `atst.backbone.Backbone.last_blocks` (what `atst` embeddings cost), ratio detect /
   encoder.

No assertions; timings on a shared machine are noisy (see benchmarks/README.md).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from _timing import seconds_per_step
from atst import load_checkpoint
from atst.fileio import atomic_write_text
from atst.synthetic import write_official_checkpoint


def train_rates(ckpt: Path, batch: int, steps: int, device: str) -> dict:
    from atst.training.optim import set_learning_rate
    from downstream.finetune.schedule import FinetuneSchedule
    from downstream.sed.model import SedModel
    from downstream.sed.module import SedModule
    from downstream.sed.recipe import build_optimizer, resolve_recipe

    loaded = load_checkpoint(str(ckpt))
    rows = {}
    for recipe_name in ("desed-official", "as-strong-official"):
        recipe = resolve_recipe(recipe_name, strong_batch=batch, weak_batch=batch)
        model = SedModel.from_checkpoint(loaded, 10, recipe.scope).to(device)
        module = SedModule(model, {}, FinetuneSchedule.build(0.1, 2, 1, 10, 10, "official"), 10, recipe, [])
        optimizer = build_optimizer(model, recipe)
        generator = torch.Generator().manual_seed(0)
        data = {"audio": (torch.randn(2 * batch, 160000, generator=generator) * 0.1).to(device),
                "strong": (torch.rand(2 * batch, 250, 10, generator=generator) > 0.9).float(),
                "weak": (torch.rand(2 * batch, 10, generator=generator) > 0.7).float(),
                "role": torch.tensor([0] * batch + [1] * batch)}

        def one_step(step: int) -> None:
            set_learning_rate(optimizer, 0.01)
            optimizer.zero_grad(set_to_none=True)
            module.losses(data)["loss"].backward()
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 3.0)
            optimizer.step()

        seconds = seconds_per_step(one_step, steps, device)
        rows[recipe.scope] = {"seconds_per_step": seconds, "steps_per_s": 1.0 / seconds,
                              "clips_per_s": 2 * batch / seconds}
    rows["ratio_all_over_last_block"] = rows["all"]["seconds_per_step"] / rows["last_block"]["seconds_per_step"]
    return rows


def detect_rate(ckpt: Path, seconds: float, device: str, repeats: int) -> dict:
    from downstream.sed.detect import Detector
    from downstream.sed.model import SedModel

    loaded = load_checkpoint(str(ckpt))
    model = SedModel(loaded.encoder, loaded.frontend_config, 10, "all").requires_grad_(False).eval().to(device)
    detector = Detector(model, [str(i) for i in range(10)], [0.5] * 10, [7] * 10, 0.04, ckpt, {})
    wave = torch.randn(int(seconds * 16000), generator=torch.Generator().manual_seed(0)) * 0.1

    def best(run) -> float:
        run()  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        return min(times)

    with torch.inference_mode():
        ours = best(lambda: detector.detect(wave))
        encoder = best(lambda: model.backbone.last_blocks(wave[None].to(device), n_blocks=1))
    return {"audio_seconds": seconds, "detect_seconds": ours, "real_time_factor": ours / seconds,
            "encoder_seconds": encoder, "ratio_detect_over_encoder": ours / encoder}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="+", default=["tiny", "small"])
    parser.add_argument("--batch", type=int, default=4, help="strong and weak windows per step (each)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--detect-seconds", type=float, default=95.0)
    parser.add_argument("--detect-arch", default="small")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    report: dict = {"device": args.device, "threads": torch.get_num_threads(), "batch": f"{args.batch} + {args.batch}"}
    with tempfile.TemporaryDirectory() as folder:
        for arch in args.archs:
            ckpt = write_official_checkpoint(Path(folder) / f"{arch}.ckpt", arch=arch, seed=0)
            rows = train_rates(ckpt, args.batch, args.steps, args.device)
            report[f"train_{arch}"] = rows
            for scope in ("last_block", "all"):
                print(f"train {arch:5s} {scope:10s}: {rows[scope]['steps_per_s']:.3f} steps/s "
                      f"({rows[scope]['clips_per_s']:.1f} clips/s, batch {args.batch} + {args.batch})")
            print(f"train {arch:5s} all / last_block time per step: {rows['ratio_all_over_last_block']:.2f}x")
        ckpt = write_official_checkpoint(Path(folder) / "detect.ckpt", arch=args.detect_arch, seed=0)
        rate = detect_rate(ckpt, args.detect_seconds, args.device, args.repeats)
        report[f"detect_{args.detect_arch}"] = rate
        print(f"detect {args.detect_arch}: {rate['audio_seconds']:.0f} s of audio in {rate['detect_seconds']:.2f} s, "
              f"real-time factor {rate['real_time_factor']:.4f}; encoder alone {rate['encoder_seconds']:.2f} s "
              f"(detect / encoder {rate['ratio_detect_over_encoder']:.2f}x)")
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
