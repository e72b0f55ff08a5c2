"""The demo: every door of the project end to end on generated data, one command.

    python -m atst.demo --out demo_out [--quick] [--stages corpus,tasks,...]

* `settings`  the stages, the two models compared and the size presets (`Settings`, `QUICK`, `PRESETS`)
* `driver`    the stages, each running one command line of the project in a subprocess (`Demo`)
* `report`    scores, the loss curve and the results table (`write_report`)
* `cli`       the command line (`main`)

It imports no door (`hear_atst`, `s3prl_upstream`, `pretrain`): it drives them through their command lines.
"""
from .cli import main, parse_stages
from .driver import Demo, StageError, s3prl_config_path
from .report import score_value, winner, write_report
from .settings import FULL, MODELS, PRESETS, QUICK, STAGES, Settings

__all__ = ["Demo", "FULL", "MODELS", "PRESETS", "QUICK", "STAGES", "Settings", "StageError", "main",
           "parse_stages", "s3prl_config_path", "score_value", "winner", "write_report"]
