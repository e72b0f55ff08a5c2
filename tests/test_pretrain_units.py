"""Unit tests of the pre-training pieces: masking, schedules, EMA, parameter groups, loss, augmentations, data."""
from __future__ import annotations

import io
import math
import tarfile

import numpy as np
import pytest
import soundfile as sf
import torch

from atst.encoder import arch_config
from pretrain.augment import Mixup, RandomResizeCrop, StudentAugment
from pretrain.cli import build_parser, check_args, fill_topology, hyper_parameters, launcher_topology
from pretrain.data import (AudioDecodeError, ShardDataset, ViewMaker, collate, decode_crop, expand_braces,
                           resolve_corpus, take_subset)
from pretrain.masking import block_mask, make_mask, random_mask
from pretrain.model import FrameATST, byol_loss, parameter_groups
from pretrain.plot import plot_curves, read_metrics
from pretrain.schedules import FINAL_LR, ema_momentum, learning_rate, weight_decay

TINY = arch_config("tiny")


# ------------------------------------------------------------------------------------------------- masking
def test_block_mask_ratio_and_spans_match_the_official_recipe():
    gen = torch.Generator().manual_seed(0)
    fractions = []
    for _ in range(200):
        mask = block_mask(250, 0.65, 5, generator=gen)
        fractions.append(mask.float().mean().item())
        # every masked run is made of whole spans: no run shorter than mask_len
        padded = torch.cat([torch.tensor([False]), mask, torch.tensor([False])]).int()
        edges = torch.diff(padded)
        runs = (torch.nonzero(edges == -1) - torch.nonzero(edges == 1)).flatten()
        assert runs.min() >= 5
    # 32-33 overlapping spans of 5 tokens cover about half of 250 tokens (official effective ratio ~0.50)
    assert 0.45 < np.mean(fractions) < 0.55
    assert max(fractions) <= 33 * 5 / 250


def test_block_mask_can_reach_the_last_token():
    gen = torch.Generator().manual_seed(1)
    assert any(bool(block_mask(20, 0.65, 5, generator=gen)[-1]) for _ in range(200))


def test_random_mask_exact_count():
    gen = torch.Generator().manual_seed(0)
    assert int(random_mask(250, 0.65, generator=gen).sum()) == math.ceil(0.65 * 250)


