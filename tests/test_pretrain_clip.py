"""ATST-Clip pre-training (`atst-pretrain --method clip`): crops and views, masking of short clips, the cross-view
CLS loss, schedules and optimizer groups, a full in-process run, and (slow) a 2-process DDP run killed and resumed.
"""
from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import hear_atst
from atst.encoder import arch_config
from atst.frontend import LogMelFrontend
from atst.training.optim import parameter_groups
from atst.training.schedules import ema_momentum
from conftest import (CORRUPT_WAV, REPO, SAMPLE_RATE, kill_after_checkpoint, wav_bytes, write_tar_shard,
                      write_tone_clips)
from pretrain.cli import build_parser, check_args, hyper_parameters, main
from pretrain.methods.clip import ClipATST, ClipViewMaker, random_crop
from test_pretrain_units import door_environment  # noqa: F401  (a fixture, used by name)

TINY_CLIP = arch_config("tiny", family="clip")


def clip_args(*extra: str, method: str = "clip"):
    args = build_parser(method).parse_args(["--method", method, "--data_path", "x", "--save_path", "y", *extra])
    return args, hyper_parameters(args, check_args(args))


# ------------------------------------------------------------------------------------------ crops and views
def test_the_two_crops_are_independent_and_of_the_right_lengths():
    torch.manual_seed(0)
    maker = ClipViewMaker(train_len=2.0, positive_len=1.0, read_len=5.0, mix_up=False, rrc=False)
    wave = torch.arange(5 * SAMPLE_RATE, dtype=torch.float32)  # sample value = its index: a crop shows its start
    starts = []
    for _ in range(300):
        (first, valid_1), (second, valid_2) = maker.crops(wave, wave.numel())
        assert (first.numel(), valid_1, second.numel(), valid_2) == (32000, 32000, 16000, 16000)
        for crop in (first, second):  # a contiguous piece of the clip
            assert torch.equal(crop, torch.arange(int(crop[0]), int(crop[0]) + crop.numel(), dtype=torch.float32))
        starts.append((int(first[0]), int(second[0])))
    starts = np.array(starts, dtype=float)
    # each start covers its whole range, the last position included, independently of the other
    assert starts[:, 0].min() < 2000 and starts[:, 0].max() > 46000 and starts[:, 0].max() <= 48000
    assert starts[:, 1].min() < 2000 and starts[:, 1].max() > 62000 and starts[:, 1].max() <= 64000
    assert abs(np.corrcoef(starts[:, 0], starts[:, 1])[0, 1]) < 0.2
    assert np.mean(starts[:, 0] == starts[:, 1]) < 0.05
    assert random_crop(torch.ones(10), 10, 10)[0].tolist() == [1.0] * 10


def test_views_have_one_width_own_augmentations_and_count_tokens():
    torch.manual_seed(0)
    maker = ClipViewMaker(train_len=9.0, positive_len=6.0, read_len=10.0)
    assert maker.augments[0].mixup is not maker.augments[1].mixup  # one memory bank per view, as official
    wave = torch.randn(10 * SAMPLE_RATE) * 0.1
    sample = maker(wave, wave.numel())
    # the official widths: both views 100 * max(9, 6) + 1 frames; tokens 225 (9 s) and 150 (6 s)
    assert sample["mel_1"].shape == sample["mel_2"].shape == (64, 901)
    assert (sample["tokens_1"], sample["tokens_2"]) == (225, 150)
    assert not sample["mel_2"][:, 601:].any()  # the 6 s view is padded, and the padding is masked (150 tokens)


@pytest.mark.parametrize("short_clips, tokens", [("masked", 25), ("official", 50)])
def test_a_short_clip_is_padded_and_only_its_audio_counts(short_clips, tokens):
    torch.manual_seed(0)
    maker = ClipViewMaker(train_len=2.0, positive_len=2.0, read_len=3.0, mix_up=False, rrc=False,
                          short_clips=short_clips)
    audio = torch.randn(SAMPLE_RATE) * 0.1  # 1 s in a 3 s read
    wave = torch.cat([audio, torch.zeros(2 * SAMPLE_RATE)])
    sample = maker(wave, SAMPLE_RATE)
    assert sample["mel_1"].shape == (64, 201) and sample["tokens_1"] == sample["tokens_2"] == tokens
    if short_clips == "masked":  # the mel of the audio alone (its own dB floor), zeros after it
        own = LogMelFrontend()(audio[None])[0]
        assert torch.allclose(sample["mel_1"][:, :101], own, atol=1e-5)
        assert not sample["mel_1"][:, 101:].any()


