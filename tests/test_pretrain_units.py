"""Unit tests of the pre-training door: masking, the ATST-Frame networks and loss, augmentations, views, flags.

The shared training kit (schedules, optimizer groups, corpus, curves, run config) is tested in tests/test_training_*.py.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from atst.encoder import arch_config
from atst.training.optim import parameter_groups
from pretrain.augment import Mixup, RandomResizeCrop, StudentAugment
from atst.training.run_folder import claim_save_path
from pretrain.cli import build_parser, check_args, hyper_parameters, main
from pretrain.masking import block_mask, make_mask, random_mask
from pretrain.methods.frame import FrameATST, ViewMaker
from conftest import SAMPLE_RATE
from pretrain.teacher_student import byol_loss

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
    # tiny has the same tensor counts as small/base: 55 decayed, 91 not (as the official checkpoints' optimizer states)
    assert (len(decay["params"]), len(no_decay["params"])) == (55, 91)


def test_optimizer_is_the_official_adamw():
    # the official optimizer: AdamW, betas (0.9, 0.999), eps 1e-6 (transformers' default), the student only, group 0 (55
    # tensors) weight-decayed by the schedule (0.04 at step 0), group 1 (91 tensors) never
    from pretrain.module import TeacherStudentPretrain

    args = build_parser().parse_args(["--data_path", "x", "--save_path", "y", "--arch", "tiny", "--nproc", "1",
                                      "--accelerator", "cpu", "--projector_hidden", "64", "--max_steps", "100",
                                      "--warmup_steps", "10"])
    module = TeacherStudentPretrain(**hyper_parameters(args, check_args(args)))
    optimizer = module.configure_optimizers()
    assert isinstance(optimizer, torch.optim.AdamW)
    decay, no_decay = optimizer.param_groups
    for group in (decay, no_decay):
        assert group["betas"] == (0.9, 0.999) and group["eps"] == 1e-6
        assert group["lr"] == pytest.approx(4e-4)  # 4e-4 per 256 x 1 device x 256 clips / 256
    assert (len(decay["params"]), len(no_decay["params"])) == (55, 91)
    assert decay["weight_decay"] == pytest.approx(0.04) and no_decay["weight_decay"] == 0.0
    student = {id(p) for p in module.model.student.parameters()}
    assert all(id(p) in student for group in (decay, no_decay) for p in group["params"])


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


# --------------------------------------------------------------------------------------------------- views
def _crops(count: int, seconds: float = 1.0) -> list[tuple[torch.Tensor, int]]:
    """Distinct harmonic 16 kHz crops (wave, valid samples)."""
    t = torch.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return [(0.3 * torch.sin(2 * math.pi * (200 + 90 * i) * t) * (1 + torch.sin(2 * math.pi * (1 + i) * t)), t.numel())
            for i in range(count)]


def test_view_maker_shapes_and_shared_mask():
    views = ViewMaker(anchor_len=1.0, mask_len=2)
    wave, _ = _crops(1)[0]
    sample = views(wave, 5000)  # 5000 samples hold ceil(5000 / 640) = 8 tokens of audio
    assert sample["mel_t"].shape == sample["mel_s"].shape == (64, 101)
    assert sample["mask"].shape == (25,) and sample["valid_tokens"] == 8
    assert sample["mask"][:8].any() and not sample["mask"][8:].any()


def test_min_mask_len_sets_the_minimum_number_of_spans():
    # --min_mask_len was parsed but ignored; 25 tokens, ratio 0.05, spans of 1: int(1.25 + u) < 5 spans drawn
    wave, valid = _crops(1)[0]
    for minimum in (2, 5):
        views = ViewMaker(anchor_len=1.0, mask_type="block", mask_ratio=0.05, mask_len=1, min_mask_len=minimum)
        assert int(views(wave, valid)["mask"].sum()) == minimum


@pytest.mark.parametrize("mix_up, freq_wrap", [(True, True), (True, False), (False, True)])
def test_student_view_is_augmented_only_when_aug_stu_is_on(mix_up, freq_wrap):
    # fails when StudentAugment (or either of its parts) is replaced by the identity
    torch.manual_seed(0)
    crops = _crops(12)
    on = ViewMaker(anchor_len=1.0, mask_len=2, aug_stu=True, mix_up=mix_up, freq_wrap=freq_wrap)
    off = ViewMaker(anchor_len=1.0, mask_len=2, aug_stu=False, mix_up=mix_up, freq_wrap=freq_wrap)
    changed = 0
    for wave, valid in crops:
        a, b = on(wave, valid), off(wave, valid)
        torch.testing.assert_close(a["mel_t"], b["mel_t"])  # the teacher view is the plain log-mel (aug_tea off)
        assert torch.equal(b["mel_s"], b["mel_t"])  # no augmentation: the student view equals the teacher view
        assert a["mel_s"].shape == a["mel_t"].shape and torch.isfinite(a["mel_s"]).all()
        changed += not torch.allclose(a["mel_s"], a["mel_t"], atol=1e-4)
    # Mixup changes every view once its bank holds an earlier input; the frequency crop changes ~44 % of them
    assert changed >= (len(crops) - 1 if mix_up else 2)


def test_teacher_view_is_augmented_when_aug_tea_is_on():
    torch.manual_seed(0)
    views = ViewMaker(anchor_len=1.0, mask_len=2, aug_tea=True, aug_stu=False)
    plain = ViewMaker(anchor_len=1.0, mask_len=2, aug_stu=False)
    crops = _crops(4)
    changed = sum(not torch.allclose(views(w, v)["mel_t"], plain(w, v)["mel_t"], atol=1e-4) for w, v in crops)
    assert changed >= 3


# ------------------------------------------------------------------------------------------------ cli/plot
def test_method_flag_defaults_to_frame_and_is_stored():
    args = build_parser().parse_args(["--data_path", "x", "--save_path", "y"])
    hp = hyper_parameters(args, check_args(args))
    assert hp["method"] == "frame"
    # the README small recipe is the frame method's default
    assert (hp["batch_size_per_gpu"], hp["warmup_steps"], hp["max_steps"], hp["ema"], hp["subset"],
            hp["learning_rate_per_256"]) == (256, 1950, 58500, 0.997, 200000, 4e-4)
    assert build_parser().parse_args(["--method", "frame", "--data_path", "x", "--save_path", "y"]).method == "frame"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--method", "nope", "--data_path", "x", "--save_path", "y"])


def test_boolean_flags_reject_other_words():
    parser = build_parser()
    assert parser.parse_args(["--data_path", "x", "--save_path", "y", "--aug_stu", "off"]).aug_stu is False
    with pytest.raises(SystemExit):
        parser.parse_args(["--data_path", "x", "--save_path", "y", "--aug_stu", "maybe"])


def test_cli_scales_lr_and_stores_every_flag():
    args = build_parser().parse_args(["--data_path", "x", "--save_path", "y", "--nproc", "4",
                                      "--batch_size_per_gpu", "256", "--learning_rate", "4e-4"])
    hp = hyper_parameters(args, check_args(args))
    assert hp["learning_rate"] == pytest.approx(0.0016) and hp["spec_h"] == 64
    for key in ("arch", "warmup_steps", "max_steps", "ema", "subset", "patch_h", "patch_w", "pos_type", "mask_type",
                "mask_ratio", "mask_len", "symmetric", "n_mels", "anchor_len", "aug_tea", "aug_stu", "seed"):
        assert key in hp


@pytest.mark.parametrize("flags, message", [
    (["--anchor_len", "12"], "anchor_len"),
    (["--patch_h", "32"], "patch_h"),
    (["--warmup_steps", "10", "--max_steps", "5"], "warmup_steps"),
    (["--precision", "16-mixed", "--accelerator", "cpu"], "16-mixed"),
    (["--patch_w", "0"], r"--patch_w must be an integer in \[1, 64\] \(mel frames per token\), got 0$"),
    (["--n_mels", "0", "--patch_h", "0"], r"--n_mels must be an integer in \[1, 512\], got 0$"),
    (["--win_length", "0"], r"--win_length must be an integer in \[1, 1024\] .*, got 0$"),
    (["--subset", "-5"], r"--subset must be an integer >= 0 \(0 = the whole corpus\), got -5$"),
    # the value typed, not the one scaled by devices x batch / 256
    (["--learning_rate", "-1", "--nproc", "4"], r"--learning_rate must be a finite number > 0 .*, got -1.0$"),
    (["--learning_rate", "inf"], r"--learning_rate must be a finite number > 0 .*, got inf$"),
    (["--anchor_len", "nan"], r"--anchor_len must be a finite number > 0 \(crop length in seconds\), got nan$"),
    (["--anchor_len", "1", "--mask_len", "30"],
     r"--mask_len must be an integer in \[1, 25\] \(tokens per mask span; a crop of --anchor_len 1.0 s has 25\), "
     r"got 30$"),
    (["--mask_ratio", "1"], r"--mask_ratio must be a finite number in \(0, 1\), got 1.0$"),
    (["--mixup_bank", "0"], r"--mixup_bank must be an integer >= 1 .*, got 0$"),
    (["--projector_hidden", "0"], r"--projector_hidden must be an integer in \[1, 65536\], got 0$"),
    (["--collapse_std", "nan"], r"--collapse_std must be a finite number >= 0, got nan$"),
    (["--ema", "1.5"], r"--ema must be a finite number in \[0, 1\] \(initial teacher momentum\), got 1.5$"),
    (["--batch_size_per_gpu", "0"], r"--batch_size_per_gpu must be an integer >= 1, got 0$"),
])
def test_cli_rejects_bad_flags(flags, message):
    args = build_parser().parse_args(["--data_path", "x", "--save_path", "y", *flags])
    with pytest.raises(SystemExit, match=message) as refused:
        check_args(args)
    assert str(refused.value).startswith("atst-pretrain: error: ")


# ------------------------------------------------------------------------------------- refused before training
@pytest.fixture
def door_environment():
    """The door sets PL_* seeding variables and logging in the process it runs in: put them back."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def _tiny(tone_corpus, save: Path, *extra: str) -> list[str]:
    return ["--arch", "tiny", "--data_path", str(tone_corpus), "--save_path", str(save), "--accelerator", "cpu",
            "--nproc", "1", "--batch_size_per_gpu", "2", "--anchor_len", "1", "--projector_hidden", "64",
            "--max_steps", "4", "--warmup_steps", "1", "--num_workers", "0", *extra]


