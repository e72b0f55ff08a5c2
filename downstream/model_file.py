"""The model file of a downstream run, `DIR/best.ckpt`: encoder, head, label vocabulary and read-out settings in one
file that `torch.load(..., weights_only=True)` reads (tensors, dicts, lists, strings and numbers only).

    {"format": "atst-downstream", "format_version": 1,
     "state_dict": {"model.teacher.encoder.<official encoder key>": tensor, ...,  # the encoder that was used
                    "model.head.<head key>": tensor, ...},  # norm.running_mean/var/num_batches_tracked, linear.*
     "hyper_parameters": {... the source checkpoint's plain hyper-parameters, with win_length, n_mels and, for
                          ATST-Clip, train_len set to what the encoder was run with},
     "downstream": {"kind": "linear", "finetune" or "distill", "labels": [...], "multi_label": bool, "task": str,
                    "metric": str,
                    "readout": {"protocol", "family", "branch", "n_blocks", "precision", "win_length",
                                "clip_train_len", "version"},
                    "embedding_dim": int, "selected": {...}, "valid": float, "test": float,
                    "source_checkpoint": {"path", "sha256"}}}

`selected`: linear `{"lr", "effective_lr", "epoch", "fold"}`; finetune `{"epoch", "step", "rule"}` (and its
`recipe`, every training setting, and `fold`); distill as finetune, plus `teacher` (path, sha256, family, its
read-out and test metric) and `distill_weight`. `readout` is a `downstream.linear.ReadoutSettings`: a prediction
rebuilds the read-out from it; for ATST-Clip its `clip_train_len` is the chunk (official) or window (hear) length the
head was trained on (fine-tuning's official read-out: 6 s), which may differ from `hyper_parameters["train_len"]`.
In a fine-tuning model file the encoder weights are the fine-tuned ones.

The encoder sits under `model.teacher.encoder.*` whichever branch it came from (`readout.branch` says which), so
`atst.load_checkpoint`, `hear_atst.load_model` and `atst info` read the file as they read an official checkpoint.
Written atomically.

`read_model_file` is the one reader: it takes the file or the run folder holding it, checks the `downstream` entry
against the encoder stored beside it, and returns the read-out the head was trained on as a `ModelReadout`; every
consumer (`predict`, later `detect`) reads the settings from there.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch
from torch import Tensor

from atst import RELEASES, LoadedCheckpoint, load_checkpoint
from atst.checkpoint import CheckpointError
from atst.fileio import atomic_open

MODEL_FORMAT = "atst-downstream"
MODEL_FORMAT_VERSION = 1
MODEL_FILE_NAME = "best.ckpt"
ENCODER_PREFIX = "model.teacher.encoder."
HEAD_PREFIX = "model.head."
PRECISIONS = ("fp32", "bf16")  # what `downstream.readout.precision` may record (resolved, never "auto")
NOT_A_MODEL = ("this is an encoder checkpoint, not a trained downstream model; train one with `atst-downstream "
               "linear|finetune` and pass its --out folder (or the best.ckpt in it)")
PathLike = Union[str, os.PathLike]


@dataclass(frozen=True)
class ModelReadout:
    """`downstream.readout` of a model file, checked against the encoder stored with it: how each clip was turned
    into the embedding the head was trained on (`downstream.linear.Readout` rebuilds it)."""

    protocol: str  # "official" (12 s centre crop, official chunks) or "hear" (the whole clip pooled)
    n_blocks: int  # last encoder blocks read out, 1..depth
    precision: str  # "fp32" or "bf16": the encoder precision the head saw
    version: int  # the read-out version (downstream.linear.readout.READOUT_VERSION when it was written)
    clip_train_len: Optional[float] = None  # ATST-Clip: the chunk / window length (s) the head was trained on


@dataclass
class DownstreamModel:
    """A read model file: the encoder (as `atst.load_checkpoint` gives it), the head's state (keys without
    `model.head.`), the `downstream` description and its checked read-out."""

    checkpoint: LoadedCheckpoint
    head_state: dict[str, Tensor]
    info: dict[str, Any]
    readout: ModelReadout
    path: Path

    @property
    def labels(self) -> list[str]:
        return list(self.info["labels"])

    @property
    def kind(self) -> str:
        return str(self.info["kind"])

    @property
    def multi_label(self) -> bool:
        return bool(self.info["multi_label"])


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


def resolve_model_path(path: PathLike) -> Path:
    """The model file a `--model` argument names: a run folder -> its `best.ckpt`, a file -> itself. A folder
    without `best.ckpt`, a released encoder's name or a missing path is an error saying what to pass."""
    path = Path(path).expanduser()
    if path.is_dir():
        if not (path / MODEL_FILE_NAME).is_file():
            raise FileNotFoundError(f"{path} is a folder without {MODEL_FILE_NAME}: pass the --out folder of a "
                                    f"finished `atst-downstream linear|finetune` run, or a model file")
        return path / MODEL_FILE_NAME
    if path.is_file():
        return path
    if str(path) in RELEASES:
        raise CheckpointError(f"{path} is a released ATST encoder: {NOT_A_MODEL}")
    raise FileNotFoundError(f"no such model file or run folder: {path}")


