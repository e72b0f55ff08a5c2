"""The model file of a downstream run, `DIR/best.ckpt`: encoder, head, label vocabulary and read-out settings in one
file that `torch.load(..., weights_only=True)` reads (tensors, dicts, lists, strings and numbers only).

    {"format": "atst-downstream", "format_version": 1,
     "state_dict": {"model.teacher.encoder.<official encoder key>": tensor, ...,  # the encoder that was used
                    "model.head.<head key>": tensor, ...},  # norm.running_mean/var/num_batches_tracked, linear.*
     "hyper_parameters": {... the source checkpoint's plain hyper-parameters, with win_length, n_mels and, for
                          ATST-Clip, train_len set to what the encoder was run with},
     "downstream": {"kind": "linear" or "finetune", "labels": [...], "multi_label": bool, "task": str,
                    "metric": str,
                    "readout": {"protocol", "family", "branch", "n_blocks", "precision", "win_length",
                                "clip_train_len", "version"},
                    "embedding_dim": int, "selected": {...}, "valid": float, "test": float,
                    "source_checkpoint": {"path", "sha256"}}}

`selected`: linear `{"lr", "effective_lr", "epoch", "fold"}`; finetune `{"epoch", "step", "rule"}` (and its
`recipe`, every training setting, and `fold`). `readout` is a `downstream.linear.ReadoutSettings`: a prediction
rebuilds the read-out from it; for ATST-Clip its `clip_train_len` is the chunk (official) or window (hear) length the
head was trained on (fine-tuning's official read-out: 6 s), which may differ from `hyper_parameters["train_len"]`.
In a fine-tuning model file the encoder weights are the fine-tuned ones.

The encoder sits under `model.teacher.encoder.*` whichever branch it came from (`readout.branch` says which), so
`atst.load_checkpoint`, `hear_atst.load_model` and `atst info` read the file as they read an official checkpoint.
Written atomically.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Union

import torch
from torch import Tensor

from atst import LoadedCheckpoint, load_checkpoint
from atst.checkpoint import CheckpointError
from atst.fileio import atomic_open

MODEL_FORMAT = "atst-downstream"
MODEL_FORMAT_VERSION = 1
ENCODER_PREFIX = "model.teacher.encoder."
HEAD_PREFIX = "model.head."
PathLike = Union[str, os.PathLike]


@dataclass
class DownstreamModel:
    """A read model file: the encoder (as `atst.load_checkpoint` gives it), the head's state (keys without
    `model.head.`) and the `downstream` description."""

    checkpoint: LoadedCheckpoint
    head_state: dict[str, Tensor]
    info: dict[str, Any]

    @property
    def labels(self) -> list[str]:
        return list(self.info["labels"])


def encoder_hyper_parameters(loaded: LoadedCheckpoint) -> dict:
    """The source's plain hyper-parameters with the front-end and crop settings the encoder was run with."""
    hparams = dict(loaded.hyper_parameters)
    hparams.update(win_length=loaded.frontend_config.win_length, n_mels=loaded.frontend_config.n_mels)
    if loaded.config.has_cls:
        hparams["train_len"] = loaded.clip_train_len
    return hparams


def write_model_file(path: PathLike, loaded: LoadedCheckpoint, head_state: Mapping[str, Tensor],
                     downstream: Mapping[str, Any]) -> Path:
    """Write the model file (module docstring) atomically; returns its path."""
    state = {ENCODER_PREFIX + key: value.detach().cpu().contiguous()
             for key, value in loaded.encoder.state_dict().items()}
    state.update({HEAD_PREFIX + key: value.detach().cpu().contiguous() for key, value in head_state.items()})
    payload = {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION, "state_dict": state,
               "hyper_parameters": encoder_hyper_parameters(loaded), "downstream": dict(downstream)}
    with atomic_open(path, "wb") as handle:
        torch.save(payload, handle)
    return Path(path)


def read_model_file(path: PathLike) -> DownstreamModel:
    """Read a model file written by `write_model_file`; anything else is a `CheckpointError` saying what it is."""
    path = Path(path)
    loaded = load_checkpoint(path)  # the encoder, with every check atst makes on untrusted files
    raw = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    if raw.get("format") != MODEL_FORMAT:
        raise CheckpointError(f"{path} holds an ATST encoder but is not an atst-downstream model file (no "
                              f"'format': {MODEL_FORMAT!r}); pass the best.ckpt a downstream run wrote")
    version = raw.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= MODEL_FORMAT_VERSION:
        raise CheckpointError(f"{path}: model file format_version {version!r} is not supported (this version reads "
                              f"1..{MODEL_FORMAT_VERSION}); upgrade hear-atst")
    info = raw.get("downstream")
    if not isinstance(info, dict) or not isinstance(info.get("labels"), list) or "readout" not in info:
        raise CheckpointError(f"{path}: the 'downstream' entry must be a dict with 'labels' and 'readout'")
    head = {key[len(HEAD_PREFIX):]: value for key, value in raw["state_dict"].items() if key.startswith(HEAD_PREFIX)}
    weight = head.get("linear.weight")
    if not isinstance(weight, Tensor) or weight.ndim != 2 or weight.shape[0] != len(info["labels"]):
        raise CheckpointError(f"{path}: model.head.linear.weight must be [{len(info['labels'])} labels, embedding "
                              f"dim], got {None if weight is None else tuple(weight.shape)}")
    return DownstreamModel(loaded, {k: v.clone() for k, v in head.items()}, info)


__all__ = ["DownstreamModel", "ENCODER_PREFIX", "HEAD_PREFIX", "MODEL_FORMAT", "MODEL_FORMAT_VERSION",
           "encoder_hyper_parameters", "read_model_file", "write_model_file"]
