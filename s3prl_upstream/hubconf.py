"""s3prl hub entries: `atst_frame` (and its alias `atst_frame_local`).

s3prl calls an entry as `entry(ckpt=..., model_config=..., refresh=...)` (`-k`, `-g`, `-r`); `S3PRLUpstream`
passes `extra_conf` items as further keyword arguments, which are read as upstream options.
"""
from __future__ import annotations

import os
from typing import Any, Optional, Union

from atst.hub import resolve_checkpoint
from atst.releases import RELEASES

from .expert import UpstreamExpert
from .options import option_names, read_model_config


def atst_frame(ckpt: Optional[Union[str, os.PathLike]] = None, model_config: Any = None, refresh: bool = False,
               **options: Any) -> UpstreamExpert:
    """ATST-Frame / ATST-Clip upstream from a checkpoint file (`-k PATH`, any family `atst` reads) or a released
    checkpoint's name (`-k atstframe_base`: downloaded once into the cache, `$ATST_CACHE`, and verified).

    `model_config` (`-g`): a YAML/JSON file or `key=value,...` with the options of `UpstreamOptions`;
    keyword `options` override it. `refresh` is accepted for s3prl's interface and ignored (a cached release is
    reused; `atst download NAME` re-verifies it).
    """
    if ckpt is None or str(ckpt).strip() == "":
        raise FileNotFoundError(
            f"atst_frame needs a checkpoint: pass -k with a released name ({', '.join(RELEASES)}) or the path of an "
            f"official ATST-Frame or ATST-Clip Lightning checkpoint, a DINO-style file, a bare encoder state dict, an "
            f"`atst export` safetensors file or a pre-training checkpoint"
        )
    path = resolve_checkpoint(ckpt)
    if not path.is_file():
        raise FileNotFoundError(f"atst_frame checkpoint not found: {ckpt} (pass an existing file or a released name "
                                f"with -k)")
    parsed = read_model_config(model_config)
    if options:
        unknown = sorted(set(options) - set(option_names()))
        if unknown:
            raise TypeError(f"unknown upstream option(s) {unknown}; accepted: {option_names()}")
        merged = {name: getattr(parsed, name) for name in option_names()}
        merged.update(options)
        parsed = read_model_config(merged)
    return UpstreamExpert(os.fspath(path), parsed)


def atst_frame_local(ckpt: Optional[Union[str, os.PathLike]] = None, model_config: Any = None,
                     refresh: bool = False, **options: Any) -> UpstreamExpert:
    """Alias of `atst_frame` following s3prl's `_local` naming (a checkpoint path or a released name)."""
    return atst_frame(ckpt, model_config, refresh, **options)


ENTRIES = {"atst_frame": atst_frame, "atst_frame_local": atst_frame_local}
