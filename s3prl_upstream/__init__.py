"""ATST-Frame / ATST-Clip as an s3prl upstream: the `atst_frame` hub entry, the `atst-s3prl` launcher, a
compatibility layer for s3prl 0.4.18 on current torchaudio / huggingface_hub / torch, and SUPERB task configs."""
from __future__ import annotations

from .expert import DOWNSAMPLE_RATE, UpstreamExpert, expected_frames
from .options import UpstreamOptions, read_model_config


def register() -> list:
    """Apply the compatibility layer and add the hub entries to `s3prl.hub`. Returns the names registered.

    Afterwards `s3prl.nn.S3PRLUpstream("atst_frame", path_or_url=CKPT)` and `-u atst_frame` work in-process.
    """
    from . import compat
    from .hubconf import ENTRIES

    compat.apply()
    import s3prl.hub as hub

    for name, entry in ENTRIES.items():
        setattr(hub, name, entry)
    return sorted(ENTRIES)


__all__ = ["DOWNSAMPLE_RATE", "UpstreamExpert", "UpstreamOptions", "expected_frames", "read_model_config",
           "register"]
