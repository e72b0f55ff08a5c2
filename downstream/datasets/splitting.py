"""Deterministic splits for sources that do not come with their own: a clip's split depends only on its key."""
from __future__ import annotations

import hashlib

SPLIT_FRACTIONS = (("valid", 0.1), ("test", 0.1))  # the rest is train


def split_of(key: str, fractions: tuple[tuple[str, float], ...] = SPLIT_FRACTIONS) -> str:
    """"train", "valid" or "test" for a clip key, from the SHA-1 of the key (stable across runs, machines and
    additions to the dataset: adding a clip never moves another one)."""
    value = int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:12], 16) / float(16 ** 12)
    bound = 0.0
    for name, fraction in fractions:
        bound += fraction
        if value < bound:
            return name
    return "train"
