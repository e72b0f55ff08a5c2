"""Timing helper shared by the training-throughput benchmarks."""
from __future__ import annotations

import time
from typing import Callable

import torch


def seconds_per_step(one_step: Callable[[int], None], steps: int, device: str) -> float:
    """Run `one_step(0)` untimed (warm-up), then `one_step(1..steps)`; mean wall seconds per timed step (CUDA work
    synchronised before and after)."""
    one_step(0)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for step in range(steps):
        one_step(step + 1)
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps
