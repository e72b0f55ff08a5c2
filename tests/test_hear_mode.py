"""`hear` mode: same token vectors as `official` up to 10 s, centred timestamps, no drift, batch independence."""
from __future__ import annotations

import pytest
import torch

from atst import load_embedder
from conftest import NEEDS_CUDA, SAMPLE_RATE, devices, on_device

SR = SAMPLE_RATE


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("case", ["b2_1s", "b2_10s", "b1_0.3s"])
def test_hear_equals_official_up_to_10s(hear, official, reference, case, device, exact_fp32):
    hear, official = on_device(hear, device), on_device(official, device)
    audio = reference["inputs"][case][:, 0].to(device)
    hear_tokens, hear_stamps = hear.timestamp_embeddings(audio)
    official_tokens, official_stamps = official.timestamp_embeddings(audio)
    torch.testing.assert_close(hear_tokens, official_tokens, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(hear.scene_embeddings(audio), official.scene_embeddings(audio), atol=1e-4, rtol=1e-4)
    # same tokens, but stamped at their centres
    assert torch.equal(hear_stamps, official_stamps + 15.0)


@pytest.mark.parametrize("seconds", [1.07, 1.98, 4.0, 10.0, 10.01, 23.456, 0.3])
def test_timestamps_are_token_centres_within_the_clip(hear, seconds):
    samples = int(round(seconds * SR))
    audio = torch.randn(2, samples) * 0.1
    embeddings, stamps = hear.timestamp_embeddings(audio)
    frames = samples // 160 + 1
    assert embeddings.shape == (2, frames // 4, hear.timestamp_embedding_size)
    assert stamps.dtype == torch.float32 and embeddings.dtype == torch.float32
    assert torch.equal(stamps[0], stamps[1])
    assert torch.equal(stamps[0], torch.arange(frames // 4, dtype=torch.float32) * 40 + 15)
    assert stamps.max() <= 1000 * samples / SR


def test_audio_shorter_than_one_token_gives_one_token(hear, reference):
    audio = reference["inputs"]["b1_0.02s"][:, 0]  # 320 samples: the official code raises inside the STFT
    embeddings, stamps = hear.timestamp_embeddings(audio)
    assert embeddings.shape == (1, 1, hear.timestamp_embedding_size)
    assert torch.isfinite(embeddings).all()
    assert stamps.tolist() == [[15.0]]
    tiny = hear.timestamp_embeddings(torch.randn(1, 80) * 0.1)[1]  # 5 ms: clamped to the clip end
    assert tiny.tolist() == [[5.0]]
    assert hear.scene_embeddings(audio).shape == (1, hear.scene_embedding_size)


def test_long_clip_tokens_stay_aligned_to_mel_frames(hear):
    """95 s: token k is computed from frames 4k..4k+3 of the whole-clip mel and stamped 40k + 15 ms (no drift),
    and a click at 90 s shows up in the token whose span contains it."""
    generator = torch.Generator().manual_seed(0)
    audio = torch.randn(1, 95 * SR, generator=generator) * 0.01
    click_ms = 90_017.0
    start = int(click_ms * SR / 1000)
    audio[0, start : start + 80] += 0.9
    embeddings, stamps = hear.timestamp_embeddings(audio)
    frames = 95 * SR // 160 + 1
    assert embeddings.shape[1] == frames // 4 == 2375
    assert torch.equal(stamps[0], torch.arange(2375, dtype=torch.float32) * 40 + 15)
    # window 9 (tokens 2250..2374) equals running the encoder directly on frames 9000..9499 of the clip's mel
    mel = hear.frontend(audio)
    direct = hear.encoder.last_blocks_normed(mel[..., 9000:9500], hear.n_blocks)
    torch.testing.assert_close(embeddings[:, 2250:2375], direct, atol=1e-5, rtol=1e-5)
    # the click lies in the token whose 40 ms span covers it; the token embedding moves most there
    quiet = hear.timestamp_embeddings(torch.randn(1, 95 * SR, generator=torch.Generator().manual_seed(0)) * 0.01)[0]
    change = (embeddings - quiet).norm(dim=-1)[0]
    peak = int(change.argmax())
    assert abs(float(stamps[0, peak]) - click_ms) <= 40


def test_scene_is_the_token_weighted_mean_over_windows(hear):
    audio = torch.randn(1, 23 * SR) * 0.1  # windows of 250 + 250 + 75 tokens
    embeddings, _ = hear.timestamp_embeddings(audio)
    assert embeddings.shape[1] == 575
    torch.testing.assert_close(hear.scene_embeddings(audio), embeddings.mean(dim=1), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("device", devices())
def test_a_clip_does_not_depend_on_batch_partners_or_padding(hear, device, exact_fp32):
    hear = on_device(hear, device)
    generator = torch.Generator().manual_seed(3)
    clips = [torch.randn(n, generator=generator).to(device) * 0.1 for n in (3 * SR, 12 * SR + 321, 800)]
    clips[1][5 * SR : 5 * SR + 400] += 0.95  # a loud partner must not change the others' top_db floor
    longest = max(c.shape[0] for c in clips)
    batch = torch.stack([torch.nn.functional.pad(c, (0, longest - c.shape[0])) for c in clips])
    lengths = torch.tensor([c.shape[0] for c in clips])
    scenes = hear.scene_embeddings(batch, lengths)
    tokens, stamps = hear.timestamp_embeddings(batch, lengths)
    for row, clip in enumerate(clips):
        alone_scene = hear.scene_embeddings(clip[None])
        alone_tokens, _ = hear.timestamp_embeddings(clip[None])
        torch.testing.assert_close(scenes[row : row + 1], alone_scene, atol=1e-5, rtol=1e-4)
        count = alone_tokens.shape[1]
        torch.testing.assert_close(tokens[row : row + 1, :count], alone_tokens, atol=1e-5, rtol=1e-4)
        assert torch.all(tokens[row, count:] == 0)


def test_window_budget_does_not_change_results(fixtures):
    audio = torch.randn(3, 25 * SR) * 0.1
    small_budget = load_embedder(str(fixtures / "atstframe_tiny.ckpt"), max_windows_per_call=1)
    large_budget = load_embedder(str(fixtures / "atstframe_tiny.ckpt"), max_windows_per_call=64)
    torch.testing.assert_close(small_budget.timestamp_embeddings(audio)[0], large_budget.timestamp_embeddings(audio)[0],
                               atol=1e-5, rtol=1e-4)


def test_outputs_are_deterministic_and_do_not_track_gradients(hear):
    audio = torch.randn(2, SR) * 0.1
    first = hear.scene_embeddings(audio)
    assert torch.equal(first, hear.scene_embeddings(audio))
    assert not first.requires_grad


def test_n_blocks_sets_the_widths(fixtures):
    model = load_embedder(str(fixtures / "atstframe_tiny.ckpt"), n_blocks=3)
    audio = torch.randn(1, SR) * 0.1
    embeddings, _ = model.timestamp_embeddings(audio)
    assert embeddings.shape[-1] == model.timestamp_embedding_size == 3 * 64
    assert model.scene_embeddings(audio).shape[-1] == model.scene_embedding_size == 3 * 64
    full = load_embedder(str(fixtures / "atstframe_tiny.ckpt")).timestamp_embeddings(audio)[0]
    torch.testing.assert_close(embeddings, full[..., -3 * 64 :])  # the last three blocks of the 12


@pytest.mark.parametrize("device, autocast, mode", [
    ("cpu", "bf16", "hear"),
    *[pytest.param("cuda", autocast, mode, marks=[pytest.mark.cuda, NEEDS_CUDA], id=f"cuda-{autocast}-{mode}")
      for autocast in ("bf16", "fp16") for mode in ("hear", "official")]])
def test_reduced_precision_autocast_keeps_float32_outputs_close(fixtures, device, autocast, mode):
    model = load_embedder(str(fixtures / "atstframe_tiny.ckpt"), mode=mode, autocast=autocast).to(device)
    audio = (torch.randn(2, 2 * SR) * 0.1).to(device)
    reference = load_embedder(str(fixtures / "atstframe_tiny.ckpt"), mode=mode).to(device).scene_embeddings(audio)
    got = model.scene_embeddings(audio)
    tokens, _ = model.timestamp_embeddings(audio)
    assert got.dtype == tokens.dtype == torch.float32 and got.device == audio.device
    assert torch.isfinite(tokens).all()
    assert torch.nn.functional.cosine_similarity(got, reference).min() > 0.99


def test_clip_family_hear_mode(tiny_clip_ckpt):
    model = load_embedder(str(tiny_clip_ckpt))
    assert model.family == "clip" and model.window_frames == 600
    audio = torch.randn(2, 14 * SR) * 0.1  # three windows: 150 + 150 + 50 tokens
    embeddings, stamps = model.timestamp_embeddings(audio)
    assert embeddings.shape == (2, 350, model.timestamp_embedding_size)
    scene = model.scene_embeddings(audio)
    assert scene.shape == (2, model.scene_embedding_size) == (2, 2 * 12 * 192)
    torch.testing.assert_close(scene[:, model.timestamp_embedding_size :], embeddings.mean(dim=1), atol=1e-5, rtol=1e-4)