@pytest.mark.parametrize("mask_type", ["block", "random"])
def test_masks_only_cover_valid_tokens_and_are_seeded(mask_type):
    for valid in (1, 3, 7, 50):
        mask = make_mask(50, valid, mask_type, 0.65, 5, torch.Generator().manual_seed(3))
        assert mask.shape == (50,) and mask.dtype == torch.bool
        assert not mask[valid:].any() and mask[:valid].any()
    a = make_mask(250, 200, mask_type, 0.65, 5, torch.Generator().manual_seed(7))
    b = make_mask(250, 200, mask_type, 0.65, 5, torch.Generator().manual_seed(7))
    c = make_mask(250, 200, mask_type, 0.65, 5, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_mask_bad_arguments_raise():
    with pytest.raises(ValueError, match="mask_type"):
        make_mask(10, 10, "uniform", 0.5, 2)
    with pytest.raises(ValueError, match="mask_ratio"):
        make_mask(10, 10, "block", 1.5, 2)
    with pytest.raises(ValueError, match="valid_tokens"):
        make_mask(10, 11, "block", 0.5, 2)


# ----------------------------------------------------------------------------------------------- schedules
def test_learning_rate_warmup_endpoints_and_cosine():
    lr, warm, total = 1e-3, 10, 100
    assert learning_rate(0, lr, warm, total) == 0.0
    assert learning_rate(warm - 1, lr, warm, total) == pytest.approx(lr)
    assert learning_rate(warm, lr, warm, total) == pytest.approx(lr)  # first cosine step (i = 0)
    values = [learning_rate(s, lr, warm, total) for s in range(warm, total + 1)]
    assert all(a >= b for a, b in zip(values, values[1:]))  # monotone decay
    mid = warm + (total - warm) // 2
    assert learning_rate(mid, lr, warm, total) == pytest.approx(FINAL_LR + 0.5 * (lr - FINAL_LR))
    assert learning_rate(total, lr, warm, total) == pytest.approx(FINAL_LR)
    assert learning_rate(total + 5, lr, warm, total) == pytest.approx(FINAL_LR)  # clamped, not an error


def test_weight_decay_cosine_end_points():
    assert weight_decay(0, 100) == pytest.approx(0.04)
    assert weight_decay(50, 100) == pytest.approx(0.22)
    assert weight_decay(100, 100) == pytest.approx(0.4)


def test_ema_schedule_defined_on_every_step_within_bounds():
    total, base = 37, 0.996
    values = [ema_momentum(step, base, total) for step in range(total + 1)]  # includes step == max_steps
    assert values[0] == pytest.approx(base) and values[-1] == pytest.approx(1.0)
    assert all(base - 1e-12 <= v <= 1.0 for v in values)
    assert all(a <= b for a, b in zip(values, values[1:]))
    with pytest.raises(ValueError):
        ema_momentum(-1, base, total)


# --------------------------------------------------------------------------------------------------- model
@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return FrameATST(TINY, hidden=128, out_dim=32)


def test_state_dict_has_the_official_layout(tiny_model):
    prefixes = {".".join(k.split(".")[:2]) for k in tiny_model.state_dict()}
    assert prefixes == {"student.encoder", "student.projector", "student.predictor", "teacher.encoder",
                        "teacher.projector"}
    keys = set(tiny_model.state_dict())
    assert {"student.projector.0.weight", "student.projector.1.running_var", "student.projector.3.weight",
            "student.projector.1.num_batches_tracked"} <= keys
    assert "student.projector.0.bias" not in keys
    assert not any(p.requires_grad for p in tiny_model.teacher.parameters())


def test_parameter_groups_are_the_official_ones(tiny_model):
    decay, no_decay = parameter_groups(tiny_model.student)
    names = {id(p): n for n, p in tiny_model.student.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert "encoder.pos_embed" in decayed and "encoder.mask_embed" in decayed
    assert "encoder.blocks.0.attn.qkv.weight" in decayed
    assert not any(n.endswith(".bias") for n in decayed)
    assert all(p.ndim == 1 for p in no_decay["params"]) and no_decay["weight_decay"] == 0.0
    # tiny has the same tensor counts as small/base: 55 decayed, 91 not (spec 5)
    assert (len(decay["params"]), len(no_decay["params"])) == (55, 91)


def test_ema_update_moves_teacher_towards_student():
    model = FrameATST(TINY, hidden=64, out_dim=16)
    with torch.no_grad():
        for p in model.student.parameters():
            p.add_(1.0)
    before = [p.clone() for p in model.teacher.parameters()]
    student = [p.clone() for p in model.student.parameters()]
    model.update_teacher(0.9)
    for old, new, stu in zip(before, model.teacher.parameters(), student):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * stu)
    model.update_teacher(1.0)
    for a, b in zip(model.teacher.parameters(), [0.9 * o + 0.1 * s for o, s in zip(before, student)]):
        torch.testing.assert_close(a, b)


def test_byol_loss_values_and_symmetry():
    x = torch.randn(20, 8)
    assert byol_loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    assert byol_loss(x, -x).item() == pytest.approx(4.0, abs=1e-5)
    y = torch.randn(20, 8)
    assert byol_loss(x, y).item() == pytest.approx(byol_loss(y, x).item(), abs=1e-6)
    assert byol_loss(3 * x, y).item() == pytest.approx(byol_loss(x, y).item(), abs=1e-6)  # scale-free
    with pytest.raises(ValueError, match="shape"):
        byol_loss(x, y[:3])


def test_symmetric_loss_is_symmetric_in_the_views(tiny_model):
    model = tiny_model.eval()  # no DropPath / batch statistics: deterministic forwards
    torch.manual_seed(1)
    a, b = torch.randn(2, 64, 101), torch.randn(2, 64, 101)
    mask = torch.stack([make_mask(25, 25, "block", 0.65, 5, torch.Generator().manual_seed(i)) for i in range(2)])
    lengths = torch.tensor([25, 25])
    ab = model(a, b, mask, lengths).loss
    ba = model(b, a, mask, lengths).loss
    torch.testing.assert_close(ab, ba)
    out = model(a, b, mask, lengths)
    assert out.teacher_out.shape == (2 * int(mask.sum()), 32) == out.student_out.shape
    model.train()


def test_loss_gradients_reach_the_student_only(tiny_model):
    model = tiny_model.train()
    mask = torch.zeros(2, 25, dtype=torch.bool)
    mask[:, 5:15] = True
    out = model(torch.randn(2, 64, 101), torch.randn(2, 64, 101), mask, torch.tensor([25, 20]))
    out.loss.backward()
    assert model.student.encoder.mask_embed.grad is not None and model.student.predictor[0].weight.grad is not None
    assert all(p.grad is None for p in model.teacher.parameters())
    model.zero_grad()


# -------------------------------------------------------------------------------------------- augmentations
def test_mixup_keeps_shape_and_stays_between_its_inputs():
    torch.manual_seed(0)
    mixup = Mixup(bank_size=4)
    first = torch.rand(64, 51) * 2 - 1
    assert torch.equal(mixup(first), first)  # empty bank: no mixing
    second = torch.rand(64, 51) * 2 - 1
    mixed = mixup(second)
    assert mixed.shape == second.shape and not torch.equal(mixed, second)
    low, high = torch.minimum(first, second), torch.maximum(first, second)
    assert bool((mixed >= low - 1e-5).all() and (mixed <= high + 1e-5).all())
    for _ in range(10):
        mixup(torch.zeros(64, 51))
    assert len(mixup.bank) == 4


def test_random_resize_crop_keeps_shape_time_alignment_and_range():
    torch.manual_seed(0)
    crop = RandomResizeCrop()
    mel = torch.rand(64, 40) * 2 - 1
    changed = 0
    for _ in range(20):
        torch.manual_seed(_)
        out = crop(mel)
        assert out.shape == mel.shape and torch.isfinite(out).all()
        span = float(mel.max() - mel.min())
        assert float(out.min()) >= float(mel.min()) - 0.25 * span and float(out.max()) <= float(mel.max()) + 0.25 * span
        # frequency-only: permuting time columns before == permuting after
        perm = torch.randperm(40)
        torch.manual_seed(_)
        torch.testing.assert_close(crop(mel[:, perm]), out[:, perm])
        changed += not torch.equal(out, mel)
    assert changed > 0
    with pytest.raises(ValueError, match="n_mels, frames"):
        crop(torch.zeros(1, 64, 40))


def test_student_augment_shape():
    aug = StudentAugment(bank_size=8)
    for _ in range(3):
        assert aug(torch.rand(64, 201)).shape == (64, 201)


# ---------------------------------------------------------------------------------------------------- data
def _wav_bytes(seconds: float, rate: int, channels: int = 1) -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    sf.write(buffer, (0.1 * rng.standard_normal((int(seconds * rate), channels))).astype(np.float32), rate,
             format="WAV")
    return buffer.getvalue()


def test_decode_crop_resamples_downmixes_and_pads(tmp_path):
    path = tmp_path / "stereo.wav"
    path.write_bytes(_wav_bytes(0.5, 44100, channels=2))
    wave, valid = decode_crop(str(path), 2.0)
    assert wave.shape == (32000,) and wave.dtype == torch.float32
    assert abs(valid - 8000) <= 2 and float(wave[valid:].abs().max()) == 0.0
    long = tmp_path / "long.wav"
    long.write_bytes(_wav_bytes(5.0, 22050))
    wave, valid = decode_crop(str(long), 2.0)
    assert wave.shape == (32000,) and valid == 32000
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really")
    with pytest.raises(AudioDecodeError, match="bad.wav"):
        decode_crop(str(bad), 2.0)


def test_resolve_corpus_kinds(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/x.wav", "a/b/y.flac"):
        (tmp_path / name).write_bytes(_wav_bytes(0.2, 16000))
    corpus = resolve_corpus(tmp_path)
    assert corpus.kind == "files" and len(corpus.items) == 2
    manifest = tmp_path / "list.csv"
    manifest.write_text("path,label\na/x.wav,1\na/b/y.flac,0\n")
    assert resolve_corpus(manifest).items == (str(tmp_path / "a/x.wav"), str(tmp_path / "a/b/y.flac"))
    tsv = tmp_path / "list.tsv"
    tsv.write_text(f"{tmp_path / 'a/x.wav'}\t3.0\n")
    assert resolve_corpus(tsv).items == (str(tmp_path / "a/x.wav"),)
    shards = tmp_path / "shards"
    shards.mkdir()
    for i in range(3):
        with tarfile.open(shards / f"{i:06d}.tar", "w"):
            pass
    corpus = resolve_corpus(str(shards / "{000000..000002}.tar"))
    assert corpus.kind == "shards" and len(corpus.items) == 3
    with pytest.raises(FileNotFoundError, match="do not exist"):
        resolve_corpus(str(shards / "{000000..000009}.tar"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_corpus(tmp_path / "nope")
    assert expand_braces("s/{08..10}.tar") == ["s/08.tar", "s/09.tar", "s/10.tar"]


def test_subset_is_fixed_and_sized():
    items = tuple(f"f{i}" for i in range(100))
    assert take_subset(items, 10) == take_subset(items, 10) and len(take_subset(items, 10)) == 10
    assert take_subset(items, 0) == items


def test_shard_stream_splits_consumers_and_skips_corrupt_members(tmp_path):
    shard = tmp_path / "000000.tar"
    with tarfile.open(shard, "w") as archive:
        for i in range(6):
            payload = _wav_bytes(0.3, 8000) if i != 2 else b"garbage"
            info = tarfile.TarInfo(f"clip{i}.wav")
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    views = ViewMaker(anchor_len=1.0, mask_len=2)
    seen = []
    for rank in range(2):
        stream = iter(ShardDataset((str(shard),), views, rank=rank, world_size=2, shuffle_buffer=1))
        samples = [next(stream) for _ in range(4)]
        seen.append(samples)
        batch = collate(samples)
        assert batch["mel_t"].shape == (4, 64, 101) and batch["mask"].shape == (4, 25)
        assert bool((batch["valid_tokens"] <= 25).all())
    skipped = [p for samples in seen for s in samples for p in s["skipped"]]
    assert skipped and all(p.endswith("clip2.wav") for p in skipped)


# ------------------------------------------------------------------------------------------------ cli/plot
def test_cli_scales_lr_and_stores_every_flag():
    args = build_parser().parse_args(["--data_path", "x", "--save_path", "y", "--nproc", "4",
                                      "--batch_size_per_gpu", "256", "--learning_rate", "4e-4"])
    fill_topology(args)
    check_args(args)
    hp = hyper_parameters(args)
    assert hp["learning_rate"] == pytest.approx(0.0016) and hp["spec_h"] == 64
    for key in ("arch", "warmup_steps", "max_steps", "ema", "subset", "patch_h", "patch_w", "pos_type", "mask_type",
                "mask_ratio", "mask_len", "symmetric", "n_mels", "anchor_len", "aug_tea", "aug_stu", "seed"):
        assert key in hp


@pytest.mark.parametrize("flags, message", [
    (["--anchor_len", "12"], "anchor_len"),
    (["--patch_h", "32"], "patch_h"),
    (["--warmup_steps", "10", "--max_steps", "5"], "warmup_steps"),
    (["--precision", "16-mixed", "--accelerator", "cpu"], "16-mixed"),
])
def test_cli_rejects_bad_flags(flags, message):
    args = build_parser().parse_args(["--data_path", "x", "--save_path", "y", *flags])
    fill_topology(args)
    with pytest.raises(SystemExit, match=message):
        check_args(args)


def test_plot_merges_versions(tmp_path):
    for version, rows in enumerate([[(0, 2.0), (1, 1.8)], [(1, 1.7), (2, 1.5)]]):
        folder = tmp_path / "csv_logs" / f"version_{version}"
        folder.mkdir(parents=True)
        (folder / "metrics.csv").write_text("loss,step\n" + "".join(f"{v},{s}\n" for s, v in rows))
    metrics = read_metrics(tmp_path)
    assert metrics["loss"] == [(0, 2.0), (1, 1.7), (2, 1.5)]
    png = plot_curves(tmp_path, tmp_path / "c.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(FileNotFoundError):
        read_metrics(tmp_path / "empty")


def test_topology_comes_from_torchrun_or_slurm():
    assert launcher_topology({}) == (1, 1)
    assert launcher_topology({"LOCAL_WORLD_SIZE": "4", "WORLD_SIZE": "16"}) == (4, 4)
    assert launcher_topology({"SLURM_NTASKS_PER_NODE": "8(x2)", "SLURM_NNODES": "2"}) == (8, 2)
