"""Shared test fixtures: the parity fixtures from ../shared and checkpoints the tests build themselves."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from atst.synthetic import write_official_checkpoint

REPO = Path(__file__).resolve().parents[1]


def fixtures_dir() -> Path:
    """`$ATST_FIXTURES` or ../shared/fixtures; a missing directory fails loudly (never skips)."""
    path = Path(os.environ.get("ATST_FIXTURES", REPO.parent / "shared" / "fixtures"))
    if not (path / "atstframe_tiny_reference.pt").is_file():
        raise FileNotFoundError(f"parity fixtures not found at {path}: set $ATST_FIXTURES or put shared/ beside "
                                f"the repository")
    return path


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return fixtures_dir()


@pytest.fixture(scope="session")
def tiny_frame_ckpt(tmp_path_factory) -> Path:
    """A random-weight tiny (D=192, 12 blocks, 3 heads) ATST-Frame checkpoint in the official Lightning layout."""
    return write_official_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny_frame.ckpt", arch="tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_clip_ckpt(tmp_path_factory) -> Path:
    """A random-weight tiny ATST-Clip checkpoint in the official Lightning layout (train_len 6 s)."""
    return write_official_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny_clip.ckpt", arch="tiny",
                                     family="clip", seed=0)
