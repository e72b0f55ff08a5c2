"""`atst-downstream detect`: a briefly trained model finds a loud tone and a noise burst in a 95 s recording within
80 ms of their true onsets (WAV and a 44.1 kHz stereo FLAC), windows join without drift, the outputs (events TSV,
Audacity labels, plots), bad files skipped and reported (exit 1), and usage errors (exit 2)."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile
import torch

from atst.audio_io import read_audio, write_wav
from downstream.cli import main
from downstream.datasets.strong import Event
from downstream.sed import detect as detect_module
from downstream.sed.detect import Detector
from downstream.sed.run import SedConfig, default_run_config, run_sed
from sed_tasks import make_event_task, render

EVENTS = [Event(20.0, 22.0, 0), Event(63.52, 66.0, 1), Event(90.1, 91.3, 1)]
TOLERANCE = 0.08


@pytest.fixture(scope="module")
def trained(fixtures, tmp_path_factory):
    """The --out folder of a short `sed` run (desed-official structure, 8 epochs of 2 steps on 6 strong clips)."""
    import os

    os.environ["ATST_AUDIO_CACHE"] = "off"
    root = tmp_path_factory.mktemp("sed_detect")
    task = make_event_task(root / "task", strong=6, weak=0, valid=2, test=2, seed=1)
    out = root / "run"
    outcome = run_sed(SedConfig(ckpt=str(fixtures / "atstframe_tiny.ckpt"), task=task, out=str(out),
                                recipe="desed-official", max_epochs=8, warmup_epochs=1, strong_batch=3,
                                weak_batch=0),
                      default_run_config(str(out), num_workers=0, accelerator="cpu", progress=False), log=None)
    assert outcome.status == 0
    return out


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    folder = tmp_path_factory.mktemp("recordings")
    audio = render(95.0, EVENTS, seed=7)
    write_wav(folder / "long.wav", audio)
    resampled = np.interp(np.arange(int(95.0 * 44100)) / 44100, np.arange(audio.size) / 16000, audio)
    soundfile.write(folder / "long44k.flac", np.stack([resampled, resampled], axis=1).astype(np.float32), 44100)
    (folder / "broken.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(64)))
    return folder


def test_detect_puts_known_events_within_80ms_and_writes_tsv_labels_and_plots(trained, recordings, tmp_path,
                                                                              capsys):
    out = tmp_path / "events"
    status = main(["detect", "--model", str(trained), str(recordings), "--out", str(out), "--plot", "--quiet"])
    assert status == 1  # broken.wav was skipped
    err = capsys.readouterr().err
    assert "broken.wav" in err and "1 file(s) skipped" in err
    with open(out / "events.tsv", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert list(rows[0]) == ["filename", "onset", "offset", "event_label", "score"]
    for name in ("long.wav", "long44k.flac"):
        found = [(float(r["onset"]), float(r["offset"]), r["event_label"], float(r["score"])) for r in rows
                 if r["filename"].endswith(name)]
        for event in EVENTS:
            label = ("noise", "tone")[event.label]
            near = [f for f in found if f[2] == label and abs(f[0] - event.onset) <= TOLERANCE]
            assert near, f"{name}: no {label} within {TOLERANCE} s of {event.onset}: {found}"
            assert abs(near[0][1] - event.offset) <= TOLERANCE and 0.5 < near[0][3] <= 1.0
        assert len(found) == len(EVENTS), found
        labels = (out / (name.rsplit(".", 1)[0] + ".txt")).read_text().splitlines()
        assert len(labels) == len(EVENTS) and labels[0].count("\t") == 2
        assert (out / (name.rsplit(".", 1)[0] + ".png")).read_bytes()[:4] == b"\x89PNG"
    assert not (out / "broken.txt").exists()


def test_windows_join_without_drift_and_blocks_do_not_change_the_scores(trained, recordings, monkeypatch):
    detector = Detector.load(trained)
    wave = read_audio(recordings / "long.wav")
    scores = detector.scores(wave)
    assert scores.shape == (2375, 2)  # 95 s / 40 ms
    alone = detector.model.recording_scores([wave[5 * 160000 : 6 * 160000]])[0]  # window 5 scored on its own
    assert torch.allclose(scores[5 * 250 : 6 * 250], alone, atol=1e-5)  # batched vs alone: float rounding
    monkeypatch.setattr(detect_module, "BLOCK_WINDOWS", 2)  # long recordings are scored in blocks of windows
    assert torch.allclose(detector.scores(wave), scores, atol=1e-5)
    short = detector.scores(wave[: 16000 * 3 + 123])
    assert short.shape == (75, 2)  # 3.0077 s: 75 whole tokens of 40 ms (the padding's scores trimmed)


def test_usage_errors(trained, recordings, fixtures, tmp_path, capsys):
    assert main(["detect", "--model", str(fixtures / "atstframe_tiny.ckpt"), str(recordings / "long.wav"), "--out",
                 str(tmp_path / "a")]) == 2
    assert "not a sound event detection model" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["detect", "--model", str(trained), str(recordings / "long.wav"), "--out",
                 str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err
    assert main(["detect", "--model", str(trained), str(tmp_path / "missing.wav"), "--out", str(tmp_path / "b")]) == 2
    assert "missing.wav" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert main(["predict", "--model", str(trained), str(recordings / "long.wav"), "--out",
                 str(tmp_path / "p.csv")]) == 2  # predict labels clips; it points to detect
    assert "atst-downstream detect" in capsys.readouterr().err