def read_model_file(path: PathLike) -> DownstreamModel:
    """Read a model file written by `write_model_file` (or the run folder holding it); anything else is a
    `CheckpointError` (a ValueError) saying what the file is and what to pass instead."""
    path = resolve_model_path(path)
    loaded = load_checkpoint(path)  # the encoder, with every check atst makes on untrusted files
    if loaded.family_source == "export":  # safetensors: an encoder only
        raise CheckpointError(f"{path} is an exported encoder: {NOT_A_MODEL}")
    raw = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    if not isinstance(raw, dict) or raw.get("format") != MODEL_FORMAT:
        raise CheckpointError(f"{path} has no 'format': {MODEL_FORMAT!r} entry, so {NOT_A_MODEL}")
    version = raw.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= MODEL_FORMAT_VERSION:
        raise CheckpointError(f"{path}: model file format_version {version!r} is not supported (this version reads "
                              f"1..{MODEL_FORMAT_VERSION}); upgrade hear-atst")
    info = raw.get("downstream")
    if isinstance(info, dict) and info.get("kind") == "sed":
        raise CheckpointError(f"{path} is a 'sed' model; predict labels clips with the models linear and finetune "
                              f"runs write (find this model's events with `atst-downstream detect --model "
                              f"{path.parent}`)")
    if not isinstance(info, dict) or not isinstance(info.get("labels"), list) or "readout" not in info:
        raise CheckpointError(f"{path}: the 'downstream' entry must be a dict with 'labels' and 'readout'")
    _check_description(path, info)
    head = {key[len(HEAD_PREFIX):]: value for key, value in raw["state_dict"].items() if key.startswith(HEAD_PREFIX)}
    weight = head.get("linear.weight")
    if not isinstance(weight, Tensor) or weight.ndim != 2 or weight.shape[0] != len(info["labels"]):
        raise CheckpointError(f"{path}: model.head.linear.weight must be [{len(info['labels'])} labels, embedding "
                              f"dim], got {None if weight is None else tuple(weight.shape)}")
    readout = _readout(path, info["readout"], loaded)
    return DownstreamModel(loaded, {k: v.clone() for k, v in head.items()}, info, readout, path)


def _check_description(path: Path, info: Mapping[str, Any]) -> None:
    """The `downstream` fields every consumer relies on: kind, labels (strings), multi_label."""
    labels = info["labels"]
    if not isinstance(info.get("kind"), str) or not info["kind"]:
        raise CheckpointError(f"{path}: downstream.kind must be a non-empty string (linear, finetune, distill), got "
                              f"{info.get('kind')!r}")
    if not labels or not all(isinstance(label, str) for label in labels):
        raise CheckpointError(f"{path}: downstream.labels must be a non-empty list of strings")
    if not isinstance(info.get("multi_label"), bool):
        raise CheckpointError(f"{path}: downstream.multi_label must be true or false, got {info.get('multi_label')!r}")


def _readout(path: Path, readout: Any, loaded: LoadedCheckpoint) -> ModelReadout:
    """`downstream.readout` checked field by field, and against the encoder stored in the same file."""
    def bad(field: str, accepted: str) -> CheckpointError:
        value = readout.get(field) if isinstance(readout, dict) else None
        return CheckpointError(f"{path}: downstream.readout.{field} must be {accepted}, got {value!r}")

    if not isinstance(readout, dict):
        raise CheckpointError(f"{path}: downstream.readout must be a dict, got {type(readout).__name__}")
    depth = loaded.config.depth
    checks = (("protocol", lambda v: isinstance(v, str) and bool(v), "a read-out name (official, hear)"),
              ("n_blocks", lambda v: _is_int(v) and 1 <= v <= depth, f"an int in 1..{depth} (the encoder's depth)"),
              ("precision", lambda v: v in PRECISIONS, f"one of {PRECISIONS}"),
              ("version", lambda v: _is_int(v) and v >= 1, "an int >= 1"),
              ("family", lambda v: v == loaded.family, f"{loaded.family!r} (the stored encoder's family)"))
    for field, ok, accepted in checks:
        if not ok(readout.get(field)):
            raise bad(field, accepted)
    if "win_length" in readout and readout["win_length"] != loaded.frontend_config.win_length:
        raise bad("win_length", f"{loaded.frontend_config.win_length} (hyper_parameters.win_length)")
    clip_train_len = None
    if loaded.config.has_cls:  # the read-out's own chunk length (fine-tuning's official one is 6 s), not train_len
        clip_train_len = readout.get("clip_train_len")
        if isinstance(clip_train_len, bool) or not isinstance(clip_train_len, (int, float)) \
                or not 0 < clip_train_len < float("inf"):
            raise bad("clip_train_len", "a positive number of seconds (the ATST-Clip chunk the head was trained on)")
    return ModelReadout(readout["protocol"], readout["n_blocks"], readout["precision"], readout["version"],
                        None if clip_train_len is None else float(clip_train_len))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


__all__ = ["DownstreamModel", "ENCODER_PREFIX", "HEAD_PREFIX", "MODEL_FILE_NAME", "MODEL_FORMAT",
           "MODEL_FORMAT_VERSION", "ModelReadout", "NOT_A_MODEL", "encoder_hyper_parameters", "read_model_file",
           "resolve_model_path", "write_model_file"]
