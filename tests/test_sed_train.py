"""`atst-downstream sed`: the strong / weak batch composition (the official ConcatDatasetSampler), the 10 s windows
with their labels, the official heads, the DESED schedule and the AudioSet-strong layer-decay groups against the
spec's numbers, a whole in-process run with `--recipe desed-official` (only the last block and the final norm
change), usage errors, and, marked slow, a 2-process DDP run killed with SIGKILL and resumed."""
from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from atst import load_checkpoint
from atst.audio_io import SAMPLE_RATE, write_wav
from atst.training.optim import set_learning_rate
from conftest import REPO, free_port, kill_after_checkpoint
from downstream.cli import main
from downstream.datasets.strong import Event, StrongClip
from downstream.finetune.data import TrainPosition
from downstream.finetune.schedule import FinetuneSchedule
from downstream.sed.data import StrongWeakBatches, WindowDataset, collate_windows, steps_per_epoch
from downstream.sed.datamodule import train_parts
from downstream.sed.heads import StrongWeakHead
from downstream.sed.model import SedModel
from downstream.sed.recipe import build_optimizer, resolve_recipe
from downstream.sed.run import SedConfig, default_run_config, run_sed
from sed_tasks import CLASSES, cli_script, ddp_env, make_event_task

TINY = "atstframe_tiny.ckpt"


@pytest.fixture(autouse=True)
def no_audio_cache(monkeypatch):
    monkeypatch.setenv("ATST_AUDIO_CACHE", "off")


@pytest.fixture(scope="module")
def tiny(fixtures):
    return str(fixtures / TINY)


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return make_event_task(tmp_path_factory.mktemp("sed_task"), strong=4, weak=4, unlabelled=2, valid=2, test=2)


# ------------------------------------------------------------------------------------------ batches and windows

def test_every_batch_is_strong_then_weak_and_each_part_streams_on_across_epochs():
    sizes, offsets, batches = [5, 7, 3], [0, 5, 12], [2, 3, 0]
    assert steps_per_epoch(sizes, batches, 1) == 7 // 3  # len(weak) // weak batch, as the official sampler
    assert steps_per_epoch([10000, 1420, 0], [128, 128, 0], 1) == 11  # the spec's DESED epoch
    assert steps_per_epoch([10, 0, 0], [4, 4, 0], 2) == 1  # no weak clips: from the strong part
    sampler = StrongWeakBatches(sizes, offsets, batches, batches_per_epoch=2, seed=3)
    run = [sampler.batch(k) for k in range(10)]
    for batch in run:
        assert len(batch) == 5 and all(0 <= i < 5 for i in batch[:2]) and all(5 <= i < 12 for i in batch[2:])
    strong = [i for batch in run for i in batch[:2]]
    weak = [i - 5 for batch in run for i in batch[2:]]
    # each part continues where it stopped and is reshuffled only when used up: whole permutations back to back
    assert sorted(strong[:5]) == list(range(5)) and sorted(strong[5:10]) == list(range(5))
    assert sorted(weak[:7]) == list(range(7)) and sorted(weak[7:14]) == list(range(7))
    assert strong[:5] != strong[5:10]
    # a loader started at step 3 (epoch 1, one batch done: a resumed run) draws batch 3 on: the same stream
    position = TrainPosition(lambda: 3, 2, 2, 1)
    resumed = StrongWeakBatches(sizes, offsets, batches, 2, seed=3, position=position)
    assert list(resumed) == [run[3]]
    # two ranks split every permutation between them
    ranks = [StrongWeakBatches(sizes, offsets, batches, 2, rank=r, world_size=2, seed=3) for r in (0, 1)]
    first_draws = [r.batch(0)[2:] + r.batch(1)[2:][:1] for r in ranks]  # 4 = ceil(7 / 2) weak draws each
    assert set(first_draws[0]) | set(first_draws[1]) == set(range(5, 12))


def _step_wav(path, seconds, on, off):
    audio = np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32)
    audio[int(on * SAMPLE_RATE):int(off * SAMPLE_RATE)] = 0.5
    return str(write_wav(path, audio))


