"""The subcommands of `atst-downstream`, one module each (`HELP`, `add_arguments(parser)`, `run(args) -> int`)."""
from __future__ import annotations

from ..results import EXIT_OK, EXIT_SKIPPED, report_skipped

__all__ = ["EXIT_OK", "EXIT_SKIPPED", "report_skipped"]