def test_mixup_of_views_of_unequal_widths_mixes_their_common_frames():
    from pretrain.augment import Mixup

    torch.manual_seed(0)
    mixup = Mixup(bank_size=1)
    short = torch.rand(64, 30) * 2 - 1
    mixup(short)  # the bank holds a 30-frame view
    long = torch.rand(64, 50) * 2 - 1
    mixed = mixup(long)
    assert mixed.shape == (64, 50) and torch.equal(mixed[:, 30:], long[:, 30:])
    assert not torch.allclose(mixed[:, :30], long[:, :30])
    low, high = torch.minimum(short, long[:, :30]), torch.maximum(short, long[:, :30])
    assert bool((mixed[:, :30] >= low - 1e-5).all() and (mixed[:, :30] <= high + 1e-5).all())
    assert mixup(torch.rand(64, 20)).shape == (64, 20)  # a shorter view mixes with the first 20 frames of the bank's


def test_shards_stream_clip_samples_and_report_bad_members(tmp_path):
    from atst.training.corpus_datasets import ShardDataset

    shard = write_tar_shard(tmp_path / "000000.tar", {"a.wav": wav_bytes(0.5, seed=1), "bad.wav": CORRUPT_WAV,
                                                       "b.flac": wav_bytes(3.0, seed=2, format="FLAC")})
    maker = ClipViewMaker(train_len=2.0, positive_len=1.0, read_len=2.5, mixup_bank=4)
    samples = list(zip(range(4), ShardDataset((str(shard),), maker, shuffle_buffer=1)))
    tokens = sorted(sample["tokens_1"] for _, sample in samples)
    assert tokens[0] == 12 and tokens[-1] == 50  # the 0.5 s clip holds 12 tokens of audio; 2 s crops hold 50
    assert all(sample["mel_1"].shape == (64, 201) for _, sample in samples)
    assert any(name.endswith(":bad.wav") for _, sample in samples for name, _ in sample["skipped"])


@pytest.fixture
def tiny_clip_model():
    torch.manual_seed(0)
    return ClipATST(TINY_CLIP, hidden=64, out_dim=16)


def test_the_padding_of_a_short_clip_does_not_change_the_step(tiny_clip_model):
    torch.manual_seed(1)
    mel_1, mel_2 = torch.randn(3, 64, 201), torch.randn(3, 64, 201)
    tokens_1, tokens_2 = torch.tensor([50, 20, 7]), torch.tensor([50, 50, 31])
    garbage_1, garbage_2 = mel_1.clone(), mel_2.clone()
    for b in range(3):  # anything in the frames after the audio
        garbage_1[b, :, 4 * int(tokens_1[b]):] = torch.randn(64, 201 - 4 * int(tokens_1[b])) * 5
        garbage_2[b, :, 4 * int(tokens_2[b]):] = torch.randn(64, 201 - 4 * int(tokens_2[b])) * 5
    losses = []
    for views in ((mel_1, mel_2), (garbage_1, garbage_2)):
        torch.manual_seed(7)  # the same DropPath draws (train mode, as in training)
        out = tiny_clip_model(*views, tokens_1, tokens_2)
        losses.append((out.loss, out.teacher_out, out.student_out))
    assert torch.allclose(losses[0][0], losses[1][0], atol=1e-5)
    assert torch.allclose(losses[0][1], losses[1][1], atol=1e-4) and torch.allclose(losses[0][2], losses[1][2],
                                                                                      atol=1e-4)
    # without the token counts the padding would count as signal
    torch.manual_seed(7)
    unmasked = tiny_clip_model(garbage_1, garbage_2, torch.full((3,), 50), torch.full((3,), 50)).loss
    assert not torch.allclose(unmasked, losses[0][0], atol=1e-3)


