"""The learning-rate grids of the official linear-evaluation shell scripts (spec section 1.7), per registered
dataset and encoder family; the grid for any other task."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

# dataset -> family -> grid; "any" when both families share it
OFFICIAL_LRS: dict[str, dict[str, tuple[float, ...]]] = {
    "spcv2": {"any": (2e-3,)},
    "us8k": {"any": (2e-3,)},
    "voxceleb1": {"any": (0.1, 0.05, 0.02)},
    "nsynth": {"any": (5e-4, 2.5e-4, 1e-3)},
    "audioset_b": {"frame": (1.0, 2.0, 0.5), "clip": (2.0, 4.0, 1.0, 0.5)},
    "audioset": {"frame": (1.0, 0.5, 2.0), "clip": (2.0, 4.0, 1.0, 0.5)},
    "fsd50k": {"any": (0.1, 1.0, 2.0, 4.0)},
}
# other tasks: three decades around the official single-label LR (x4 at batch 1024)
OTHER_LRS = (2e-3, 2e-2, 2e-1)


def registered_name(task_spec: str) -> Optional[str]:
    """The dataset name of a `NAME=PATH` TASK argument, else None."""
    text = str(task_spec)
    if "=" in text and not Path(text).exists():
        return text.partition("=")[0].strip()
    return None


def default_lrs(task_spec: str, family: str) -> tuple[tuple[float, ...], str]:
    """(grid, where it comes from) for a TASK argument and an encoder family ("frame" / "clip")."""
    name = registered_name(task_spec)
    grids = OFFICIAL_LRS.get(name or "")
    if grids:
        grid = grids.get(family, grids.get("any", OTHER_LRS))
        return grid, f"the official ATST-{family.capitalize()} grid for {name}"
    return OTHER_LRS, "the default grid for tasks without an official one"


def parse_lrs(text: str) -> tuple[float, ...]:
    """"2e-3,1e-2" -> (0.002, 0.01): positive, finite, each once; anything else is a ValueError naming it."""
    values = []
    for part in str(text).split(","):
        part = part.strip()
        try:
            value = float(part)
        except ValueError:
            raise ValueError(f"--lrs takes comma-separated positive numbers such as 2e-3,1e-2; {part!r} is not a "
                             f"number") from None
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"--lrs values must be positive and finite, got {part!r}")
        if value in values:
            raise ValueError(f"--lrs lists {part} twice")
        values.append(value)
    return tuple(values)


__all__ = ["OFFICIAL_LRS", "OTHER_LRS", "default_lrs", "parse_lrs", "registered_name"]
