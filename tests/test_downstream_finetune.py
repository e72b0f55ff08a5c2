"""`atst-downstream finetune`: the official recipe's numbers (layer-wise LR scales, the per-step schedule, LR scaling),
mixup and RandomResizeCrop, balanced sampling and the DDP shares, the read-outs with gradients against the linear
evaluation's, a whole run in process (outputs, model file, rerun, resume of a pending validation, usage errors) and,
marked slow, a 2-process DDP run killed with SIGKILL and resumed."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from atst import describe_checkpoint, load_checkpoint
from atst.training.optim import set_learning_rate
from atst.synthetic import make_tasks
from conftest import REPO, free_port, kill_after_checkpoint, subprocess_env
from downstream.cli import main
from downstream.datasets import load_task
from downstream.finetune.augment import MixupSpecLabel, RandomResizeCrop, mix
from downstream.finetune.config import FinetuneConfig, default_batch_size, resolve_recipe, selection_rule
from downstream.finetune.data import ClipMels, EpochSampler, MelClipDataset, TrainPosition, balanced_weights, \
    collate_mels
from downstream.finetune.model import FinetuneModel
from downstream.finetune.module import optimizer_groups
from downstream.finetune.schedule import FinetuneSchedule, batches_per_epoch, official_niter, steps_per_epoch
from downstream.linear import Readout
from downstream.linear.train import effective_lr
from downstream.model_file import read_model_file

D = 0.75


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune_tasks")
    return {p.name.split("-")[0]: p for p in make_tasks(root, size="tiny", seed=5,
                                                        tasks=["synth_scene", "synth_timbre"])}


@pytest.fixture(autouse=True)
def no_audio_cache(monkeypatch):
    monkeypatch.setenv("ATST_AUDIO_CACHE", "off")


def official_cosine_scheduler_epoch(base, final, epochs, niter, warmup_epochs):
    """audiossl `utils/common.py:cosine_scheduler_epoch`, as the spec (section 2.2) gives it."""
    warmup = np.linspace(0, base, warmup_epochs * niter) if warmup_epochs > 0 else np.array([])
    iters = np.arange(epochs * niter - warmup_epochs * niter)
    schedule = final + 0.5 * (base - final) * (1 + np.cos(np.pi * iters / len(iters)))
    return np.concatenate((warmup, schedule))


# ------------------------------------------------------------------------------------------ the recipe's numbers

def test_layer_decay_groups_and_their_lrs_match_the_spec_table(tiny_frame_ckpt):
    model = FinetuneModel.from_checkpoint(load_checkpoint(tiny_frame_ckpt), "official", 1, num_labels=5)
    groups = optimizer_groups(model, D)
    scales = {group["name"]: group["lr_scale"] for group in groups}
    assert list(scales) == ["embed", *(f"blocks.{k}" for k in range(12)), "norm", "head"]
    # spec 2.2: embeddings d^12 = 0.0317, block k d^(12-k) (block 0 0.0317 ... block 11 0.75), final norm 0.75, head 1
    assert scales["embed"] == D ** 12 and round(scales["embed"], 4) == 0.0317
    assert [scales[f"blocks.{k}"] for k in range(12)] == [D ** (12 - k) for k in range(12)]
    assert round(scales["blocks.0"], 4) == 0.0317 and scales["blocks.11"] == 0.75
    assert scales["norm"] == 0.75 and scales["head"] == 1.0
    named = {id(p): n for n, p in model.named_parameters()}
    grouped = [named[id(p)] for group in groups for p in group["params"]]
    assert sorted(grouped) == sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert "backbone.encoder.mask_embed" not in grouped  # no read-out uses it; frozen (DDP needs every tensor used)
    assert {named[id(p)] for p in groups[0]["params"]} == {"backbone.encoder.patch_embed.patch_embed.weight",
                                                           "backbone.encoder.patch_embed.patch_embed.bias",
                                                           "backbone.encoder.pos_embed"}
    # each step: group lr = schedule(step) x scale, the head at the schedule itself
    schedule = FinetuneSchedule.build(2.0, 50, 5, 166, 166, "official")
    optimizer = torch.optim.SGD(groups, lr=schedule.base_lr, momentum=0.9)
    for step in (0, 1, 829, 830, 5000, 8299):
        set_learning_rate(optimizer, schedule.lr(step))
        lrs = {group["name"]: group["lr"] for group in optimizer.param_groups}
        assert lrs["head"] == schedule.lr(step) and lrs["embed"] == schedule.lr(step) * D ** 12
        assert lrs["blocks.5"] == schedule.lr(step) * D ** 7 and lrs["norm"] == schedule.lr(step) * D
    assert [g["lr_scale"] for g in optimizer_groups(model, 0.0)] == [1.0]  # --layerwise_lr 0: one LR


def test_the_per_step_schedule_is_the_official_table_and_the_exact_one_ends_at_1e_6():
    # official: the numpy table of cosine_scheduler_epoch read at global_step, step by step
    base, epochs, warmup, niter, steps = 2.0, 7, 2, 13, 12
    table = official_cosine_scheduler_epoch(base, 1e-6, epochs, niter, warmup)
    official = FinetuneSchedule.build(base, epochs, warmup, steps, niter, "official")
    assert official.total_steps == epochs * steps  # the run ends before its table does (niter > real steps)
    assert [official.lr(s) for s in range(official.total_steps)] == pytest.approx(table[:epochs * steps], rel=1e-12,
                                                                                  abs=1e-15)
    assert official.lr(0) == 0.0 and official.lr(warmup * niter - 1) == base
    assert official.lr(official.total_steps - 1) > 1e-3  # the official quirk: 1e-6 is never reached
    # exact: the real steps per epoch; warm-up from 0, the peak at the end of the warm-up, 1e-6 on the last step
    exact = FinetuneSchedule.build(base, epochs, warmup, steps, niter, "exact")
    lrs = [exact.lr(s) for s in range(exact.total_steps)]
    assert lrs[0] == 0.0 and lrs[warmup * steps - 1] == base and lrs[-1] == pytest.approx(1e-6, abs=1e-15)
    assert lrs[:warmup * steps] == pytest.approx(list(np.linspace(0, base, warmup * steps)), rel=1e-12)
    assert all(a >= b for a, b in zip(lrs[warmup * steps:], lrs[warmup * steps + 1:]))
    assert FinetuneSchedule.build(base, 1, 0, 1, 1, "exact").lr(0) == base  # a one-step run trains at the base LR
    with pytest.raises(ValueError, match="--warmup_epochs must lie in"):
        FinetuneSchedule.build(base, 5, 5, 10, 10, "exact")


def test_steps_per_epoch_global_batch_and_lr_scaling():
    # spcv2 on the shells' 4 GPUs x 128: official niter = 84843 // 128 // 4 + 1 = 166 = the real steps
    assert official_niter(84843, 4, 128) == 166 == steps_per_epoch(84843, 4, 128)
    assert official_niter(1024, 4, 128) == 3 and steps_per_epoch(1024, 4, 128) == 2  # one step more in the table
    assert batches_per_epoch(10, 2, 2) == 3 and steps_per_epoch(10, 2, 2, accumulate_grad_batches=2) == 2
    assert batches_per_epoch(9, 1, 4) == 2  # 9 % 4 == 1: the lone last clip is left out (batch norm)
    assert effective_lr(1.0, 128, 4) == 2.0 == effective_lr(1.0, 64 * 4, 2)  # global batch 512: LR x 2
    assert default_batch_size(4, 1) == 128 and default_batch_size(2, 4) == 64
    with pytest.raises(ValueError, match="does not divide"):
        default_batch_size(3, 1)


def test_the_official_settings_fill_what_is_not_given_and_the_selection_rule():
    recipe = resolve_recipe(FinetuneConfig("c", "spcv2=/data", "o"), "frame", 12, 4, 1)
    assert (recipe.learning_rate, recipe.max_epochs, recipe.warmup_epochs, recipe.alpha) == (1.0, 50, 5, 10.0)
    assert recipe.mixup_training and recipe.rrc and recipe.batch_size_per_gpu == 128 and not recipe.balanced_sampling
    clip = resolve_recipe(FinetuneConfig("c", "spcv2=/data", "o", alpha=2.0), "clip", 12, 1, 1)
    assert (clip.learning_rate, clip.alpha, clip.sources["alpha"]) == (0.5, 2.0, "flag")
    as2m = resolve_recipe(FinetuneConfig("c", "audioset=/data", "o"), "frame", 12, 8, 1)
    assert as2m.balanced_sampling and as2m.mixup_ratio == 0.5 and (as2m.max_epochs, as2m.warmup_epochs) == (11, 2)
    vox = resolve_recipe(FinetuneConfig("c", "voxceleb1=/data", "o"), "frame", 12, 1, 1)
    assert not vox.mixup_training and not vox.rrc  # the official shell: no mixup, so no RRC either
    assert [selection_rule("official", d, "frame") for d in ("audioset", "audioset_b", "spcv2")] == \
        ["best", "best", "last"]
    assert selection_rule("official", "audioset", "clip") == "last" and selection_rule("hear", "us8k", "clip") == "best"


# ------------------------------------------------------------------------------------------------ augmentation

def test_mixup_mixes_mels_and_labels_with_one_lambda_and_an_empty_bank_is_the_identity():
    generator = torch.Generator().manual_seed(0)
    x, z = torch.rand(64, 30, generator=generator), torch.rand(64, 30, generator=generator)
    y, w = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 0.0, 1.0])
    mixed, target = mix(x, y, z, w, 0.3)
    torch.testing.assert_close(mixed, 0.3 * x + 0.7 * z)
    torch.testing.assert_close(target, torch.tensor([0.3, 0.0, 0.7]))
    # unequal lengths: a longer clip mixes the partner into a window of itself; a shorter one keeps its length
    long_mix, _ = mix(x, y, z[:, :10], w, 0.5)
    changed = (long_mix != x).any(dim=0).nonzero().flatten()
    assert long_mix.shape == x.shape and len(changed) == 10 and int(changed[-1] - changed[0]) == 9
    short_mix, _ = mix(x[:, :10], y, z, w, 0.5)
    assert short_mix.shape == (64, 10)

    torch.manual_seed(1)
    mixup = MixupSpecLabel(alpha=0.5, bank_size=2)
    first, first_target = mixup(x, y)
    assert first is x and first_target is y and len(mixup.bank) == 1  # empty bank: unchanged
    second, second_target = mixup(z, w)
    lam = float(second_target[2])  # z's class: lambda; x's class: 1 - lambda
    assert 0.0 < lam < 1.0 and float(second_target[0]) == pytest.approx(1.0 - lam)
    torch.testing.assert_close(second, lam * z + (1.0 - lam) * x)
    mixup(x, y)
    assert len(mixup.bank) == 2 and mixup.bank[0][0] is z  # FIFO of unmixed clips
    never = MixupSpecLabel(alpha=0.5, bank_size=5, ratio=0.0)
    never(x, y)
    assert never(z, w)[0] is z
    with pytest.raises(ValueError, match="float target vector"):
        mixup(x, torch.tensor(1))


def test_random_resize_crop_keeps_the_shape_and_is_the_identity_without_scaling():
    torch.manual_seed(0)
    crop = RandomResizeCrop()
    for frames in (5, 101, 1201):
        mel = torch.rand(64, frames)
        out = crop(mel)
        assert out.shape == (64, frames) and out.dtype == torch.float32 and torch.isfinite(out).all()
    mel = torch.rand(64, 50)
    identity = RandomResizeCrop(virtual_crop=(1.0, 1.0), freq_scale=(1.0, 1.0), time_scale=(1.0, 1.0))
    torch.testing.assert_close(identity(mel), mel, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="virtual_crop"):
        RandomResizeCrop(virtual_crop=(0.5, 1.0))


# ---------------------------------------------------------------------------------------------------- sampling

def test_balanced_weights_are_the_official_ones():
    weights = balanced_weights([(0,), (0,), (1,), (0, 1), ()], num_labels=3)
    n0, n1 = 1000 / 3.01, 1000 / 2.01
    assert weights.tolist() == pytest.approx([n0, n0, n1, n0 + n1, 0.0], rel=1e-12)


@pytest.mark.parametrize("weighted", [False, True])
def test_every_rank_draws_the_same_sequence_and_takes_its_share(weighted):
    size, world, batch = 11, 3, 2
    weights = balanced_weights([(i % 3,) for i in range(size)], 3) if weighted else None
    ranks = [EpochSampler(size, batch, rank, world, seed=4, weights=weights) for rank in range(world)]
    for epoch in (0, 1):
        shares = [sampler.epoch_indices(epoch) for sampler in ranks]
        assert [len(share) for share in shares] == [4, 4, 4] == [len(s) for s in ranks]
        interleaved = [shares[r][i] for i in range(4) for r in range(world)]
        generator = torch.Generator().manual_seed(4 + epoch)
        if weighted:  # one draw of 12 with replacement, shared by every rank
            assert interleaved == torch.multinomial(weights, 12, replacement=True, generator=generator).tolist()
        else:  # one permutation, padded with its start to equal shares: every clip is drawn
            order = torch.randperm(size, generator=generator).tolist()
            assert interleaved == order + order[:1]
    assert ranks[0].epoch_indices(0) != ranks[0].epoch_indices(1)


def test_a_resumed_epoch_draws_the_rest_of_its_sequence():
    step = [0]
    position = TrainPosition(lambda: step[0], steps_per_epoch=3, batches_per_epoch=6, accumulate_grad_batches=2)
    sampler = EpochSampler(23, 4, rank=0, world_size=1, seed=0, position=position)
    assert len(sampler) == 23 and list(sampler) == sampler.epoch_indices(0)
    step[0] = 4  # epoch 1, one step (two batches of 4) done
    assert list(sampler) == sampler.epoch_indices(1)[8:] and len(sampler) == 23
    step[0] = 6  # the start of epoch 2
    assert list(sampler) == sampler.epoch_indices(2)


# ---------------------------------------------------------------------------------------- data and read-outs

def _batch(dataset, indices):
    return collate_mels([dataset[i] for i in indices])


@pytest.mark.parametrize("family,protocol", [("frame", "official"), ("frame", "hear"), ("clip", "official"),
                                             ("clip", "hear")])
def test_the_trained_readout_is_the_linear_evaluation_readout(fixtures, tasks, family, protocol):
    loaded = load_checkpoint(fixtures / f"atst{family}_tiny.ckpt")
    task = load_task(str(tasks["synth_scene"]))
    model = FinetuneModel.from_checkpoint(loaded, protocol, n_blocks=2, num_labels=task.labels.num_labels).eval()
    mels = ClipMels(model.backbone.frontend, loaded.config.patch_w, protocol, family)
    dataset = MelClipDataset(task.splits["test"], task.labels, mels, one_hot=False)
    batch = _batch(dataset, range(4))
    from downstream.datasets import ClipDataset, collate_clips

    audio = collate_clips([ClipDataset(task.splits["test"], task.labels)[i] for i in range(4)])
    # linear evaluation's read-out of the same clips (official ATST-Clip fine-tuning: 6 s chunks)
    reference = Readout(replace(loaded, clip_train_len=model.clip_train_len), protocol, n_blocks=2)
    with torch.no_grad():
        torch.testing.assert_close(model.embed(batch["mel"], batch["frames"]),
                                   reference(audio["audio"], audio["lengths"]), atol=1e-4, rtol=1e-4)
    assert model.embed_dim == reference.dim and model.clip_train_len == (6.0 if protocol == "official" and
                                                                         family == "clip" else loaded.clip_train_len)
    # gradients reach every trainable tensor
    model.train()
    model(batch["mel"], batch["frames"]).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing


def test_training_items_are_one_hot_and_augmented_and_bad_clips_are_named(tiny_frame_ckpt, tasks, tmp_path):
    from conftest import CORRUPT_WAV
    from downstream.datasets import Clip
    from downstream.finetune.datamodule import train_augment

    loaded = load_checkpoint(tiny_frame_ckpt)
    task = load_task(str(tasks["synth_scene"]))
    (tmp_path / "bad.wav").write_bytes(CORRUPT_WAV)
    clips = (*task.splits["train"][:3], Clip("bad.wav", str(tmp_path / "bad.wav"), (0,)))
    recipe = resolve_recipe(FinetuneConfig("c", "t", "o"), "frame", 12, 1, 1)
    mels = ClipMels(FinetuneModel.from_checkpoint(loaded, "official", 1, 5).backbone.frontend, 4, "official", "frame")
    dataset = MelClipDataset(clips, task.labels, mels, one_hot=True, augment=train_augment(recipe))
    batch = _batch(dataset, range(4))
    assert batch["mel"].shape[:2] == (3, 64) and batch["targets"].shape == (3, 5)
    assert torch.allclose(batch["targets"].sum(dim=1), torch.ones(3))
    assert batch["skipped"][0][0] == "bad.wav" and batch["index"].tolist() == [0, 1, 2]
    plain = MelClipDataset(clips[:1], task.labels, mels, one_hot=False)[0]
    assert plain["target"].ndim == 0 and plain["mel"].shape == (64, 101)  # 1 s: 101 frames, no augmentation


# ------------------------------------------------------------------------------------------- a run in process

FAST = ["--max_epochs", "2", "--warmup_epochs", "1", "--batch_size_per_gpu", "4", "--num_workers", "0",
        "--accelerator", "cpu", "--progress", "false", "--progress_every", "0"]


def test_finetune_in_process_outputs_model_file_rerun_and_pending_validation(tiny_frame_ckpt, tasks, tmp_path,
                                                                            capsys):
    out = tmp_path / "run"
    args = ["finetune", "--ckpt", str(tiny_frame_ckpt), "--task", str(tasks["synth_scene"]), "--out", str(out),
            "--protocol", "hear", *FAST]
    assert main(args) == 0
    assert "synth_scene: test top1_acc" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert {"task", "metric", "valid", "test", "selected", "epochs", "settings", "checkpoint", "skipped",
            "wall_time_s", "protocol_notes", "hyper_parameters"} <= set(results)
    assert results["kind"] == "fine-tuning" and results["selected"]["rule"] == "best"
    assert [(e["epoch"], e["step"]) for e in results["epochs"]] == [(1, 3), (2, 6)]  # 10 clips / 4 = 3 steps
    assert results["settings"]["effective_lr"] == pytest.approx(2e-3 * 4 / 256)
    assert len(results["checkpoint"]["sha256"]) == 64 and results["hyper_parameters"]["global_batch"] == 4
    assert (out / "curves.png").stat().st_size > 0 and "| test |" in (out / "results.md").read_text()
    assert not list(out.glob("best-step=*.ckpt"))  # the step-named best file became best.ckpt
    rows = (next((out / "csv_logs").glob("version_*")) / "metrics.csv").read_text()
    assert "valid_top1_acc" in rows.splitlines()[0]

    # the model file: weights-only, read by read_model_file, hear_atst and `atst info`; the encoder was trained
    raw = torch.load(out / "best.ckpt", weights_only=True)
    assert raw["downstream"]["kind"] == "finetune" and raw["downstream"]["selected"] == {
        "epoch": results["selected"]["epoch"], "step": results["selected"]["step"], "rule": "best"}
    model = read_model_file(out / "best.ckpt")
    assert model.labels == list(load_task(str(tasks["synth_scene"])).labels.names)
    assert model.info["readout"]["protocol"] == "hear" and model.head_state["linear.weight"].shape == (5, 192)
    assert model.info["test"] == results["test"]["top1_acc"]
    import hear_atst

    embedder = hear_atst.load_model(str(out / "best.ckpt"))
    source = load_checkpoint(tiny_frame_ckpt).encoder.state_dict()
    tuned = embedder.encoder.state_dict()
    assert not torch.equal(tuned["blocks.11.mlp.fc1.weight"], source["blocks.11.mlp.fc1.weight"])
    assert torch.equal(tuned["mask_embed"], source["mask_embed"])
    assert describe_checkpoint(out / "best.ckpt")["branches"]["teacher"] == "ok"

    # the same command again: reported, nothing trained; other settings in the same folder: refused
    assert main(args) == 0
    assert "holds a finished run with these settings" in capsys.readouterr().err
    assert json.loads((out / "results.json").read_text())["wall_time_s"] == results["wall_time_s"]
    assert main([*args, "--learning_rate", "0.01"]) == 2
    assert "holds a finished fine-tuning run with other settings (learning_rate" in capsys.readouterr().err

    # a run killed between the last step's checkpoint and its validation (epoch 1 the best so far, a best file of
    # step 9 written after the checkpoint by a later epoch): the rerun validates epoch 2, that stray file goes
    checkpoint = torch.load(out / "last.ckpt", weights_only=True)
    history = checkpoint["finetune"]["history"]
    checkpoint["finetune"] = {"history": history[:1], "best": history[0]}
    torch.save(checkpoint, out / "last.ckpt")
    (out / "best.ckpt").rename(out / "best-step=0000003.ckpt")
    (out / "results.json").rename(out / "best-step=0000009.ckpt")
    assert main(args) == 0
    again = json.loads((out / "results.json").read_text())
    assert [(e["epoch"], e["step"]) for e in again["epochs"]] == [(1, 3), (2, 6)]
    assert again["epochs"][1]["valid"] == results["epochs"][1]["valid"]  # the same weights, validated again
    assert sorted(p.name for p in out.glob("best*.ckpt")) == ["best.ckpt"]


def test_kfold_folds_train_in_their_folders_and_the_mean_covers_every_finished_fold(tiny_clip_ckpt, tasks,
                                                                                    tmp_path):
    out = tmp_path / "kfold"
    args = ["finetune", "--ckpt", str(tiny_clip_ckpt), "--task", str(tasks["synth_timbre"]), "--out", str(out),
            *FAST, "--max_epochs", "1", "--warmup_epochs", "0"]
    assert main([*args, "--fold", "1"]) == 0
    first = json.loads((out / "results.json").read_text())
    assert [fold["fold"] for fold in first["folds"]] == ["fold01"] and not (out / "best.ckpt").exists()
    assert main([*args, "--fold", "0"]) == 0  # official protocol: each fold validated on its test fold
    results = json.loads((out / "results.json").read_text())
    assert [fold["fold"] for fold in results["folds"]] == ["fold00", "fold01"] and results["folds_done"] == "2 of 3"
    assert all(fold["validated_on_test"] for fold in results["folds"])
    tests = [json.loads((out / name / "results.json").read_text())["test"]["top1_acc"] for name in ("fold00",
                                                                                                  "fold01")]
    assert results["test"]["top1_acc"] == pytest.approx(sum(tests) / 2)
    assert results["test_std"] == pytest.approx(float(np.std(tests, ddof=1)))
    assert (out / "best.ckpt").samefile(out / "fold00" / "best.ckpt") or \
        (out / "best.ckpt").read_bytes() == (out / "fold00" / "best.ckpt").read_bytes()
    info = read_model_file(out / "best.ckpt").info
    assert info["readout"]["clip_train_len"] == 6.0 and info["fold"] == "fold00"  # official ATST-Clip: 6 s chunks
    # predict rebuilds the read-out the head was trained on (6 s chunks), not the checkpoint's train_len
    clips = tasks["synth_timbre"] / "16000" / "fold00"
    assert main(["predict", "--model", str(out), str(clips), "--out", str(tmp_path / "p.csv"), "--quiet"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "p.csv", newline="")))
    assert len(rows) == len(list(clips.glob("*.wav"))) and rows[0]["label_1"] in info["labels"]


def test_usage_errors_name_the_flag_and_create_nothing(tiny_frame_ckpt, tasks, tmp_path, capsys):
    base = ["finetune", "--ckpt", str(tiny_frame_ckpt), "--out", str(tmp_path / "out"), *FAST]
    scene, timbre = str(tasks["synth_scene"]), str(tasks["synth_timbre"])
    cases = [
        (["--task", scene, "--warmup_epochs", "2"], "--warmup_epochs (2) must be smaller than --max_epochs (2)"),
        (["--task", scene, "--n_last_blocks", "13"], "the encoder has 12 blocks; pass 1..12"),
        (["--task", scene, "--layerwise_lr", "1.5"], "--layerwise_lr must be a finite number in [0, 1]"),
        (["--task", scene, "--fold", "1"], "has 1 fold(s), numbered from 0 (it has fixed splits"),
        (["--task", timbre, "--fold", "3"], "has 3 fold(s), numbered from 0"),
        (["--task", scene, "--alpha", "0"], "--alpha must be a finite number > 0"),
        (["--task", str(tmp_path / "nowhere")], "does not exist; expected"),
    ]
    for extra, message in cases:
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert "atst-downstream finetune: error:" in err and message in err, err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------ DDP, kill, resume

@pytest.mark.slow
def test_ddp_two_processes_sigkill_then_resume_and_the_model_file_loads(tiny_frame_ckpt, tasks, tmp_path):
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "downstream", "finetune", "--ckpt", str(tiny_frame_ckpt), "--task",
               str(tasks["synth_timbre"]), "--fold", "0", "--out", str(out), "--protocol", "hear", "--nproc", "2",
               "--accelerator", "cpu", "--batch_size_per_gpu", "1", "--max_epochs", "4", "--warmup_epochs", "1",
               "--num_workers", "1", "--ckpt_every_steps", "2", "--progress", "false", "--progress_every", "1"]
    env = subprocess_env(PYTHONUNBUFFERED="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()),
                         ATST_AUDIO_CACHE="off")
    env.pop("LOCAL_RANK", None)
    last = out / "fold00" / "last.ckpt"
    # 6 train clips / 2 ranks: 3 steps per epoch
    killed_at = kill_after_checkpoint(command, env, last, 4, timeout=600)
    assert 4 <= killed_at < 12
    env["MASTER_PORT"] = str(free_port())
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert f"resuming from {last} at step {killed_at}" in output
    results = json.loads((out / "fold00" / "results.json").read_text())
    assert [(e["epoch"], e["step"]) for e in results["epochs"]] == [(1, 3), (2, 6), (3, 9), (4, 12)]
    assert results["hyper_parameters"]["world_size"] == 2 and torch.load(last, weights_only=True)["global_step"] == 12
    with open(sorted((out / "fold00" / "csv_logs").glob("version_*"))[-1] / "metrics.csv", newline="") as handle:
        steps = [int(float(row["step"])) for row in csv.DictReader(handle) if row.get("loss")]
    assert steps[0] == killed_at and steps[-1] == 11  # the first resumed step is the saved one
    model = read_model_file(out / "fold00" / "best.ckpt")
    assert model.info["kind"] == "finetune" and model.labels == ["odd_harmonics", "pure", "sawtooth"]
    import hear_atst

    embedder = hear_atst.load_model(str(out / "fold00" / "best.ckpt"))
    assert hear_atst.get_scene_embeddings(torch.zeros(1, 16000), embedder).shape == (1, 12 * 192)
    clips = tasks["synth_timbre"] / "16000" / "fold00"
    assert main(["predict", "--model", str(out / "fold00"), str(clips), "--out", str(tmp_path / "p.csv"),
                 "--quiet"]) == 0
    assert len(list(csv.DictReader(open(tmp_path / "p.csv", newline="")))) == len(list(clips.glob("*.wav")))
    assert not list(out.rglob("best-step=*.ckpt")) and not list(out.rglob(".*.tmp-*"))
