"""`atst-downstream predict`: the model file's inference path (the same numbers as the head on the cached
embeddings), long recordings (the official crop, windows, the hear read-out), finetune-kind and multi-label files,
the CSV and JSON outputs, bad files and usage errors."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from atst import Embedder, export_encoder, load_checkpoint
from atst.audio_io import read_audio
from conftest import CORRUPT_WAV, SAMPLE_RATE, noise, write_test_wav
from downstream.cli import main
from downstream.datasets import load_task
from downstream.linear.cache import EmbeddingCache
from downstream.linear import LinearHead, Readout
from downstream.linear.head import head_from_state
from downstream.model_file import read_model_file, write_model_file
from downstream.predict import Predictor, window_starts

ATOL = 1e-5
QUIET = ["--quiet", "--device", "cpu"]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _probabilities(row: dict[str, str]) -> dict[str, float]:
    """{label: probability} of a CSV row's top-k columns."""
    ranks = sorted(int(name.split("_")[1]) for name in row if name.startswith("label_"))
    return {row[f"label_{rank}"]: float(row[f"prob_{rank}"]) for rank in ranks}


def _top(prediction: dict) -> dict[str, float]:
    """{label: probability} of a JSON prediction's `top` list."""
    return {item["label"]: item["probability"] for item in prediction["top"]}


def _variant(run: Path, target: Path, edit) -> Path:
    """A copy of the run's best.ckpt with `edit(raw)` applied (a hand-made model file)."""
    raw = torch.load(run / "best.ckpt", weights_only=True)
    edit(raw)
    torch.save(raw, target)
    return target


def _predict(run, audio, out, *extra) -> int:
    return main(["predict", "--model", str(run), *map(str, audio), "--out", str(out), *QUIET, *extra])


# ---------------------------------------------------------------------------------------------- the same numbers

