"""s3prl hub entries: `atst_frame` (and its alias `atst_frame_local`).

s3prl calls an entry as `entry(ckpt=..., model_config=..., refresh=...)` (`-k`, `-g`, `-r`); `S3PRLUpstream`
passes `extra_conf` items as further keyword arguments, which are read as upstream options.
"""
from __future__ import annotations

import os
from typing import Any, Optional, Union

from .expert import UpstreamExpert
from .options import option_names, read_model_config


def atst_frame(ckpt: Optional[Union[str, os.PathLike]] = None, model_config: Any = None, refresh: bool = False,
               **options: Any) -> UpstreamExpert:
    """ATST-Frame / ATST-Clip upstream from a local checkpoint (`-k PATH`, any family `atst` reads).

    `model_config` (`-g`): a YAML/JSON file or `key=value,...` with the options of `UpstreamOptions`;
    keyword `options` override it. `refresh` is accepted for s3prl's interface and ignored (nothing is downloaded).
    """
    if ckpt is None or str(ckpt).strip() == "":
        raise FileNotFoundError(
            "atst_frame needs a checkpoint: pass -k /path/to/atstframe_base.ckpt (an official ATST-Frame or "
            "ATST-Clip Lightning checkpoint, a DINO-style file, a bare encoder state dict or an `atst export` "
            "safetensors file). Released checkpoints are linked from the ATST repository README "
            "(github.com/Audio-WestlakeU/audiossl)."
        )
    if not os.path.isfile(os.fspath(ckpt)):
        raise FileNotFoundError(f"atst_frame checkpoint not found: {ckpt} (pass an existing file with -k)")
    parsed = read_model_config(model_config)
    if options:
        unknown = sorted(set(options) - set(option_names()))
        if unknown:
            raise TypeError(f"unknown upstream option(s) {unknown}; accepted: {option_names()}")
        merged = {name: getattr(parsed, name) for name in option_names()}
        merged.update(options)
        parsed = read_model_config(merged)
    return UpstreamExpert(os.fspath(ckpt), parsed)


def atst_frame_local(ckpt: Optional[Union[str, os.PathLike]] = None, model_config: Any = None,
                     refresh: bool = False, **options: Any) -> UpstreamExpert:
    """Alias of `atst_frame` following s3prl's `_local` naming (a local checkpoint path is required)."""
    return atst_frame(ckpt, model_config, refresh, **options)


ENTRIES = {"atst_frame": atst_frame, "atst_frame_local": atst_frame_local}
