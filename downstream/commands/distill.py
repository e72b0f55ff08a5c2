"""ATST-C2F distillation: fine-tune a student encoder (ATST-Frame in the paper) on a labelled task with the recipe of
`finetune` plus a distillation term towards a frozen fine-tuned teacher (ATST-Clip in the paper, the --out of
`atst-downstream finetune`), which sees the same mixed and cropped mels:

    loss = w * distillation(student, teacher) + (1 - w) * task loss

The distillation term is BCE with logits towards sigmoid(teacher logits) (multi-label tasks, or any task with
mixup), or cross-entropy towards softmax(teacher logits) (single-label tasks without mixup). w (--distill-weight)
defaults to 1.0 for AudioSet-2M (audioset=) and 0.5 elsewhere, as the official scripts.

    atst-downstream finetune --ckpt atstclip_base.ckpt --task spcv2=/data/spcv2 --out runs/clip_spcv2
    atst-downstream distill --teacher runs/clip_spcv2 --ckpt atstframe_base.ckpt --task spcv2=/data/spcv2 \\
        --out runs/c2f_spcv2

The teacher is frozen and stays in eval mode (--teacher-train-mode: the official stochastic train-mode teacher,
for parity). Flags left out take the official C2F settings of a registered dataset (docs/downstream_distill.md),
else the student's fine-tuning settings. Writes what `finetune` writes (OUT/best.ckpt, a downstream model file
that `predict` and `hear_atst.load_model` read; results.json / results.md with the teacher's test metric and the
student / teacher agreement; curves; last.ckpt); resumable the same way.

Exit status: 0 done; 1 done but some clips were skipped (each named); 2 a usage error (nothing was done);
130 / 143 stopped by SIGINT / SIGTERM (resumable).
"""
from __future__ import annotations

import argparse

from atst.training.config import run_config_from_args

from ..results import print_outcome
from . import finetune

HELP = "ATST-C2F distillation: fine-tuning towards a frozen fine-tuned teacher (DDP, resumable)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--teacher", required=True,
                        help="the fine-tuned teacher: the --out folder (or best.ckpt) of `atst-downstream finetune` "
                             "on the same task (ATST-Clip for C2F)")
    parser.add_argument("--distill-weight", "--distill_weight", dest="distill_weight", type=float, default=None,
                        help="w in [0, 1] of w * distillation + (1 - w) * task loss (default: 1.0 for audioset=, "
                             "0.5 otherwise)")
    parser.add_argument("--teacher-train-mode", "--teacher_train_mode", dest="teacher_train_mode",
                        action="store_true",
                        help="run the teacher in train mode as the official scripts do (DropPath, batch statistics: "
                             "stochastic targets); default: eval mode")
    finetune.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ..distill.config import DistillConfig
    from ..distill.run import run_distill

    config = DistillConfig(ckpt=args.ckpt, task=args.task, out=args.out, teacher=args.teacher,
                           distill_weight=args.distill_weight, teacher_train_mode=args.teacher_train_mode,
                           **{name: getattr(args, name) for name in finetune.OPTIONS})
    args.save_path, args.max_steps = args.out, 1  # the run folder is --out; steps follow from --max_epochs
    outcome = run_distill(config, run_config_from_args(args))
    if outcome.results is not None:  # the process that writes the results (rank 0)
        selected = outcome.results.get("selected")
        distill = outcome.results.get("distillation") or {}
        detail = f" (epoch {selected['epoch']})" if selected else ""
        if distill.get("teacher_test") is not None:
            detail += (f"; teacher test {outcome.results['metric']} {distill['teacher_test']:.4f}, test agreement "
                       f"{distill['test_agreement']:.4f}")
        print_outcome(outcome.results, outcome.out_dir, detail)
    return outcome.status
