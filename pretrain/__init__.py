"""Teacher-student pre-training of ATST encoders on PyTorch Lightning with DDP: `--method frame` (ATST-Frame, the
official recipe; the default).

Modules, one job each (the shared training kit is `atst.training`):
  cli              `atst-pretrain` / `python -m pretrain`: the official flags, `--method`, the run flags
  methods          the registry of methods; `methods.frame` is the ATST-Frame recipe (views, masked-token BYOL)
  teacher_student  student / EMA teacher networks, the BYOL loss
  module           the LightningModule every method trains with (optimizer groups, schedules, EMA, statistics)
  datamodule       the corpus as a data loader of a method's samples
  masking          block / random token masks (no fairseq)
  augment          Mixup with a memory bank, frequency RandomResizeCrop
"""
