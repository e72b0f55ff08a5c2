"""`atst-downstream linear`: the official read-outs (parity fixtures), the official head and its schedule, the
embedding cache, selection on validation, folds, the model file, results and bad inputs."""
from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from atst import describe_checkpoint, load_checkpoint
from conftest import CORRUPT_WAV, REPO, subprocess_env, write_test_wav
from downstream.cli import main
from downstream.datasets import Clip, LabelSpace, Task, load_task
from downstream.linear import LinearHead, Readout, cosine_lr, effective_lr, train_head
from downstream.linear.cache import EmbeddingCache, file_identity
from downstream.linear.extract import extract_clips, task_clips
from downstream.linear.grid import select_run
from downstream.linear.run import task_identity
from downstream.linear.train import EpochRecord, HeadRun, SplitData
from downstream.metrics import mean_average_precision, top1_accuracy
from downstream.model_file import read_model_file

ATOL = RTOL = 1e-4
FAST = ["--max_epochs", "3", "--num_workers", "0", "--quiet"]


@pytest.fixture(scope="module")
def reference(fixtures):
    return torch.load(fixtures / "atstframe_tiny_reference.pt", weights_only=True)


def _fixture_batch(reference, items):
    """A zero-padded batch `[B, N]` and its lengths from the fixture inputs named by `items`."""
    waves = [reference["inputs"][case][index][0] for case, index in items]
    lengths = torch.tensor([w.shape[-1] for w in waves])
    return torch.stack([torch.nn.functional.pad(w, (0, int(lengths.max()) - w.shape[-1])) for w in waves]), lengths


# ---------------------------------------------------------------------------------------------- read-outs

def test_official_frame_readout_is_the_official_linear_eval_embedding(fixtures, reference):
    readout = Readout(load_checkpoint(fixtures / "atstframe_tiny.ckpt"), "official", n_blocks=12, device="cpu")
    lineval = reference["downstream_linear_eval"]
    for name, items in lineval["batches"]:
        if name in ("b1_23.456s", "mixed_10.01s_1s", "b1_0.3s"):  # the 12 s crop, mixed lengths, a short clip
            audio, lengths = _fixture_batch(reference, items)
            expected = lineval["embeddings"][name]
            torch.testing.assert_close(readout(audio, lengths), expected, atol=ATOL, rtol=RTOL)
            assert readout.dim == expected.shape[1]
    assert readout.settings.precision == "fp32"


def test_official_clip_readout_is_the_official_clip_linear_eval_embedding(fixtures, reference):
    clip_reference = torch.load(fixtures / "atstclip_tiny_reference.pt", weights_only=True)
    loaded = load_checkpoint(fixtures / "atstclip_tiny.ckpt")
    readout = Readout(loaded, "official", n_blocks=12)
    assert readout.settings.clip_train_len == 9.0  # read from the checkpoint, as the official code does
    for name, items in clip_reference["meta"]["batches"]:
        if name in ("b1_23.456s", "mixed_10.01s_1s"):
            audio, lengths = _fixture_batch(reference, items)
            torch.testing.assert_close(readout(audio, lengths), clip_reference["train_len_9.0"][name], atol=ATOL,
                                       rtol=RTOL)


def test_the_cache_holds_exactly_what_the_readout_gives(tiny_frame_ckpt, tiny_hear_tasks, tmp_path):
    task = load_task(str(tiny_hear_tasks["synth_scene"]))
    readout = Readout(load_checkpoint(tiny_frame_ckpt), "official")
    cache = EmbeddingCache(tmp_path, {"test": 1}, readout.dim)
    clips = task_clips(task)[:5]
    report = extract_clips(readout, cache, clips, task.labels)
    assert (report.embedded, report.reused, report.skipped) == (5, 0, {})
    from downstream.datasets import ClipDataset, collate_clips

    batch = collate_clips([ClipDataset(clips, task.labels)[i] for i in range(5)])
    expected = readout(batch["audio"], batch["lengths"]).numpy()
    np.testing.assert_array_equal(cache.read([c.key for c in clips]), expected)
    assert np.load(next(cache.dir.glob("shard-*.npy")), mmap_mode="r").shape == (5, readout.dim)


