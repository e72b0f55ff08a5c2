"""Range checks for configuration values that arrive from files (checkpoints, export metadata) or users.

A config read from an untrusted file must be refused before anything is built from it: a crafted `depth` of 10^8
would otherwise allocate (or loop) without bound. Each check names the field, the value and what is accepted.
"""
from __future__ import annotations

import math
from typing import Union

Number = Union[int, float]


def check_int(owner: str, name: str, value: object, low: int, high: int) -> None:
    """`value` must be an int (not a bool) in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{owner}.{name} must be an int in [{low}, {high}], got {value!r}")


def check_float(owner: str, name: str, value: object, low: Number, high: Number, low_open: bool = False) -> None:
    """`value` must be a finite number in [low, high] (or (low, high] with `low_open`)."""
    number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    inside = (low < number if low_open else low <= number) and number <= high
    if not (math.isfinite(number) and inside):
        bracket = "(" if low_open else "["
        raise ValueError(f"{owner}.{name} must be a finite number in {bracket}{low}, {high}], got {value!r}")