# ---------------------------------------------------------------------------------------------------- loss
def test_the_loss_is_cross_view_only_on_a_hand_made_batch(tiny_clip_model, monkeypatch):
    model = tiny_clip_model
    for branch in (model.student, model.teacher):
        branch.projector = nn.Identity()
    model.student.predictor = nn.Identity()
    # view 1 then view 2 of one clip: teacher t1 = (1, 0), t2 = (0, 1); student s1 = (1, 0), s2 = (1, 1)
    rows = {id(model.teacher.encoder): torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
            id(model.student.encoder): torch.tensor([[1.0, 0.0], [1.0, 1.0]])}
    monkeypatch.setattr(model, "cls", lambda encoder, mels, tokens: rows[id(encoder)])
    mel, tokens = torch.zeros(1, 64, 8), torch.tensor([2])
    loss = model(mel, mel, tokens, tokens).loss
    # 1/2 [(2 - 2 cos(s2, t1)) + (2 - 2 cos(s1, t2))] = 1/2 [(2 - sqrt 2) + 2]; the same-view pairs (cos 1 and
    # cos 1/sqrt 2) would give other values
    assert float(loss) == pytest.approx(2.0 - math.sqrt(2.0) / 2.0, abs=1e-6)


def test_the_loss_is_symmetric_in_the_views_and_trains_the_student_only(tiny_clip_model):
    model = tiny_clip_model.eval()  # no DropPath draws, running BN statistics: the two calls see the same network
    torch.manual_seed(2)
    mel_1, mel_2 = torch.randn(4, 64, 101), torch.randn(4, 64, 101)
    tokens_1, tokens_2 = torch.tensor([25, 25, 10, 3]), torch.tensor([25, 12, 25, 25])
    forward = model(mel_1, mel_2, tokens_1, tokens_2)
    swapped = model(mel_2, mel_1, tokens_2, tokens_1)
    assert torch.allclose(forward.loss, swapped.loss, atol=1e-6)
    assert forward.teacher_out.shape == forward.student_out.shape == (8, 16) and forward.clips == 4
    forward.loss.backward()
    assert model.student.encoder.cls_token.grad is not None and model.student.encoder.cls_token.grad.abs().sum() > 0
    assert model.student.encoder.mask_embed.grad is None  # unused, as in the official model
    assert all(p.grad is None for p in model.teacher.parameters())


# ------------------------------------------------------------------------------ schedules, groups, recipe
def test_the_ema_momentum_is_defined_on_every_step_including_the_last():
    # the official table has max_steps entries and is read at global_step + 1 after the last step: IndexError there
    values = [ema_momentum(step, 0.99, 7) for step in range(8)]
    assert values[0] == pytest.approx(0.99) and values[-1] == 1.0 and values == sorted(values)


def official_arrays(base: float, final: float, max_steps: int, warmup: int) -> np.ndarray:
    """The official `cosine_scheduler_step` (spec 4.5): linspace(0, base, warmup), then a cosine to `final`."""
    steps = np.arange(max_steps - warmup)
    cosine = final + 0.5 * (base - final) * (1 + np.cos(np.pi * steps / len(steps)))
    return np.concatenate([np.linspace(0, base, warmup), cosine])


def test_lr_and_weight_decay_schedules_follow_the_official_arrays():
    from pretrain.module import TeacherStudentPretrain

    _, hp = clip_args("--arch", "tiny", "--projector_hidden", "64", "--max_steps", "40", "--warmup_steps", "6",
                      "--nproc", "1", "--accelerator", "cpu")
    module = TeacherStudentPretrain(**hp)
    lr = official_arrays(hp["learning_rate"], 1e-6, 40, 6)
    wd = official_arrays(0.04, 0.4, 40, 0)
    for step in range(40):
        schedules = module.current_schedules(step)
        assert schedules["lr"] == pytest.approx(lr[step], rel=1e-9, abs=1e-12)
        assert schedules["wd"] == pytest.approx(wd[step], rel=1e-9)
    assert module.current_schedules(40) == {"lr": pytest.approx(1e-6), "wd": pytest.approx(0.4)}


