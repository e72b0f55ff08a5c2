"""Checkpoint reading: every family, config inferred from shapes, clear errors, never unpickling objects."""
from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from atst import CheckpointError, describe_checkpoint, export_encoder, load_checkpoint, load_embedder
from atst.encoder import arch_config
from atst.synthetic import random_encoder, write_official_checkpoint
from conftest import SAMPLE_RATE, subprocess_env

SR = SAMPLE_RATE
MANIFESTS = {
    "atstframe_small_ckpt_manifest.json": ("frame", 384, 6),
    "atstframe_base_ckpt_manifest.json": ("frame", 768, 12),
    "atstclip_small_ckpt_manifest.json": ("clip", 384, 6),
    "atstclip_base_ckpt_manifest.json": ("clip", 768, 12),
}


def _checkpoint_from_manifest(manifest: dict, path: Path) -> Path:
    """Random weights in exactly the manifest's key/shape layout, plus its top-level keys and hyper-parameters."""
    generator = torch.Generator().manual_seed(0)
    state = {}
    for entry in manifest["state_dict"]:
        shape, dtype = entry["shape"], getattr(torch, entry["dtype"])
        if dtype.is_floating_point:
            value = torch.randn(shape, generator=generator) * 0.02
            if entry["key"].endswith(("norm1.weight", "norm2.weight", "norm_frame.weight", "norm.weight")):
                value += 1.0
        else:
            value = torch.zeros(shape, dtype=dtype)
        state[entry["key"]] = value
    checkpoint = {key: None for key in manifest["top_level_keys"]}
    checkpoint.update(epoch=0, global_step=0, loops={}, callbacks={}, optimizer_states=[], lr_schedulers=[],
                      hparams_name=manifest["hparams_name"], hyper_parameters=manifest["hyper_parameters"],
                      state_dict=state)
    checkpoint["pytorch-lightning_version"] = "2.6.6"
    torch.save(checkpoint, path)
    return path


@pytest.mark.parametrize("manifest_name", sorted(MANIFESTS))
def test_full_size_checkpoints_load_with_inferred_config(fixtures, tmp_path, manifest_name):
    family, dim, heads = MANIFESTS[manifest_name]
    manifest = json.loads((fixtures / manifest_name).read_text())
    path = _checkpoint_from_manifest(manifest, tmp_path / "full.ckpt")
    loaded = load_checkpoint(path)
    config = loaded.config
    assert (config.family, config.embed_dim, config.depth, config.num_heads) == (family, dim, 12, heads)
    assert config.mlp_hidden_dim == 4 * dim and config.max_tokens == 250
    encoder_keys = [e for e in manifest["state_dict"] if e["key"].startswith("model.teacher.encoder.")]
    assert sum(p.numel() for p in loaded.encoder.parameters()) == sum(
        torch.Size(e["shape"]).numel() for e in encoder_keys)
    model = load_embedder(str(path))
    audio = torch.randn(2, SR) * 0.1
    scene = model.scene_embeddings(audio)
    embeddings, stamps = model.timestamp_embeddings(audio)
    assert scene.shape == (2, model.scene_embedding_size) == (2, 12 * dim * (2 if family == "clip" else 1))
    assert embeddings.shape == (2, 25, 12 * dim)
    assert torch.isfinite(scene).all() and torch.isfinite(embeddings).all()
    if family == "clip":
        assert model.clip_train_len == manifest["hyper_parameters"]["train_len"]


def test_teacher_is_the_default_and_student_is_an_option(fixtures):
    checkpoint = torch.load(fixtures / "atstframe_tiny.ckpt", weights_only=True)
    teacher = load_checkpoint(fixtures / "atstframe_tiny.ckpt").encoder.state_dict()
    student = load_checkpoint(fixtures / "atstframe_tiny.ckpt", branch="student").encoder.state_dict()
    assert torch.equal(teacher["pos_embed"], checkpoint["state_dict"]["model.teacher.encoder.pos_embed"])
    assert torch.equal(student["pos_embed"], checkpoint["state_dict"]["model.student.encoder.pos_embed"])
    assert not torch.equal(teacher["pos_embed"], student["pos_embed"])  # the fixture's branches differ on purpose


