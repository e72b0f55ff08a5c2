"""The subcommands of `atst-downstream`, one module each (`HELP`, `add_arguments(parser)`, `run(args) -> int`)."""
