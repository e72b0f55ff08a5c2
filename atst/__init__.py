"""ATST-Frame and ATST-Clip audio encoders: front end, encoder, backbone, checkpoint reading (released
checkpoints by name: `atst.RELEASES`, `atst.resolve_checkpoint`), embeddings.

Importing `atst` imports neither Lightning nor any door (`hear_atst`, `s3prl_upstream`, `pretrain`, `downstream`);
the training kit is `atst.training`, generated data `atst.synthetic`.
"""
from .backbone import Backbone, TokenStates, validate_audio
from .checkpoint import CheckpointError, LoadedCheckpoint, describe_checkpoint, export_encoder, load_checkpoint
from .embedding import MODES, Embedder, load_embedder
from .encoder import ARCHS, ATSTEncoder, EncoderConfig, arch_config
from .frontend import SAMPLE_RATE, FrontendConfig, LogMelFrontend
from .hub import resolve_checkpoint
from .official import OfficialReadouts, official_frame_linear_eval
from .releases import RELEASES

__version__ = "0.1.0"

__all__ = [
    "ARCHS", "ATSTEncoder", "Backbone", "CheckpointError", "Embedder", "EncoderConfig", "FrontendConfig",
    "LoadedCheckpoint", "LogMelFrontend", "MODES", "OfficialReadouts", "RELEASES", "SAMPLE_RATE", "TokenStates",
    "arch_config", "describe_checkpoint", "export_encoder", "load_checkpoint", "load_embedder",
    "official_frame_linear_eval", "resolve_checkpoint", "validate_audio",
]