def test_hyper_parameters_are_not_trusted_for_shapes(fixtures):
    loaded = load_checkpoint(fixtures / "atstframe_tiny.ckpt")
    assert loaded.hyper_parameters["arch"] == "small"  # says small ...
    assert loaded.config.embed_dim == 64 and loaded.config.num_heads == 1  # ... but the tensors are tiny


def _encoder_state(family: str = "frame") -> dict:
    return random_encoder(arch_config("tiny", family=family)).state_dict()


def test_dino_style_files_load(tmp_path):
    state = _encoder_state("clip")
    raw = {"teacher": {f"module.backbone.{k}": v for k, v in state.items()},
           "student": {f"module.backbone.{k}": v + 1 for k, v in state.items()},
           "args": argparse.Namespace(arch="tiny", train_len=9.0)}
    raw["teacher"]["module.head.last_layer.weight"] = torch.zeros(4, 4)
    torch.save(raw, tmp_path / "dino.pth")
    loaded = load_checkpoint(tmp_path / "dino.pth")
    assert loaded.family == "clip" and loaded.family_source == "dino" and loaded.clip_train_len == 9.0
    assert torch.equal(loaded.encoder.state_dict()["pos_embed"], state["pos_embed"])


def test_bare_encoder_state_dict_loads(tmp_path):
    state = _encoder_state()
    torch.save(state, tmp_path / "bare.pt")
    loaded = load_checkpoint(tmp_path / "bare.pt")
    assert loaded.family == "frame" and loaded.family_source == "state_dict"


def test_export_round_trips_to_identical_embeddings(fixtures, tmp_path):
    source = load_checkpoint(fixtures / "atstframe_tiny.ckpt")
    out = export_encoder(source, tmp_path / "encoder.safetensors")
    with open(out, "rb") as handle:
        assert b"pickle" not in handle.read(4096)
    original = load_embedder(str(fixtures / "atstframe_tiny.ckpt"))
    exported = load_embedder(str(out))
    audio = torch.randn(2, 3 * SR) * 0.1
    assert torch.equal(original.scene_embeddings(audio), exported.scene_embeddings(audio))
    assert torch.equal(original.timestamp_embeddings(audio)[0], exported.timestamp_embeddings(audio)[0])
    assert exported.encoder.config == original.encoder.config


def test_export_keeps_clip_settings(fixtures, tmp_path):
    out = export_encoder(load_checkpoint(fixtures / "atstclip_tiny.ckpt"), tmp_path / "clip.safetensors")
    loaded = load_checkpoint(out)
    assert loaded.family == "clip" and loaded.clip_train_len == 9.0


def test_describe_checkpoint(fixtures):
    info = describe_checkpoint(fixtures / "atstframe_tiny.ckpt")
    assert info["family"] == "ATST-Frame" and info["embed_dim"] == 64 and info["num_heads"] == 1
    assert info["encoder_parameters"] == sum(p.numel() for p in load_checkpoint(
        fixtures / "atstframe_tiny.ckpt").encoder.parameters())
    assert any(item.startswith("model.student.predictor") for item in info["contents"])


# ------------------------------------------------------------------------------------------ errors
def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_checkpoint(tmp_path / "nope.ckpt")


def test_truncated_checkpoint(fixtures, tmp_path):
    data = (fixtures / "atstframe_tiny.ckpt").read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(tmp_path / "cut.ckpt")


def test_empty_file(tmp_path):
    (tmp_path / "empty.ckpt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(tmp_path / "empty.ckpt")


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch EXPLOITED_MARKER",))


def test_malicious_pickle_is_never_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"state_dict": _Exploit()}, tmp_path / "evil.ckpt")
    with open(tmp_path / "legacy.pkl", "wb") as handle:
        pickle.dump({"state_dict": _Exploit()}, handle)
    for name in ("evil.ckpt", "legacy.pkl"):
        with pytest.raises(CheckpointError, match="refusing to load|could not read"):
            load_checkpoint(tmp_path / name)
    assert not (tmp_path / "EXPLOITED_MARKER").exists()


