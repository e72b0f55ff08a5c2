"""`atst export --format onnx`: onnxruntime reproduces PyTorch's hear-mode timestamp embeddings to 1e-4 on the
parity fixtures, at other batch sizes and lengths than the export traced, and refuses inputs outside one window."""
from __future__ import annotations

import sys

import onnx
import pytest
import torch

from atst import load_embedder
from atst.cli import main
from atst.onnx_export import INPUT_NAME, OUTPUT_NAME, OnnxParityError, check_against_torch, onnx_session

ATOL = RTOL = 1e-4
ONE_WINDOW_CASES = ["b2_1s", "b2_10s", "b1_10.01s", "b1_0.3s"]  # the fixtures' clips of at most one window


@pytest.fixture(scope="module")
def frame_onnx(fixtures, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "atstframe_tiny.onnx"
    assert main(["export", str(fixtures / "atstframe_tiny.ckpt"), str(path), "--format", "onnx"]) == 0
    return path


@pytest.fixture(scope="module")
def session(frame_onnx):
    return onnx_session(frame_onnx, threads=2)


def run(session, audio: torch.Tensor) -> torch.Tensor:
    (out,) = session.run([OUTPUT_NAME], {INPUT_NAME: audio.numpy()})
    return torch.from_numpy(out)


@pytest.mark.parametrize("case", ONE_WINDOW_CASES)
def test_onnxruntime_equals_pytorch_hear_mode_on_the_fixtures(session, hear, reference, case):
    audio = reference["inputs"][case][:, 0]
    got = run(session, audio)
    torch.testing.assert_close(got, hear.timestamp_embeddings(audio)[0], atol=ATOL, rtol=RTOL)
    official = reference["float32"][case].get("timestamp_embedding")
    if official is not None:  # up to one window, hear-mode tokens are the official code's
        torch.testing.assert_close(got, official, atol=ATOL, rtol=RTOL)


def test_a_clip_shorter_than_the_stft_is_zero_padded_to_one_token_as_hear_mode_does(session, hear, reference):
    audio = reference["inputs"]["b1_0.02s"][:, 0]  # 320 samples
    padded = torch.nn.functional.pad(audio, (0, 640 - audio.shape[1]))
    torch.testing.assert_close(run(session, padded), hear.timestamp_embeddings(audio)[0], atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("batch, samples", [(1, 513), (5, 7777), (1, 160479), (4, 95_999)])
def test_batch_and_length_other_than_the_export_example(session, hear, batch, samples):
    audio = torch.randn(batch, samples, generator=torch.Generator().manual_seed(samples)) * 0.1
    got = run(session, audio)
    want = hear.timestamp_embeddings(audio)[0]
    assert got.shape == want.shape == (batch, (samples // 160 + 1) // 4, hear.timestamp_embedding_size)
    torch.testing.assert_close(got, want, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("samples, why", [(512, "Pad"), (160480, "broadcast")])
def test_inputs_outside_one_window_are_refused_by_the_runtime(session, samples, why):
    with pytest.raises(Exception, match=why):
        run(session, torch.zeros(1, samples) + 0.01)


def test_the_file_says_what_it_takes_and_gives(frame_onnx):
    model = onnx.load(str(frame_onnx))
    meta = {prop.key: prop.value for prop in model.metadata_props}
    assert meta["format"] == "atst-onnx-window" and meta["sample_rate"] == "16000"
    assert (meta["min_samples"], meta["max_samples"], meta["n_blocks"]) == ("513", "160479", "12")
    assert meta["source"] == "atstframe_tiny.ckpt" and meta["branch"] == "teacher"
    (graph_input,), (graph_output,) = model.graph.input, model.graph.output
    assert graph_input.name == INPUT_NAME and graph_output.name == OUTPUT_NAME
    dims = [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    assert all(isinstance(d, str) and d for d in dims)  # batch and samples are both dynamic
    assert graph_output.type.tensor_type.shape.dim[2].dim_value == 12 * 64


def test_a_mismatch_with_pytorch_is_an_error(frame_onnx, hear, monkeypatch):
    monkeypatch.setattr("atst.onnx_export.TOLERANCE", 0.0)
    with pytest.raises(OnnxParityError, match="differs from PyTorch"):
        check_against_torch(frame_onnx, hear, torch.randn(2, 16000) * 0.1)


def test_atst_clip_n_blocks_and_the_export_rules(fixtures, tmp_path, capsys):
    ckpt, out = str(fixtures / "atstclip_tiny.ckpt"), tmp_path / "clip.onnx"
    assert main(["export", ckpt, str(out), "--n-blocks", "2"]) == 0  # the format from the suffix
    assert "checked with onnxruntime" in capsys.readouterr().out
    model = load_embedder(ckpt, n_blocks=2)  # windows of its 9 s training crop; the CLS row is not a timestamp
    session = onnx_session(out)
    assert int({p.key: p.value for p in onnx.load(str(out)).metadata_props}["max_samples"]) == 160 * 903 - 1
    for samples in (4800, 144_479):
        audio = torch.randn(2, samples, generator=torch.Generator().manual_seed(1)) * 0.1
        torch.testing.assert_close(run(session, audio), model.timestamp_embeddings(audio)[0], atol=ATOL, rtol=RTOL)
    with pytest.raises(Exception, match="broadcast"):
        run(session, torch.zeros(1, 144_480) + 0.01)
    assert main(["export", ckpt, str(out), "--n-blocks", "2"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["export", ckpt, str(tmp_path / "enc.safetensors"), "--format", "onnx"]) == 2
    assert "--format safetensors" in capsys.readouterr().err
    assert main(["export", ckpt, str(tmp_path / "enc.safetensors"), "--n-blocks", "2"]) == 2
    assert "--n-blocks applies to --format onnx" in capsys.readouterr().err


def test_a_missing_onnx_package_is_named_with_the_install_command(fixtures, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # `import onnxscript` raises ImportError
    out = tmp_path / "x.onnx"
    assert main(["export", str(fixtures / "atstframe_tiny.ckpt"), str(out)]) == 2
    err = capsys.readouterr().err
    assert "'onnxscript'" in err and "pip install -e '.[onnx]'" in err and not out.exists()
