"""The training kit every training door shares (pre-training now, fine-tuning next).

PyTorch Lightning is imported by one module, `lightning`, from which the kit (launch, checkpoint_io, callbacks)
and the training doors take its names; `import atst` never imports `atst.training`, and this `__init__` imports
nothing, so the Lightning-free modules below stay cheap to import.

  lightning        the one import of PyTorch Lightning (pl, callbacks, loggers, rank-zero logging)
  config           RunConfig: the typed run settings (devices, nodes, precision, seed, save path, cadence, ...) and
                   the command-line flags every training door shares
  launch           launcher topology (plain, torchrun, SLURM) and the `pl.Trainer` built from a RunConfig
  schedules        closed-form per-step schedules: LR warm-up + cosine, weight decay, EMA momentum
  optim            official AdamW parameter groups, layer-wise LR decay groups, per-group LR setting
  ema              teacher <- EMA of student, for any pair of modules
  distributed      process-group helpers, GlobalBatchNorm1d, global std statistic, gathering Python objects
  heads            the official projector / predictor MLP
  checkpoint_io    atomic checkpoint writing, weights_only reading, resume point with shape, type and fit checks
  callbacks        checkpoint cadence, final checkpoint, curves at the end, the progress line
  interrupt        SIGINT / SIGTERM: stop after the step with last.ckpt written, exit 130 / 143; loader workers
  run_folder       the save path: created and checked writable up front, locked for one run at a time
  curves           metrics CSV reading (resumed versions merged) and the training-curves PNG
  corpus           corpus discovery: folders, CSV/TSV manifests, WebDataset tar shards, fixed random subset
  corpus_datasets  map-style and streaming datasets over a corpus, decoding through `atst.audio_io`
"""
