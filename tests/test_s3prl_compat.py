"""The compatibility layer, registration in s3prl, the launcher's argument handling and the shipped configs."""
from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile
import torch
import yaml

from s3prl_upstream import compat, register
from s3prl_upstream.launcher import prepare_argv
from s3prl_upstream.tasks import available_configs, config_path


@pytest.fixture(scope="module")
def hub():
    assert register() == ["atst_frame", "atst_frame_local"]
    import s3prl.hub as hub  # fails on torchaudio 2.11 without the compatibility layer

    return hub


def test_registered_entries_run_through_s3prl_featurizers(hub, tiny_frame_ckpt):
    from s3prl.nn import Featurizer, S3PRLUpstream
    from s3prl.upstream.interfaces import Featurizer as LegacyFeaturizer

    from s3prl_upstream.hubconf import atst_frame

    assert hub.atst_frame is atst_frame
    upstream = S3PRLUpstream("atst_frame", path_or_url=str(tiny_frame_ckpt)).eval()
    featurizer = Featurizer(upstream)
    assert featurizer.downsample_rate == 640 and featurizer.output_size == 192
    lengths = torch.tensor([800, 16000, 12345])
    wavs = torch.zeros(3, 16000)
    for row, n in enumerate(lengths.tolist()):
        wavs[row, :n] = 0.1 * torch.randn(n)
    with torch.no_grad():
        states, state_lengths = upstream(wavs, lengths)
    assert len(states) == 13 and states[0].shape == (3, 25, 192)
    assert state_lengths[0].tolist() == [math.ceil(n / 640) for n in lengths.tolist()]  # [2, 25, 20]

    legacy_upstream = hub.atst_frame(ckpt=str(tiny_frame_ckpt), model_config=None, refresh=False).eval()
    legacy = LegacyFeaturizer(legacy_upstream, "hidden_states", upstream_device="cpu")
    assert legacy.output_dim == 192 and legacy.downsample_rate == 640
    wav_list = [wavs[row, :n] for row, n in enumerate(lengths.tolist())]
    with torch.no_grad():
        features = legacy(wav_list, legacy_upstream(wav_list))
    assert [f.shape for f in features] == [(round(n / 640), 192) for n in lengths.tolist()]


def test_sox_effects_stand_in(tmp_path, hub):
    import torchaudio
    from torchaudio.sox_effects import apply_effects_file

    rate = 22050
    left = np.sin(2 * np.pi * 440 * np.arange(rate) / rate).astype(np.float32) * 0.5
    soundfile.write(str(tmp_path / "stereo.wav"), np.stack([left, left], axis=1), rate, subtype="FLOAT")
    wav, sample_rate = apply_effects_file(str(tmp_path / "stereo.wav"),
                                          [["channels", "1"], ["rate", "16000"], ["gain", "-6.0"]])
    assert sample_rate == 16000 and wav.shape == (1, 16000) and wav.dtype == torch.float32
    assert abs(float(wav.abs().max()) - 0.5 * 10 ** (-6 / 20)) < 0.01
    with pytest.raises(NotImplementedError, match="reverb"):
        apply_effects_file(str(tmp_path / "stereo.wav"), [["reverb", "50"]])
    loaded, loaded_rate = torchaudio.load(str(tmp_path / "stereo.wav"))
    assert loaded.shape == (2, rate) and loaded_rate == rate and loaded.dtype == torch.float32


def test_removed_huggingface_names_fail_clearly(hub):
    import huggingface_hub

    with pytest.raises(RuntimeError, match="--hub huggingface"):
        huggingface_hub.HfFolder.get_token()
    with pytest.raises(RuntimeError, match="removed in huggingface_hub 1.0"):
        huggingface_hub.Repository("x")


def test_experiment_checkpoints_load_weights_only(tmp_path, hub):
    import argparse

    torch.save({"Args": argparse.Namespace(mode="train"), "Step": 3}, tmp_path / "states.ckpt")
    loaded = torch.load(tmp_path / "states.ckpt", map_location="cpu")  # default weights_only=True on torch 2.11
    assert loaded["Args"].mode == "train"