def test_numpy_numbers_load_and_other_numpy_objects_are_refused(tiny_frame_ckpt, tmp_path):
    # training scripts log metrics as NumPy numbers (a callback's best score, a learning rate); arrays, strings and
    # object or structured values have no place in a checkpoint and stay refused
    checkpoint = torch.load(tiny_frame_ckpt, weights_only=True)
    checkpoint["callbacks"] = {"ModelCheckpoint": {"best_model_score": np.float64(0.25), "step": np.int64(3)}}
    checkpoint["hyper_parameters"]["learning_rate"] = np.float64(0.001)
    torch.save(checkpoint, tmp_path / "numbers.ckpt")
    assert load_checkpoint(tmp_path / "numbers.ckpt").hyper_parameters["learning_rate"] == 0.001
    for value in (np.arange(3), np.str_("x"), np.array([object()], dtype=object), np.void(b"ab")):
        checkpoint["callbacks"] = {"ModelCheckpoint": {"value": value}}
        torch.save(checkpoint, tmp_path / "other.ckpt")
        with pytest.raises(CheckpointError, match="refusing to load"):
            load_checkpoint(tmp_path / "other.ckpt")


def test_pickle_that_is_not_a_checkpoint(tmp_path):
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="not a checkpoint dictionary"):
        load_checkpoint(tmp_path / "list.pt")
    torch.save({"hello": "world"}, tmp_path / "dict.pt")
    with pytest.raises(CheckpointError, match="not an ATST checkpoint"):
        load_checkpoint(tmp_path / "dict.pt")


def test_student_only_checkpoint_names_the_branch(fixtures, tmp_path):
    checkpoint = torch.load(fixtures / "atstframe_tiny.ckpt", weights_only=True)
    checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k.startswith("model.student.")}
    torch.save(checkpoint, tmp_path / "student_only.ckpt")
    with pytest.raises(CheckpointError, match="no teacher encoder.*student"):
        load_checkpoint(tmp_path / "student_only.ckpt")
    assert load_checkpoint(tmp_path / "student_only.ckpt", branch="student").branch == "student"


def test_foreign_state_dict(tmp_path):
    torch.save({"state_dict": torch.nn.Linear(4, 4).state_dict()}, tmp_path / "foreign.ckpt")
    with pytest.raises(CheckpointError, match="no ATST encoder"):
        load_checkpoint(tmp_path / "foreign.ckpt")
    torch.save(torch.nn.Conv1d(2, 2, 3).state_dict(), tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not an ATST checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_missing_and_unexpected_encoder_keys_are_named(fixtures, tmp_path):
    checkpoint = torch.load(fixtures / "atstframe_tiny.ckpt", weights_only=True)
    state = checkpoint["state_dict"]
    del state["model.teacher.encoder.blocks.3.mlp.fc2.bias"]
    state["model.teacher.encoder.blocks.3.extra.weight"] = torch.zeros(2)
    torch.save(checkpoint, tmp_path / "broken.ckpt")
    with pytest.raises(CheckpointError, match=r"blocks\.3\.mlp\.fc2\.bias.*blocks\.3\.extra\.weight"):
        load_checkpoint(tmp_path / "broken.ckpt")


def test_wrong_shape_is_named(fixtures, tmp_path):
    checkpoint = torch.load(fixtures / "atstframe_tiny.ckpt", weights_only=True)
    checkpoint["state_dict"]["model.teacher.encoder.blocks.0.attn.proj.weight"] = torch.zeros(64, 32)
    torch.save(checkpoint, tmp_path / "shape.ckpt")
    with pytest.raises(CheckpointError, match=r"blocks\.0\.attn\.proj\.weight has shape \(64, 32\)"):
        load_checkpoint(tmp_path / "shape.ckpt")


def test_safetensors_without_atst_metadata(tmp_path):
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="not an `atst export` encoder"):
        load_checkpoint(tmp_path / "other.safetensors")