def test_a_second_run_on_a_save_path_is_refused_before_any_work_naming_the_first(tone_corpus, tmp_path):
    save = tmp_path / "run"
    holder = claim_save_path(save, take_lock=True)  # the first run
    try:
        with pytest.raises(SystemExit, match=rf"^atst-pretrain: error: --save_path {save} is in use by another run "
                                             rf"\(PID {os.getpid()} on host "):
            main(_tiny(tone_corpus, save))
    finally:
        holder.release()
    assert sorted(p.name for p in save.iterdir()) == ["run.lock"]  # no logs, no checkpoint


def test_a_save_path_that_cannot_be_created_is_refused_up_front(tone_corpus, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit, match=rf"--save_path {tmp_path / 'file' / 'run'} cannot be created"):
        main(_tiny(tone_corpus, tmp_path / "file" / "run"))


@pytest.mark.parametrize("key, value, message", [
    ("hyper_parameters", ["arch", "tiny"], r"'hyper_parameters' must be a dict, found list"),
    ("optimizer_states", {"state": {}}, r"'optimizer_states' must be a list of optimizer states, found dict"),
    ("optimizer_states", [{"state": {}, "param_groups": "all"}],
     r"optimizer_states\[0\]\['param_groups'\] must be a list of parameter groups, found str 'all'"),
])
def test_a_mistyped_last_ckpt_is_refused_naming_the_file_and_the_key(tone_corpus, tmp_path, door_environment, key,
                                                                     value, message):
    save = tmp_path / "run"
    save.mkdir()
    torch.save({"state_dict": {}, "optimizer_states": [], "global_step": 3, key: value}, save / "last.ckpt")
    with pytest.raises(SystemExit, match=rf"^atst-pretrain: error: {save / 'last.ckpt'}: {message}; it cannot be "
                                         rf"resumed"):
        main(_tiny(tone_corpus, save))
