"""Shared test fixtures and helpers: the parity fixtures from ../shared, checkpoints the tests build themselves, and
audio files and corpora written on the spot.

Helpers are plain functions (`from conftest import write_test_wav`); fixtures wrap the common cases.
"""
from __future__ import annotations

import argparse
import copy
import io
import os
import signal
import socket
import subprocess
import tarfile
import threading
import time
import wave
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple, Union

import numpy as np
import pytest
import soundfile as sf
import torch

from atst.audio_io import SAMPLE_RATE
from atst.releases import release
from atst.synthetic import harmonic_tone, write_official_checkpoint
from atst.synthetic.checkpoints import HPARAMS, LIGHTNING_VERSION

REPO = Path(__file__).resolve().parents[1]
# A RIFF/WAVE header followed by garbage: every decoder must reject it with an error naming the file
CORRUPT_WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(64))
# (relative path, seconds, rate, channels) of `write_mixed_corpus`: rates, channel counts and formats differ
MIXED_CLIPS = (("tone16k.wav", 1.0, SAMPLE_RATE, 1), ("sub/stereo44k.flac", 1.5, 44100, 2),
               ("sub/noise8k.ogg", 3.0, 8000, 1))

__all__ = ["CORRUPT_WAV", "LoopbackServer", "MIXED_CLIPS", "NEEDS_CUDA", "REPO", "SAMPLE_RATE", "devices",
           "fixtures_dir", "kill_after_checkpoint", "noise", "on_device", "pcm16_rms", "subprocess_env", "wav_bytes",
           "wav_header", "write_mixed_corpus", "write_release_layout", "write_tar_shard", "write_test_wav", "write_tone_clips"]


def subprocess_env(**extra: str) -> Dict[str, str]:
    """The environment for a child Python: this checkout first on PYTHONPATH (so it imports the code under test
    even where an editable install points elsewhere), plus `extra`."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, PYTHONPATH=path, **extra)


def kill_after_checkpoint(command: List[str], env: Mapping[str, str], last: Path, step: int,
                          timeout: float = 900) -> int:
    """Start a training `command` (its own session, output discarded), SIGKILL its whole process group once `last`
    holds a checkpoint of at least `step` steps; returns the step that `last` holds after the kill."""
    process = subprocess.Popen(command, cwd=REPO, env=dict(env), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            if last.is_file() and torch.load(last, map_location="cpu", weights_only=True)["global_step"] >= step:
                break
            time.sleep(0.2)
        assert process.poll() is None, "the run ended before it could be killed"
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    return int(torch.load(last, map_location="cpu", weights_only=True)["global_step"])


# ------------------------------------------------------------------------------------------------ audio files

def noise(seconds: float, rate: int = SAMPLE_RATE, channels: int = 1, seed: int = 0,
          amplitude: float = 0.1) -> np.ndarray:
    """Gaussian noise of standard deviation `amplitude`: float32 `[round(seconds * rate), channels]`."""
    rng = np.random.default_rng(seed)
    return (amplitude * rng.standard_normal((int(round(seconds * rate)), channels))).astype(np.float32)


def wav_bytes(seconds: float, rate: int = SAMPLE_RATE, channels: int = 1, seed: int = 0,
              subtype: Optional[str] = None, format: str = "WAV") -> bytes:
    """An in-memory audio file of `noise(seconds, rate, channels, seed)`; `subtype` a soundfile subtype
    ("PCM_16", the WAV default, "PCM_24", "FLOAT", ...), `format` a soundfile format ("WAV", "FLAC", "OGG")."""
    buffer = io.BytesIO()
    sf.write(buffer, noise(seconds, rate, channels, seed), rate, subtype=subtype, format=format)
    return buffer.getvalue()


def write_test_wav(path: Union[str, Path], seconds: float, rate: int = SAMPLE_RATE, channels: int = 1,
                   seed: int = 0, subtype: Optional[str] = None) -> Path:
    """Write `noise(seconds, rate, channels, seed)` to `path` (parents created), the format from its suffix
    (.wav, .flac, .ogg, ...), `subtype` as in `wav_bytes`. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), noise(seconds, rate, channels, seed), rate, subtype=subtype)
    return path


