"""Hostile input and faults in the encoder package and the `atst` command: crafted checkpoints, odd audio, bad
files among good ones, colliding or interrupted outputs, unsafe export targets. Each test names its class."""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

import hear_atst
from atst import CheckpointError, describe_checkpoint, export_encoder, load_checkpoint, load_embedder
from atst import batch_embed
from atst.cli import main
from atst.fileio import temporary_name
from conftest import SAMPLE_RATE

SR = SAMPLE_RATE
MEMORY_LIMIT = 4 << 30  # generous: the crafted inputs used to take 5-22 GB; the real cost is in the benchmark


def run_limited(args: list[str], cwd: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    """Run `python -m atst ARGS` with its address space capped, so a regression fails instead of exhausting RAM."""
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    return subprocess.run([sys.executable, "-m", "atst", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd, preexec_fn=cap)


def official_checkpoint(fixtures: Path) -> dict:
    return torch.load(fixtures / "atstframe_tiny.ckpt", weights_only=True)


def tone(seconds: float, rate: int = SR, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


# ---------------------------------------------------------------------------------- one file never exhausts
def test_crafted_block_index_is_refused_before_anything_is_built(fixtures, tmp_path):
    checkpoint = official_checkpoint(fixtures)
    checkpoint["state_dict"]["model.teacher.encoder.blocks.99999999.attn.qkv.weight"] = torch.zeros(3, 3)
    torch.save(checkpoint, tmp_path / "crafted.ckpt")
    result = run_limited(["info", "crafted.ckpt"], tmp_path)
    assert result.returncode == 1, result.stderr  # the student still loads; the default (teacher) does not
    assert "blocks.99999999.attn.qkv.weight" in result.stdout + result.stderr
    with pytest.raises(CheckpointError, match=r"blocks\.99999999\.attn\.qkv\.weight"):
        load_checkpoint(tmp_path / "crafted.ckpt")


def test_block_indices_must_be_contiguous(fixtures, tmp_path):
    checkpoint = official_checkpoint(fixtures)
    state = checkpoint["state_dict"]
    for key in [k for k in state if k.startswith("model.teacher.encoder.blocks.11.")]:
        state[key.replace("blocks.11.", "blocks.13.")] = state.pop(key)
    torch.save(checkpoint, tmp_path / "gap.ckpt")
    with pytest.raises(CheckpointError, match=r"without a gap: found 'blocks\.13\."):
        load_checkpoint(tmp_path / "gap.ckpt")


def test_export_metadata_with_an_absurd_depth_is_refused(fixtures, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    out = export_encoder(load_checkpoint(fixtures / "atstframe_tiny.ckpt"), tmp_path / "enc.safetensors")
    with safe_open(str(out), framework="pt") as handle:
        metadata = dict(handle.metadata())
    config = json.loads(metadata["encoder_config"])
    config["depth"] = 100_000_000
    metadata["encoder_config"] = json.dumps(config)
    save_file(load_file(out), str(tmp_path / "deep.safetensors"), metadata=metadata)
    result = run_limited(["info", "deep.safetensors"], tmp_path)
    assert result.returncode == 2 and "EncoderConfig.depth must be an int in [1, 128]" in result.stderr


def test_shapes_come_from_the_tensors_not_the_hyper_parameters(fixtures, tmp_path):
    checkpoint = official_checkpoint(fixtures)
    checkpoint["hyper_parameters"].update(patch_h=128, patch_w=2, n_mels=128)
    torch.save(checkpoint, tmp_path / "lying.ckpt")
    loaded = load_checkpoint(tmp_path / "lying.ckpt")
    assert (loaded.config.n_mels, loaded.config.patch_w, loaded.frontend_config.n_mels) == (64, 4, 64)


def test_any_sample_rate_resamples_in_bounded_time_and_memory(tiny_frame_ckpt, tmp_path):
    soundfile.write(tmp_path / "odd.wav", tone(200 / 96001, 96001), 96001)
    result = run_limited(["embed", "odd.wav", "--ckpt", str(tiny_frame_ckpt), "--out", "emb", "--quiet"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert np.load(tmp_path / "emb" / "odd.wav.timestamp_embeddings.npy").shape == (1, 12 * 192)


def test_embed_decodes_batch_by_batch_not_all_up_front(tiny_frame_ckpt, tmp_path, monkeypatch):
    for index in range(4):
        soundfile.write(tmp_path / f"clip{index}.wav", tone(1.0 + index), SR)
    events = []
    real_read, real_write = batch_embed.read_audio, batch_embed.FileEmbedder.write
    monkeypatch.setattr(batch_embed, "read_audio", lambda source, name="": events.append("read") or
                        real_read(source, name))
    monkeypatch.setattr(batch_embed.FileEmbedder, "write", lambda self, job, out: events.append("write") or
                        real_write(self, job, out))
    model = load_embedder(str(tiny_frame_ckpt))
    report = batch_embed.embed_files(model, [str(tmp_path)], tmp_path / "emb", batch_seconds=2.5, progress=False)
    assert len(report.written) == 12 and not report.skipped
    # a 2.5 s budget holds one clip of 1-4 s at a time: each batch is decoded, embedded and written before the next
    assert events == ["read", "write"] * 4


# ------------------------------------------------------------------------------- one bad file costs nothing else
def test_bad_files_are_skipped_named_and_the_rest_written(tiny_frame_ckpt, tmp_path, capsys):
    audio = tmp_path / "audio"
    audio.mkdir()
    soundfile.write(audio / "good.wav", tone(1.0), SR)
    nan = tone(1.0)
    nan[100] = np.nan
    soundfile.write(audio / "nan.wav", nan, SR, subtype="FLOAT")
    soundfile.write(audio / "loud.wav", tone(1.0, amplitude=1e19), SR, subtype="FLOAT")
    soundfile.write(audio / "over.wav", tone(1.0, amplitude=3.0), SR, subtype="FLOAT")  # modest overs still work
    (audio / "empty.wav").write_bytes(b"")
    code = main(["embed", str(audio), "--ckpt", str(tiny_frame_ckpt), "--out", str(tmp_path / "emb"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    for name in ("nan.wav", "loud.wav", "empty.wav"):
        assert err.count(f"{name}:") == 1, (name, err)  # each bad file reported once, by name
    assert "NaN or Inf" in err and "peak amplitude 1e+19" in err
    assert (tmp_path / "emb" / "good.wav.scene.npy").is_file() and (tmp_path / "emb" / "over.wav.scene.npy").is_file()
    assert not (tmp_path / "emb" / "nan.wav.scene.npy").exists()


def test_overflowing_audio_is_named_with_its_peak(tiny_frame_ckpt):
    model = hear_atst.load_model(str(tiny_frame_ckpt))
    audio = torch.randn(3, SR) * 0.1
    audio[2] *= 1e20
    with pytest.raises(ValueError, match=r"clip 2 has peak amplitude [0-9.]+e\+1[89]"):
        hear_atst.get_scene_embeddings(audio, model)


# ------------------------------------------------------------------------------------ nothing lost or replaced
def test_inputs_that_would_write_the_same_output_are_refused_before_any_work(tiny_frame_ckpt, tmp_path, capsys):
    for folder in ("d1", "d2"):
        (tmp_path / folder).mkdir()
        soundfile.write(tmp_path / folder / "x.wav", tone(1.0), SR)
    for inputs in ([tmp_path / "d1", tmp_path / "d2"], [tmp_path / "d1" / "x.wav", tmp_path / "d2" / "x.wav"]):
        code = main(["embed", *map(str, inputs), "--ckpt", str(tiny_frame_ckpt), "--out", str(tmp_path / "emb")])
        err = capsys.readouterr().err
        assert code == 2 and "d1/x.wav and " in err and "d2/x.wav would both write" in err
        assert not (tmp_path / "emb").exists() or not any((tmp_path / "emb").iterdir())


def test_outputs_are_atomic_and_a_rerun_redoes_only_what_is_missing(tiny_frame_ckpt, tmp_path, capsys,
                                                                  monkeypatch):
    for name in ("a", "b"):
        soundfile.write(tmp_path / f"{name}.wav", tone(1.0), SR)
    out = tmp_path / "emb"
    args = ["embed", str(tmp_path / "a.wav"), str(tmp_path / "b.wav"), "--ckpt", str(tiny_frame_ckpt), "--out",
            str(out), "--quiet"]
    # a crash while writing leaves neither a stub under the final name nor a temporary file
    monkeypatch.setattr(np, "save", lambda handle, value: (handle.write(b"partial"), 1 / 0))
    with pytest.raises(ZeroDivisionError):
        main(args)
    monkeypatch.undo()
    assert sorted(p.name for p in out.iterdir()) == []
    assert main(args) == 0 and len(list(out.glob("*.npy"))) == 6
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.npy")}
    (out / "b.wav.timestamps.npy").unlink()
    stale = temporary_name(out / "b.wav.scene.npy").with_name(".b.wav.scene.npy.tmp-999999999-00")
    stale.write_bytes(b"left by a killed run")
    capsys.readouterr()
    assert main(args) == 0
    assert "kept the complete outputs of 1 file(s)" in capsys.readouterr().out
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("*.npy")}
    assert after["a.wav.scene.npy"] == before["a.wav.scene.npy"]  # complete: kept
    assert after["b.wav.scene.npy"] != before["b.wav.scene.npy"] and "b.wav.timestamps.npy" in after
    assert not stale.exists()
    assert main(args + ["--overwrite"]) == 0
    assert all(p.stat().st_mtime_ns != after[p.name] for p in out.glob("a.wav.*.npy"))


def test_unwritable_output_folder_is_refused_up_front(tiny_frame_ckpt, tmp_path, capsys):
    soundfile.write(tmp_path / "a.wav", tone(1.0), SR)
    (tmp_path / "file").write_text("not a folder")
    code = main(["embed", str(tmp_path / "a.wav"), "--ckpt", str(tiny_frame_ckpt), "--out",
                 str(tmp_path / "file" / "emb")])
    assert code == 2 and "cannot create the output folder" in capsys.readouterr().err


def test_export_refuses_unsafe_targets(fixtures, tmp_path, capsys):
    source = tmp_path / "run.ckpt"
    source.write_bytes((fixtures / "atstframe_tiny.ckpt").read_bytes())
    original = source.read_bytes()
    cases = [(source, "is the input checkpoint itself"), (Path("/dev/null"), "not a regular file"),
             (tmp_path, "is a folder"), (tmp_path / "missing" / "enc.safetensors", "does not exist")]
    for target, message in cases:
        assert main(["export", str(source), str(target), "--force"]) == 2
        assert message in capsys.readouterr().err
    assert source.read_bytes() == original
    target = tmp_path / "enc.safetensors"
    assert main(["export", str(source), str(target)]) == 0
    assert main(["export", str(source), str(target)]) == 2 and "--force" in capsys.readouterr().err
    assert main(["export", str(source), str(target), "--force"]) == 0
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []


# ------------------------------------------------------------------------------------------- no silent NaN
def test_non_finite_weights_are_refused_naming_the_tensor(fixtures, tmp_path, capsys):
    checkpoint = official_checkpoint(fixtures)
    checkpoint["state_dict"]["model.teacher.encoder.blocks.4.mlp.fc1.weight"][0, 0] = float("nan")
    torch.save(checkpoint, tmp_path / "nan.ckpt")
    with pytest.raises(CheckpointError, match=r"blocks\.4\.mlp\.fc1\.weight holds NaN or Inf"):
        load_checkpoint(tmp_path / "nan.ckpt")
    assert load_checkpoint(tmp_path / "nan.ckpt", branch="student").branch == "student"
    info = describe_checkpoint(tmp_path / "nan.ckpt")
    assert info["branches"]["teacher"].startswith("broken: ") and info["branches"]["student"] == "ok"
    assert main(["info", str(tmp_path / "nan.ckpt")]) == 1
    assert "the default branch (teacher) cannot be used" in capsys.readouterr().err


# --------------------------------------------------------------------------------- options checked on entry
@pytest.mark.parametrize("options, message", [
    ({"max_windows_per_call": 0}, "max_windows_per_call must be a positive int"),
    ({"max_windows_per_call": 2.5}, "max_windows_per_call must be a positive int"),
    ({"clip_train_len": -1.0}, "clip_train_len must be a positive, finite number"),
    ({"clip_train_len": float("nan")}, "clip_train_len must be a positive, finite number"),
    ({"n_blocks": 13}, r"n_blocks must be an int in \[1, 12\]"),
    ({"autocast": "int4"}, "autocast must be one of"),
])
def test_load_model_options_are_checked_at_load_time(tiny_frame_ckpt, options, message):
    with pytest.raises(ValueError, match=message):
        hear_atst.load_model(str(tiny_frame_ckpt), **options)


# ----------------------------------------------------------------------------------------- clear messages
@pytest.mark.parametrize("content", [b"just some notes\n", bytes(range(256)) * 4])
def test_text_or_random_bytes_are_not_a_checkpoint(tmp_path, content):
    (tmp_path / "model.ckpt").write_bytes(content)
    with pytest.raises(CheckpointError, match="is not a PyTorch or safetensors checkpoint"):
        load_checkpoint(tmp_path / "model.ckpt")


def test_wrongly_typed_hyper_parameters_name_the_file_and_key(fixtures, tmp_path, tiny_clip_ckpt, capsys):
    checkpoint = official_checkpoint(fixtures)
    checkpoint["hyper_parameters"] = "small"
    torch.save(checkpoint, tmp_path / "hp.ckpt")
    with pytest.raises(CheckpointError, match=r"hp\.ckpt: 'hyper_parameters' must be a dictionary"):
        load_checkpoint(tmp_path / "hp.ckpt")
    clip = torch.load(tiny_clip_ckpt, weights_only=True)
    clip["hyper_parameters"]["train_len"] = "six"
    torch.save(clip, tmp_path / "len.ckpt")
    with pytest.raises(CheckpointError, match=r"len\.ckpt: hyper_parameters\['train_len'\] must be a number"):
        load_checkpoint(tmp_path / "len.ckpt")
    checkpoint = official_checkpoint(fixtures)
    checkpoint["optimizer_states"] = 7
    torch.save(checkpoint, tmp_path / "optim.ckpt")
    assert main(["info", str(tmp_path / "optim.ckpt")]) == 0
    assert "optimizer_states: unreadable: a int" in capsys.readouterr().out