def test_cache_shards_survive_a_kill_and_changed_files(tmp_path, monkeypatch):
    files = [write_test_wav(tmp_path / "audio" / f"{i}.wav", 0.1, seed=i) for i in range(3)]
    clips = [Clip(f"{i}.wav", str(path), (0,)) for i, path in enumerate(files)]
    cache = EmbeddingCache(tmp_path / "cache", {"test": 2}, dim=4)
    with cache.writing():
        cache.append(["0.wav", "1.wav"], [file_identity(p) for p in files[:2]], np.ones((2, 4)))
    (cache.dir / "shard-000002.npy").write_bytes(b"a kill before its .json")  # a shard a killed run left
    fresh = EmbeddingCache(tmp_path / "cache", {"test": 2}, dim=4)
    assert [c.key for c in fresh.split_fresh(clips)[1]] == ["2.wav"]
    with fresh.writing():
        assert not (fresh.dir / "shard-000002.npy").exists()
        fresh.append(["2.wav"], [file_identity(files[2])], np.full((1, 4), 2.0))
    np.testing.assert_array_equal(fresh.read(["2.wav", "0.wav"]), [[2.0] * 4, [1.0] * 4])
    write_test_wav(files[1], 0.2, seed=9)  # changed: embedded again, the others stay
    assert [c.key for c in EmbeddingCache(tmp_path / "cache", {"test": 2}, 4).split_fresh(clips)[1]] == ["1.wav"]
    monkeypatch.chdir(tmp_path)
    task = Task("t", LabelSpace(("a",), False), {"train": tuple(clips), "valid": (), "test": ()})
    assert task_identity("audio", task) == task_identity(str(tmp_path / "audio"), task)


# ---------------------------------------------------------------------------------------------- head and training

def test_head_is_the_official_linear_head():
    head = LinearHead(4608, 50, generator=torch.Generator().manual_seed(0))
    weight = head.linear.weight.detach()
    assert abs(float(weight.std()) - 0.01) < 2e-4 and abs(float(weight.mean())) < 1e-4
    assert torch.equal(head.linear.bias.detach(), torch.zeros(50))
    assert head.norm.affine is False and [n for n, _ in head.named_parameters()] == ["linear.weight", "linear.bias"]
    assert sorted(head.state_dict()) == ["linear.bias", "linear.weight", "norm.num_batches_tracked",
                                         "norm.running_mean", "norm.running_var"]


def test_lr_scaling_and_the_per_epoch_cosine_match_the_spec():
    assert effective_lr(2e-3, 1024) == pytest.approx(8e-3)  # spcv2 / us8k: x4 at the shells' batch of 1024
    assert effective_lr(0.1, 1024) == pytest.approx(0.4) and effective_lr(2e-3, 256) == pytest.approx(2e-3)
    assert [cosine_lr(e, 8e-3, 100) for e in (0, 50, 100)] == pytest.approx([8e-3, 4e-3, 0.0], abs=1e-12)
    generator = torch.Generator().manual_seed(0)
    data = SplitData(torch.randn(40, 8, generator=generator), torch.arange(40) % 4)
    run = train_head(data, data, data, num_labels=4, metric="top1_acc", lr=2e-3, batch_size=1024, max_epochs=100)
    assert run.effective_lr == pytest.approx(8e-3)
    used = [record.lr for record in run.history]  # the LR each epoch trained at: stepped once per epoch
    assert used == pytest.approx([cosine_lr(e, 8e-3, 100) for e in range(100)], rel=1e-9, abs=1e-15)
    assert used[0] == pytest.approx(8e-3) and used[50] == pytest.approx(4e-3)


