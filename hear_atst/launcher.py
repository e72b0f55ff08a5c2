"""`atst-hear`: the stock HEAR harness (validator, embeddings runner, predictions runner) run in-process.

    atst-hear validate --model atstframe_base               # hearvalidator's checks, "Looks good!"
    atst-hear embed --model CKPT --tasks-dir TASKS          # heareval embeddings runner (CKPT: file or name)
    atst-hear predict embeddings/hear_atst/*                # heareval predictions runner (PL 2 / torch >= 2.6)
    atst-hear make-tasks TASKS --size small                 # generated tasks in the hear-preprocess layout
    atst-hear make-corpus CORPUS --n-clips 64               # unlabelled generated clips for pre-training
    atst-hear standin-path                                  # folder holding the TensorFlow stand-in

The harness code is the installed hearvalidator / heareval; `hear_atst.compat` only adjusts, in this process, the
names that no longer work on a modern stack (see `hear_atst/compat/`), so scores are the stock runner's.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

from atst.flags import parse_bool
from atst.hub import resolve_checkpoint
from atst.synthetic import cli as synthetic_cli

from .compat import apply_prediction_compat, select_tensorflow
from .compat.tf import POLICIES

DEFAULT_MODULE = "hear_atst"


@contextmanager
def _stage(what: str) -> Iterator[None]:
    print(f"[atst-hear] {what} ...", flush=True)
    start = time.perf_counter()
    yield
    print(f"[atst-hear] {what}: done in {time.perf_counter() - start:.1f} s", flush=True)


def _click_bool(value: str) -> str:
    """A boolean flag (any word `atst.flags.parse_bool` accepts) as the "True"/"False" text click parses."""
    return str(parse_bool(value))


def _json_dict(value: str) -> str:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"--model-options must be a JSON object: {error}") from None
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError(f"--model-options must be a JSON object, got {value!r}")
    return value


def _checkpoint(value: str) -> str:
    """A checkpoint file, or a released checkpoint's name resolved to its cached file (downloaded first if needed:
    the stock runners take an existing path); "" stays "" (the default: $ATST_CHECKPOINT)."""
    if not value:
        return value
    try:
        path = resolve_checkpoint(value)
    except (OSError, ValueError) as error:  # unknown name, offline and not cached, download or verification failed
        raise argparse.ArgumentTypeError(str(error)) from None
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"checkpoint {value!r} does not exist (or is not a file)")
    return str(path)


def cmd_validate(args: argparse.Namespace) -> int:
    """hearvalidator's `main` with our argv; TensorFlow or the stand-in chosen first."""
    print(f"[atst-hear] tensorflow: {select_tensorflow(args.tensorflow)}", flush=True)
    from hearvalidator import validate

    argv = [args.module] + (["--model", args.model] if args.model else [])
    argv += ["--device", args.device] if args.device else []
    with _stage(f"hear-validator {' '.join(argv)}"):
        saved, sys.argv = sys.argv, ["hear-validator"] + argv
        try:
            validate.main()
        except validate.ModelError as error:
            print(f"[atst-hear] validation FAILED: {error}", file=sys.stderr)
            return 1
        finally:
            sys.argv = saved
    return 0


def _run_click(command, argv: List[str], prog: str) -> None:
    command.main(args=argv, prog_name=prog, standalone_mode=False)


