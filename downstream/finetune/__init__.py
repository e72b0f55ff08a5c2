"""Fine-tuning of an ATST encoder on a labelled task, the official recipe (spec section 2) on PyTorch Lightning.

  defaults     the official shell settings per dataset and family (what a flag left out takes)
  config       FinetuneConfig (the options) -> Recipe (every setting resolved and checked), the selection rule
  schedule     global batch, LR scaling, steps per epoch, the per-step warm-up + cosine (official table or exact)
  augment      MixupSpecLabel (Beta(alpha, alpha), linear mix of normalised mels and targets, per-worker bank) and
               RandomResizeCrop (virtual crop, frequency and time scale, bicubic)
  data         clip -> log-mel (official 12 s crop or the whole clip), mel batches, samplers (seeded, balanced,
               sharded across ranks, resumable mid-epoch)
  datamodule   FinetuneData: the loaders of one fold
  model        FinetuneModel: encoder (DropPath 0.1) + official or hear read-out + the official head
  evaluate     a split's metric and loss, every clip once across ranks
  module       FinetuneModule (LightningModule): layer-wise LR decay groups, SGD, the per-step LR, validation
               after every epoch, the best model so far
  model_files  best-step=N.ckpt while training, best.ckpt at the end (downstream.model_file format)
  report       results.json / results.md content, settings in words, protocol notes, k-fold summary
  run          one whole run: checks, folds, fit / resume, selection, test, outputs
  variant      RunVariant: the hooks a run built on fine-tuning changes (distillation's, downstream.distill)
"""
from typing import Any

from .config import FinetuneConfig, Recipe, resolve_recipe

__all__ = ["FinetuneConfig", "FinetuneOutcome", "Recipe", "default_run_config", "resolve_recipe", "run_finetune"]
_RUN = ("FinetuneOutcome", "default_run_config", "run_finetune")  # need Lightning: loaded on first use


def __getattr__(name: str) -> Any:
    if name in _RUN:
        from . import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
