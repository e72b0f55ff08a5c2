"""`official` mode reproduces the official implementation's outputs (../shared/fixtures) to 1e-4 (on CUDA too, with
TF32 off: `pytest -m cuda`)."""
from __future__ import annotations

import pytest
import torch

from atst import load_embedder, official_frame_linear_eval
from conftest import devices, on_device

ATOL = RTOL = 1e-4
FRAME_CASES = ["b2_1s", "b2_10s", "b1_10.01s", "b1_23.456s", "b1_0.3s", "b1_20.03s"]


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("case", FRAME_CASES)
def test_official_scene_matches_reference(official, reference, case, device, exact_fp32):
    audio = reference["inputs"][case].to(device)  # [B, 1, N], as the official API takes it
    expected = reference["float32"][case]["scene"]
    got = on_device(official, device).scene_embeddings(audio)
    assert got.dtype == torch.float32 and got.shape == expected.shape and got.device == audio.device
    torch.testing.assert_close(got.cpu(), expected, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("case", FRAME_CASES)
def test_official_timestamps_match_reference(official, reference, case, device, exact_fp32):
    expected = reference["float32"][case]
    embeddings, timestamps = on_device(official, device).timestamp_embeddings(reference["inputs"][case][:, 0]
                                                                              .to(device))
    embeddings, timestamps = embeddings.cpu(), timestamps.cpu()
    assert timestamps.dtype == torch.float32
    assert torch.equal(timestamps, expected["timestamps"])
    if "timestamp_embedding" in expected:
        torch.testing.assert_close(embeddings, expected["timestamp_embedding"], atol=ATOL, rtol=RTOL)
    else:
        assert embeddings.shape[:2] == expected["timestamps"].shape


def test_official_quirks_are_reproduced(official, reference):
    """10.01 s: the zero-token tail chunk halves the scene; 23.456 s runs three chunks (1001+1001+344 frames)."""
    audio = reference["inputs"]["b1_10.01s"][:, 0]
    mel = official.frontend(audio)  # 1002 frames; the mel of the whole clip, as the official code chunks it
    assert mel.shape[-1] == 1002
    first_chunk = official.encoder.last_blocks_normed(mel[..., :1001], 12).mean(dim=1)
    tail = official.scene_embeddings(audio)
    torch.testing.assert_close(tail, first_chunk / 2, atol=1e-6, rtol=1e-5)
    _, stamps = official.timestamp_embeddings(reference["inputs"]["b1_23.456s"][:, 0])
    assert stamps.shape == (1, 586) and stamps[0, -1] == 585 * 40


def test_official_mode_rejects_audio_too_short_for_the_stft(official, reference):
    audio = reference["inputs"]["b1_0.02s"]
    assert "scene_error" in reference["float32"]["b1_0.02s"]  # the official code fails here too
    with pytest.raises(ValueError, match="too short for official mode"):
        official.scene_embeddings(audio)
    with pytest.raises(ValueError, match="too short for official mode"):
        official.timestamp_embeddings(audio)


def test_float64_reference_agrees(official, reference):
    """The float32 result also lies within 1e-4 of the official float64 run (not only of its float32 run)."""
    for case in ["b2_1s", "b1_0.3s"]:
        got, _ = official.timestamp_embeddings(reference["inputs"][case][:, 0])
        expected = reference["float64"][case]["timestamp_embedding"].float()
        torch.testing.assert_close(got, expected, atol=ATOL, rtol=RTOL)


def _batch(reference, items):
    waves = [reference["inputs"][case][index] for case, index in items]
    longest = max(w.shape[-1] for w in waves)
    audio = torch.stack([torch.nn.functional.pad(w[0], (0, longest - w.shape[-1])) for w in waves])
    return audio, torch.tensor([w.shape[-1] for w in waves])


def test_frame_linear_eval_extractor_matches_reference(official, reference):
    lineval = reference["downstream_linear_eval"]
    for name, items in lineval["batches"]:
        audio, lengths = _batch(reference, items)
        got = official_frame_linear_eval(official, audio, lengths)
        torch.testing.assert_close(got, lineval["embeddings"][name], atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("train_len", [9.0, 6.0])
def test_clip_official_readout_matches_reference(fixtures, reference, train_len):
    clip_reference = torch.load(fixtures / "atstclip_tiny_reference.pt", weights_only=True)
    model = load_embedder(str(fixtures / "atstclip_tiny.ckpt"), mode="official", clip_train_len=train_len)
    assert model.scene_embedding_size == 2 * 12 * 64
    for name, items in clip_reference["meta"]["batches"]:
        audio, lengths = _batch(reference, items)
        got = model.scene_embeddings(audio, lengths)
        torch.testing.assert_close(got, clip_reference[f"train_len_{train_len}"][name], atol=ATOL, rtol=RTOL)


def test_clip_train_len_is_read_from_the_checkpoint(fixtures):
    model = load_embedder(str(fixtures / "atstclip_tiny.ckpt"), mode="official")
    assert model.clip_train_len == 9.0  # atstclip_tiny.ckpt carries train_small.sh's train_len