def cmd_embed(args: argparse.Namespace) -> int:
    """heareval's embeddings runner with our argv."""
    print(f"[atst-hear] tensorflow: {select_tensorflow(args.tensorflow)}", flush=True)
    from heareval.embeddings import runner

    tasks_dir = Path(args.tasks_dir)
    if not tasks_dir.is_dir():
        print(f"[atst-hear] tasks dir {tasks_dir} does not exist: generate tasks with `atst-hear make-tasks "
              f"{tasks_dir}` or point --tasks-dir at hear-preprocess output", file=sys.stderr)
        return 2
    argv = [args.module, "--tasks-dir", args.tasks_dir, "--task", args.task,
            "--embeddings-dir", args.embeddings_dir, "--model-options", args.model_options]
    argv += ["--model", args.model] if args.model else []
    with _stage(f"heareval embeddings runner {' '.join(argv)}"):
        _run_click(runner.runner, argv, "heareval.embeddings.runner")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """heareval's predictions runner with the Lightning-2 / torch >= 2.6 adjustments applied."""
    missing = [d for d in args.task_dirs if not (Path(d) / "task_metadata.json").is_file()]
    if missing:
        print(f"[atst-hear] not embedding task directories (no task_metadata.json): {', '.join(missing)}; "
              f"run `atst-hear embed` first and pass embeddings/<module>/<task>", file=sys.stderr)
        return 2
    apply_prediction_compat()
    from heareval.predictions import runner

    argv = list(args.task_dirs) + ["--grid-points", str(args.grid_points), "--grid", args.grid,
                                   "--in-memory", args.in_memory, "--deterministic", args.deterministic,
                                   "--shuffle", args.shuffle]
    argv += ["--gpus", args.gpus] if args.gpus is not None else []
    with _stage(f"heareval predictions runner on {len(args.task_dirs)} task(s)"):
        _run_click(runner.runner, argv, "heareval.predictions.runner")
    for task_dir in args.task_dirs:
        scores_path = Path(task_dir) / "test.predicted-scores.json"
        if scores_path.is_file():
            test = json.loads(scores_path.read_text())
            scores = test.get("aggregated_scores", test.get("test", {}))
            shown = {k: round(v, 4) for k, v in scores.items()
                     if isinstance(v, (int, float)) and k.startswith("test_") and "loss" not in k
                     and not k.startswith("test_score")}
            print(f"[atst-hear] {Path(task_dir).name}: {shown}", flush=True)
    return 0


def cmd_standin_path(args: argparse.Namespace) -> int:
    from . import tf_standin

    print(tf_standin.directory())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="atst-hear", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def tensorflow_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--tensorflow", choices=POLICIES, default="auto",
                       help="auto: real TensorFlow when importable and usable, else the built-in stand-in "
                            "(PyTorch models need no TensorFlow)")

    p = sub.add_parser("validate", help="run hear-validator's checks in-process")
    p.add_argument("--module", default=DEFAULT_MODULE, help="HEAR module to validate (default hear_atst)")
    p.add_argument("--model", "-m", default="", type=_checkpoint,
                   help="checkpoint file or released name, e.g. atstframe_base (default: $ATST_CHECKPOINT)")
    p.add_argument("--device", "-d", default=None, help="cpu or cuda (default: cuda if available)")
    tensorflow_option(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("embed", help="run heareval's embeddings runner in-process")
    p.add_argument("--module", default=DEFAULT_MODULE)
    p.add_argument("--model", "-m", default=None, type=_checkpoint,
                   help="checkpoint file or released name, e.g. atstframe_base")
    p.add_argument("--tasks-dir", default="tasks")
    p.add_argument("--task", default="all", help="one task directory name, or all")
    p.add_argument("--embeddings-dir", default="embeddings")
    p.add_argument("--model-options", default="{}", type=_json_dict,
                   help='JSON kwargs for load_model, e.g. \'{"n_blocks": 1}\'')
    tensorflow_option(p)
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("predict", help="run heareval's predictions runner in-process (Lightning 2 compatible)")
    p.add_argument("task_dirs", nargs="+", help="embedding task dirs, e.g. embeddings/hear_atst/*")
    p.add_argument("--grid-points", type=int, default=8)
    p.add_argument("--grid", choices=("default", "fast", "faster"), default="default")
    p.add_argument("--gpus", default=None, help='JSON, e.g. "[0]" (default: "[0]" if CUDA is available)')
    p.add_argument("--in-memory", type=_click_bool, default="True")
    p.add_argument("--deterministic", type=_click_bool, default="True")
    p.add_argument("--shuffle", type=_click_bool, default="False")
    p.set_defaults(func=cmd_predict)

    # the generated-data commands of atst.synthetic, under the names this launcher has always used
    synthetic_cli.add_command(sub, "make-tasks", "tasks")
    synthetic_cli.add_command(sub, "make-corpus", "corpus")

    p = sub.add_parser("standin-path", help="print the folder to put on PYTHONPATH for stock commands without TF")
    p.set_defaults(func=cmd_standin_path)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