def write_tar_shard(path: Union[str, Path], members: Mapping[str, bytes]) -> Path:
    """A WebDataset-style tar shard at `path` holding `members` ({member path: bytes}, in that order)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def wav_header(path: Union[str, Path]) -> Tuple[int, int, int, int]:
    """(channels, bytes per sample, sample rate, frames) of a PCM WAV file, read with the stdlib."""
    with wave.open(str(path), "rb") as f:
        return f.getnchannels(), f.getsampwidth(), f.getframerate(), f.getnframes()


def pcm16_rms(path: Union[str, Path]) -> float:
    """RMS (full scale 1.0) of a mono 16-bit PCM WAV; fails on any other format."""
    with wave.open(str(path), "rb") as f:
        assert (f.getnchannels(), f.getsampwidth()) == (1, 2), f"{path} is not mono 16-bit PCM"
        pcm = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2").astype(np.float64) / 32768
    return float(np.sqrt(np.mean(pcm ** 2)))


# ---------------------------------------------------------------------------------------------------- corpora

def write_tone_clips(folder: Union[str, Path], n_clips: int = 12, seed: int = 0) -> List[Path]:
    """`n_clips` mono 16 kHz harmonic tones `tone00.wav`, ... (150 + 60 i Hz, 0.6 + 0.1 i s) in `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n_clips):
        paths.append(folder / f"tone{i:02d}.wav")
        sf.write(str(paths[-1]), harmonic_tone(150 + 60 * i, 0.6 + 0.1 * i, rng=rng), SAMPLE_RATE)
    return paths


def write_mixed_corpus(root: Union[str, Path]) -> Dict[str, float]:
    """The clips of `MIXED_CLIPS` under `root`, plus two files a reader must pass over or report: `notes.txt`
    (not audio) and `sub/broken.wav` (`CORRUPT_WAV`). Returns {relative path: seconds} of the decodable clips."""
    root = Path(root)
    for seed, (relative, seconds, rate, channels) in enumerate(MIXED_CLIPS):
        write_test_wav(root / relative, seconds, rate, channels, seed=seed)
    (root / "notes.txt").write_text("not audio")
    (root / "sub" / "broken.wav").write_bytes(CORRUPT_WAV)
    return {relative: seconds for relative, seconds, _, _ in MIXED_CLIPS}


@pytest.fixture(scope="session")
def mixed_corpus(tmp_path_factory) -> Path:
    """A read-only folder written by `write_mixed_corpus`."""
    root = tmp_path_factory.mktemp("mixed_corpus")
    write_mixed_corpus(root)
    return root


@pytest.fixture(scope="session")
def tone_corpus(tmp_path_factory) -> Path:
    """A read-only pre-training corpus: 12 tones under `nested/` (`write_tone_clips`), a stereo 44.1 kHz FLAC and
    a corrupt WAV (`corrupt.wav`)."""
    root = tmp_path_factory.mktemp("tone_corpus")
    write_tone_clips(root / "nested")
    write_test_wav(root / "stereo44k.flac", 1.5, 44100, channels=2)
    (root / "corrupt.wav").write_bytes(CORRUPT_WAV)
    return root


# ---------------------------------------------------------------------------------------------------- devices

NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available (on a GPU machine: "
                                                                       "pytest -m cuda)")


def devices(cpu: bool = True) -> list:
    """Values for a test's `device` argument: "cpu" (unless `cpu=False`) and "cuda", marked `cuda` and skipped
    where CUDA is not available, so `pytest -m cuda` runs exactly the GPU variants."""
    return ([pytest.param("cpu", id="cpu")] if cpu else []) + [
        pytest.param("cuda", id="cuda", marks=[pytest.mark.cuda, NEEDS_CUDA])]


_COPIES: Dict[Tuple[int, str], Tuple[torch.nn.Module, torch.nn.Module]] = {}


def on_device(module: torch.nn.Module, device: str) -> torch.nn.Module:
    """`module` itself for "cpu"; otherwise one copy of it moved to `device`, made once and reused (shared
    fixtures stay on the CPU)."""
    if device == "cpu":
        return module
    key = (id(module), device)
    if key not in _COPIES or _COPIES[key][0] is not module:
        _COPIES[key] = (module, copy.deepcopy(module).to(device))
    return _COPIES[key][1]


@pytest.fixture
def exact_fp32():
    """Full float32 matmuls and convolutions on CUDA during the test (TF32 off), for parity checks at 1e-4."""
    matmul, conv = torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision
    torch.backends.cuda.matmul.fp32_precision = torch.backends.cudnn.conv.fp32_precision = "ieee"
    yield
    torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision = matmul, conv


# ------------------------------------------------------------------------------------ fixtures and checkpoints

def fixtures_dir() -> Path:
    """`$ATST_FIXTURES` or ../shared/fixtures; a missing directory fails loudly (never skips)."""
    path = Path(os.environ.get("ATST_FIXTURES", REPO.parent / "shared" / "fixtures"))
    if not (path / "atstframe_tiny_reference.pt").is_file():
        raise FileNotFoundError(f"parity fixtures not found at {path}: set $ATST_FIXTURES or put shared/ beside "
                                f"the repository")
    return path


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return fixtures_dir()


@pytest.fixture(scope="session")
def reference(fixtures) -> dict:
    """The official code's outputs for the ATST-Frame fixture (`atstframe_tiny_reference.pt`): inputs, float32
    and float64 results per case."""
    return torch.load(fixtures / "atstframe_tiny_reference.pt", weights_only=True)


@pytest.fixture(scope="session")
def hear(fixtures):
    """`atstframe_tiny.ckpt` in hear mode (CPU, fp32); shared: do not move or modify it."""
    from atst import load_embedder

    return load_embedder(str(fixtures / "atstframe_tiny.ckpt"))


@pytest.fixture(scope="session")
def official(fixtures):
    """`atstframe_tiny.ckpt` in official mode (CPU, fp32); shared: do not move or modify it."""
    from atst import load_embedder

    return load_embedder(str(fixtures / "atstframe_tiny.ckpt"), mode="official")


@pytest.fixture(scope="session")
def tiny_frame_ckpt(tmp_path_factory) -> Path:
    """A random-weight tiny (D=192, 12 blocks, 3 heads) ATST-Frame checkpoint in the official Lightning layout."""
    return write_official_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny_frame.ckpt", arch="tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_clip_ckpt(tmp_path_factory) -> Path:
    """A random-weight tiny ATST-Clip checkpoint in the official Lightning layout (train_len 6 s)."""
    return write_official_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny_clip.ckpt", arch="tiny",
                                     family="clip", seed=0)


@pytest.fixture(scope="session")
def tiny_hear_tasks(tmp_path_factory) -> Dict[str, Path]:
    """Two generated HEAR tasks (size tiny, seed 5), read-only: {"synth_scene": its dir (5 classes, 1 s clips,
    train/valid/test 10 each), "synth_timbre": its dir (3 classes, 3 folds)}."""
    from atst.synthetic import make_tasks

    root = tmp_path_factory.mktemp("hear_tasks")
    return {path.name.split("-")[0]: path for path in make_tasks(root, size="tiny", seed=5,
                                                                 tasks=["synth_scene", "synth_timbre"])}


@pytest.fixture(scope="session")
def tiny_linear_run(tiny_frame_ckpt, tiny_hear_tasks, tmp_path_factory) -> Path:
    """The --out folder of a finished `atst-downstream linear` run, read-only: the tiny ATST-Frame on synth_scene,
    official read-out, one LR, 3 epochs (best.ckpt, results.json; `settings.cache` is its embedding-cache entry)."""
    from downstream.cli import main

    out = tmp_path_factory.mktemp("linear_run") / "run"
    assert main(["linear", "--ckpt", str(tiny_frame_ckpt), "--task", str(tiny_hear_tasks["synth_scene"]), "--out",
                 str(out), "--cache", str(out.parent / "cache"), "--lrs", "1e-2", "--max_epochs", "3",
                 "--num_workers", "0", "--quiet"]) == 0
    return out


def write_release_layout(path: Union[str, Path], name: str, shapes: Optional[Mapping[str, Tuple[int, ...]]] = None,
                         dino: bool = False, optimizer_mb: float = 0.0) -> Path:
    """A checkpoint with exactly the tensor names, shapes and dtypes of the released `name` (its manifest) in the
    official Lightning layout, `shapes` replacing some shapes, in about 100 kB: every tensor is one value broadcast
    to its shape (weights 0.01, LayerNorm scales and BN variances 1), so it loads but embeds nothing useful.
    `dino`: the DINO-style layout instead (`teacher` / `student` with `module.backbone.` encoder keys, the heads as
    `module.head.*`, `args` a Namespace). `optimizer_mb`: an optimizer moment of that many MB, as training files
    carry (a file large enough to be cut half-way through a download)."""
    state = {}
    for key, shape, dtype in release(name).manifest():
        shape = tuple((shapes or {}).get(key, shape))
        value = 1.0 if key.endswith(("norm1.weight", "norm2.weight", "norm_frame.weight", "norm.weight",
                                     "running_var")) else 0.01
        state[key] = torch.full((1,) * len(shape), value, dtype=getattr(torch, dtype)).expand(shape)
    family = release(name).family
    if dino:
        def branch(prefix: str) -> dict:
            encoder = {f"module.backbone.{k[len(prefix) + 9:]}": v for k, v in state.items()
                       if k.startswith(prefix + ".encoder.")}
            head = {f"module.head.{k[len(prefix) + 11:]}": v for k, v in state.items()
                    if k.startswith(prefix + ".projector.")}
            return {**encoder, **head}
        checkpoint = {"teacher": branch("model.teacher"), "student": branch("model.student"), "epoch": 0,
                      "args": argparse.Namespace(arch=release(name).arch, train_len=6.0)}
    else:
        checkpoint = {"epoch": 0, "global_step": 0, "pytorch-lightning_version": LIGHTNING_VERSION,
                      "state_dict": state, "loops": {}, "callbacks": {}, "optimizer_states": [], "lr_schedulers": [],
                      "hparams_name": "kwargs", "hyper_parameters": {**HPARAMS[family], "arch": release(name).arch}}
    if optimizer_mb:
        moment = torch.arange(int(optimizer_mb * 2 ** 18), dtype=torch.float32)
        checkpoint["optimizer_states"] = [{"state": {0: {"exp_avg": moment}}, "param_groups": []}]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path


class LoopbackServer:
    """An HTTP server on 127.0.0.1 in a thread that serves files with Range support and records every request.

    `serve(route, path)` publishes a file; `drop_after=N` sends the full Content-Length but closes the connection
    after N bytes, on the first `drops` plain (non-Range) requests; `content_type` sets the header (an HTML page);
    `ranges=False` answers every request with the whole file, as servers without Range support do.
    `requests` lists (route, Range header or None) in arrival order.
    """

    def __init__(self) -> None:
        self.routes: Dict[str, dict] = {}
        self.requests: List[Tuple[str, Optional[str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                server.handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, route: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{route}"

    def serve(self, route: str, path: Union[str, Path], drop_after: Optional[int] = None, drops: int = 1,
              content_type: str = "application/octet-stream", ranges: bool = True) -> str:
        """Publish the file at `path` under `route`; returns its URL."""
        self.routes[route] = dict(data=Path(path).read_bytes(), drop_after=drop_after, drops=drops,
                                  content_type=content_type, ranges=ranges)
        return self.url(route)

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        route = request.path.lstrip("/")
        byte_range = request.headers.get("Range")
        self.requests.append((route, byte_range))
        entry = self.routes.get(route)
        if entry is None:
            request.send_error(404)
            return
        data, start = entry["data"], 0
        if entry["ranges"] and byte_range and byte_range.startswith("bytes=") and byte_range.endswith("-"):
            start = int(byte_range[len("bytes="):-1])
            request.send_response(206)
            request.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            request.send_response(200)
        request.send_header("Content-Type", entry["content_type"])
        request.send_header("Content-Length", str(len(data) - start))
        request.send_header("ETag", '"fixed"')
        request.end_headers()
        body = data[start:]
        try:
            if entry["drop_after"] is not None and start == 0 and entry["drops"] > 0:
                entry["drops"] -= 1
                request.wfile.write(body[:entry["drop_after"]])
                request.wfile.flush()
                request.connection.shutdown(socket.SHUT_RDWR)
                request.close_connection = True
                return
            request.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client stopped reading (gdown resumes elsewhere)
            pass

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def loopback():
    """A `LoopbackServer` for one test."""
    server = LoopbackServer()
    yield server
    server.close()


def free_port() -> int:
    """A TCP port nobody listens on now (for MASTER_PORT)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
