"""`atst-pretrain` / `python -m pretrain`: ATST-Frame pre-training with the official train.py flags.

    atst-pretrain --arch small --data_path CORPUS --save_path runs/small --nproc 4 --batch_size_per_gpu 256
    atst-pretrain plot SAVE_PATH [--out curves.png]

Restarting the same command resumes from SAVE_PATH/last.ckpt (a larger --max_steps trains longer). Works
launched plainly (Lightning starts --nproc processes), under torchrun (one process per device; --nproc and
--num_nodes default to torchrun's --nproc_per_node / --nnodes; write `-m pretrain -- --nproc ...` if you pass
them, since torchrun would read `--nproc` as its own abbreviated option) and under SLURM (srun, one task per
device).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from atst.encoder import ARCHS

from .masking import MASK_TYPES

PRECISIONS = ("32", "32-true", "bf16-mixed", "16-mixed")
ACCELERATORS = ("auto", "cpu", "gpu")
MAX_TOKENS = 250


def str2bool(text: str) -> bool:
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "y", "t"):
        return True
    if value in ("0", "false", "no", "n", "f"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false), got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="atst-pretrain", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    # the official train.py flags (defaults: the README ATST-Frame small command)
    a("--arch", default="small", choices=sorted(ARCHS), help="tiny (tests/demos), small or base")
    a("--data_path", required=True, help="folder, CSV/TSV manifest, or WebDataset shards 'dir/{000000..000099}.tar'")
    a("--save_path", required=True, help="run folder: last.ckpt, periodic checkpoints, logs, curves.png")
    a("--nproc", type=int, default=None,
      help="devices (processes) per node (default: torchrun's LOCAL_WORLD_SIZE, SLURM's tasks per node, or 1)")
    a("--batch_size_per_gpu", type=int, default=256)
    a("--warmup_steps", type=int, default=1950)
    a("--max_steps", type=int, default=58500)
    a("--ema", type=float, default=0.997, help="initial teacher momentum (cosine to 1)")
    a("--subset", type=int, default=200000, help="fixed random subset of the corpus (0 = all)")
    a("--learning_rate", type=float, default=4e-4, help="per 256 samples; scaled by devices x batch / 256")
    a("--patch_h", type=int, default=64)
    a("--patch_w", type=int, default=4)
    a("--pos_type", default="cut", choices=["cut"])
    a("--mask_type", default="block", choices=MASK_TYPES)
    a("--mask_ratio", type=float, default=0.65)
    a("--mask_len", type=int, default=5)
    a("--min_mask_len", type=int, default=2, help="minimum number of mask spans (official name)")
    a("--symmetric", type=str2bool, default=True)
    a("--n_mels", type=int, default=64)
    a("--anchor_len", type=float, default=10.0, help="crop length in seconds (at most 10)")
    a("--aug_tea", type=str2bool, default=False)
    a("--aug_stu", type=str2bool, default=True)
    a("--mix_up", type=str2bool, default=True)
    a("--freq_wrap", type=str2bool, default=True)
    a("--win_length", type=int, default=1024)
    a("--avg_blocks", type=int, default=0, choices=[0])
    a("--patch_embed", default="Linear", choices=["Linear"])
    a("--nprompt", type=int, default=0, choices=[0])
    # this project's additions
    a("--accelerator", default="auto", choices=ACCELERATORS)
    a("--precision", default="32", choices=PRECISIONS)
    a("--num_nodes", type=int, default=None, help="nodes (default: from torchrun / SLURM, or 1)")
    a("--num_workers", type=int, default=None, help="data-loader workers per device (default: from CPU count)")
    a("--seed", type=int, default=0)
    a("--grad_clip", type=float, default=0.0, help="gradient-norm clipping (0 = off, as the official run)")
    a("--accumulate_grad_batches", type=int, default=1)
    a("--ckpt_every_steps", type=int, default=500, help="refresh last.ckpt every N optimizer steps")
    a("--keep_every_steps", type=int, default=10000, help="keep checkpoint-step=N.ckpt every N steps (0 = none)")
    a("--log_every_n_steps", type=int, default=1)
    a("--collapse_std", type=float, default=0.01, help="warn when the embedding std falls below this")
    a("--mixup_bank", type=int, default=2000, help="Mixup memory-bank size per data-loader worker")
    a("--projector_hidden", type=int, default=4096)
    a("--progress", type=str2bool, default=True, help="Lightning progress bar")
    return p


def launcher_topology(environ: Optional[dict] = None) -> tuple[int, int]:
    """(processes per node, nodes) announced by torchrun or SLURM, else (1, 1)."""
    environ = os.environ if environ is None else environ
    if "LOCAL_WORLD_SIZE" in environ and "WORLD_SIZE" in environ:  # torchrun / torch elastic
        local = int(environ["LOCAL_WORLD_SIZE"])
        return local, max(1, int(environ["WORLD_SIZE"]) // max(local, 1))
    if "SLURM_NTASKS_PER_NODE" in environ and "SLURM_NNODES" in environ:
        return int(environ["SLURM_NTASKS_PER_NODE"].split("(")[0]), int(environ["SLURM_NNODES"])
    return 1, 1


def fill_topology(args: argparse.Namespace) -> None:
    """Default --nproc / --num_nodes from the launcher's environment."""
    nproc, nodes = launcher_topology()
    args.nproc = nproc if args.nproc is None else args.nproc
    args.num_nodes = nodes if args.num_nodes is None else args.num_nodes


