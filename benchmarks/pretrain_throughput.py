"""Pre-training throughput: samples/s, step time and model FLOP utilisation (MFU) of one training step.

A step = teacher forward of both views + student forward/backward of both views + AdamW + EMA, on synthetic
10 s views (250 tokens) with the official masks. CPU: tiny and small in fp32; GPU (when present): small and base
in bf16-mixed. MFU = model FLOPs per step / step time / peak, where the peak is measured (a large matmul in the
same dtype) so the number means "fraction of what this machine's matmul reaches", not of a datasheet.

    python benchmarks/pretrain_throughput.py [--archs tiny small] [--batch 4] [--steps 3] [--anchor_len 10]
"""
from __future__ import annotations

import argparse
import time

import torch

from _timing import seconds_per_step
from atst.encoder import arch_config
from atst.frontend import FrontendConfig
from atst.training.heads import PROJECTOR_HIDDEN, PROJECTOR_OUT
from atst.training.optim import official_adamw
from atst.training.schedules import ema_momentum, weight_decay
from pretrain.masking import batch_masks
from pretrain.methods.frame import FrameATST


def encoder_forward_flops(arch: str, tokens: int) -> float:
    """Multiply-adds x 2 of one encoder forward over `tokens` tokens (linear layers + attention products)."""
    cfg = arch_config(arch)
    d, h = cfg.embed_dim, cfg.mlp_hidden_dim
    per_block = 2 * tokens * (4 * d * d + 2 * d * h) + 2 * 2 * tokens * tokens * d
    return cfg.depth * per_block + 2 * tokens * cfg.patch_h * cfg.patch_w * d


def step_flops(arch: str, batch: int, tokens: int, masked: float) -> float:
    """Teacher forward (1x) + student forward and backward (3x) on 2 views, plus the heads on masked rows."""
    cfg = arch_config(arch)
    encoder = encoder_forward_flops(arch, tokens) * 2 * batch * 4
    rows = 2 * batch * masked
    hidden, out = PROJECTOR_HIDDEN, PROJECTOR_OUT
    heads = 2 * rows * (cfg.embed_dim * hidden + hidden * out) * 4 + 2 * rows * (out * hidden * 2) * 3
    return encoder + heads


def matmul_peak(device: str, dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if device == "cuda":
        torch.cuda.synchronize()
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def bench(arch: str, device: str, batch: int, steps: int, anchor_len: float, bf16: bool) -> dict:
    torch.manual_seed(0)
    model = FrameATST(arch_config(arch, drop_path_rate=0.1)).to(device).train()
    optimizer = official_adamw(model.student, lr=1e-4, weight_decay=weight_decay(0, 1000))
    frontend, config = FrontendConfig(), arch_config(arch)
    frames = int(round(anchor_len * frontend.sample_rate)) // frontend.hop_length + 1
    tokens = frames // config.patch_w
    mel_t = torch.randn(batch, config.n_mels, frames, device=device)
    mel_s = torch.randn(batch, config.n_mels, frames, device=device)
    valid = torch.full((batch,), tokens)
    mask = batch_masks(valid, tokens, "block", 0.65, 5, torch.Generator().manual_seed(0)).to(device)
    valid = valid.to(device)

    def one_step(step: int) -> None:
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
            loss = model(mel_t, mel_s, mask, valid).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        model.update_teacher(ema_momentum(step, 0.997, 1000))

    seconds = seconds_per_step(one_step, steps, device)
    flops = step_flops(arch, batch, tokens, float(mask.sum()) / batch)
    peak = matmul_peak(device, torch.bfloat16 if bf16 else torch.float32)
    return dict(arch=arch, device=device, dtype="bf16-mixed" if bf16 else "fp32", batch=batch, step_s=seconds,
                samples_per_s=batch / seconds, tflops=flops / seconds / 1e12, mfu=flops / seconds / peak,
                peak_tflops=peak / 1e12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", nargs="+", default=None)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--anchor_len", type=float, default=10.0)
    args = parser.parse_args()
    runs = []
    cpu_archs = args.archs or ["tiny", "small"]
    runs += [("cpu", arch, args.batch or 2, False) for arch in cpu_archs]
    if torch.cuda.is_available():
        runs += [("cuda", arch, args.batch or 64, True) for arch in (args.archs or ["small", "base"])]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, anchor_len {args.anchor_len} s, "
          f"{args.steps} timed steps")
    print("| arch | device | precision | batch | step (s) | samples/s | model TFLOP/s | MFU (of measured matmul peak) |")
    print("|---|---|---|---|---|---|---|---|")
    for device, arch, batch, bf16 in runs:
        r = bench(arch, device, batch, args.steps, args.anchor_len, bf16)
        print(f"| {r['arch']} | {r['device']} | {r['dtype']} | {r['batch']} | {r['step_s']:.3f} | "
              f"{r['samples_per_s']:.2f} | {r['tflops']:.3f} | {100 * r['mfu']:.1f} % of {r['peak_tflops']:.2f} TF |")


if __name__ == "__main__":
    main()