def test_official_parameter_groups_of_the_clip_student():
    model = ClipATST(TINY_CLIP, hidden=64, out_dim=16)
    decay, no_decay = parameter_groups(model.student)
    names = {id(p): n for n, p in model.student.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert {"encoder.cls_token", "encoder.pos_embed", "encoder.mask_embed", "encoder.patch_embed.patch_embed.weight",
            "projector.0.weight", "predictor.3.weight"} <= decayed
    assert not any(n.endswith(".bias") for n in decayed) and no_decay["weight_decay"] == 0.0
    # ATST-Frame's 55 + cls_token; the 91 biases and norm / BN weights as ATST-Frame
    assert (len(decay["params"]), len(no_decay["params"])) == (56, 91)


@pytest.mark.parametrize("method, groups", [("frame", (55, 91)), ("clip", (56, 91))])
def test_both_methods_use_the_official_adamw_with_eps_1e_6(method, groups):
    from pretrain.module import TeacherStudentPretrain

    _, hp = clip_args("--arch", "tiny", "--projector_hidden", "64", "--max_steps", "100", "--warmup_steps", "10",
                      "--nproc", "1", "--accelerator", "cpu", method=method)
    optimizer = TeacherStudentPretrain(**hp).configure_optimizers()
    assert isinstance(optimizer, torch.optim.AdamW)
    for group in optimizer.param_groups:
        assert group["eps"] == 1e-6 and group["betas"] == (0.9, 0.999)
    assert tuple(len(group["params"]) for group in optimizer.param_groups) == groups
    assert [group["weight_decay"] for group in optimizer.param_groups] == [pytest.approx(0.04), 0.0]


def test_the_recipe_defaults_are_train_small_sh_and_the_lr_is_scaled():
    args, hp = clip_args("--nproc", "4", "--accelerator", "cpu")
    assert (hp["batch_size_per_gpu"], hp["warmup_steps"], hp["max_steps"], hp["ema"], hp["subset"],
            hp["learning_rate_per_256"], hp["train_len"], hp["positive_len"]) == (384, 1300, 39100, 0.99, 200000,
                                                                                   5e-4, 6.0, 6.0)
    assert hp["learning_rate"] == pytest.approx(3.0e-3) and hp["method"] == "clip" and hp["arch"] == "small"
    _, base = clip_args("--arch", "base", "--learning_rate", "2e-4", "--ema", "0.9995", "--warmup_steps", "15860",
                        "--max_steps", "318000", "--batch_size_per_gpu", "256", "--nproc", "6", "--accelerator",
                        "cpu")
    assert base["learning_rate"] == pytest.approx(1.2e-3)


@pytest.mark.parametrize("flags, message", [
    (["--train_len", "11"], r"--train_len 11.0 s gives 275 tokens; it must give 1..250 \(at most 10 s\)"),
    (["--positive_len", "0"], r"--positive_len must be a finite number > 0"),
    (["--train_len", "9", "--read_len", "8"], r"--read_len must be a finite number in \[9, 600\]"),
    (["--mixup_bank", "0"], r"--mixup_bank must be an integer >= 1"),
])
def test_clip_flags_are_checked(flags, message):
    args = build_parser("clip").parse_args(["--method", "clip", "--data_path", "x", "--save_path", "y", *flags])
    with pytest.raises(SystemExit, match=message):
        check_args(args)
    with pytest.raises(SystemExit):
        build_parser("clip").parse_args(["--method", "clip", "--data_path", "x", "--save_path", "y",
                                         "--short_clips", "loop"])


# ---------------------------------------------------------------------------------------------- full runs
def metric_series(save: Path, key: str) -> list[tuple[int, float]]:
    rows = []
    for path in sorted((save / "csv_logs").glob("version_*/metrics.csv")):
        with open(path, newline="") as handle:
            rows += [(int(float(r["step"])), float(r[key])) for r in csv.DictReader(handle) if r.get(key)]
    return rows


def check_clip_checkpoint(path: Path, steps: int) -> None:
    """last.ckpt: `steps` done, the official ATST-Clip layout, read by hear_atst as ATST-Clip with embeddings."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == steps and ckpt["hyper_parameters"]["method"] == "clip"
    official = torch.load(Path(os.environ.get("ATST_FIXTURES", REPO.parent / "shared" / "fixtures"))
                          / "atstclip_tiny.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert len(ckpt["state_dict"]) == 299 and set(ckpt["state_dict"]) == set(official)
    assert "model.teacher.encoder.cls_token" in ckpt["state_dict"]
    model = hear_atst.load_model(str(path))
    assert model.family == "clip"
    audio = torch.randn(2, SAMPLE_RATE) * 0.1
    scene = hear_atst.get_scene_embeddings(audio, model)
    assert scene.shape == (2, model.scene_embedding_size) and torch.isfinite(scene).all()


def test_a_run_reaches_max_steps_and_writes_an_atst_clip_checkpoint(tmp_path, door_environment):
    corpus = tmp_path / "corpus"
    write_tone_clips(corpus, n_clips=4)
    save = tmp_path / "run"
    status = main(["--method", "clip", "--arch", "tiny", "--data_path", str(corpus), "--save_path", str(save),
                   "--accelerator", "cpu", "--nproc", "1", "--batch_size_per_gpu", "2", "--train_len", "1",
                   "--positive_len", "0.5", "--read_len", "1.5", "--projector_hidden", "64", "--max_steps", "3",
                   "--warmup_steps", "1", "--num_workers", "0", "--progress", "false", "--subset", "0"])
    assert status == 0
    check_clip_checkpoint(save / "last.ckpt", 3)
    ema = metric_series(save, "ema")
    assert [step for step, _ in ema] == [0, 1, 2] and ema[-1][1] == 1.0  # the last step's momentum: m(max_steps)
    assert metric_series(save, "std_cls_t") and metric_series(save, "std_cls_s")


# ------------------------------------------------------------------------------------- slow: DDP, kill, resume
def write_clip_corpus(root: Path) -> Path:
    from atst.synthetic.corpus import make_corpus

    make_corpus(root, n_clips=8, seconds=2.0, speech=False)
    write_tone_clips(root / "short", n_clips=2)  # 0.6 and 0.7 s: shorter than the crops
    (root / "corrupt.wav").write_bytes(CORRUPT_WAV)
    return root


@pytest.mark.slow
def test_ddp_clip_run_is_killed_resumes_and_its_checkpoint_is_atst_clip(tmp_path):
    from test_pretrain_e2e import env

    corpus = write_clip_corpus(tmp_path / "corpus")
    save = tmp_path / "run"
    flags = ["--method=clip", "--arch=tiny", f"--data_path={corpus}", f"--save_path={save}", "--nproc=2",
             "--accelerator=cpu", "--batch_size_per_gpu=2", "--train_len=1.5", "--positive_len=1", "--read_len=2",
             "--projector_hidden=256", "--max_steps=16", "--warmup_steps=3", "--learning_rate=0.05", "--ema=0.99",
             "--num_workers=1", "--ckpt_every_steps=4", "--keep_every_steps=0", "--progress=false", "--subset=0"]
    command = [sys.executable, "-m", "pretrain", *flags]
    last = save / "last.ckpt"
    killed_at = kill_after_checkpoint(command, env(), last, 4)
    assert 4 <= killed_at < 16
    result = subprocess.run(command, cwd=REPO, env=env(), capture_output=True, text=True, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert f"resuming from {last} at step {killed_at}" in output
    assert "skipped 1 file(s) that could not be decoded" in output and "corrupt.wav" in output
    check_clip_checkpoint(last, 16)
    ema = dict(metric_series(save, "ema"))
    assert ema[15] == 1.0 and min(ema.values()) >= 0.99
    for key in ("std_cls_t", "std_cls_s"):
        assert min(value for _, value in metric_series(save, key)) > 0.01  # no collapse
    assert (save / "curves.png").read_bytes()[:4] == b"\x89PNG"
