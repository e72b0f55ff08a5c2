"""Per-optimizer-step schedules of the official recipe, as functions of the step (defined on every step).

The official code precomputes arrays of length `max_steps` and indexes them with `global_step`; its EMA update runs
after the step counter is incremented, so the last batch would read index `max_steps`, one past the end. Here every
schedule is a closed-form function defined on [0, max_steps] inclusive (steps past the end are clamped to the end),
so nothing can run off the table (fix of the official EMA index bug).
"""
from __future__ import annotations

import math

FINAL_LR = 1e-6
WD_START = 0.04
WD_END = 0.4


def _check(step: int, max_steps: int) -> int:
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    return min(step, max_steps)


def learning_rate(step: int, base_lr: float, warmup_steps: int, max_steps: int, final_lr: float = FINAL_LR) -> float:
    """Linear warm-up from 0 (step 0) to `base_lr` (step warmup_steps - 1), then cosine to `final_lr` at max_steps.

    Matches the official arrays `linspace(0, lr, warmup)` followed by `final + (lr - final)(1 + cos(pi i / n)) / 2`,
    i = 0 .. n - 1 with n = max_steps - warmup_steps; step max_steps (one past the official table) gives final_lr.
    """
    step = _check(step, max_steps)
    if not 0 <= warmup_steps <= max_steps:
        raise ValueError(f"warmup_steps must lie in [0, max_steps={max_steps}], got {warmup_steps}")
    if step < warmup_steps:
        return base_lr * step / (warmup_steps - 1) if warmup_steps > 1 else base_lr
    decay_steps = max_steps - warmup_steps
    if decay_steps == 0:
        return final_lr
    i = step - warmup_steps
    return final_lr + 0.5 * (base_lr - final_lr) * (1.0 + math.cos(math.pi * i / decay_steps))


def weight_decay(step: int, max_steps: int, start: float = WD_START, end: float = WD_END) -> float:
    """Cosine from `start` (step 0) to `end` (step max_steps), no warm-up."""
    step = _check(step, max_steps)
    return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * step / max_steps))


def ema_momentum(step: int, base_momentum: float, max_steps: int) -> float:
    """Teacher momentum 1 + (ema - 1)(1 + cos(pi step / max_steps)) / 2: `ema` at step 0, 1 at max_steps."""
    step = _check(step, max_steps)
    if not 0.0 <= base_momentum <= 1.0:
        raise ValueError(f"ema must lie in [0, 1], got {base_momentum}")
    return 1.0 + 0.5 * (base_momentum - 1.0) * (1.0 + math.cos(math.pi * step / max_steps))
