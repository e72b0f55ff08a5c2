"""`atst.Backbone`: the one audio -> windows -> token states path, with gradients when enabled."""
from __future__ import annotations

import pytest
import torch

from atst import Backbone, load_checkpoint, load_embedder
from atst.embedding import clip_window_tokens
from s3prl_upstream.hubconf import atst_frame
from conftest import SAMPLE_RATE

SR = SAMPLE_RATE


@pytest.fixture(scope="module")
def frozen(fixtures):
    loaded = load_checkpoint(fixtures / "atstframe_tiny.ckpt")
    return Backbone(loaded.encoder, loaded.frontend_config, max_windows_per_call=3)


@pytest.fixture(scope="module")
def trainable(fixtures):
    loaded = load_checkpoint(fixtures / "atstframe_tiny.ckpt", trainable=True)
    return Backbone(loaded.encoder, loaded.frontend_config)


def test_checkpoints_load_frozen_or_trainable_by_choice(fixtures):
    assert not any(p.requires_grad for p in load_checkpoint(fixtures / "atstframe_tiny.ckpt").encoder.parameters())
    assert all(p.requires_grad for p in load_checkpoint(fixtures / "atstframe_tiny.ckpt", trainable=True)
               .encoder.parameters())


def test_gradients_reach_every_block_through_windows_and_scatter(trainable):
    audio = torch.randn(2, 12 * SR) * 0.1  # two windows per clip: 250 + 50 tokens
    out = trainable(audio, torch.tensor([12 * SR, 7 * SR]), layers=[trainable.config.depth])
    assert out.states[0].requires_grad and out.counts.tolist() == [300, 175]
    out.states[0][1, :175].pow(2).mean().backward()
    grads = {name: p.grad for name, p in trainable.encoder.named_parameters()}
    assert all(grads[name] is not None and grads[name].abs().sum() > 0
               for name in ("patch_embed.patch_embed.weight", "pos_embed", "blocks.0.attn.qkv.weight",
                            "blocks.11.mlp.fc2.weight"))
    trainable.zero_grad()


def test_inference_mode_tracks_nothing(frozen):
    with torch.inference_mode():
        out = frozen(torch.randn(1, SR) * 0.1)
    assert not out.states[0].requires_grad and out.states[0].is_inference()


def test_windows_equal_the_encoder_run_on_each_window(frozen):
    audio = torch.randn(1, 23 * SR) * 0.1  # 575 tokens: windows 250 + 250 + 75, calls of at most 3 windows
    with torch.no_grad():
        out = frozen(audio, layers=[3, 12, 3])
        mel = frozen.frontend(audio)
        for start, stop in ((0, 250), (250, 500), (500, 575)):
            direct = frozen.encoder.hidden_states(mel[..., 4 * start : 4 * stop], layers=[3, 12])
            torch.testing.assert_close(out.states[0][:, start:stop], direct[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(out.states[1][:, start:stop], direct[1], atol=1e-5, rtol=1e-5)
    assert torch.equal(out.states[0], out.states[2])  # outputs follow the requested order, duplicates included


def test_pooled_read_out_is_the_mean_token_without_keeping_tokens(frozen):
    generator = torch.Generator().manual_seed(1)
    audio = torch.randn(2, 11 * SR, generator=generator) * 0.1
    lengths = torch.tensor([11 * SR, 3 * SR])
    with torch.no_grad():
        tokens = frozen.last_blocks(audio, lengths, n_blocks=2)
        pooled = frozen.last_blocks(audio, lengths, n_blocks=2, pooled=True)
    assert pooled.states[0].shape == (2, 2 * 64) and tokens.states[0].shape == (2, 275, 2 * 64)
    for row, count in enumerate(tokens.counts.tolist()):
        torch.testing.assert_close(pooled.states[0][row], tokens.states[0][row, :count].mean(0), atol=1e-5,
                                   rtol=1e-5)
        assert torch.count_nonzero(tokens.states[0][row, count:]) == 0


def test_clip_family_cls_is_averaged_over_windows_with_token_weights(tiny_clip_ckpt):
    loaded = load_checkpoint(tiny_clip_ckpt)
    window = clip_window_tokens(loaded.config, loaded.clip_train_len)
    backbone = Backbone(loaded.encoder, loaded.frontend_config, window_tokens=window)
    audio = torch.randn(1, 8 * SR) * 0.1  # 200 tokens: windows of 150 + 50
    with torch.no_grad():
        out = backbone.last_blocks(audio, n_blocks=1, pooled=True)
        mel = backbone.frontend(audio)
        first = backbone.encoder.last_blocks_normed(mel[..., :600], 1)[:, 0]
        second = backbone.encoder.last_blocks_normed(mel[..., 600:800], 1)[:, 0]
    torch.testing.assert_close(out.cls[0], (150 * first + 50 * second) / 200, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kwargs, message", [
    ({"window_tokens": 251}, "window_tokens must be an int in \\[1, 250\\]"),
    ({"window_tokens": 0}, "window_tokens"),
    ({"max_windows_per_call": 0}, "max_windows_per_call must be a positive int"),
    ({"autocast": "int8"}, "autocast must be one of"),
])
def test_bad_settings_are_refused_at_construction(fixtures, kwargs, message):
    loaded = load_checkpoint(fixtures / "atstframe_tiny.ckpt")
    with pytest.raises(ValueError, match=message):
        Backbone(loaded.encoder, loaded.frontend_config, **kwargs)


def test_bad_layers_and_blocks_are_named(frozen):
    audio = torch.zeros(1, SR)
    with pytest.raises(ValueError, match="layers must be indices in \\[0, 12\\]"):
        frozen(audio, layers=[13])
    with pytest.raises(ValueError, match="n_blocks must be an int in \\[1, 12\\]"):
        frozen.last_blocks(audio, n_blocks=0)


def test_hear_model_and_s3prl_upstream_stand_on_the_backbone(fixtures):
    path = str(fixtures / "atstframe_tiny.ckpt")
    model = load_embedder(path)
    upstream = atst_frame(ckpt=path)
    assert isinstance(model.backbone, Backbone) and isinstance(upstream.backbone, Backbone)
    assert not any(p.requires_grad for p in model.parameters())  # built frozen for inference
    assert all(p.requires_grad for p in upstream.parameters())  # built trainable for s3prl's -f
