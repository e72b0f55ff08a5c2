"""Train an ATST-Frame sound event detector: the last block's 40 ms tokens, a strong head (per-token sigmoid) and the
official weak head (attention pooling, softmax across classes), BCE on the strong and the weak part of every batch;
DDP, bf16, resumable; the model chosen on validation, per-class median filters chosen on validation, PSDS and event
F1 on the test split.

    atst-downstream sed --ckpt atstframe_base.ckpt --task desed=/data/dcase2021 --out runs/desed --recipe desed-official
    atst-downstream sed --ckpt CKPT --task as_strong=/data/audioset_strong --out runs/as --recipe as-strong-official \
        --nproc 4
    atst-downstream sed --ckpt CKPT --task events.tsv --out runs/mine          # own strong labels, default recipe
    atst-downstream sed --ckpt CKPT --task desed=/data/dcase2021 --out runs/student --distill-teacher runs/desed

Recipes: desed-official (the DESED protocol: only the last block and the final norm trained, SGD lr 0.1, 5-epoch
warm-up, cosine, 100 epochs x len(weak) // 128 steps, 128 strong + 128 weak per batch, clipping 3.0),
as-strong-official (full fine-tuning, 15 layer-decay groups 0.75, lr 1e-3, batch 8), default (the DESED structure
with batches of 16 + 16, 30 epochs). --protocol official keeps the official AudioSet-strong choice of validating
on the test set (said in the results); the default (hear) validates on a split apart from the test set.

Writes OUT/best.ckpt (encoder + heads + class names, thresholds, median filters; `atst-downstream detect` and
`hear_atst.load_model` read it), OUT/results.json, OUT/results.md, OUT/curves.png, OUT/csv_logs, OUT/tb_logs and
OUT/last.ckpt. Run the same command again to resume an interrupted run.

Exit status: 0 done; 1 done but some clips were skipped (each named); 2 a usage error; 130 / 143 stopped by
SIGINT / SIGTERM (resumable).
"""
from __future__ import annotations

import argparse

from atst.checkpoint import BRANCHES
from atst.flags import parse_bool
from atst.training.config import add_run_arguments, run_config_from_args

from ..results import report_skipped

HELP = "train a sound event detector (DESED / AudioSet-strong official recipes or own data), PSDS on the test split"
OPTIONS = ("recipe", "protocol", "fold", "psds_eval", "learning_rate", "max_epochs", "warmup_epochs", "strong_batch", "weak_batch",
           "unlabelled_batch", "mean_teacher", "use_encoder", "distill_teacher", "distill_weight", "teacher_train_mode")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..sed.recipe import GRAD_CLIP, PROTOCOLS, RECIPES

    a = parser.add_argument
    a("--ckpt", required=True, help="ATST-Frame checkpoint (a file or a released name)")
    a("--task", required=True, help="a strong-label task: desed=PATH, as_strong=PATH, a HEAR event task "
                                    "directory or an events TSV (docs/sed.md)")
    a("--out", required=True, help="output and run folder (resumed when it holds a run of the same settings)")
    a("--recipe", choices=RECIPES, default="default", help="training recipe (default: default)")
    a("--protocol", choices=PROTOCOLS, default="hear",
      help="official: the official splits of the source, validation on the test set where the official code does "
           "it (AudioSet-strong), the padding of short test clips scored; hear (default): a validation split apart "
           "from the test set, padding trimmed")
    a("--fold", type=int, default=0, help="k-fold HEAR event tasks: the test fold (default 0)")
    a("--learning_rate", type=float, default=None, help="peak LR (recipe's by default)")
    a("--max_epochs", type=int, default=None)
    a("--warmup_epochs", type=int, default=None)
    a("--strong_batch", type=int, default=None, help="strongly labelled clips per batch and process")
    a("--weak_batch", type=int, default=None, help="weakly labelled clips per batch and process")
    a("--unlabelled_batch", type=int, default=None, help="unlabelled clips per batch (with --mean_teacher)")
    a("--mean_teacher", action="store_true",
      help="mean-teacher consistency on every clip, unlabelled ones included (EMA 0.999, weight 2 x ramp-up)")
    a("--psds_eval", type=parse_bool, default=True,
      help="also PSDS from psds_eval's 50 operating points on the test split (the published ATST numbers; slow on "
           "large test sets); the threshold-independent sed_scores_eval PSDS is always computed (default: true)")
    a("--distill-teacher", "--distill_teacher", dest="distill_teacher", default=None, metavar="MODEL",
      help="frame-level distillation: a trained sed model (the --out folder or best.ckpt of `atst-downstream sed`, "
           "same classes) whose strong (and weak) scores the student also learns, frozen, in eval mode")
    a("--distill-weight", "--distill_weight", dest="distill_weight", type=float, default=None, metavar="W",
      help="loss = W x distillation + (1 - W) x sed loss (default 0.5, the official AudioSet-strong weighting; "
           "0.333 gives the official DESED ratio)")
    a("--teacher-train-mode", "--teacher_train_mode", dest="teacher_train_mode", action="store_true",
      help="run the teacher in train mode (DropPath 0.1: stochastic targets, as the official C2F teacher)")
    a("--use_encoder", choices=BRANCHES, default="teacher", help="checkpoint branch")
    add_run_arguments(parser, exclude=("save_path", "max_steps"))
    parser.set_defaults(grad_clip=GRAD_CLIP, keep_every_steps=0)


def run(args: argparse.Namespace) -> int:
    from ..sed.run import SedConfig, run_sed

    config = SedConfig(ckpt=args.ckpt, task=args.task, out=args.out, **{name: getattr(args, name) for name in OPTIONS})
    args.save_path, args.max_steps = args.out, 1  # the run folder is --out; steps follow from --max_epochs
    outcome = run_sed(config, run_config_from_args(args))
    if outcome.results is not None:
        results = outcome.results
        metric = results["metric"]
        print(f"{results['task']}: test {metric} {results['test'][metric]:.4f} (epoch "
              f"{results['selected']['epoch']}); wrote {outcome.out_dir / 'results.json'} and best.ckpt")
        return max(outcome.status, report_skipped(results["skipped"], "clip(s) skipped; the others were used"))
    return outcome.status
