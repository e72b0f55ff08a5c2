"""RunConfig: the typed settings of one training run, and the command-line flags every training door shares.

A door adds the flags with `add_run_arguments(parser)` (and may change their defaults with `parser.set_defaults`),
then builds the config with `run_config_from_args(args)`, which fills what the launcher decides (devices and nodes
from torchrun / SLURM, the accelerator for `auto`, data-loader workers from the CPU count) and validates the rest.
Invalid settings raise a ValueError naming the field, its flag and what is accepted; nothing is coerced silently.
"""
from __future__ import annotations

import argparse
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from atst.flags import parse_bool

from .launch import launcher_topology

ACCELERATORS = ("cpu", "gpu")
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")
PRECISION_ALIASES = {"32": "32-true"}  # the flag's short spelling
MAX_DEFAULT_WORKERS = 10  # the official runs used 10 loader workers per device
# the field whose flag has another name (the official train.py calls devices per node `--nproc`)
FLAG_NAMES = {"devices": "nproc"}


def _flag(field: str) -> str:
    return f"--{FLAG_NAMES.get(field, field)}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class RunConfig:
    """What a training run needs besides its model and data (steps count optimizer steps)."""

    save_path: Path  # the run folder: checkpoints, logs, curves
    devices: int = 1  # processes per node, one device each (`--nproc`)
    num_nodes: int = 1
    accelerator: str = "cpu"  # one of ACCELERATORS
    precision: str = "32-true"  # one of PRECISIONS
    seed: int = 0
    max_steps: int = 1  # optimizer steps
    num_workers: int = 0  # data-loader workers per device
    grad_clip: float = 0.0  # gradient-norm bound, 0 = off
    accumulate_grad_batches: int = 1
    ckpt_every_steps: int = 500  # last.ckpt refreshed every N steps
    keep_every_steps: int = 10000  # checkpoint-step=N.ckpt kept every N steps, 0 = none
    log_every_n_steps: int = 1
    progress: bool = True  # Lightning's bar when stdout is a terminal
    progress_every: int = 10  # steps between progress lines otherwise, 0 = none

    def __post_init__(self) -> None:
        if not isinstance(self.save_path, Path):
            raise ValueError(f"RunConfig.save_path ({_flag('save_path')}) must be a pathlib.Path, got "
                             f"{self.save_path!r}")
        minimum = dict(devices=1, num_nodes=1, max_steps=1, accumulate_grad_batches=1, ckpt_every_steps=1,
                       log_every_n_steps=1, num_workers=0, keep_every_steps=0, progress_every=0)
        for name, low in minimum.items():
            value = getattr(self, name)
            if not _is_int(value) or value < low:
                raise ValueError(f"RunConfig.{name} ({_flag(name)}) must be an integer >= {low}, got {value!r}")
        if not _is_int(self.seed):
            raise ValueError(f"RunConfig.seed (--seed) must be an integer, got {self.seed!r}")
        if isinstance(self.grad_clip, bool) or not isinstance(self.grad_clip, (int, float)) or not \
                self.grad_clip >= 0:
            raise ValueError(f"RunConfig.grad_clip (--grad_clip) must be a number >= 0 (0 = off), got "
                             f"{self.grad_clip!r}")
        if not isinstance(self.progress, bool):
            raise ValueError(f"RunConfig.progress (--progress) must be a bool, got {self.progress!r}")
        if self.accelerator not in ACCELERATORS:
            raise ValueError(f"RunConfig.accelerator (--accelerator) must be one of {ACCELERATORS} (`auto` is "
                             f"resolved by run_config_from_args), got {self.accelerator!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"RunConfig.precision (--precision) must be one of {PRECISIONS}, got "
                             f"{self.precision!r}")
        if self.precision == "16-mixed" and self.accelerator == "cpu":
            raise ValueError("RunConfig.precision (--precision) 16-mixed needs a GPU; use bf16-mixed or 32 on CPU")

    @property
    def world_size(self) -> int:
        """Processes of the whole run (devices per node x nodes)."""
        return self.devices * self.num_nodes

    def as_flags(self) -> dict[str, Any]:
        """The settings under their flag names (`nproc` for devices), the save path as an absolute string: what a
        checkpoint's `hyper_parameters` stores."""
        out = {FLAG_NAMES.get(name, name): value for name, value in asdict(self).items()}
        out["save_path"] = str(self.save_path)
        return out