def test_windows_are_10s_padded_or_cropped_with_their_labels_shifted(tmp_path):
    long = StrongClip("long.wav", _step_wav(tmp_path / "long.wav", 14.0, 11.0, 12.0), (Event(11.0, 12.0, 1),), (1,))
    short = StrongClip("short.wav", _step_wav(tmp_path / "short.wav", 3.0, 1.0, 2.0), (Event(1.0, 2.0, 0),), (0,))
    weak = StrongClip("weak.wav", _step_wav(tmp_path / "weak.wav", 10.0, 0.0, 1.0), None, (1,))
    dataset = WindowDataset([[long, short], [weak], []], num_classes=2, crop=True)
    torch.manual_seed(0)
    for _ in range(6):  # random crops: the labelled frames follow the sound wherever the crop puts it
        item = dataset[0]
        assert item["audio"].shape == (160000,) and item["strong"].shape == (250, 2)
        loud = item["audio"].abs().reshape(250, 640).amax(dim=1) > 0.25
        labelled = item["strong"][:, 1] > 0
        assert (loud & ~labelled).sum() == 0 and (labelled & ~loud).sum() <= 2  # floor / ceil of the edges
        assert item["weak"].tolist() == [0.0, float(bool(labelled.any()))]
    item = dataset[1]
    assert item["audio"].shape == (160000,) and item["audio"][48000:].abs().max() == 0  # zero-padded at the end
    assert item["strong"][:, 0].nonzero().flatten().tolist() == list(range(25, 50))  # 1-2 s: frames 25..49
    weak_item = dataset[2]
    assert weak_item["role"] == 1 and weak_item["weak"].tolist() == [0.0, 1.0] and weak_item["strong"].sum() == 0
    batch = collate_windows([dataset[0], dataset[2], {**dataset[1], "audio": None, "error": "short.wav: broken"}])
    assert batch["role"].tolist() == [0, 1] and batch["skipped"] == [("short.wav", "broken")]


def test_a_desed_miniature_batch_is_its_strong_windows_then_its_weak_clips(tmp_path):
    from atst.synthetic.sed_layouts import make_desed
    from downstream.datasets import load_strong_task
    from downstream.sed.datamodule import SedData

    task = load_strong_task(f"desed={make_desed(tmp_path / 'desed')}", "hear")
    recipe = resolve_recipe("desed-official", strong_batch=2, weak_batch=3)
    data = SedData(task.splits, task.labels.num_labels, recipe,
                   default_run_config(str(tmp_path / "run"), num_workers=0, accelerator="cpu"), cache=None)
    assert data.steps_per_epoch == len(task.split("train_weak")) // 3
    batch = next(iter(data.train_dataloader()))
    assert batch["role"].tolist() == [0, 0, 1, 1, 1] and batch["audio"].shape == (5, 160000)
    strong = {clip.key: clip for clip in task.split("train_strong")}
    weak = {clip.key: clip for clip in task.split("train_weak")}
    assert all(key in strong for key in batch["keys"][:2]) and all(key in weak for key in batch["keys"][2:])
    assert batch["strong"][:2].sum() > 0 and batch["strong"][2:].sum() == 0  # weak clips have no frame labels
    for row, key in enumerate(batch["keys"][2:], start=2):
        assert batch["weak"][row].nonzero().flatten().tolist() == sorted(weak[key].weak)


# ------------------------------------------------------------------------------------------ heads, model, recipes

def test_heads_shapes_init_and_the_weak_softmax_runs_across_classes():
    head = StrongWeakHead(64, 10, generator=torch.Generator().manual_seed(0))
    for linear in (head.strong, head.attention):
        assert abs(float(linear.weight.detach().std()) - 0.01) < 0.001 and float(linear.bias.detach().abs().max()) == 0
    tokens = torch.randn(3, 250, 64)
    strong, weak = head(tokens)
    assert strong.shape == (3, 250, 10) and weak.shape == (3, 10)
    p = torch.sigmoid(head.strong(tokens))
    a = torch.softmax(head.attention(tokens), dim=-1).clamp(1e-7, 1)  # across classes (dim -1), spec 1.7
    assert torch.allclose(weak, (p * a).sum(1) / a.sum(1), atol=1e-6)
    one = StrongWeakHead(64, 1)  # one class: the class softmax is 1 everywhere, so weak = the mean over time
    with torch.no_grad():
        one.attention.weight.normal_(0, 5.0)
    s, w = one(tokens)
    assert torch.allclose(w, s.mean(dim=1), atol=1e-6)


def _encoder_state(model):
    return {k: v.detach().clone() for k, v in model.encoder.state_dict().items()}