# a fresh process: (peak RSS rise during hear_atst.load_model, encoder weights) in MB
LOAD_PEAK_PROBE = """
import sys, torch
torch.set_num_threads(1)
import hear_atst
def mb(field):
    return next(int(line.split()[1]) / 1024 for line in open("/proc/self/status") if line.startswith(field + ":"))
with open("/proc/self/clear_refs", "w") as handle:  # reset VmHWM: a transient peak of the imports (a first import
    handle.write("5")                                # compiles bytecode) must not count as the load's
before = mb("VmRSS")
model = hear_atst.load_model(sys.argv[1])
print(mb("VmHWM") - before, sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20)
"""

# a fresh process (a SIGBUS must not take pytest down): embeddings before and after the file is overwritten in place
IN_PLACE_PROBE = """
import shutil, sys, torch
import hear_atst
model = hear_atst.load_model(sys.argv[1])
audio = torch.randn(2, 16000, generator=torch.Generator().manual_seed(0)) * 0.1
first = hear_atst.get_scene_embeddings(audio, model)
shutil.copyfile(sys.argv[2], sys.argv[1])  # cp onto it: truncated, then other bytes
after_copy = hear_atst.get_scene_embeddings(audio, model)
open(sys.argv[1], "wb").close()
after_truncation = hear_atst.get_scene_embeddings(audio, model)
print(torch.equal(first, after_copy), torch.equal(first, after_truncation))
"""


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads VmHWM from /proc (Linux)")
def test_the_load_peak_holds_the_encoder_weights_once(tmp_path):
    path = write_official_checkpoint(tmp_path / "small.ckpt", arch="small", seed=0)  # 82 MB of teacher weights
    result = subprocess.run([sys.executable, "-c", LOAD_PEAK_PROBE, str(path)], env=subprocess_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rise, weights = map(float, result.stdout.split())
    # copies beside the file's resident pages would be about 2x; measured 1.14x here, up to 1.36x on a loaded CI
    # machine (fault-around and readahead of the mapping): the bound is generous, the exact figure is in the benchmark
    assert rise < 1.6 * weights, (rise, weights)


def test_a_loaded_model_does_not_depend_on_its_file(tiny_frame_ckpt, fixtures, tmp_path):
    path = tmp_path / "model.ckpt"
    shutil.copyfile(tiny_frame_ckpt, path)
    result = subprocess.run([sys.executable, "-c", IN_PLACE_PROBE, str(path), str(fixtures / "atstclip_tiny.ckpt")],
                            env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"exit status {result.returncode}: {result.stderr[-2000:]}"
    assert result.stdout.split() == ["True", "True"]


def test_half_precision_weights_and_views_load_as_compact_float32_copies(tiny_frame_ckpt, tmp_path):
    """Half-precision weights and a view into a larger storage become float32 tensors of their own (a view would
    keep the whole storage alive)."""
    raw = torch.load(tiny_frame_ckpt, weights_only=True)
    state = raw["state_dict"]
    teacher = [k for k in state if k.startswith("model.teacher.encoder.")]
    for key in teacher[:3]:
        state[key] = state[key].half()
    pos_key = "model.teacher.encoder.pos_embed"
    state[pos_key] = torch.cat([state[pos_key], state[pos_key]])[:1]  # a view into a storage twice its size
    torch.save(raw, tmp_path / "mixed.ckpt")
    encoder = load_checkpoint(tmp_path / "mixed.ckpt").encoder
    assert all(p.dtype == torch.float32 for p in encoder.parameters())
    pos = encoder.pos_embed
    assert pos.untyped_storage().nbytes() == pos.numel() * 4
    torch.testing.assert_close(pos, state[pos_key].float())
