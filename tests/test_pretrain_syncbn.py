"""The heads' batch norm synchronised over 2 gloo processes equals one BatchNorm1d over all rows (CPU)."""
from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from atst.training.distributed import GlobalBatchNorm1d

pytestmark = pytest.mark.slow
ROWS = (5, 9)  # a different number of rows per rank, as with masked tokens


def _data():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(sum(ROWS), 6, generator=generator) * 3 + 1
    upstream = torch.randn(sum(ROWS), 6, generator=generator)
    return x, upstream


def _worker(rank: int, init_file: str, results: dict) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        x, upstream = _data()
        start = sum(ROWS[:rank])
        part = x[start : start + ROWS[rank]].clone().requires_grad_(True)
        bn = GlobalBatchNorm1d(6)
        with torch.no_grad():
            bn.weight.copy_(torch.linspace(0.5, 1.5, 6))
            bn.bias.copy_(torch.linspace(-1, 1, 6))
        out = bn(part)
        (out * upstream[start : start + ROWS[rank]]).sum().backward()
        results[rank] = (out.detach(), part.grad, bn.running_mean.clone(), bn.running_var.clone())
    finally:
        dist.destroy_process_group()


def test_global_batch_norm_matches_single_process_batch_norm(tmp_path):
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_worker, args=(str(tmp_path / "store"), results), nprocs=2, join=True)
        results = dict(results)
    x, upstream = _data()
    x = x.clone().requires_grad_(True)
    reference = torch.nn.BatchNorm1d(6)
    with torch.no_grad():
        reference.weight.copy_(torch.linspace(0.5, 1.5, 6))
        reference.bias.copy_(torch.linspace(-1, 1, 6))
    expected = reference(x)
    (expected * upstream).sum().backward()
    out = torch.cat([results[0][0], results[1][0]])
    grad = torch.cat([results[0][1], results[1][1]])
    torch.testing.assert_close(out, expected.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grad, x.grad, atol=1e-5, rtol=1e-5)
    for rank in range(2):
        torch.testing.assert_close(results[rank][2], reference.running_mean, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(results[rank][3], reference.running_var, atol=1e-5, rtol=1e-5)