def add_run_arguments(parser: argparse.ArgumentParser, exclude: Sequence[str] = ()) -> None:
    """Add the run flags (`--save_path --nproc --num_nodes --accelerator --precision --seed --max_steps
    --num_workers --grad_clip --accumulate_grad_batches --ckpt_every_steps --keep_every_steps --log_every_n_steps
    --progress --progress_every`). A door changes a default with `parser.set_defaults(max_steps=...)`; `exclude`
    names flags (without dashes) the door sets itself (fine-tuning: `save_path` is `--out`, `max_steps` follows
    from `--max_epochs`) and sets those attributes of the parsed namespace before `run_config_from_args`."""
    unknown = sorted(set(exclude) - {_flag(f.name)[2:] for f in fields(RunConfig)})
    if unknown:
        raise ValueError(f"add_run_arguments: exclude names no run flag: {unknown}")

    def a(flag: str, *args: Any, **kwargs: Any) -> None:
        if flag[2:] not in exclude:
            parser.add_argument(flag, *args, **kwargs)

    a("--save_path", required=True, help="run folder: last.ckpt, periodic checkpoints, logs, curves.png")
    a("--nproc", type=int, default=None,
      help="devices (processes) per node (default: torchrun's LOCAL_WORLD_SIZE, SLURM's tasks per node, or 1)")
    a("--num_nodes", type=int, default=None, help="nodes (default: from torchrun / SLURM, or 1)")
    a("--accelerator", default="auto", choices=("auto", *ACCELERATORS))
    a("--precision", default="32", choices=(*PRECISION_ALIASES, *PRECISIONS))
    a("--seed", type=int, default=0)
    a("--max_steps", type=int, default=RunConfig.max_steps, help="optimizer steps")
    a("--num_workers", type=int, default=None, help="data-loader workers per device (default: from CPU count)")
    a("--grad_clip", type=float, default=0.0, help="gradient-norm clipping (0 = off, as the official runs)")
    a("--accumulate_grad_batches", type=int, default=1)
    a("--ckpt_every_steps", type=int, default=RunConfig.ckpt_every_steps,
      help="refresh last.ckpt every N optimizer steps")
    a("--keep_every_steps", type=int, default=RunConfig.keep_every_steps,
      help="keep checkpoint-step=N.ckpt every N steps (0 = none)")
    a("--log_every_n_steps", type=int, default=1)
    a("--progress", type=parse_bool, default=True, help="Lightning progress bar (shown when stdout is a terminal)")
    a("--progress_every", type=int, default=RunConfig.progress_every,
      help="when stdout is not a terminal (or the bar is off): one line with step, loss, lr and samples/s every "
           "N steps (0 = none)")


def _bounds(low: Optional[float], high: Optional[float], low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    return f"{'<' if high_open else '<='} {high:g}" if high is not None else ""


def check_flag(flag: str, value: object, low: Optional[float] = None, high: Optional[float] = None, *,
               integer: bool = False, low_open: bool = False, high_open: bool = False, note: str = "") -> None:
    """ValueError `--flag must be an integer in [low, high] (note), got VALUE` unless `value` is an int (`integer`)
    or a finite number within the bounds (`low_open` / `high_open`: that bound itself excluded). Bools, NaN and infinities are refused;
    VALUE is what the user typed (a door checks flags before deriving anything from them)."""
    kind = "an integer" if integer else "a finite number"
    number = isinstance(value, int) or (not integer and isinstance(value, float))
    fine = number and not isinstance(value, bool) and math.isfinite(value)  # type: ignore[arg-type]
    if fine and low is not None:
        fine = value > low if low_open else value >= low  # type: ignore[operator]
    if fine and high is not None:
        fine = value < high if high_open else value <= high  # type: ignore[operator]
    if not fine:
        raise ValueError(f"{flag} must be {kind} {_bounds(low, high, low_open, high_open)}".rstrip()
                         + (f" ({note})" if note else "") + f", got {value!r}")


def default_workers(devices: int, cpu_count: Optional[int] = None) -> int:
    """Loader workers per device: the CPUs left per device after its training process, between 1 and 10."""
    cpus = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
    return max(1, min(MAX_DEFAULT_WORKERS, cpus // devices - 1))


def _auto_accelerator() -> str:
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


def run_config_from_args(args: argparse.Namespace, environ: Optional[Mapping[str, str]] = None) -> RunConfig:
    """The RunConfig of parsed run flags; devices / nodes left out come from the launcher's environment.

    Raises ValueError (naming the flag) for invalid settings.
    """
    devices, nodes = launcher_topology(environ)
    devices = devices if args.nproc is None else args.nproc
    values = {f.name: getattr(args, f.name) for f in fields(RunConfig) if hasattr(args, f.name)}
    values.update(
        save_path=Path(args.save_path).resolve(),
        devices=devices,
        num_nodes=nodes if args.num_nodes is None else args.num_nodes,
        accelerator=_auto_accelerator() if args.accelerator == "auto" else args.accelerator,
        precision=PRECISION_ALIASES.get(args.precision, args.precision),
    )
    if values.get("num_workers") is None:
        values["num_workers"] = default_workers(devices) if _is_int(devices) and devices >= 1 else 0
    return RunConfig(**values)