def test_desed_official_run_trains_exactly_the_last_block_and_final_norm(tiny, task, tmp_path):
    loaded = load_checkpoint(tiny)
    before = {k: v.clone() for k, v in loaded.encoder.state_dict().items()}
    model = SedModel.from_checkpoint(loaded, 2, "last_block")
    model.train()
    assert not model.encoder.blocks[0].training and model.encoder.blocks[-1].training and \
        model.encoder.final_norm.training  # frozen blocks stay deterministic (no drop-path)
    assert model.encoder.blocks[-1].drop_path.rate == pytest.approx(0.1)
    out = tmp_path / "run"
    # a test file the source dropped whose duration still counts (DESED --protocol official)
    dropped = dataclasses.replace(task, unscored_test_durations={"dropped.wav": 10.0})
    config = SedConfig(ckpt=tiny, task=dropped, out=str(out), recipe="desed-official", max_epochs=2,
                       warmup_epochs=1, strong_batch=2, weak_batch=2)
    outcome = run_sed(config, default_run_config(str(out), num_workers=0, accelerator="cpu", progress=False))
    assert outcome.status == 0
    results = json.loads((out / "results.json").read_text())
    assert results["evaluation"]["files_without_scores"] == {
        "count": 1, "seconds": 10.0, "counted_in": "the PSDS false-positive-rate denominator (no detection)"}
    assert results["kind"] == "sound event detection" and results["metric"] == "psds1.psds_eval_50_thresholds"
    for key in ("psds1.sed_scores_eval", "psds2.psds_eval_50_thresholds", "event_f1_200ms.macro"):
        assert 0.0 <= results["test"][key] <= 1.0
    assert {"psds1.sed_scores_eval", "event_f1_200ms.macro"} <= set(results["test_median_7"])
    assert 0.0 <= results["valid"]["psds1.sed_scores_eval"] <= 1.0 and results["valid"]["neg_bce"] < 0
    assert results["validated_on_test"] is False and [e["step"] for e in results["epochs"]] == [2, 4]
    trained = load_checkpoint(str(out / "best.ckpt")).encoder.state_dict()
    changed = sorted({k.split(".")[0] + ("." + k.split(".")[1] if k.startswith("blocks.") else "")
                      for k in before if not torch.equal(before[k], trained[k])})
    assert changed == ["blocks.11", "norm_frame"]  # every other tensor bitwise unchanged
    raw = torch.load(out / "best.ckpt", weights_only=True)["downstream"]
    assert raw["kind"] == "sed" and raw["labels"] == list(CLASSES) and raw["frame_seconds"] == 0.04
    assert len(raw["thresholds"]) == 2 and len(raw["median_filters"]) == 2
    import hear_atst

    embedder = hear_atst.load_model(str(out / "best.ckpt"))
    assert hear_atst.get_timestamp_embeddings(torch.zeros(1, 16000), embedder)[0].shape[-1] > 0
    # the same command again: reported, nothing trained
    again = run_sed(config, default_run_config(str(out), num_workers=0, accelerator="cpu", progress=False))
    assert again.status == 0 and again.results["wall_time_s"] == results["wall_time_s"]


def test_mean_teacher_on_unlabelled_clips_and_the_official_choice_of_validating_on_test(tiny, tmp_path):
    task = make_event_task(tmp_path / "task", strong=2, weak=2, unlabelled=2, valid=2, test=2,
                           official_selects_on_test=True)
    out = tmp_path / "mt"
    config = SedConfig(ckpt=tiny, task=task, out=str(out), recipe="default", protocol="official", max_epochs=2,
                       warmup_epochs=1, strong_batch=1, weak_batch=1, unlabelled_batch=2, mean_teacher=True)
    outcome = run_sed(config, default_run_config(str(out), num_workers=0, accelerator="cpu", progress=False))
    assert outcome.status == 0
    results = outcome.results
    assert results["validated_on_test"] is True and any("TEST set" in note for note in results["protocol_notes"])
    assert results["settings"]["batch"].startswith("1 strong + 1 weak + 2 unlabelled")
    state = torch.load(out / "last.ckpt", weights_only=True)["state_dict"]
    start = load_checkpoint(tiny).encoder.state_dict()
    key = "blocks.11.mlp.fc1.weight"
    teacher, student = state[f"teacher.backbone.encoder.{key}"], state[f"model.backbone.encoder.{key}"]
    assert not torch.equal(teacher, start[key]) and not torch.equal(teacher, student)  # an EMA of the student
    lines = (sorted((out / "csv_logs").glob("version_*"))[-1] / "metrics.csv").read_text()
    assert "consistency_loss" in lines.splitlines()[0]
    parts, batches = train_parts(task.splits, resolve_recipe("default", mean_teacher=True, unlabelled_batch=2))
    assert batches == [16, 16, 2] and len(parts[2]) == 2  # unlabelled clips are drawn with the mean teacher only
    assert train_parts(task.splits, resolve_recipe("default"))[1] == [16, 16, 0]


