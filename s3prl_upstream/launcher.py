"""`atst-s3prl` (and `python -m s3prl_upstream`): s3prl's `run_downstream` with `atst_frame` registered.

Every run_downstream flag is passed through unchanged. Four conveniences, each printed when it applies:
* `-u atst_frame -k NAME` with a released checkpoint's name (`atstframe_base`, ...) downloads it once into the
  cache (or finds it there) before s3prl starts, and passes the cached file on;
* `-c NAME` where NAME is not a file but a shipped config (`speech_commands`, `KS`, ...) uses the shipped file;
* a new experiment (no `-e`/`-a`) without `-c` uses the shipped config of `-d` when there is one (s3prl's own
  default, `./downstream/<d>/config.yaml`, exists only in a clone of the s3prl repository);
* without `--device`, `cpu` is used when CUDA is unavailable (s3prl defaults to `cuda` and crashes otherwise).
"""
from __future__ import annotations

import os
import sys
from typing import Optional, Sequence

from atst.hub import requested_release, resolve_checkpoint

from .hubconf import ENTRIES
from .tasks import TASKS, config_path


def _find(argv: Sequence[str], short: Optional[str], long: str) -> Optional[int]:
    """Index of the flag's value in argv (`-c X`, `--config X`, `--config=X`), None when absent."""
    for index, arg in enumerate(argv):
        if arg in (short, long):
            return index + 1 if index + 1 < len(argv) else None
        if arg.startswith(long + "="):
            return index
    return None


def _value(argv: Sequence[str], index: int) -> str:
    arg = argv[index]
    return arg.split("=", 1)[1] if arg.startswith("--") and "=" in arg else arg


def _resolve_release(argv: list) -> None:
    """Replace the `-k NAME` of an atst upstream by the cached file of that released checkpoint (fetched first)."""
    upstream_at, ckpt_at = _find(argv, "-u", "--upstream"), _find(argv, "-k", "--upstream_ckpt")
    if upstream_at is None or ckpt_at is None or _value(argv, upstream_at) not in ENTRIES:
        return
    name = _value(argv, ckpt_at)
    try:
        if requested_release(name) is None:
            return
        path = str(resolve_checkpoint(name))
    except (OSError, ValueError) as error:  # unknown name, offline and not cached, download or verification failed
        raise SystemExit(f"atst-s3prl: -k {name}: {error}") from None
    argv[ckpt_at] = path if not argv[ckpt_at].startswith("--") else f"--upstream_ckpt={path}"
    print(f"[atst-s3prl] - -k {name}: using the released checkpoint {path}")


def prepare_argv(argv: Sequence[str], cuda_available: Optional[bool] = None) -> list:
    """Resolve released checkpoint names, shipped configs and the default device; everything else is returned
    unchanged."""
    argv = list(argv)
    _resolve_release(argv)
    config_at = _find(argv, "-c", "--config")
    resuming = _find(argv, "-e", "--past_exp") is not None or "-a" in argv or "--auto_resume" in argv
    if config_at is not None:
        value = _value(argv, config_at)
        if not os.path.isfile(value):
            try:
                shipped = str(config_path(value))
            except FileNotFoundError:
                raise SystemExit(f"atst-s3prl: config {value!r} is neither a file nor a shipped config; shipped: "
                                 f"{sorted(TASKS.values())}") from None
            argv[config_at] = shipped if not argv[config_at].startswith("--") else f"--config={shipped}"
            print(f"[atst-s3prl] - using the shipped config {shipped}")
    elif not resuming:
        downstream_at = _find(argv, "-d", "--downstream")
        if downstream_at is not None:
            try:
                shipped = str(config_path(_value(argv, downstream_at)))
            except FileNotFoundError:
                shipped = None
            if shipped:
                argv += ["-c", shipped]
                print(f"[atst-s3prl] - no -c given: using the shipped config {shipped}")
    if _find(argv, None, "--device") is None:
        if cuda_available is None:
            import torch

            cuda_available = torch.cuda.is_available()
        if not cuda_available:
            argv += ["--device", "cpu"]
            print("[atst-s3prl] - CUDA is not available: running with --device cpu")
    return argv


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Apply the compatibility layer, register the hub entries, run s3prl's run_downstream with `argv`."""
    from . import register

    argv = list(sys.argv[1:] if argv is None else argv)
    if not any(arg in ("-h", "--help") for arg in argv):
        argv = prepare_argv(argv)
    register()
    from s3prl import run_downstream

    saved = sys.argv
    sys.argv = ["atst-s3prl", *argv]
    try:
        run_downstream.main()
    finally:
        sys.argv = saved


if __name__ == "__main__":
    main()
