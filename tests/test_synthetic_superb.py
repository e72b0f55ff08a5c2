"""The tiny speech_commands / voxceleb1 generators: layouts s3prl's own dataset code accepts, deterministic; and
the SUPERB door's command line for them."""
from __future__ import annotations

import hashlib

import pytest
from conftest import SAMPLE_RATE

from atst.synthetic.superb import make_speech_commands, make_voxceleb1


def digest(root):
    sha = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            sha.update(str(path.relative_to(root)).encode())
            sha.update(path.read_bytes())
    return sha.hexdigest()


def test_speech_commands_layout_matches_s3prl(tmp_path):
    from s3prl_upstream import compat

    compat.apply()
    from s3prl.downstream.speech_commands.dataset import CLASSES, SpeechCommandsTestingDataset
    from s3prl.downstream.speech_commands.expert import split_dataset

    info = make_speech_commands(tmp_path / "a", seed=1, source="tones")
    assert info["source"] == "tones" and info["files"] == 74
    train, dev = split_dataset(info["train"])
    assert len(train) == 6 * 7 and len(dev) == 2 * 7  # 6 train / 2 dev speakers x 7 words, none dropped
    test = SpeechCommandsTestingDataset(speech_commands_test_root=str(info["test"]))
    assert {name for name, _ in test.data} <= set(CLASSES) and len(test.data) == 16
    wav, label, _ = test[0]
    assert wav.shape == (SAMPLE_RATE,) and 0 <= label < len(CLASSES)
    assert digest(tmp_path / "a") == digest(make_speech_commands(tmp_path / "b", seed=1, source="tones")["train"].parent)
    assert digest(tmp_path / "a") != digest(make_speech_commands(tmp_path / "c", seed=2, source="tones")["train"].parent)


def test_voxceleb1_layout(tmp_path):
    info = make_voxceleb1(tmp_path, seed=0, source="tones")
    lines = info["meta_data"].read_text().split("\n")[:-1]
    assert len(lines) == info["files"] == 32
    assert [line.split()[0] for line in lines].count("3") == 4
    for line in lines:
        split, relative = line.split()
        matches = list(tmp_path.glob("*/wav/" + relative))  # how s3prl finds the wav
        assert len(matches) == 1 and (matches[0].parts[-5] == "test") == (split == "3")


def test_espeak_source_requires_the_program(tmp_path, monkeypatch):
    monkeypatch.setattr("atst.synthetic.speech.espeak_available", lambda: False)
    with pytest.raises(RuntimeError, match="espeak-ng"):
        make_speech_commands(tmp_path, source="espeak")
    assert make_voxceleb1(tmp_path, n_speakers=1, n_train=1, n_dev=0, n_test=0, source="auto")["source"] == "tones"
    with pytest.raises(ValueError, match="source must be one of"):
        make_voxceleb1(tmp_path, source="flute")


def test_door_command_line_writes_the_layouts(tmp_path, capsys):
    from s3prl_upstream.datasets import main

    assert main(["voxceleb1", str(tmp_path / "vox"), "--seed", "3", "--source", "tones"]) == 0
    assert "files=32" in capsys.readouterr().out
    assert digest(tmp_path / "vox") == digest(make_voxceleb1(tmp_path / "again", seed=3, source="tones")["file_path"])
    with pytest.raises(SystemExit):  # only the SUPERB layouts under this name
        main(["tasks", str(tmp_path / "tasks")])
