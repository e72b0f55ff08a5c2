"""Fine-tune an ATST encoder on a labelled task with the official recipe (layer-wise LR decay 0.75, SGD momentum
0.9, per-step warm-up and cosine, gradient clipping 3, DropPath 0.1, mixup and RandomResizeCrop, balanced sampling
for AudioSet-2M), on one CPU or many GPUs and nodes (DDP), resumable, reporting the test metric of the model chosen
on validation.

    atst-downstream finetune --ckpt atstframe_base.ckpt --task spcv2=/data/speech_commands_v0.02 --out runs/spcv2
    atst-downstream finetune --ckpt CKPT --task us8k=/data/UrbanSound8K --out runs/us8k --nproc 4 --precision bf16-mixed

Flags left out take the official shell setting of a registered dataset (docs/downstream_finetune.md lists them);
--batch_size_per_gpu defaults to the paper's global batch of 512 over the devices and accumulation steps, and the
LR is scaled by the global batch / 256.

Writes OUT/best.ckpt (encoder + head + labels + read-out; `hear_atst.load_model` and `atst info` read it),
OUT/results.json, OUT/results.md, OUT/curves.png, OUT/csv_logs, OUT/tb_logs and OUT/last.ckpt (k-fold tasks: each
fold in OUT/foldKK, the mean in OUT). Run the same command again to resume an interrupted run (Ctrl-C or SIGTERM
stop it after the current step with last.ckpt written; exit status 130 / 143); a finished run is reported, not
trained again.

Exit status: 0 done; 1 done but some clips were skipped (each named); 2 a usage error (nothing was done);
130 / 143 stopped by SIGINT / SIGTERM (resumable).
"""
from __future__ import annotations

import argparse

from atst.flags import parse_bool
from atst.training.config import add_run_arguments, run_config_from_args

from ..finetune.config import BRANCHES, GRAD_CLIP, FinetuneConfig
from ..finetune.defaults import MIXUP_BANK
from ..linear.readout import PROTOCOLS
from ..results import print_outcome

HELP = "fine-tuning with the official recipe (DDP, resumable), test metric of the model chosen on validation"
OPTIONS = ("protocol", "fold", "learning_rate", "max_epochs", "warmup_epochs", "batch_size_per_gpu", "n_last_blocks",
           "layerwise_lr", "mixup_training", "alpha", "mixup_ratio", "mixup_bank", "rrc", "balanced_sampling",
           "use_encoder")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--ckpt", required=True, help="ATST checkpoint (any family atst reads, or a released name)")
    a("--task", required=True, help="NAME=PATH, a HEAR task directory, a CSV/TSV manifest or a folder of class "
                                    "folders")
    a("--out", required=True, help="output and run folder (resumed when it holds a run of the same settings)")
    a("--protocol", choices=PROTOCOLS, default="official",
      help="official: the papers' read-out (12 s centre crop, official chunks), LR table and model choice; hear: the "
           "whole clip, the exact schedule, the best validation epoch, a validation fold kept apart (default: "
           "official)")
    a("--fold", type=int, default=None, help="k-fold tasks: run this fold only (0-based; default: every fold)")
    a("--learning_rate", type=float, default=None, help="per 256 clips (scaled by the global batch / 256)")
    a("--max_epochs", type=int, default=None)
    a("--warmup_epochs", type=int, default=None, help="linear warm-up from 0, per step")
    a("--batch_size_per_gpu", type=int, default=None,
      help="clips per device and step (default: 512 / (devices x nodes x accumulation), the paper's global batch)")
    a("--n_last_blocks", type=int, default=1, help="blocks read out (official shells: 1)")
    a("--layerwise_lr", type=float, default=0.75, help="layer-wise LR decay (0 = off)")
    a("--mixup_training", type=parse_bool, default=None, help="mixup (and BCE on one-hot targets)")
    a("--alpha", type=float, default=None, help="mixup's Beta(alpha, alpha)")
    a("--mixup_ratio", type=float, default=None, help="fraction of training clips mixed (official: 1; AS-2M 0.5)")
    a("--mixup_bank", type=int, default=MIXUP_BANK, help="clips each loader worker remembers as mixup partners")
    a("--rrc", type=parse_bool, default=None, help="RandomResizeCrop (default: with mixup, as the official code)")
    a("--balanced_sampling", type=parse_bool, default=None,
      help="draw clips with weights 1000 / (n_c + 0.01) summed over their classes (default: on for audioset=)")
    a("--use_encoder", choices=BRANCHES, default="teacher", help="checkpoint branch")
    add_run_arguments(parser, exclude=("save_path", "max_steps"))
    parser.set_defaults(grad_clip=GRAD_CLIP, keep_every_steps=0)  # as default_run_config


def run(args: argparse.Namespace) -> int:
    from ..finetune.run import run_finetune

    config = FinetuneConfig(ckpt=args.ckpt, task=args.task, out=args.out,
                            **{name: getattr(args, name) for name in OPTIONS})
    args.save_path, args.max_steps = args.out, 1  # the run folder is --out; steps follow from --max_epochs
    outcome = run_finetune(config, run_config_from_args(args))
    if outcome.results is not None:  # the process that writes the results (rank 0)
        selected = outcome.results.get("selected")
        print_outcome(outcome.results, outcome.out_dir, f" (epoch {selected['epoch']})" if selected else "")
    return outcome.status
