"""The end-of-run scores of a DDP `sed` run are gathered on rank 0 only (2 gloo processes on CPU): the other ranks
keep no more than their own share, while the per-epoch validation losses still reach every rank."""
from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from atst.training.distributed import gather_objects_to_zero
from downstream.sed.module import score_recordings

RECORDINGS = 5  # indices 0..4; rank r scores the indices i with i % 2 == r
CLASSES = 3


class FramesModel(torch.nn.Module):
    """Stands for `SedModel`: the scores of a recording are its `audio` row repeated over 4 frames."""

    def recording_scores(self, waves, trim=True):
        return [wave[:CLASSES].repeat(4, 1) for wave in waves]


def _share(rank: int) -> list[list[dict]]:
    return [[{"key": f"r{i}", "index": i, "audio": torch.full((CLASSES,), float(i)), "error": None}]
            for i in range(RECORDINGS) if i % 2 == rank]


def _worker(rank: int, init_file: str, results: dict) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        model = FramesModel()
        to_zero = score_recordings(model, _share(rank), torch.device("cpu"), "32-true", to_rank_zero=True)
        everywhere = score_recordings(model, _share(rank), torch.device("cpu"), "32-true")
        losses = score_recordings(model, _share(rank), torch.device("cpu"), "32-true",
                                  reduce=lambda index, scores: float(scores.sum()))
        results[rank] = ({index: scores.tolist() for index, scores in to_zero.items()}, sorted(everywhere),
                         losses, gather_objects_to_zero(rank * 10))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_final_scores_reach_rank_zero_only(tmp_path):
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_worker, args=(str(tmp_path / "store"), results), nprocs=2, join=True)
        results = dict(results)
    zero, everywhere_zero, losses_zero, gathered_zero = results[0]
    one, everywhere_one, losses_one, gathered_one = results[1]
    assert sorted(zero) == list(range(RECORDINGS))
    assert all(zero[i] == [[float(i)] * CLASSES] * 4 for i in range(RECORDINGS))
    assert one == {} and gathered_one == []
    assert gathered_zero == [0, 10]
    # without to_rank_zero (and for the validation losses) every rank still gets every recording
    assert everywhere_zero == everywhere_one == list(range(RECORDINGS))
    assert losses_zero == losses_one == {i: 12.0 * i for i in range(RECORDINGS)}


def test_outside_a_process_group_everything_is_local():
    assert gather_objects_to_zero({"a": 1}) == [{"a": 1}]
    scores = score_recordings(FramesModel(), _share(0), torch.device("cpu"), "32-true", to_rank_zero=True)
    assert sorted(scores) == [0, 2, 4]
