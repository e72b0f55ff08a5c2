"""The subcommands of `atst-downstream`, one module each (`HELP`, `add_arguments(parser)`, `run(args) -> int`)."""
from __future__ import annotations

import sys
from typing import Sequence

EXIT_OK, EXIT_SKIPPED = 0, 1


def report_skipped(skipped: Sequence[str], what: str) -> int:
    """Name each skipped input once on stderr (`skipped: ...`), then how many and `what` became of the others
    ("clip(s) skipped; the others were used"); returns the exit status: 1 when any was skipped, else 0."""
    for line in skipped:
        print(f"skipped: {line}", file=sys.stderr)
    if skipped:
        print(f"{len(skipped)} {what}", file=sys.stderr)
        return EXIT_SKIPPED
    return EXIT_OK
