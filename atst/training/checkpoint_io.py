"""Checkpoint files of a training run: atomic writes, weights_only reads, the resume point (checked before training:
the types of what Lightning restores, and the fit to the model and optimizer, each refusal naming the file and the
key).

Writes go through `atst.fileio` (temporary file in the same folder, fsync, rename), so a kill at any moment leaves
the previous complete file. Reads use `torch.load(weights_only=True)`: a checkpoint holds only plain data.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from .lightning import TorchCheckpointIO

from atst.fileio import atomic_open

LAST = "last.ckpt"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO that writes atomically and reads with `weights_only=True`."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Optional[Any] = None) -> None:
        with atomic_open(path, "wb") as handle:
            torch.save(checkpoint, handle)

    def load_checkpoint(self, path: Any, map_location: Optional[Callable] = None,
                        weights_only: Optional[bool] = None) -> dict[str, Any]:
        return read_checkpoint(path)


def read_checkpoint(path: Any) -> dict[str, Any]:
    """`torch.load(path, map_location="cpu", weights_only=True)` with a clear error for unreadable files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"cannot read checkpoint {path} ({type(error).__name__}: {error}); remove it or pick "
                         f"another --save_path") from None


def _found(value: object) -> str:
    """`type` or `type value` (plain scalars only: printing a container could cost as much as the file)."""
    shown = f" {value!r}"[:81] if isinstance(value, (str, int, float, type(None))) else ""
    return type(value).__name__ + shown


def _need(path: Path, key: str, value: object, kind: type, what: str) -> None:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{path}: {key} must be {what}, found {_found(value)}")


def check_training_checkpoint(path: Path, checkpoint: object) -> None:
    """ValueError naming the file and the key unless `checkpoint` (what `path` holds) is one a training run can
    resume from: a dict whose `state_dict` maps names to tensors, whose `optimizer_states` is a list of optimizer states
    (`{"state": dict, "param_groups": [{"params": [...], ...}, ...]}`), and whose `hyper_parameters`, `loops`,
    `callbacks` (dicts), `lr_schedulers` (list), `global_step` and `epoch` (ints >= 0) have those types when
    present."""
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path}: the checkpoint must be a dict of training state, found {_found(checkpoint)}")
    for key in ("state_dict", "optimizer_states"):
        if key not in checkpoint:
            raise ValueError(f"{path}: key {key!r} is missing (a weights-only or foreign checkpoint cannot resume "
                             f"training)")
    state = checkpoint["state_dict"]
    _need(path, "'state_dict'", state, dict, "a dict of tensors")
    for name, tensor in state.items():
        _need(path, f"state_dict[{name!r}]", tensor, torch.Tensor, "a tensor")
    optimizers = checkpoint["optimizer_states"]
    _need(path, "'optimizer_states'", optimizers, list, "a list of optimizer states")
    for index, optimizer in enumerate(optimizers):
        key = f"optimizer_states[{index}]"
        _need(path, key, optimizer, dict, "an optimizer state dict")
        _need(path, f"{key}['state']", optimizer.get("state"), dict, "a dict")
        groups = optimizer.get("param_groups")
        _need(path, f"{key}['param_groups']", groups, list, "a list of parameter groups")
        for number, group in enumerate(groups):
            _need(path, f"{key}['param_groups'][{number}]", group, dict, "a dict")
            _need(path, f"{key}['param_groups'][{number}]['params']", group.get("params"), list, "a list")
    for key, kind, what in (("hyper_parameters", dict, "a dict"), ("loops", dict, "a dict"),
                            ("callbacks", dict, "a dict"), ("lr_schedulers", list, "a list"),
                            ("global_step", int, "an int >= 0"), ("epoch", int, "an int >= 0")):
        if key in checkpoint:
            _need(path, repr(key), checkpoint[key], kind, what)
            if kind is int and checkpoint[key] < 0:
                raise ValueError(f"{path}: {key!r} must be {what}, found {checkpoint[key]}")


def check_checkpoint_fits(path: Path, checkpoint: dict[str, Any], model: torch.nn.Module,
                          optimizers: Sequence[torch.optim.Optimizer]) -> None:
    """ValueError naming the file and the keys when a checked training checkpoint's tensors (names, shapes) or
    optimizer groups (count, parameters per group) do not fit `model` (the LightningModule) and `optimizers`."""
    expected = model.state_dict()
    state = checkpoint["state_dict"]
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    reshaped = [f"{k} {tuple(state[k].shape)} (model {tuple(expected[k].shape)})" for k in expected
                if k in state and state[k].shape != expected[k].shape]
    for label, names in (("lacks", missing), ("has unexpected", unexpected), ("has other shapes for", reshaped)):
        if names:
            raise ValueError(f"{path}: state_dict {label} {len(names)} tensor(s) of this model, e.g. "
                             f"{', '.join(names[:3])}")
    saved = checkpoint["optimizer_states"]
    if len(saved) != len(optimizers):
        raise ValueError(f"{path}: optimizer_states holds {len(saved)} optimizer(s); this run has {len(optimizers)}")
    for index, (state_dict, optimizer) in enumerate(zip(saved, optimizers)):
        sizes = [len(group["params"]) for group in state_dict["param_groups"]]
        wanted = [len(group["params"]) for group in optimizer.param_groups]
        if sizes != wanted:
            raise ValueError(f"{path}: optimizer_states[{index}]['param_groups'] has groups of {sizes} parameters; "
                             f"this run's optimizer has {wanted}")


def resume_point(save_path: Path, hyper_parameters: dict, structural: Sequence[str],
                 model: Optional[torch.nn.Module] = None, optimizers: Sequence[torch.optim.Optimizer] = ()
                 ) -> Optional[tuple[Path, int]]:
    """(last.ckpt, its global step) if the run in `save_path` can be resumed with these hyper-parameters, else None.

    `structural`: the flags that fix tensor shapes (or the training method); raises ValueError naming each one
    whose value in last.ckpt differs from `hyper_parameters` (a flag the checkpoint does not store is not
    compared). A checkpoint of the wrong make (`check_training_checkpoint`) or, when `model` is given, one that
    does not fit it and `optimizers` (`check_checkpoint_fits`) raises ValueError naming the file and the key.
    """
    last = save_path / LAST
    if not last.is_file():
        return None
    advice = "; it cannot be resumed: move it away to start afresh, or choose another --save_path"
    checkpoint = read_checkpoint(last)
    try:
        check_training_checkpoint(last, checkpoint)
    except ValueError as error:
        raise ValueError(f"{error}{advice}") from None
    previous = checkpoint.get("hyper_parameters", {})
    conflicts = [f"{key}: {previous.get(key)!r} in {last}, {hyper_parameters.get(key)!r} now"
                 for key in structural if key in previous and previous.get(key) != hyper_parameters.get(key)]
    if conflicts:
        raise ValueError(f"--save_path {save_path} holds a run with another model shape ({'; '.join(conflicts)}); "
                         f"use a new --save_path or the same flags")
    if model is not None:
        try:
            check_checkpoint_fits(last, checkpoint, model, optimizers)
        except ValueError as error:
            raise ValueError(f"{error}{advice}") from None
    return last, int(checkpoint.get("global_step", 0))
