"""Throughput of the `atst_frame` s3prl upstream: audio seconds per second and peak memory.

Batch of 8 utterances of random length 2-12 s (seeded), forward under no_grad in eval mode, as s3prl calls a
frozen upstream. Prints one line per architecture. CPU by default; `--device cuda` on a GPU machine.

    python benchmarks/s3prl_throughput.py [--ckpt PATH] [--arch small] [--device cpu] [--repeats 3]
Without --ckpt a random-weight checkpoint in the official layout is written to a temp dir (same speed as trained).
"""
from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import torch

from atst.synthetic import write_official_checkpoint
from s3prl_upstream.hubconf import atst_frame


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt", help="checkpoint to load (default: a random one per --arch)")
    parser.add_argument("--arch", nargs="+", default=["small", "base"], choices=["tiny", "small", "base"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    generator = torch.Generator().manual_seed(args.seed)
    lengths = torch.randint(2 * 16000, 12 * 16000 + 1, (args.batch,), generator=generator).tolist()
    wavs = [0.1 * torch.randn(n, generator=generator) for n in lengths]
    audio_seconds = sum(lengths) / 16000
    print(f"batch of {args.batch}: {[round(n / 16000, 2) for n in lengths]} s ({audio_seconds:.1f} s of audio), "
          f"device {args.device}, torch threads {torch.get_num_threads()}")
    archs = [None] if args.ckpt else args.arch
    with tempfile.TemporaryDirectory() as tmp:
        for arch in archs:
            ckpt = args.ckpt or write_official_checkpoint(Path(tmp) / f"{arch}.ckpt", arch=arch)
            upstream = atst_frame(ckpt=str(ckpt)).to(args.device).eval()
            batch = [w.to(args.device) for w in wavs]
            if args.device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            with torch.no_grad():
                upstream(batch)  # warm-up
                start = time.perf_counter()
                for _ in range(args.repeats):
                    out = upstream(batch)
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                elapsed = (time.perf_counter() - start) / args.repeats
            memory = (f"peak CUDA memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB"
                      if args.device.startswith("cuda") else f"peak RSS {peak_rss_mib():.0f} MiB (process)")
            name = arch or Path(args.ckpt).name
            print(f"{name}: {elapsed:.3f} s per batch, {audio_seconds / elapsed:.1f} audio s/s, "
                  f"{len(out['hidden_states'])} states of {tuple(out['hidden_states'][0].shape)}, {memory}")


if __name__ == "__main__":
    main()