def check_args(args: argparse.Namespace) -> None:
    """Reject impossible settings before any process is started (clear messages)."""
    def fail(message: str) -> None:
        raise SystemExit(f"atst-pretrain: error: {message}")

    if args.nproc < 1 or args.num_nodes < 1:
        fail("--nproc and --num_nodes must be >= 1")
    if args.batch_size_per_gpu < 1:
        fail("--batch_size_per_gpu must be >= 1")
    if args.max_steps < 1 or not 0 <= args.warmup_steps <= args.max_steps:
        fail(f"need --max_steps >= 1 and 0 <= --warmup_steps <= --max_steps, got {args.warmup_steps} / "
             f"{args.max_steps}")
    if not 0.0 <= args.ema <= 1.0:
        fail(f"--ema must lie in [0, 1], got {args.ema}")
    if not 0.0 < args.mask_ratio < 1.0 or args.mask_len < 1:
        fail(f"--mask_ratio must lie in (0, 1) and --mask_len >= 1, got {args.mask_ratio} / {args.mask_len}")
    if args.patch_h != args.n_mels:
        fail(f"--patch_h ({args.patch_h}) must equal --n_mels ({args.n_mels}): one patch row (spec_h = n_mels)")
    tokens = (int(round(args.anchor_len * 16000)) // 160 + 1) // args.patch_w
    if not 1 <= tokens <= MAX_TOKENS:
        fail(f"--anchor_len {args.anchor_len} s gives {tokens} tokens; it must give 1..{MAX_TOKENS} "
             f"(at most 10 s with --patch_w 4)")
    if args.precision == "16-mixed" and args.accelerator == "cpu":
        fail("--precision 16-mixed needs a GPU; use bf16-mixed or 32 on CPU")
    if args.accumulate_grad_batches < 1 or args.ckpt_every_steps < 1 or args.keep_every_steps < 0:
        fail("--accumulate_grad_batches and --ckpt_every_steps must be >= 1, --keep_every_steps >= 0")


def hyper_parameters(args: argparse.Namespace) -> dict:
    """Every flag, with the official lr scaling (learning_rate x devices x batch / 256) and spec_h = n_mels."""
    hp = dict(vars(args))
    devices = args.nproc * args.num_nodes
    hp["learning_rate"] = args.learning_rate * devices * args.batch_size_per_gpu / 256
    hp["learning_rate_per_256"] = args.learning_rate
    hp["spec_h"] = args.n_mels
    hp["save_path"] = str(Path(args.save_path).resolve())
    if hp["num_workers"] is None:
        hp["num_workers"] = max(1, min(10, (os.cpu_count() or 1) // args.nproc - 1))
    if hp["accelerator"] == "auto":
        import torch

        hp["accelerator"] = "gpu" if torch.cuda.is_available() else "cpu"
    hp["precision"] = "32-true" if hp["precision"] == "32" else hp["precision"]
    return hp


def _tensorboard_without_tensorflow() -> None:
    """TensorBoard imports TensorFlow (seconds and a GiB per process) when it is installed, only for file I/O;
    its own `notf` switch makes it use the bundled stub instead (local and plain paths need nothing more)."""
    if "tensorflow" not in sys.modules and "tensorboard.compat.notf" not in sys.modules:
        import types

        sys.modules["tensorboard.compat.notf"] = types.ModuleType("tensorboard.compat.notf")


def train(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    fill_topology(args)
    check_args(args)
    _tensorboard_without_tensorflow()
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
    from pytorch_lightning.utilities import rank_zero_info

    from .callbacks import CurvesAtEnd, FinalCheckpoint, checkpoint_callbacks
    from .checkpoint import AtomicCheckpointIO, remove_stale_temporaries, resume_point
    from .data import resolve_corpus
    from .datamodule import PretrainData
    from .module import FrameATSTPretrain

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    hp = hyper_parameters(args)
    try:
        corpus = resolve_corpus(args.data_path)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"atst-pretrain: error: {error}") from None
    save_path = Path(hp["save_path"])
    save_path.mkdir(parents=True, exist_ok=True)
    try:
        resume = resume_point(save_path, hp)
    except ValueError as error:
        raise SystemExit(f"atst-pretrain: error: {error}") from None

    pl.seed_everything(args.seed, workers=True, verbose=False)
    module = FrameATSTPretrain(**hp)
    devices = args.nproc * args.num_nodes
    strategy = "ddp" if devices > 1 else "auto"
    trainer = pl.Trainer(
        accelerator=hp["accelerator"], devices=args.nproc, num_nodes=args.num_nodes, strategy=strategy,
        precision=hp["precision"], max_steps=args.max_steps, max_epochs=-1,
        gradient_clip_val=args.grad_clip or None, accumulate_grad_batches=args.accumulate_grad_batches,
        logger=[TensorBoardLogger(save_path, name="tb_logs"), CSVLogger(save_path, name="csv_logs")],
        callbacks=[*checkpoint_callbacks(save_path, args.ckpt_every_steps, args.keep_every_steps),
                   FinalCheckpoint(save_path), CurvesAtEnd(save_path),
                   pl.callbacks.LearningRateMonitor(logging_interval="step")],
        plugins=[AtomicCheckpointIO()], log_every_n_steps=args.log_every_n_steps,
        enable_progress_bar=args.progress, enable_model_summary=False, use_distributed_sampler=True,
        num_sanity_val_steps=0,
    )
    if trainer.is_global_zero:
        remove_stale_temporaries(save_path)
    rank_zero_info(
        f"atst-pretrain: arch {args.arch}, {corpus.kind} corpus {corpus.source} ({len(corpus.items)} "
        f"{'files' if corpus.kind == 'files' else 'shards'}), {devices} device(s) x {args.batch_size_per_gpu} "
        f"clips of {args.anchor_len} s, lr {hp['learning_rate']:.3g}, {args.max_steps} steps, "
        f"{hp['accelerator']} {hp['precision']}; run folder {save_path}"
        + (f"; resuming from {resume[0]} at step {resume[1]}" if resume else ""))
    trainer.fit(module, datamodule=PretrainData(corpus, hp), ckpt_path=str(resume[0]) if resume else None,
                weights_only=True)
    return 0


def plot_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="atst-pretrain plot", description="PNG of a run's training curves")
    parser.add_argument("logdir", help="a run's --save_path (or its csv_logs folder)")
    parser.add_argument("--out", default=None, help="output PNG (default LOGDIR/curves.png)")
    args = parser.parse_args(argv)
    from .plot import plot_curves

    try:
        print(plot_curves(args.logdir, args.out))
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"atst-pretrain plot: error: {error}") from None
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
