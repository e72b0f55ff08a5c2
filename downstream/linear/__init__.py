"""Linear evaluation of a frozen ATST encoder: the official protocol (and the `hear` read-out of the whole clip) on
embeddings cached on disk, with a grid of learning rates and folds trained in one command.

  readout   the clip embedding (official ATST-Frame / ATST-Clip linear-evaluation read-outs, or hear's)
  cache     the on-disk embedding cache (one entry per checkpoint x read-out x task, memory-mapped shards)
  extract   decode and embed every clip of a task once into the cache (bad clips skipped and named)
  head      the official LinearHead (BN without affine + Linear, N(0, 0.01^2))
  train     one head: SGD momentum 0.9, LR x batch / 256, cosine per epoch, CE or BCE, metrics every epoch
  grid      LRs x folds, the choice of (LR, epoch) on validation, fold mean and standard deviation
  defaults  the official LR grids per dataset, `--lrs` parsing
  run       one whole run: checks, extraction, grid, curves, best.ckpt, results
"""
from .head import LinearHead
from .readout import Readout, ReadoutSettings
from .run import LinearConfig, LinearOutcome, run_linear
from .train import cosine_lr, effective_lr, train_head

__all__ = ["LinearConfig", "LinearHead", "LinearOutcome", "Readout", "ReadoutSettings", "cosine_lr", "effective_lr",
           "run_linear", "train_head"]