def test_voxceleb1_cache_is_keyed_by_data(tmp_path, monkeypatch, hub):
    monkeypatch.setenv("ATST_S3PRL_CACHE", str(tmp_path / "cache"))
    for name in ("a", "b"):
        (tmp_path / name / "dev" / "wav" / "id10001").mkdir(parents=True)
        (tmp_path / name / "iden_split.txt").write_text("1 id10001/x/00001.wav\n")
    first = compat.voxceleb1_cache_dir(tmp_path / "a", tmp_path / "a" / "iden_split.txt")
    assert first == compat.voxceleb1_cache_dir(tmp_path / "a", tmp_path / "a" / "iden_split.txt")
    assert first.parent == tmp_path / "cache" / "voxceleb1"
    assert first != compat.voxceleb1_cache_dir(tmp_path / "b", tmp_path / "b" / "iden_split.txt")
    (tmp_path / "a" / "iden_split.txt").write_text("2 id10001/x/00001.wav\n")
    assert first != compat.voxceleb1_cache_dir(tmp_path / "a", tmp_path / "a" / "iden_split.txt")
    from s3prl.downstream.voxceleb1 import dataset

    assert getattr(dataset.SpeakerClassifiDataset.__init__, "_atst_compat", False)


def test_launcher_argument_handling(tmp_path):
    shipped = str(config_path("speech_commands"))
    argv = prepare_argv(["-m", "train", "-u", "atst_frame", "-d", "speech_commands", "-c", "KS"], cuda_available=False)
    assert argv[argv.index("-c") + 1] == shipped and argv[-2:] == ["--device", "cpu"]
    argv = prepare_argv(["-m", "train", "-d", "voxceleb1"], cuda_available=True)
    assert argv == ["-m", "train", "-d", "voxceleb1", "-c", str(config_path("voxceleb1"))]
    own = tmp_path / "mine.yaml"
    own.write_text("runner: {}\n")
    argv = ["-m", "train", "-d", "speech_commands", f"--config={own}", "--device", "cuda:1"]
    assert prepare_argv(argv, cuda_available=False) == argv
    resume = ["-m", "evaluate", "-e", "exp/dev-best.ckpt", "--device", "cpu"]
    assert prepare_argv(resume) == resume
    with pytest.raises(SystemExit, match="neither a file nor a shipped config"):
        prepare_argv(["-m", "train", "-c", "no_such_task"])


def test_shipped_configs_fit_a_40ms_frame_rate():
    assert set(available_configs()) >= {"speech_commands", "voxceleb1", "fluent_commands", "emotion", "asr"}

    def rates(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "total_rate":
                    yield value
                yield from rates(value)

    for name in available_configs():
        config = yaml.safe_load(config_path(name).read_text())
        assert {"runner", "optimizer", "downstream_expert"} <= set(config), name
        for key in ("total_steps", "eval_step", "save_step", "log_step", "eval_dataloaders", "gradient_clipping"):
            assert key in config["runner"], (name, key)
        for rate in rates(config):  # s3prl divides total_rate by the upstream rate (640)
            assert rate == -1 or round(rate / 640) >= 1, (name, rate)
    asr = yaml.safe_load(config_path("ASR").read_text())
    assert asr["downstream_expert"]["modelrc"]["select"] == "RNNs"
    assert asr["downstream_expert"]["modelrc"]["RNNs"]["total_rate"] == -1


def test_asr_char_dict_is_readable_by_s3prl(tmp_path, hub):
    from s3prl.downstream.asr.dictionary import Dictionary

    from s3prl_upstream.asr_dict import SYMBOLS, write_char_dict

    dictionary = Dictionary.load(str(write_char_dict(tmp_path / "char.dict")))
    encoded = dictionary.encode_line("H E L L O | W O R L D |", append_eos=False, add_if_not_exist=False)
    assert dictionary.unk() not in encoded.tolist()
    assert all(dictionary.index(symbol) != dictionary.unk() for symbol in SYMBOLS)


def test_registering_in_s3prl_does_not_load_tensorflow():
    # s3prl.hub imports torch.utils.tensorboard, which loads TensorFlow when installed (seconds, a oneDNN banner)
    import subprocess
    import sys

    code = "import sys, s3prl_upstream; s3prl_upstream.register(); print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"