def test_training_is_seeded_and_deterministic_on_cpu():
    generator = torch.Generator().manual_seed(1)
    data = SplitData(torch.randn(50, 16, generator=generator), (torch.rand(50, 3, generator=generator) > 0.5).float())
    runs = [train_head(data, data, data, 3, "mAP", lr=0.5, batch_size=16, max_epochs=5, seed=7) for _ in range(2)]
    assert [r.train_loss for r in runs[0].history] == [r.train_loss for r in runs[1].history]
    assert all(torch.equal(runs[0].best_state[k], runs[1].best_state[k]) for k in runs[0].best_state)
    other = train_head(data, data, data, 3, "mAP", lr=0.5, batch_size=16, max_epochs=5, seed=8)
    assert other.history[0].train_loss != runs[0].history[0].train_loss


def test_selection_takes_the_best_validation_then_the_earliest_epoch_then_the_smaller_lr():
    def run(lr, valids):
        history = [EpochRecord(i + 1, lr, 0.0, v, 0.5) for i, v in enumerate(valids)]
        best = max(range(len(valids)), key=lambda i: (valids[i], -i)) + 1
        return HeadRun(lr, lr * 4, history, best)

    assert select_run([run(0.1, [0.5, 0.9, 0.9]), run(0.01, [0.9, 0.2, 0.1])]).lr == 0.01  # epoch 1 beats epoch 2
    assert select_run([run(0.1, [0.2, 0.9]), run(0.01, [0.3, 0.9])]).lr == 0.01  # same epoch: the smaller LR
    assert select_run([run(0.1, [0.2, 0.8]), run(0.01, [0.3, 0.7])]).lr == 0.1
    diverged = HeadRun(1.0, 4.0, [EpochRecord(1, 4.0, math.nan, math.nan, math.nan)], 0)
    assert select_run([diverged]) is None


def test_metrics_accuracy_and_map_without_classes_that_have_no_positive():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, 0.0]])
    assert top1_accuracy(logits, torch.tensor([0, 1, 1])) == pytest.approx(2 / 3)
    scores = torch.tensor([[3.0, 0.1, 0.2], [1.0, 0.3, 0.9], [-1.0, 0.2, 0.1]])
    truth = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    # class 0: AP (1 + 2/3) / 2; class 2: AP 1; class 1 has no positive and is left out (sklearn would give 0)
    assert mean_average_precision(scores, truth) == pytest.approx(((1 + 2 / 3) / 2 + 1.0) / 2)
    with pytest.raises(ValueError, match="none of the 3 classes has a positive"):
        mean_average_precision(scores, torch.zeros(3, 3))


# ---------------------------------------------------------------------------------------------- end to end

def _results(out):
    return json.loads((out / "results.json").read_text())