def official_cosine_scheduler_epoch(base, final, epochs, niter, warmup_epochs):
    """audiossl `cosine_scheduler_epoch`, as the spec (section 1.9) gives it."""
    warmup = np.linspace(0, base, warmup_epochs * niter)
    iters = np.arange(epochs * niter - warmup_epochs * niter)
    return np.concatenate((warmup, final + 0.5 * (base - final) * (1 + np.cos(np.pi * iters / len(iters)))))


def test_desed_recipe_is_sgd_lr_0_1_five_epoch_warmup_cosine_over_100_x_11_steps():
    recipe = resolve_recipe("desed-official")
    assert (recipe.learning_rate, recipe.max_epochs, recipe.warmup_epochs, recipe.strong_batch,
            recipe.weak_batch, recipe.scope, recipe.layer_decay) == (0.1, 100, 5, 128, 128, "last_block", 0.0)
    schedule = FinetuneSchedule.build(0.1, 100, 5, 11, 11, "official")
    official = official_cosine_scheduler_epoch(0.1, 1e-6, 100, 11, 5)
    assert schedule.total_steps == 1100 == len(official)
    assert np.allclose([schedule.lr(i) for i in range(1100)], official, rtol=1e-9, atol=1e-15)


def test_as_strong_recipe_has_the_15_layer_decay_groups_of_the_spec(fixtures):
    loaded = load_checkpoint(str(fixtures / TINY))
    recipe = resolve_recipe("as-strong-official")
    assert (recipe.learning_rate, recipe.strong_batch, recipe.weak_batch, recipe.scope, recipe.layer_decay) == \
        (1e-3, 8, 0, "all", 0.75)
    model = SedModel.from_checkpoint(loaded, 5, "all")
    optimizer = build_optimizer(model, recipe)
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["momentum"] == 0.9
    set_learning_rate(optimizer, 1e-3)
    lrs = {group["name"]: group["lr"] for group in optimizer.param_groups}
    s = 0.75
    expected = {"norm": 1e-3, "head": 1e-3, "embed": 1e-3 * s ** 13,
                **{f"blocks.{k}": 1e-3 * s ** (12 - k) for k in range(12)}}
    assert len(optimizer.param_groups) == 15 and lrs.keys() == expected.keys()
    assert all(math.isclose(lrs[name], lr, rel_tol=1e-12) for name, lr in expected.items())
    grouped = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert grouped == {id(p) for p in model.parameters() if p.requires_grad}
    assert not model.encoder.mask_embed.requires_grad and id(model.head.attention.weight) in grouped


def test_usage_errors_name_the_flag(tiny, task, tmp_path, capsys):
    with pytest.raises(ValueError, match="--recipe must be one of"):
        resolve_recipe("desed")
    with pytest.raises(ValueError, match="--warmup_epochs"):
        resolve_recipe("default", max_epochs=2, warmup_epochs=2)
    assert main(["sed", "--ckpt", tiny, "--task", str(tmp_path / "nothing"), "--out", str(tmp_path / "o"),
                 "--max_epochs", "0"]) == 2
    assert "--max_epochs" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------------ DDP, kill, resume

@pytest.mark.slow
def test_ddp_two_processes_sigkill_then_resume(fixtures, tmp_path):
    task_dir = tmp_path / "task"
    make_event_task(task_dir, strong=4, weak=8, valid=2, test=2)
    script = cli_script(tmp_path / "run_sed.py", task_dir, REPO / "tests", strong=4, weak=8, valid=2, test=2)
    out = tmp_path / "ddp"
    command = [sys.executable, str(script), "sed", "--ckpt", str(fixtures / TINY), "--task", "synth", "--out",
               str(out), "--recipe", "desed-official", "--strong_batch", "1", "--weak_batch", "2", "--max_epochs",
               "8", "--warmup_epochs", "1", "--nproc", "2", "--accelerator", "cpu", "--num_workers", "0",
               "--ckpt_every_steps", "2", "--progress", "false", "--progress_every", "1"]
    env = ddp_env()
    last = out / "last.ckpt"
    killed_at = kill_after_checkpoint(command, env, last, 4)  # 8 weak / (2 x 2 ranks): 2 steps per epoch
    assert 4 <= killed_at < 16
    env["MASTER_PORT"] = str(free_port())
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert f"resuming from {last} at step {killed_at}" in output
    results = json.loads((out / "results.json").read_text())
    assert [(e["epoch"], e["step"]) for e in results["epochs"]] == [(k, 2 * k) for k in range(1, 9)]
    assert results["hyper_parameters"]["world_size"] == 2 and torch.load(last, weights_only=True)["global_step"] == 16
    assert (out / "best.ckpt").is_file() and not list(out.glob("best-step=*.ckpt"))
    assert results["evaluation"]["files"] == 2  # rank 0 evaluated both ranks' test recordings
