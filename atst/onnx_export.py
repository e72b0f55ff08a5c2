"""`atst export CKPT OUT.onnx --format onnx`: the encoder with its front end as one ONNX graph, checked with
onnxruntime before it is written.

The graph (`atst.onnx_graph.WindowGraph`) takes `audio` float32 `[B, N]` at 16 kHz, B and N dynamic, one window
(`min_samples` <= N <= `max_samples`, written into the file's metadata), and gives `timestamp_embeddings` float32
`[B, T, n_blocks * D]`, equal to `Embedder.timestamp_embeddings` in hear mode. The file is exported with
`torch.onnx.export(dynamo=True)` (needs `onnx` and `onnxscript`: the `onnx` extra), then, where onnxruntime is
installed, run on clips of another batch size and length than the export's example and compared with PyTorch;
only a file within `TOLERANCE` is moved into place (atomically). One file, no external data: models up to 2 GB.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Union

import torch

from .checkpoint import check_export_target
from .embedding import Embedder
from .fileio import atomic_path
from .onnx_graph import WindowGraph

INPUT_NAME, OUTPUT_NAME = "audio", "timestamp_embeddings"
FORMAT = "atst-onnx-window"
FORMAT_VERSION = "1"
TOLERANCE = 1e-4  # |onnxruntime - PyTorch| <= TOLERANCE * (1 + |PyTorch|), elementwise
EXAMPLE_SHAPE = (2, 32000)  # the traced example (2 clips of 2 s); the check uses another batch size and length
CHECK_BATCH = 3
EXTRA = "pip install -e '.[onnx]' (onnx, onnxscript, onnxruntime)"


class OnnxParityError(ValueError):
    """onnxruntime's output of an exported graph differs from PyTorch's beyond the tolerance."""


@dataclass(frozen=True)
class OnnxExport:
    """What `export_onnx` wrote: the file, its metadata, and the onnxruntime check (None where not run)."""

    path: Path
    metadata: dict[str, str]
    max_abs_diff: Optional[float]
    checked_shape: Optional[tuple[int, int]]


def require(module: str) -> object:
    """Import an optional dependency of the ONNX export, or raise ImportError saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"ONNX export needs the Python package {module!r}: {EXTRA}") from None


def graph_metadata(graph: WindowGraph, embedder: Embedder, source: str, branch: str) -> dict[str, str]:
    """The file's metadata_props: what the input and output are and where the weights came from."""
    config = embedder.backbone.config
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "producer": "hear-atst (atst export --format onnx)",
        "input": f"{INPUT_NAME}: float32 [batch, samples], mono {graph.sample_rate} Hz, every clip all valid "
                 f"samples (one length per call)",
        "output": f"{OUTPUT_NAME}: float32 [batch, tokens, {graph.n_blocks * config.embed_dim}], tokens = "
                  f"floor((samples // 160 + 1) / 4), token k centred at 40 k + 15 ms (hear mode)",
        "sample_rate": str(graph.sample_rate), "min_samples": str(graph.min_samples),
        "max_samples": str(graph.max_samples),
        "shorter_clips": f"zero-pad a clip shorter than {graph.min_samples} samples to 640 (one token), as hear "
                         f"mode does",
        "family": f"ATST-{config.family.capitalize()}", "embed_dim": str(config.embed_dim),
        "n_blocks": str(graph.n_blocks), "source": Path(source).name, "branch": branch,
    }


def onnx_session(path: Union[str, Path], threads: Optional[int] = None) -> object:
    """An onnxruntime CPU session for `path`; `threads` bounds its intra-op threads."""
    ort = require("onnxruntime")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def check_against_torch(path: Union[str, Path], embedder: Embedder, audio: torch.Tensor) -> float:
    """Run the graph at `path` with onnxruntime on `audio` `[B, N]` and compare with the embedder in hear mode;
    returns the largest absolute difference, raises OnnxParityError beyond `TOLERANCE`."""
    (got,) = onnx_session(path).run([OUTPUT_NAME], {INPUT_NAME: audio.numpy()})
    want = embedder.timestamp_embeddings(audio)[0].cpu()
    got = torch.from_numpy(got)
    if got.shape != want.shape:
        raise OnnxParityError(f"onnxruntime gave shape {tuple(got.shape)} where PyTorch gives {tuple(want.shape)}")
    diff = (got - want).abs()
    if not bool((diff <= TOLERANCE * (1 + want.abs())).all()):
        raise OnnxParityError(f"onnxruntime differs from PyTorch by up to {float(diff.max()):.3g} on a "
                              f"{tuple(audio.shape)} batch (tolerance {TOLERANCE} x (1 + |value|)); nothing written")
    return float(diff.max())


def export_onnx(embedder: Embedder, out_path: Union[str, Path], source: str, branch: str = "teacher",
                overwrite: bool = False, check: Optional[bool] = None) -> OnnxExport:
    """Write `embedder`'s hear-mode timestamp read-out of one window as an ONNX file (see the module docstring).

    `source` names the checkpoint (never overwritten; recorded in the metadata). `check`: compare onnxruntime with
    PyTorch before the file lands (default: when onnxruntime is installed; True requires it). The target is checked
    first (`check_export_target`). Raises ImportError naming the missing package, OnnxParityError on a mismatch.
    """
    out_path = check_export_target(source, out_path, overwrite)
    require("onnx")
    require("onnxscript")
    if check is None:
        check = importlib.util.find_spec("onnxruntime") is not None
    embedder = embedder.cpu().eval()
    graph = WindowGraph(embedder).eval()
    metadata = graph_metadata(graph, embedder, source, branch)
    samples = torch.export.Dim("samples", min=graph.min_samples, max=graph.max_samples)
    example = _noise(EXAMPLE_SHAPE[0], min(EXAMPLE_SHAPE[1], graph.max_samples), seed=0)
    checked_shape, max_abs_diff = None, None
    with torch.no_grad(), _quiet_exporter():
        program = torch.onnx.export(graph, (example,), None, dynamo=True, verbose=False, input_names=[INPUT_NAME],
                                    output_names=[OUTPUT_NAME], external_data=False,
                                    dynamic_shapes={"audio": {0: torch.export.Dim("batch"), 1: samples}})
    program.model.metadata_props.update(metadata)
    with atomic_path(out_path) as tmp:
        program.save(str(tmp), external_data=False)
        if check:
            # another batch size and length than the traced example: the axes are really dynamic
            length = min(graph.max_samples, EXAMPLE_SHAPE[1] + 7919)
            max_abs_diff = check_against_torch(tmp, embedder, _noise(CHECK_BATCH, length, seed=1))
            checked_shape = (CHECK_BATCH, length)
    return OnnxExport(out_path, metadata, max_abs_diff, checked_shape)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's notes that concern other models (torchvision operators it skips, a deprecation
    inside torch's pytree); errors still surface."""
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
            yield
    finally:
        registration.setLevel(level)


def _noise(batch: int, samples: int, seed: int) -> torch.Tensor:
    """`[batch, samples]` float32 Gaussian noise of standard deviation 0.1."""
    return torch.randn(batch, samples, generator=torch.Generator().manual_seed(seed)) * 0.1


__all__ = ["OnnxExport", "OnnxParityError", "check_against_torch", "export_onnx", "onnx_session"]
