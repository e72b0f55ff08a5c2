"""ATST-Frame and ATST-Clip audio encoders: front end, encoder, checkpoint reading, embeddings."""
from .checkpoint import CheckpointError, LoadedCheckpoint, describe_checkpoint, export_encoder, load_checkpoint
from .embedding import MODES, Embedder, load_embedder, official_frame_linear_eval, validate_audio
from .encoder import ARCHS, ATSTEncoder, EncoderConfig, arch_config
from .frontend import FrontendConfig, LogMelFrontend

__version__ = "0.1.0"

__all__ = [
    "ARCHS", "ATSTEncoder", "CheckpointError", "Embedder", "EncoderConfig", "FrontendConfig", "LoadedCheckpoint",
    "LogMelFrontend", "MODES", "arch_config", "describe_checkpoint", "export_encoder", "load_checkpoint",
    "load_embedder", "official_frame_linear_eval", "validate_audio",
]
