"""`atst-pretrain` / `python -m pretrain`: teacher-student pre-training with the official train.py flags.

    atst-pretrain --arch small --data_path CORPUS --save_path runs/small --nproc 4 --batch_size_per_gpu 256
    atst-pretrain --method frame ...          (the default; the method's own flags follow its name)
    atst-pretrain --method clip ...           (ATST-Clip: two crops per clip, CLS BYOL)
    atst-pretrain plot SAVE_PATH [--out curves.png]

Restarting the same command resumes from SAVE_PATH/last.ckpt (a larger --max_steps trains longer). Ctrl-C
(SIGINT) or SIGTERM stops after the current step with last.ckpt written at that step (exit status 130 / 143); a
second signal stops at once. One run at a time per SAVE_PATH (a second one is refused, naming the first). Works
launched plainly (Lightning starts --nproc processes), under torchrun (one process per device; --nproc and
--num_nodes default to torchrun's --nproc_per_node / --nnodes; write `-m pretrain -- --nproc ...` if you pass
them, since torchrun would read `--nproc` as its own abbreviated option) and under SLURM (srun, one task per
device).
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional, Sequence

from atst.encoder import ARCHS
from atst.training.config import RunConfig, add_run_arguments, check_flag, run_config_from_args
from atst.training.launch import tensorboard_without_tensorflow

from .methods import DEFAULT_METHOD, METHODS, PretrainMethod, get_method

PROG = "atst-pretrain"
MAX_PROJECTOR_HIDDEN = 65536


def _method_name(argv: Sequence[str]) -> str:
    """The `--method` of a command line (default frame), read before the full parser exists."""
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--method", default=DEFAULT_METHOD, choices=sorted(METHODS))
    return early.parse_known_args(list(argv))[0].method


def build_parser(method: str = DEFAULT_METHOD) -> argparse.ArgumentParser:
    """The full parser for `method`: shared pre-training flags (with the method's recipe defaults), the method's
    flags, the run flags."""
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--method", default=DEFAULT_METHOD, choices=sorted(METHODS),
      help=" | ".join(f"{m.name}: {m.description}" for m in METHODS.values()))
    # the official train.py flags every method has (defaults: the method's recipe, `PretrainMethod.defaults`)
    a("--arch", default="small", choices=sorted(ARCHS), help="tiny (tests/demos), small or base")
    a("--data_path", required=True, help="folder, CSV/TSV manifest, or WebDataset shards 'dir/{000000..000099}.tar'")
    a("--batch_size_per_gpu", type=int)
    a("--warmup_steps", type=int)
    a("--ema", type=float, help="initial teacher momentum (cosine to 1)")
    a("--subset", type=int, help="fixed random subset of the corpus (0 = all)")
    a("--learning_rate", type=float, help="per 256 samples; scaled by devices x batch / 256")
    # this project's additions
    a("--collapse_std", type=float, default=0.01, help="warn when the embedding std falls below this")
    a("--projector_hidden", type=int, default=4096)
    add_run_arguments(p)
    chosen = get_method(method)
    chosen.add_arguments(p)
    p.set_defaults(**chosen.defaults)
    return p


def _fail(message: object) -> SystemExit:
    return SystemExit(f"{PROG}: error: {message}")


def check_args(args: argparse.Namespace) -> RunConfig:
    """Reject impossible settings before any process is started (SystemExit with a clear message); returns the
    run config (devices and nodes filled from the launcher)."""
    try:
        run = run_config_from_args(args)
        check_flag("--batch_size_per_gpu", args.batch_size_per_gpu, 1, integer=True)
        if not 0 <= args.warmup_steps <= args.max_steps:
            raise ValueError(f"need 0 <= --warmup_steps <= --max_steps, got {args.warmup_steps} / {args.max_steps}")
        check_flag("--ema", args.ema, 0.0, 1.0, note="initial teacher momentum")
        check_flag("--subset", args.subset, 0, integer=True, note="0 = the whole corpus")
        check_flag("--learning_rate", args.learning_rate, 0.0, low_open=True,
                   note="per 256 samples, before the scaling by devices x batch / 256")
        check_flag("--collapse_std", args.collapse_std, 0.0)
        check_flag("--projector_hidden", args.projector_hidden, 1, MAX_PROJECTOR_HIDDEN, integer=True)
        get_method(args.method).check(args)
    except ValueError as error:
        raise _fail(error) from None
    return run


def hyper_parameters(args: argparse.Namespace, run: RunConfig) -> dict:
    """Every flag (the run's resolved values included), with the official lr scaling (learning_rate x devices x
    batch / 256) and spec_h = n_mels."""
    hp = {**vars(args), **run.as_flags()}
    hp["learning_rate"] = args.learning_rate * run.world_size * args.batch_size_per_gpu / 256
    hp["learning_rate_per_256"] = args.learning_rate
    if "n_mels" in hp:
        hp["spec_h"] = args.n_mels
    return hp


def train(argv: Sequence[str]) -> int:
    """Check the flags, claim --save_path (created, writable, locked by the run's rank-0 process), train; returns
    the exit status (130 / 143 on rank 0 when SIGINT / SIGTERM stopped the run)."""
    method: PretrainMethod = get_method(_method_name(argv))
    args = build_parser(method.name).parse_args(argv)
    run = check_args(args)
    hp = hyper_parameters(args, run)
    from atst.training.launch import launch_rank
    from atst.training.run_folder import claim_save_path

    try:
        lock = claim_save_path(run.save_path, take_lock=launch_rank(run.devices) == 0)
    except ValueError as error:
        raise _fail(error) from None
    try:
        return _fit(args, run, hp, method)
    finally:
        if lock is not None:
            lock.release()


def _fit(args: argparse.Namespace, run: RunConfig, hp: dict, method: PretrainMethod) -> int:
    tensorboard_without_tensorflow()
    from atst.training.lightning import pl, rank_zero_info

    from atst.fileio import remove_stale_temporaries
    from atst.training.checkpoint_io import resume_point
    from atst.training.corpus import resolve_corpus
    from atst.training.interrupt import exit_status
    from atst.training.launch import build_trainer

    from .datamodule import PretrainData, check_corpus_size
    from .module import TeacherStudentPretrain

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        corpus = resolve_corpus(args.data_path)
        check_corpus_size(corpus, hp, run.world_size)
    except (FileNotFoundError, ValueError) as error:
        raise _fail(error) from None

    pl.seed_everything(run.seed, workers=True, verbose=False)
    module = TeacherStudentPretrain(**hp)
    try:
        resume = resume_point(run.save_path, hp, ("method", *method.structural_flags), model=module,
                              optimizers=[module.configure_optimizers()])
    except ValueError as error:
        raise _fail(error) from None
    trainer = build_trainer(run, find_unused_parameters=method.find_unused_parameters)
    if trainer.is_global_zero:
        remove_stale_temporaries(run.save_path)
    rank_zero_info(
        f"{PROG}: method {method.name}, arch {args.arch}, {corpus.kind} corpus {corpus.source} ({len(corpus.items)} "
        f"{'files' if corpus.kind == 'files' else 'shards'}), {run.world_size} device(s) x {args.batch_size_per_gpu} "
        f"{method.describe(hp)}, lr {hp['learning_rate']:.3g}, {run.max_steps} steps, {run.accelerator} "
        f"{run.precision}; run folder {run.save_path}"
        + (f"; resuming from {resume[0]} at step {resume[1]}" if resume else ""))
    trainer.fit(module, datamodule=PretrainData(corpus, hp, method), ckpt_path=str(resume[0]) if resume else None,
                weights_only=True)
    return exit_status(trainer)


def plot_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"{PROG} plot", description="PNG of a run's training curves")
    parser.add_argument("logdir", help="a run's --save_path (or its csv_logs folder)")
    parser.add_argument("--out", default=None, help="output PNG (default LOGDIR/curves.png)")
    parser.add_argument("--collapse_std", type=float, default=None,
                        help="collapse threshold drawn on the std panel (default: the run's --collapse_std)")
    args = parser.parse_args(argv)
    from atst.training.curves import logged_hyper_parameters, plot_curves

    try:
        threshold = args.collapse_std
        if threshold is None:
            threshold = logged_hyper_parameters(args.logdir).get("collapse_std")
        print(plot_curves(args.logdir, args.out, collapse_std=threshold))
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"{PROG} plot: error: {error}") from None
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--":  # `torchrun ... -m pretrain -- --nproc 1 ...` (torchrun would take --nproc)
        argv = argv[1:]
    if argv and argv[0] == "plot":
        return plot_main(argv[1:])
    return train(argv)


if __name__ == "__main__":
    sys.exit(main())