def test_linear_end_to_end_then_the_cache_serves_another_lr_grid(tiny_frame_ckpt, tiny_hear_tasks, tmp_path,
                                                                  monkeypatch):
    out, cache = tmp_path / "run1", tmp_path / "cache"
    command = [sys.executable, "-m", "downstream", "linear", "--ckpt", str(tiny_frame_ckpt), "--task",
               str(tiny_hear_tasks["synth_scene"]), "--out", str(out), "--cache", str(cache), "--lrs", "2e-3,2e-1",
               *FAST]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=subprocess_env(), timeout=600)
    first_seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    assert "synth_scene: test top1_acc" in done.stdout
    results = _results(out)
    assert {"task", "metric", "valid", "test", "folds", "grid", "selected", "settings", "checkpoint", "skipped",
            "wall_time_s", "protocol_notes", "extraction"} <= set(results)
    assert results["metric"] == "top1_acc" and 0.0 <= results["test"]["top1_acc"] <= 1.0
    assert results["extraction"]["embedded"] == 30 and results["extraction"]["reused"] == 0
    assert [row["lr"] for row in results["grid"]] == [2e-3, 2e-1]
    assert [row["effective_lr"] for row in results["grid"]] == pytest.approx([8e-3, 0.8])
    assert results["settings"]["precision"] == "fp32" and results["settings"]["protocol"] == "official"
    assert any("bf16 autocast" in note for note in results["protocol_notes"])
    assert len(results["checkpoint"]["sha256"]) == 64 and results["checkpoint"]["family"] == "ATST-Frame"
    assert "| test |" in (out / "results.md").read_text()
    assert (out / "curves.png").stat().st_size > 0
    assert (out / "curves" / "fold00_lr0.002.csv").read_text().splitlines()[0] == "epoch,lr,train_loss,valid,test"

    # the model file: weights-only, read by atst, hear_atst and `atst info`
    raw = torch.load(out / "best.ckpt", weights_only=True)
    assert raw["format"] == "atst-downstream" and raw["downstream"]["labels"] == list(load_task(
        str(tiny_hear_tasks["synth_scene"])).labels.names)
    model = read_model_file(out / "best.ckpt")
    assert model.head_state["linear.weight"].shape == (5, 12 * 192)
    assert model.info["readout"]["protocol"] == "official" and model.info["selected"] == results["selected"]
    import hear_atst

    source = load_checkpoint(tiny_frame_ckpt)
    embedder = hear_atst.load_model(str(out / "best.ckpt"))
    assert all(torch.equal(a, b) for a, b in zip(embedder.encoder.state_dict().values(),
                                                 source.encoder.state_dict().values()))
    info = describe_checkpoint(out / "best.ckpt")
    assert info["family"] == "ATST-Frame" and info["branches"]["teacher"] == "ok"
    assert any(item.startswith("model.head.linear") for item in info["contents"])

    # a second run, another grid: nothing is embedded (the read-out is never called)
    calls = []
    original = Readout.__call__
    monkeypatch.setattr(Readout, "__call__", lambda self, *a: calls.append(1) or original(self, *a))
    started = time.perf_counter()
    assert main(["linear", "--ckpt", str(tiny_frame_ckpt), "--task", str(tiny_hear_tasks["synth_scene"]), "--out",
                 str(tmp_path / "run2"), "--cache", str(cache), "--lrs", "1e-2", *FAST]) == 0
    second_seconds = time.perf_counter() - started
    second = _results(tmp_path / "run2")
    assert calls == [] and second["extraction"]["embedded"] == 0 and second["extraction"]["reused"] == 30
    print(f"first run (subprocess, extraction + 2 LRs): {first_seconds:.1f} s, extraction "
          f"{results['extraction']['seconds']:.2f} s; second run (in process, cache hit, 1 LR): {second_seconds:.1f} s, "
          f"extraction {second['extraction']['seconds']:.2f} s")


def test_kfold_official_validates_on_the_test_fold_and_hear_keeps_a_fold_apart(tiny_clip_ckpt, tiny_hear_tasks,
                                                                               tmp_path):
    common = ["--ckpt", str(tiny_clip_ckpt), "--task", str(tiny_hear_tasks["synth_timbre"]), "--cache",
              str(tmp_path / "c"),
              "--lrs", "1e-2", *FAST]
    assert main(["linear", "--out", str(tmp_path / "official"), "--protocol", "official", *common]) == 0
    assert main(["linear", "--out", str(tmp_path / "hear"), "--protocol", "hear", *common]) == 0
    official, hear = _results(tmp_path / "official"), _results(tmp_path / "hear")
    for results in (official, hear):
        tests = [fold["test"] for fold in results["folds"]]
        assert len(tests) == 3 and results["test"]["top1_acc"] == pytest.approx(np.mean(tests))
        assert results["test_std"] == pytest.approx(np.std(tests, ddof=1))
        assert results["selected"]["fold"] == "fold00"
    assert all(f["valid"] == f["test"] and "optimistic" in f["note"] for f in official["folds"])
    assert any("chosen on the test data itself" in note for note in official["protocol_notes"])
    assert not any("test data itself" in note for note in hear["protocol_notes"])
    assert [f["note"] for f in hear["folds"]] == ["validated on fold01", "validated on fold02", "validated on fold00"]
    assert [f["sizes"]["train"] for f in official["folds"]] == [12, 12, 12]
    assert [f["sizes"]["train"] for f in hear["folds"]] == [6, 6, 6]
    assert official["settings"]["readout"].startswith("official read-out of ATST-Clip")
    model = read_model_file(tmp_path / "hear" / "best.ckpt")
    assert model.checkpoint.clip_train_len == 6.0 and model.head_state["linear.weight"].shape == (3, 2 * 12 * 192)


