"""The one place the project imports PyTorch Lightning: the training kit and the training doors take its names
from here, so a change of Lightning's package name or API is made once."""
from __future__ import annotations

import pytorch_lightning as pl
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning_fabric.utilities.seed import pl_worker_init_function
from pytorch_lightning.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn

__all__ = ["CSVLogger", "Callback", "LearningRateMonitor", "ModelCheckpoint", "TensorBoardLogger", "TorchCheckpointIO",
           "pl", "pl_worker_init_function", "rank_zero_info", "rank_zero_warn"]
