"""The `atst` command: embed folders of mixed audio, export, info."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import soundfile
import torch

from atst import load_embedder
from atst.audio_io import load_mono_16k
from atst.cli import main
from conftest import SAMPLE_RATE, write_mixed_corpus


def test_embed_folder_with_mixed_rates_and_channels(tiny_frame_ckpt, tmp_path, capsys):
    clips = write_mixed_corpus(tmp_path / "audio")
    out = tmp_path / "emb"
    code = main(["embed", str(tmp_path / "audio"), "--ckpt", str(tiny_frame_ckpt), "--out", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert code == 1 and "broken.wav: cannot decode audio" in captured.err  # reported, the rest still written
    model = load_embedder(str(tiny_frame_ckpt))
    for rel, seconds in clips.items():
        scene = np.load(out / f"{rel}.scene.npy")
        tokens = np.load(out / f"{rel}.timestamp_embeddings.npy")
        stamps = np.load(out / f"{rel}.timestamps.npy")
        frames = int(seconds * SAMPLE_RATE) // 160 + 1
        assert scene.shape == (model.scene_embedding_size,) and scene.dtype == np.float32
        assert tokens.shape == (frames // 4, model.timestamp_embedding_size)
        np.testing.assert_array_equal(stamps, np.arange(frames // 4, dtype=np.float32) * 40 + 15)
        # the same as embedding the decoded file alone (batching with other files changes nothing)
        alone = model.scene_embeddings(load_mono_16k(tmp_path / "audio" / rel)[None])[0].numpy()
        np.testing.assert_allclose(scene, alone, atol=1e-5, rtol=1e-4)
    assert not (out / "notes.txt.scene.npy").exists()


def test_stereo_is_downmixed_and_resampled(tmp_path):
    t = np.arange(44100) / 44100
    left = 0.5 * np.sin(2 * np.pi * 300 * t)
    soundfile.write(tmp_path / "st.wav", np.stack([left, -left], axis=1).astype(np.float32), 44100)
    wave = load_mono_16k(tmp_path / "st.wav")
    assert wave.shape == (SAMPLE_RATE,) and wave.dtype == torch.float32
    assert wave.abs().max() < 1e-4  # the two channels cancel: averaged, not one channel picked


def test_embed_errors_are_clear(tiny_frame_ckpt, tmp_path, capsys):
    assert main(["embed", str(tmp_path / "missing.wav"), "--ckpt", str(tiny_frame_ckpt), "--out", str(tmp_path)]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    (tmp_path / "a.mp4").write_bytes(b"x")
    assert main(["embed", str(tmp_path / "a.mp4"), "--ckpt", str(tiny_frame_ckpt), "--out", str(tmp_path)]) == 2
    assert "unsupported audio format" in capsys.readouterr().err


def test_official_mode_and_n_blocks(tiny_frame_ckpt, tmp_path):
    soundfile.write(tmp_path / "a.wav", np.zeros(SAMPLE_RATE * 2, dtype=np.float32) + 0.01, SAMPLE_RATE)
    out = tmp_path / "emb"
    assert main(["embed", str(tmp_path / "a.wav"), "--ckpt", str(tiny_frame_ckpt), "--out", str(out), "--mode",
                 "official", "--n-blocks", "2", "--quiet"]) == 0
    assert np.load(out / "a.wav.timestamp_embeddings.npy").shape == (50, 2 * 192)
    assert np.load(out / "a.wav.scene.npy").shape == (12 * 192,)  # official scene always reads 12 blocks
    assert np.load(out / "a.wav.timestamps.npy")[0] == 0.0


def test_export_and_info_commands(fixtures, tmp_path, capsys):
    out = tmp_path / "enc.safetensors"
    assert main(["export", str(fixtures / "atstframe_tiny.ckpt"), str(out)]) == 0
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert info["format"] == "export" and info["embed_dim"] == 64
    assert main(["info", str(fixtures / "atstclip_tiny.ckpt")]) == 0
    text = capsys.readouterr().out
    assert "family: ATST-Clip" in text and "clip_train_len: 9.0" in text


def test_console_entry_point_runs(fixtures):
    result = subprocess.run([sys.executable, "-m", "atst", "info", str(fixtures / "atstframe_tiny.ckpt")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "family: ATST-Frame" in result.stdout