def test_undecodable_and_changed_clips(tiny_frame_ckpt, tmp_path, capsys):
    root = tmp_path / "folders"
    for split, count in (("train", 6), ("valid", 3), ("test", 3)):
        for label in ("a", "b"):
            for i in range(count):
                write_test_wav(root / split / label / f"{i}.wav", 0.5, seed=i + (10 if label == "b" else 0))
    (root / "train" / "a" / "broken.wav").write_bytes(CORRUPT_WAV)
    args = ["linear", "--ckpt", str(tiny_frame_ckpt), "--task", str(root), "--cache", str(tmp_path / "c"),
            "--lrs", "1e-2", *FAST]
    assert main([*args, "--out", str(tmp_path / "r1")]) == 1  # done, but a clip was skipped
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if "broken.wav" in line] == [
        next(line for line in err.splitlines() if line.startswith("skipped: train/a/broken.wav: cannot decode"))]
    assert "1 clip(s) skipped" in err
    results = _results(tmp_path / "r1")
    assert len(results["skipped"]) == 1 and "cannot decode" in results["skipped"][0]
    assert results["folds"][0]["sizes"] == {"train": 12, "valid": 6, "test": 6}
    write_test_wav(root / "test" / "a" / "0.wav", 0.7, seed=99)  # a changed file is embedded again, alone
    assert main([*args, "--out", str(tmp_path / "r2")]) == 1
    assert _results(tmp_path / "r2")["extraction"]["embedded"] == 1


def test_bad_inputs_are_usage_errors_with_clear_messages(tiny_frame_ckpt, tiny_hear_tasks, tmp_path, capsys):
    scene = str(tiny_hear_tasks["synth_scene"])
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    foreign = tmp_path / "resnet.ckpt"
    torch.save({"state_dict": {"layer1.weight": torch.zeros(2)}}, foreign)
    cases = [
        (["--ckpt", str(text), "--task", scene], "is not a PyTorch or safetensors checkpoint"),
        (["--ckpt", str(foreign), "--task", scene], "has no ATST encoder"),
        (["--ckpt", str(tiny_frame_ckpt), "--task", str(tmp_path / "nowhere")], "does not exist; expected"),
        (["--ckpt", str(tmp_path / "missing.ckpt"), "--task", scene], "checkpoint not found"),
        (["--ckpt", str(tiny_frame_ckpt), "--task", scene, "--n_last_blocks", "13"],
         "has 12 blocks; pass 1..12"),
    ]
    for args, message in cases:
        assert main(["linear", *args, "--out", str(tmp_path / "out"), *FAST]) == 2
        err = capsys.readouterr().err
        assert "atst-downstream linear: error:" in err and message in err, err
    assert not (tmp_path / "out").exists()  # nothing was done
    with pytest.raises(SystemExit) as exit_info:
        main(["linear", "--ckpt", str(tiny_frame_ckpt), "--task", "x", "--out", "y", "--lrs", "2e-3,fast"])
    assert exit_info.value.code == 2 and "'fast' is not a number" in capsys.readouterr().err
