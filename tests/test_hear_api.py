"""The HEAR door: load_model's contract, input validation, and the stock hear-validator."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import hear_atst
from conftest import SAMPLE_RATE

SR = SAMPLE_RATE


def test_load_model_contract(tiny_frame_ckpt):
    model = hear_atst.load_model(str(tiny_frame_ckpt))
    assert isinstance(model, torch.nn.Module) and not model.training
    assert model.sample_rate == 16000
    assert type(model.scene_embedding_size) is int and type(model.timestamp_embedding_size) is int
    assert model.scene_embedding_size == model.timestamp_embedding_size == 12 * 192
    audio = torch.rand(2, int(1.07 * SR)) * 2 - 1
    embeddings, stamps = hear_atst.get_timestamp_embeddings(audio, model)
    assert embeddings.shape == (2, 27, model.timestamp_embedding_size)  # 17120 samples: 108 frames
    assert stamps.shape == (2, 27) and stamps.dtype == torch.float32
    scene = hear_atst.get_scene_embeddings(torch.rand(4, int(2.74 * SR)) * 2 - 1, model)
    assert scene.shape == (4, model.scene_embedding_size) and scene.dtype == torch.float32


def test_heareval_batch_shapes(tiny_frame_ckpt):
    """heareval feeds (84, 16000) for 1 s clips and (1, 120 s) for long ones."""
    model = hear_atst.load_model(str(tiny_frame_ckpt), n_blocks=1)
    assert hear_atst.get_scene_embeddings(torch.rand(84, SR) - 0.5, model).shape == (84, 192)
    embeddings, stamps = hear_atst.get_timestamp_embeddings(torch.rand(1, 120 * SR) - 0.5, model)
    assert embeddings.shape == (1, 3000, 192) and stamps[0, -1] == 2999 * 40 + 15


def test_clip_checkpoints_are_detected(tiny_clip_ckpt):
    model = hear_atst.load_model(str(tiny_clip_ckpt))
    assert model.family == "clip"
    assert model.scene_embedding_size == 2 * 12 * 192  # [CLS | mean] of the last 12 blocks
    assert model.timestamp_embedding_size == 12 * 192


def test_empty_path_uses_the_environment_or_explains(tiny_frame_ckpt, monkeypatch):
    monkeypatch.delenv(hear_atst.CHECKPOINT_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match="atstframe_small, atstframe_base, .*ATST_CHECKPOINT"):
        hear_atst.load_model()
    monkeypatch.setenv(hear_atst.CHECKPOINT_ENV, str(tiny_frame_ckpt))
    assert hear_atst.load_model().sample_rate == 16000


def test_unknown_option_is_named(tiny_frame_ckpt):
    with pytest.raises(TypeError, match="unknown option.*'layers'"):
        hear_atst.load_model(str(tiny_frame_ckpt), layers="all")
    with pytest.raises(ValueError, match="n_blocks must be an int in \\[1, 12\\]"):
        hear_atst.load_model(str(tiny_frame_ckpt), n_blocks=13)
    with pytest.raises(ValueError, match="mode must be one of"):
        hear_atst.load_model(str(tiny_frame_ckpt), mode="fast")


@pytest.fixture(scope="module")
def model(tiny_frame_ckpt):
    return hear_atst.load_model(str(tiny_frame_ckpt))


@pytest.mark.parametrize(
    "audio, error, message",
    [
        (torch.zeros(SR), ValueError, "rank 1"),
        (torch.zeros(1, 1, 1, SR), ValueError, "rank 4"),
        (torch.zeros(2, 2, SR), ValueError, "2 channels where mono is required"),
        (torch.zeros(2, SR, dtype=torch.int16), TypeError, "float32.*int16"),
        (torch.zeros(2, SR, dtype=torch.float64), TypeError, "float32.*float64"),
        (torch.full((1, SR), float("nan")), ValueError, "NaN or Inf"),
        (torch.tensor([[0.0, float("inf")] * 400]), ValueError, "NaN or Inf"),
        (torch.zeros(1, 0), ValueError, "empty"),
        (torch.zeros(0, SR), ValueError, "empty"),
        ([[0.0] * SR], TypeError, "torch.Tensor"),
    ],
)
def test_bad_audio_is_rejected_with_a_clear_message(model, audio, error, message):
    with pytest.raises(error, match=message):
        hear_atst.get_scene_embeddings(audio, model)
    with pytest.raises(error, match=message):
        hear_atst.get_timestamp_embeddings(audio, model)


def test_mono_with_channel_axis_is_accepted(model):
    audio = torch.rand(2, SR) - 0.5
    torch.testing.assert_close(hear_atst.get_scene_embeddings(audio[:, None], model),
                               hear_atst.get_scene_embeddings(audio, model))


@pytest.mark.slow
def test_stock_hear_validator_passes(tiny_frame_ckpt, tmp_path):
    # the validator runs once per checkpoint family: ATST-Frame here through the stock command (with TensorFlow),
    # ATST-Clip in test_hear_harness through `atst-hear validate` (without TensorFlow)
    checkpoint = tiny_frame_ckpt
    validator = os.path.join(os.path.dirname(sys.executable), "hear-validator")
    result = subprocess.run([validator, "hear_atst", "--model", str(checkpoint), "--device", "cpu"],
                            capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Looks good!" in result.stdout
