"""HEAR 2021 API for ATST-Frame and ATST-Clip checkpoints.

    model = hear_atst.load_model("atstframe_base")                 # a released checkpoint, downloaded once
    model = hear_atst.load_model("my_run/last.ckpt")               # or any file; family detected from it
    scene = hear_atst.get_scene_embeddings(audio, model)            # [B, N] float32 16 kHz -> [B, S]
    emb, ts = hear_atst.get_timestamp_embeddings(audio, model)      # -> [B, T, E], [B, T] (ms, token centres)

`load_model` options (also reachable as heareval `--model-options '{"n_blocks": 1}'`): `mode` ("hear" or
"official"), `n_blocks` (last blocks read out, 1..12), `branch` ("teacher"/"student"), `autocast` ("bf16"),
`max_windows_per_call`, `clip_train_len` (ATST-Clip window, seconds).
"""
from __future__ import annotations

import os
from typing import Tuple

from torch import Tensor

from atst import Embedder, load_embedder
from atst.releases import RELEASES

CHECKPOINT_ENV = "ATST_CHECKPOINT"


def load_model(model_file_path: str = "", mode: str = "hear", n_blocks: int = 12, **options) -> Embedder:
    """Load an ATST checkpoint (any family `atst` reads, or a released one by name: `atstframe_base`, ...) as a
    HEAR model in eval mode. A name is downloaded once into the cache (`$ATST_CACHE`) and verified.

    The returned module has `sample_rate == 16000` and the Python-int attributes `scene_embedding_size` and
    `timestamp_embedding_size` (the true output widths). An empty path falls back to `$ATST_CHECKPOINT` (a path or
    a name).
    """
    path = model_file_path or os.environ.get(CHECKPOINT_ENV, "")
    if not path:
        raise FileNotFoundError(
            f"no ATST checkpoint given: pass its path or a released name ({', '.join(RELEASES)}) "
            f"(hear-validator hear_atst --model CKPT, or heareval --model CKPT) or set ${CHECKPOINT_ENV}"
        )
    return load_embedder(str(path), mode=mode, n_blocks=n_blocks, **options)


def get_scene_embeddings(audio: Tensor, model: Embedder) -> Tensor:
    """`audio` `[B, N]` float32 at 16 kHz (any device) -> `[B, model.scene_embedding_size]` float32."""
    return model.scene_embeddings(audio)


def get_timestamp_embeddings(audio: Tensor, model: Embedder) -> Tuple[Tensor, Tensor]:
    """`audio` `[B, N]` -> (`[B, T, model.timestamp_embedding_size]`, timestamps `[B, T]` in milliseconds)."""
    return model.timestamp_embeddings(audio)


__all__ = ["load_model", "get_scene_embeddings", "get_timestamp_embeddings", "CHECKPOINT_ENV"]
