"""The `atst_frame` upstream contract: the checks of s3prl's own upstream tests plus ATST specifics."""
from __future__ import annotations

import json
import math

import pytest
import torch

from atst import load_embedder
from s3prl_upstream import DOWNSAMPLE_RATE, expected_frames, read_model_config
from s3prl_upstream.hubconf import atst_frame
from conftest import devices, on_device

SHORT = 800  # 0.05 s, the shortest input s3prl's upstream tests use
DIM = 192  # tiny arch


def waves(lengths, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [0.1 * torch.randn(n, generator=generator) for n in lengths]


@pytest.fixture(scope="module")
def upstream(tiny_frame_ckpt):
    return atst_frame(ckpt=str(tiny_frame_ckpt), model_config=None, refresh=False)


def check_shapes(out, lengths, n_states=13):
    total = math.ceil(max(lengths) / 640)
    assert len(out["hidden_states"]) == n_states
    for state in out["hidden_states"]:
        assert state.shape == (len(lengths), total, DIM)
        assert torch.isfinite(state).all()
    assert out["last_hidden_state"].shape == (len(lengths), total, DIM)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("lengths", [[SHORT], [SHORT, SHORT], [16000], [16000, 16000], [SHORT, 16000],
                                     [9000, SHORT]], ids=lambda v: "-".join(map(str, v)))
def test_forward_backward_train_mode(upstream, lengths, device):
    upstream = on_device(upstream, device)
    upstream.train()
    try:
        out = upstream([wave.to(device) for wave in waves(lengths)])
        check_shapes(out, lengths)
        loss = sum(state.pow(2).mean() for state in out["hidden_states"]) + out["last_hidden_state"].mean()
        upstream.zero_grad()
        loss.backward()
        encoder = upstream.backbone.encoder
        for name in ("patch_embed.patch_embed.weight", "blocks.0.attn.qkv.weight", "blocks.11.mlp.fc2.weight",
                     "norm_frame.weight"):
            grad = dict(encoder.named_parameters())[name].grad
            assert grad is not None and grad.abs().sum() > 0, name
        # layer count never changes in train mode (no layer drop): the Featurizer's weights stay valid
        for _ in range(3):
            assert len(upstream([wave.to(device) for wave in waves(lengths, seed=1)])["hidden_states"]) == 13
    finally:
        upstream.eval()


def test_deterministic_in_eval_mode(upstream):
    wavs = waves([SHORT, 16000, 7000])
    with torch.no_grad():
        first, second = upstream(wavs), upstream(wavs)
    for a, b in zip(first["hidden_states"] + [first["last_hidden_state"]],
                    second["hidden_states"] + [second["last_hidden_state"]]):
        assert torch.equal(a, b)


@pytest.mark.parametrize("n", [1, 400, 512, 513, 639, 640, 641, 800, 1119, 1120, 12345, 16000, 16001, 48000])
def test_frame_count_legacy_and_exact_rules(upstream, n):
    with torch.no_grad():
        out = upstream(waves([n]))
    frames = out["hidden_states"][0].shape[1]
    assert frames == math.ceil(n / 640) == expected_frames(n)  # S3PRLUpstream: len(range(0, n, 640))
    assert abs(frames - round(n / 640)) < 5  # legacy Featurizer TOLERABLE_SEQLEN_DIFF
    assert upstream.get_downsample_rates("hidden_states") == DOWNSAMPLE_RATE == 640
    assert upstream.get_downsample_rates("last_hidden_state") == 640


def test_features_do_not_depend_on_batch_partners(upstream):
    short, long = waves([9000, 40000], seed=3)
    with torch.no_grad():
        alone = upstream([short])
        together = upstream([short, long])
    own = math.ceil(9000 / 640)
    for a, b in zip(alone["hidden_states"] + [alone["last_hidden_state"]],
                    together["hidden_states"] + [together["last_hidden_state"]]):
        torch.testing.assert_close(b[0, :own], a[0], rtol=1e-4, atol=1e-4)
        assert torch.count_nonzero(b[0, own:]) == 0  # past its own length: zeros


def test_extra_frame_repeats_last_token(upstream):
    # 16001 samples: the encoder makes 25 tokens, ceil(16001 / 640) = 26 frames are returned
    with torch.no_grad():
        out = upstream(waves([16001, 16000]))
    for state in out["hidden_states"] + [out["last_hidden_state"]]:
        assert state.shape[1] == 26
        torch.testing.assert_close(state[0, 25], state[0, 24])
        assert torch.count_nonzero(state[1, 25]) == 0  # the 16000-sample item ends at 25 frames


def test_last_hidden_state_equals_hear_token_vectors(upstream, tiny_frame_ckpt):
    from atst.synthetic import harmonic_tone

    clip = torch.from_numpy(harmonic_tone(440.0, 3.2))
    hear = load_embedder(str(tiny_frame_ckpt), mode="hear", n_blocks=1)
    tokens, _ = hear.timestamp_embeddings(clip[None])
    with torch.no_grad():
        out = upstream([clip])
    assert tokens.shape[1] == out["last_hidden_state"].shape[1] == 80
    torch.testing.assert_close(out["last_hidden_state"][0], tokens[0], rtol=1e-4, atol=1e-4)
    normed = atst_frame(ckpt=str(tiny_frame_ckpt), model_config="final_norm=true,layers=[12]")
    with torch.no_grad():
        (state,) = normed([clip])["hidden_states"]
    torch.testing.assert_close(state[0], tokens[0], rtol=1e-4, atol=1e-4)


def test_long_input_is_windowed_in_bounded_batches(tiny_frame_ckpt):
    upstream = atst_frame(ckpt=str(tiny_frame_ckpt), model_config="max_windows_per_call=4")
    seen = []
    hook = upstream.backbone.encoder.blocks[0].register_forward_hook(
        lambda module, args, output: seen.append(tuple(output.shape)))
    n = 95 * 16000
    try:
        with torch.no_grad():
            out = upstream(waves([n], seed=5))
    finally:
        hook.remove()
    assert out["hidden_states"][-1].shape == (1, math.ceil(n / 640), DIM) == (1, 2375, DIM)
    # 9 full windows of 250 tokens in calls of at most 4 (4 + 4 + 1) and the 125-token tail: 4 calls, not 10
    assert len(seen) == 4
    assert all(batch <= 4 and tokens <= 250 for batch, tokens, _ in seen)
    assert sum(batch for batch, _, _ in seen) == 10


def test_atst_clip_checkpoint(tiny_clip_ckpt):
    upstream = atst_frame(ckpt=str(tiny_clip_ckpt))
    assert upstream.family == "clip"
    with torch.no_grad():
        out = upstream(waves([SHORT, 30000]))
    check_shapes(out, [SHORT, 30000])


def test_model_config_forms(tmp_path, tiny_frame_ckpt):
    yaml_file = tmp_path / "up.yaml"
    yaml_file.write_text("window_secs: 4\nlayers: [0, 6, 12]\nfinal_norm: true\n")
    json_file = tmp_path / "up.json"
    json_file.write_text(json.dumps({"window_secs": 4, "layers": [0, 6, 12], "final_norm": True}))
    inline = read_model_config("window_secs=4,layers=[0, 6, 12],final_norm=true")
    for parsed in (read_model_config(str(yaml_file)), read_model_config(str(json_file)), inline):
        assert (parsed.window_secs, parsed.layers, parsed.final_norm) == (4.0, [0, 6, 12], True)
    upstream = atst_frame(ckpt=str(tiny_frame_ckpt), model_config=str(yaml_file))
    assert upstream.backbone.window_frames == 400
    with torch.no_grad():
        out = upstream(waves([16000 * 9]))
    assert len(out["hidden_states"]) == 3 and out["hidden_states"][0].shape == (1, 225, DIM)


def test_official_mode_uses_the_padded_batch(tiny_frame_ckpt):
    official = atst_frame(ckpt=str(tiny_frame_ckpt), model_config="mode=official")
    with torch.no_grad():
        alone = official(waves([9000], seed=3))["last_hidden_state"]
        together = official(waves([9000, 40000], seed=3))["last_hidden_state"]
    assert together.shape == (2, 63, DIM)
    assert torch.count_nonzero(together[0, 15:]) > 0  # the padded tail is computed, as in the official code
    assert not torch.allclose(together[0, :15], alone[0], atol=1e-4)


@pytest.mark.parametrize("config, message", [
    ("window_secs=12", "window_secs"), ("window_secs=0.05", "multiple of 0.04"), ("mode=fast", "mode must be"),
    ("layers=[13]", "do not exist"), ("final_norm=maybe", "final_norm"), ("colour=red", "unknown upstream option"),
    ("/no/such/file.yaml", "neither an existing YAML/JSON file"),
    ("layers=[0, 6", r"layers='\[0, 6' is not a valid value .*lists as \[0, 6, 12\]"), ("=6", "no option name"),
])
def test_bad_model_config_is_named(tiny_frame_ckpt, config, message):
    with pytest.raises(ValueError, match=message):
        atst_frame(ckpt=str(tiny_frame_ckpt), model_config=config)


def test_bad_inputs_are_named(upstream, tmp_path):
    with pytest.raises(ValueError, match="empty list"):
        upstream([])
    with pytest.raises(ValueError, match="1-D"):
        upstream([torch.zeros(2, 800)])
    with pytest.raises(TypeError, match="float tensor"):
        upstream([torch.zeros(800, dtype=torch.int16)])
    with pytest.raises(TypeError, match="list of 1-D float tensors"):
        upstream(torch.zeros(2, 800))
    with pytest.raises(ValueError, match="NaN or Inf"):
        upstream([torch.full((800,), float("nan"))])
    with pytest.raises(FileNotFoundError, match="-k"):
        atst_frame(ckpt=None)
    with pytest.raises(FileNotFoundError, match="not found"):
        atst_frame(ckpt=str(tmp_path / "missing.ckpt"))


def test_unknown_keyword_option_is_named(tiny_frame_ckpt):
    with pytest.raises(TypeError, match="unknown upstream option.*colour"):
        atst_frame(ckpt=str(tiny_frame_ckpt), colour="red")
    upstream = atst_frame(ckpt=str(tiny_frame_ckpt), window_secs=2)  # S3PRLUpstream extra_conf style
    assert upstream.backbone.window_frames == 200
