"""ATST-Frame teacher-student pre-training (the official recipe) on PyTorch Lightning with DDP.

Modules, one job each:
  masking     block / random token masks (no fairseq)
  schedules   LR (warm-up + cosine), weight decay (cosine 0.04 -> 0.4), EMA momentum (cosine ema -> 1)
  augment     Mixup with a memory bank, frequency RandomResizeCrop
  data        corpus discovery (folder, CSV/TSV manifest, WebDataset tar shards), decoding, crops, views
  heads       projector / predictor MLPs with a batch norm synchronised across ranks (works on gloo too)
  model       student / teacher networks, the symmetric BYOL loss on masked tokens, the EMA update
  module      the LightningModule (optimizer groups, schedules, std statistics, collapse warning)
  checkpoint  atomic checkpoint writing, weights_only loading, resume checks
  plot        loss-curve PNG from the CSV logs
  cli         `atst-pretrain` / `python -m pretrain`
"""