def test_predictions_are_the_head_on_the_cached_embeddings(tiny_linear_run, tiny_hear_tasks, tmp_path, capsys):
    """Every test clip: the CSV's probabilities are softmax(head(the embedding linear cached)); top label = argmax."""
    task = load_task(str(tiny_hear_tasks["synth_scene"]))
    clips = list(task.splits["test"])
    out = tmp_path / "labels.csv"
    assert main(["predict", "--model", str(tiny_linear_run), *[c.path for c in clips], "--out", str(out),
                 "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "predicting" in captured.err  # the progress bar
    assert f"wrote {len(clips)} prediction(s) to {out}" in captured.out

    entry = Path(json.loads((tiny_linear_run / "results.json").read_text())["settings"]["cache"])
    identity = json.loads((entry / "identity.json").read_text())
    identity.pop("format")
    model = read_model_file(tiny_linear_run)
    cache = EmbeddingCache(entry.parent, identity, model.head_state["linear.weight"].shape[1])
    assert cache.dir == entry
    with torch.no_grad():
        expected = head_from_state(model.head_state)(torch.from_numpy(cache.read([c.key for c in clips])))
    expected = expected.softmax(dim=-1)

    rows = _rows(out)
    assert list(rows[0]) == ["path"] + [f"{kind}_{rank}" for rank in range(1, 6) for kind in ("label", "prob")]
    assert [row["path"] for row in rows] == [c.path for c in clips]  # input order, paths as given
    for row, probabilities in zip(rows, expected):
        found = _probabilities(row)
        assert len(found) == 5 and sum(found.values()) == pytest.approx(1.0, abs=ATOL)  # top_k = every label
        np.testing.assert_allclose([found[label] for label in model.labels], probabilities.numpy(), atol=ATOL)
        assert row["label_1"] == model.labels[int(probabilities.argmax())]
        assert [float(row[f"prob_{r}"]) for r in range(1, 6)] == sorted(found.values(), reverse=True)


def test_a_run_folder_and_its_best_ckpt_are_the_same_model(tiny_linear_run, tiny_hear_tasks, tmp_path):
    folder = tiny_hear_tasks["synth_scene"] / "16000" / "test"
    assert _predict(tiny_linear_run, [folder], tmp_path / "a.csv") == 0
    assert _predict(tiny_linear_run / "best.ckpt", [folder, next(folder.glob("*.wav"))], tmp_path / "b.csv") == 0
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()  # a file named twice: one row
    assert len(_rows(tmp_path / "a.csv")) == len(list(folder.glob("*.wav")))


# ---------------------------------------------------------------------------------------------- long recordings

def test_window_starts_cover_the_recording_evenly():
    assert window_starts(100, 120) == [0] and window_starts(120, 120) == [0]
    assert window_starts(300, 120) == [0, 90, 180]  # ceil(300 / 120) windows, the last ends at the end
    assert window_starts(121, 120) == [0, 1]
    for length in (121, 500, 1201):
        starts = window_starts(length, 120)
        assert starts[-1] + 120 == length and all(b - a <= 120 for a, b in zip(starts, starts[1:]))


def test_long_recordings_official_crop_and_windows(tiny_linear_run, tmp_path):
    """Official model: the 12 s centre crop (as trained) by default; --windows averages 12 s windows."""
    long_file = write_test_wav(tmp_path / "audio" / "long.wav", 30.0, rate=44100, channels=2, seed=3)
    short_file = write_test_wav(tmp_path / "audio" / "short.wav", 2.0, seed=4)
    wave = read_audio(long_file)
    crop = 12 * SAMPLE_RATE
    centre = tmp_path / "centre.wav"
    start = (wave.shape[0] - crop) // 2
    sf.write(str(centre), wave[start:start + crop].numpy(), SAMPLE_RATE, subtype="FLOAT")

    assert _predict(tiny_linear_run, [long_file, short_file, centre], tmp_path / "crop.json") == 0
    crop_doc = json.loads((tmp_path / "crop.json").read_text())
    assert crop_doc["windows"] is None and "12 s centre crop" in crop_doc["readout"]
    by_path = {Path(p["path"]).name: p for p in crop_doc["predictions"]}
    assert by_path["long.wav"]["windows"] == 1 and by_path["long.wav"]["seconds"] == pytest.approx(30.0)
    assert _top(by_path["long.wav"]) == pytest.approx(_top(by_path["centre.wav"]), abs=ATOL)

    assert _predict(tiny_linear_run, [long_file, short_file], tmp_path / "win.json", "--windows") == 0
    windowed = {Path(p["path"]).name: p for p in json.loads((tmp_path / "win.json").read_text())["predictions"]}
    assert windowed["long.wav"]["windows"] == 3 and windowed["short.wav"]["windows"] == 1
    assert windowed["short.wav"]["top"] == by_path["short.wav"]["top"]  # one window: the same numbers

    predictor = Predictor.load(tiny_linear_run)
    pieces = torch.stack([wave[s:s + crop] for s in window_starts(wave.shape[0], crop)])
    expected = predictor.probabilities(pieces, torch.full((3,), crop)).mean(dim=0)
    found = _top(windowed["long.wav"])
    np.testing.assert_allclose([found[label] for label in predictor.labels], expected.numpy(), atol=ATOL)
    assert sum(found.values()) == pytest.approx(1.0, abs=ATOL)


def test_a_hear_model_reads_the_whole_recording(tiny_linear_run, tiny_frame_ckpt, tmp_path):
    """A model trained on the hear read-out pools the whole clip, at any length."""
    def to_hear(raw):
        raw["downstream"]["readout"]["protocol"] = "hear"

    model = read_model_file(_variant(tiny_linear_run, tmp_path / "hear.ckpt", to_hear))
    audio = [write_test_wav(tmp_path / f"{seconds}.wav", seconds, seed=seconds) for seconds in (1, 25)]
    assert _predict(model.path, audio, tmp_path / "hear.csv", "--top_k", "5") == 0
    source = load_checkpoint(tiny_frame_ckpt)
    embedder = Embedder(source.encoder, source.frontend_config, n_blocks=12)
    head = head_from_state(model.head_state)
    for row, path in zip(_rows(tmp_path / "hear.csv"), audio):
        with torch.no_grad():
            expected = head(embedder.scene_embeddings(read_audio(path)[None])).softmax(dim=-1)[0]
        found = _probabilities(row)
        np.testing.assert_allclose([found[label] for label in model.labels], expected.numpy(), atol=ATOL)


# ---------------------------------------------------------------------------------------------- other model files

def test_a_finetune_kind_file_uses_its_own_encoder(tiny_linear_run, tiny_hear_tasks, tmp_path):
    """A "finetune" model file (same format, the encoder trained too) is read the same way, with its encoder."""
    def to_finetune(raw):
        raw["downstream"]["kind"] = "finetune"
        key = "model.teacher.encoder.blocks.11.mlp.fc2.weight"
        raw["state_dict"][key] = raw["state_dict"][key] * 3.0

    model = _variant(tiny_linear_run, tmp_path / "finetuned.ckpt", to_finetune)
    folder = tiny_hear_tasks["synth_scene"] / "16000" / "test"
    assert _predict(model, [folder], tmp_path / "ft.csv", "--top_k", "5") == 0
    assert _predict(tiny_linear_run, [folder], tmp_path / "linear.csv", "--top_k", "5") == 0
    finetuned, linear = _rows(tmp_path / "ft.csv"), _rows(tmp_path / "linear.csv")
    assert [r["path"] for r in finetuned] == [r["path"] for r in linear]
    assert any(_probabilities(a) != pytest.approx(_probabilities(b), abs=1e-4) for a, b in zip(finetuned, linear))
    predictor = Predictor.load(model)
    wave = read_audio(finetuned[0]["path"])
    expected = predictor.probabilities(wave[None], torch.tensor([wave.shape[0]]))[0]
    found = _probabilities(finetuned[0])
    np.testing.assert_allclose([found[label] for label in predictor.labels], expected.numpy(), atol=ATOL)


def test_a_multi_label_model_gives_sigmoids_and_labels_above_the_threshold(tiny_linear_run, tmp_path):
    def to_multi_label(raw):
        raw["downstream"]["multi_label"] = True

    model = _variant(tiny_linear_run, tmp_path / "multi.ckpt", to_multi_label)
    clip = write_test_wav(tmp_path / "a.wav", 3.0, seed=1)
    assert _predict(model, [clip], tmp_path / "multi.csv", "--top_k", "5") == 0
    row = _rows(tmp_path / "multi.csv")[0]
    predictor = Predictor.load(model)
    wave = read_audio(clip)
    logits = predictor.logits(wave[None], torch.tensor([wave.shape[0]]))[0]
    found = _probabilities(row)
    np.testing.assert_allclose([found[label] for label in predictor.labels], logits.sigmoid().numpy(), atol=ATOL)
    expected = [label for label, value in zip(predictor.labels, logits.sigmoid().tolist()) if value >= 0.5]
    assert row["above_threshold"] == ";".join(expected)  # multi-label: the 0.5 threshold column by default


def test_an_atst_clip_model(tiny_clip_ckpt, tmp_path):
    """An ATST-Clip model file (official read-out: [CLS | mean] over train_len chunks of the 12 s crop)."""
    loaded = load_checkpoint(tiny_clip_ckpt)
    readout = Readout(loaded, "official")
    head = LinearHead(readout.dim, 3, generator=torch.Generator().manual_seed(0)).eval()
    write_model_file(tmp_path / "run" / "best.ckpt", loaded, head.state_dict(), {
        "kind": "linear", "labels": ["a", "b", "c"], "multi_label": False, "task": "t", "metric": "top1_acc",
        "readout": readout.settings.to_dict(), "embedding_dim": readout.dim})
    clip = write_test_wav(tmp_path / "long.flac", 20.0, rate=22050, seed=2)
    assert _predict(tmp_path / "run", [clip], tmp_path / "p.json", "--windows") == 0
    prediction = json.loads((tmp_path / "p.json").read_text())["predictions"][0]
    wave = read_audio(clip)
    window = 12 * SAMPLE_RATE
    pieces = torch.stack([wave[s:s + window] for s in window_starts(wave.shape[0], window)])
    with torch.no_grad():
        expected = head(readout(pieces, torch.full((2,), window))).softmax(dim=-1).mean(dim=0)
    assert prediction["windows"] == 2
    assert [_top(prediction)[label] for label in "abc"] == pytest.approx(expected.tolist(), abs=ATOL)


# ---------------------------------------------------------------------------------------------- outputs and options

def test_top_k_threshold_and_json(tiny_linear_run, tmp_path):
    clips = [write_test_wav(tmp_path / "in" / f"{i}.wav", 1.0 + i, seed=i) for i in range(3)]
    assert _predict(tiny_linear_run, [tmp_path / "in"], tmp_path / "all.txt", "--top-k", "5", "--format",
                    "json") == 0
    document = json.loads((tmp_path / "all.txt").read_text())
    assert document["kind"] == "linear" and document["task"] == "synth_scene" and document["top_k"] == 5
    assert document["threshold"] is None and document["skipped"] == [] and len(document["labels"]) == 5
    assert [Path(p["path"]) for p in document["predictions"]] == clips
    assert all(p["seconds"] == pytest.approx(1.0 + i) for i, p in enumerate(document["predictions"]))

    assert _predict(tiny_linear_run, [tmp_path / "in"], tmp_path / "k2.csv", "--top_k", "2", "--threshold",
                    "0.01") == 0
    rows = _rows(tmp_path / "k2.csv")
    assert list(rows[0]) == ["path", "label_1", "prob_1", "label_2", "prob_2", "above_threshold"]
    for row, prediction in zip(rows, document["predictions"]):
        assert [row["label_1"], row["label_2"]] == [item["label"] for item in prediction["top"][:2]]
        probabilities = _top(prediction)
        assert row["above_threshold"] == ";".join(label for label in document["labels"]
                                                  if probabilities[label] >= 0.01)


def test_bad_files_are_skipped_and_named_once(tiny_linear_run, tmp_path, capsys):
    folder = tmp_path / "mixed"
    good = [write_test_wav(folder / f"good{i}.wav", 2.0, seed=i) for i in range(2)]
    (folder / "broken.wav").write_bytes(CORRUPT_WAV)
    (folder / "notes.txt").write_text("not audio")  # passed over: not an audio suffix
    nan = noise(2.0)
    nan[100] = np.nan
    sf.write(str(folder / "nan.wav"), nan, SAMPLE_RATE, subtype="FLOAT")
    sf.write(str(folder / "loud.wav"), noise(2.0, seed=7) * 1e20, SAMPLE_RATE, subtype="FLOAT")  # batched with good
    write_test_wav(folder / "tiny.wav", 0.1, seed=8)  # 10 mel frames: the official read-out needs more than 20
    out = tmp_path / "labels.csv"
    assert main(["predict", "--model", str(tiny_linear_run), str(folder), "--out", str(out), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert [Path(row["path"]) for row in _rows(out)] == good
    for name, reason in (("broken.wav", "cannot decode"), ("nan.wav", "NaN or Inf"), ("loud.wav", "peak amplitude"),
                         ("tiny.wav", "official ATST-Frame linear evaluation skips chunks")):
        lines = [line for line in err.splitlines() if name in line]
        assert len(lines) == 1 and lines[0].startswith(f"skipped: {folder / name}") and reason in lines[0], err
    assert "--protocol hear" not in err  # linear's training hint does not apply to a trained model
    assert "4 file(s) skipped; the others were written" in err


def test_usage_errors_exit_2_naming_the_problem(tiny_linear_run, tiny_frame_ckpt, tmp_path, capsys):
    clip = write_test_wav(tmp_path / "a.wav", 1.0)
    (tmp_path / "empty_run").mkdir()
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    exported = export_encoder(load_checkpoint(tiny_frame_ckpt), tmp_path / "encoder.safetensors")
    sed = _variant(tiny_linear_run, tmp_path / "sed.ckpt", lambda raw: raw["downstream"].update(kind="sed"))
    model = str(tiny_linear_run)
    inconsistent = [  # a description that does not match the file: (readout field, value, message)
        ("n_blocks", 13, "downstream.readout.n_blocks must be an int in 1..12 (the encoder's depth), got 13"),
        ("n_blocks", 6, "the head reads 2304-d embeddings but the recorded read-out gives 1152-d ones"),
        ("family", "clip", "downstream.readout.family must be 'frame' (the stored encoder's family)"),
        ("precision", "auto", "downstream.readout.precision must be one of ('fp32', 'bf16')"),
        ("protocol", "magic", "downstream.readout.protocol must be one of ('official', 'hear'), got 'magic'"),
        ("version", 99, "was written by a newer hear-atst (read-out version 99"),
    ]
    cases = [(["--model", str(_variant(tiny_linear_run, tmp_path / f"bad{i}.ckpt",
                                       lambda raw, f=field, v=value: raw["downstream"]["readout"].update({f: v}))),
               str(clip)], message) for i, (field, value, message) in enumerate(inconsistent)]
    cases += [
        (["--model", str(tiny_frame_ckpt), str(clip)], "this is an encoder checkpoint, not a trained downstream "
                                                       "model; train one with `atst-downstream linear|finetune`"),
        (["--model", str(exported), str(clip)], "is an exported encoder: this is an encoder checkpoint"),
        (["--model", "atstframe_base", str(clip)], "is a released ATST encoder: this is an encoder checkpoint"),
        (["--model", str(tmp_path / "empty_run"), str(clip)], "is a folder without best.ckpt"),
        (["--model", str(tmp_path / "nowhere"), str(clip)], "no such model file or run folder"),
        (["--model", str(text), str(clip)], "is not a PyTorch or safetensors checkpoint"),
        (["--model", str(sed), str(clip)], "is a 'sed' model; predict labels clips"),
        (["--model", model, str(tmp_path / "missing.wav")], "no such file or folder"),
        (["--model", model, str(tmp_path / "notes.ckpt")], "unsupported audio format '.ckpt'"),
        (["--model", model, str(clip), "--top_k", "6"], "--top_k 6: the model has 5 labels; pass 1..5"),
        (["--model", model, str(clip), "--top_k", "0"], "--top_k must be an integer >= 1"),
        (["--model", model, str(clip), "--threshold", "1.5"], "--threshold must be a probability in (0, 1]"),
        (["--model", model, str(clip), "--windows", "--window_seconds", "20"], "must be in [1, 12]"),
        (["--model", model, str(clip), "--window_seconds", "5"], "--window_seconds needs --windows"),
        (["--model", model, str(clip), "--batch_seconds", "0"], "--batch_seconds must be a positive number"),
    ]
    for args, message in cases:
        assert main(["predict", *args, "--out", str(tmp_path / "out" / "labels.csv"), *QUIET]) == 2, args
        err = capsys.readouterr().err
        assert "atst-downstream predict: error:" in err and message in err, err
    assert main(["predict", "--model", model, str(clip), "--out", str(tmp_path), *QUIET]) == 2
    assert "is a folder; name the CSV" in capsys.readouterr().err
    assert main(["predict", "--model", model, str(clip), "--out", str(clip), *QUIET]) == 2
    assert "is one of the audio inputs" in capsys.readouterr().err
    assert main(["predict", "--model", model, str(clip), "--out", str(clip / "labels.csv"), *QUIET]) == 2
    assert "cannot be created" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and read_audio(clip).shape[0] == SAMPLE_RATE  # nothing was done
