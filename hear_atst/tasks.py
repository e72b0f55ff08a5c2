"""Moved: the HEAR task writer is `atst.synthetic.hear_tasks`, the pre-training corpus `atst.synthetic.corpus`.

Kept only while `tests/test_hear_harness.py` imports `make_tasks` from here; new code imports `atst.synthetic`.
"""
from atst.synthetic.hear_tasks import make_tasks

__all__ = ["make_tasks"]
