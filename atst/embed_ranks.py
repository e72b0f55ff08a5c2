"""`atst embed` across processes: under `torchrun --nproc_per_node N [--nnodes M ...]` each process embeds its
share of the plan on its own device, and process 0 writes the run's index once every process has finished.

* Topology from torchrun's environment (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`); without it, one process.
* Device: `cuda` (without an index) becomes `cuda:LOCAL_RANK`, so each process of a node takes its own GPU; an
  explicit `cuda:K` or `cpu` is used as given.
* Coordination: one gloo process group over torchrun's rendezvous (`MASTER_ADDR` / `MASTER_PORT`), used only to
  gather every process's outcomes (an `all_gather_object`, which is also the barrier), so the embeddings never
  wait on it and no GPU memory or NCCL is involved. A process that finishes early waits up to `WAIT` for the
  others. When a process crashes, torchrun stops the others; the outputs written so far are complete files, and
  a rerun (with any process count) keeps them and embeds only the rest.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Iterable, Iterator, Mapping, Optional

import torch

from .batch_embed import Outcome

WAIT = timedelta(hours=24)  # the longest a finished process waits for the slowest one


@dataclass(frozen=True)
class Topology:
    """This process's place in the run: `rank` of `world_size` processes, `local_rank` on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> "Topology":
        """From torchrun's `RANK`, `WORLD_SIZE`, `LOCAL_RANK` (one process when `WORLD_SIZE` is unset); a value that
        is not a non-negative integer, or a rank outside the world, is a ValueError naming the variable."""
        environ = os.environ if environ is None else environ
        if "WORLD_SIZE" not in environ:
            return cls()
        values = {}
        for name, default in (("WORLD_SIZE", None), ("RANK", None), ("LOCAL_RANK", "0")):
            text = environ.get(name, default)
            if text is None or not text.strip().isdigit():
                raise ValueError(f"${name} must be a non-negative integer (torchrun sets it), got {text!r}")
            values[name] = int(text)
        topology = cls(values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"])
        if not 0 <= topology.rank < topology.world_size:
            raise ValueError(f"$RANK {topology.rank} lies outside $WORLD_SIZE {topology.world_size}")
        return topology

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def rank_device(requested: str, topology: Topology, device_count: Optional[int] = None) -> torch.device:
    """The device of this process: `cuda` becomes `cuda:LOCAL_RANK` in a multi-process run; a LOCAL_RANK without a
    GPU of its own (`device_count`, default: the visible CUDA devices) is a ValueError saying what to change."""
    device = torch.device(requested)
    if device.type == "cuda" and device.index is None and topology.world_size > 1:
        count = torch.cuda.device_count() if device_count is None else device_count
        if topology.local_rank >= count:
            raise ValueError(f"process {topology.rank} has LOCAL_RANK {topology.local_rank} but {count} CUDA "
                             f"device(s) are visible: start at most {count} process(es) per machine "
                             f"(--nproc_per_node) or pass --device cpu")
        return torch.device("cuda", topology.local_rank)
    return device


@contextlib.contextmanager
def process_group(topology: Topology, timeout: timedelta = WAIT) -> Iterator[None]:
    """A gloo process group over torchrun's rendezvous for the run (nothing for one process)."""
    if topology.world_size == 1:
        yield
        return
    import torch.distributed as dist

    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise ValueError(f"a run of {topology.world_size} processes needs ${' and $'.join(missing)} (start it with "
                         f"torchrun, which sets them)")
    dist.init_process_group("gloo", rank=topology.rank, world_size=topology.world_size, timeout=timeout)
    try:
        yield
    finally:
        dist.destroy_process_group()


def gather_outcomes(outcomes: Iterable[Outcome], topology: Topology) -> list[Outcome]:
    """Every process's outcomes, on every process; returns once all have finished (the barrier)."""
    outcomes = list(outcomes)
    if topology.world_size == 1:
        return outcomes
    import torch.distributed as dist

    parts: list = [None] * topology.world_size
    dist.all_gather_object(parts, outcomes)
    return [outcome for part in parts for outcome in part]


__all__ = ["Topology", "WAIT", "gather_outcomes", "process_group", "rank_device"]
