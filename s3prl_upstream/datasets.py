"""`python -m s3prl_upstream.datasets speech_commands|voxceleb1 DIR [--seed 0] [--source auto|espeak|tones]`.

Tiny datasets in the layouts of s3prl's `speech_commands` (KS) and `voxceleb1` (SID) downstreams, written by
`atst.synthetic.superb` (`make_speech_commands`, `make_voxceleb1`); this module is the SUPERB door's name for
its command line.
"""
from __future__ import annotations

import sys
from typing import Optional, Sequence

from atst.synthetic import cli

LAYOUTS = ("speech_commands", "voxceleb1")


def main(argv: Optional[Sequence[str]] = None) -> int:
    return cli.main(argv, prog="python -m s3prl_upstream.datasets", commands=LAYOUTS, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
