"""The training kit's optimisation pieces: closed-form schedules, layer-wise LR decay (the downstream specs'
numbers), per-group learning rates, the EMA update."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from atst.encoder import ATSTEncoder, arch_config
from atst.training.ema import ema_update
from atst.training.optim import encoder_layer_id, layer_decay_groups, set_learning_rate
from atst.training.schedules import FINAL_LR, ema_momentum, learning_rate, weight_decay

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


# ------------------------------------------------------------------------------------------ layer-wise decay
@pytest.fixture(scope="module")
def frame_encoder() -> ATSTEncoder:
    return ATSTEncoder(arch_config("tiny"))


def _names(module: nn.Module, group: dict) -> set[str]:
    ids = {id(p) for p in group["params"]}
    return {name for name, p in module.named_parameters() if id(p) in ids}


def test_finetune_layer_decay_reproduces_layer_wise_lr_groups(frame_encoder):
    # the official clip fine-tuning and C2F groups: d = 0.75, s_k = d^(12 - k); embeddings and block 0
    # d^12 = 0.0317, block 11 0.75, final norm 0.75 (not 1.0), head 1.0
    head = nn.Linear(192, 10)
    groups = layer_decay_groups(frame_encoder, 0.75, depth=12, head=head)
    assert [g["name"] for g in groups] == ["embed", *[f"blocks.{k}" for k in range(12)], "norm", "head"]
    scales = {g["name"]: g["lr_scale"] for g in groups}
    assert scales["embed"] == pytest.approx(0.0317, abs=5e-5)
    assert scales["embed"] == pytest.approx(0.75**12)
    assert scales["blocks.0"] == pytest.approx(0.75**12)
    for k in range(12):
        assert scales[f"blocks.{k}"] == pytest.approx(0.75 ** (12 - k))
    assert scales["blocks.11"] == scales["norm"] == pytest.approx(0.75) and scales["head"] == 1.0
    assert _names(frame_encoder, groups[0]) == {"mask_embed", "pos_embed", "patch_embed.patch_embed.weight",
                                                "patch_embed.patch_embed.bias"}
    assert _names(frame_encoder, groups[-2]) == {"norm_frame.weight", "norm_frame.bias"}
    # every trainable tensor in exactly one group
    grouped = [id(p) for g in groups for p in g["params"]]
    assert len(grouped) == len(set(grouped)) == len(list(frame_encoder.parameters())) + 2
    frozen = layer_decay_groups(frame_encoder, 0.75, depth=12, freeze_embed=True)
    assert frozen[0]["lr_scale"] == 0.0 and len(frozen) == 14  # no head given


def test_finetune_layer_decay_puts_the_clip_cls_token_with_the_embeddings():
    encoder = ATSTEncoder(arch_config("tiny", family="clip"))
    groups = layer_decay_groups(encoder, 0.75, depth=12)
    assert "cls_token" in _names(encoder, groups[0]) and groups[0]["lr_scale"] == pytest.approx(0.75**12)
    assert groups[-1]["name"] == "norm" and _names(encoder, groups[-1]) == {"norm.weight", "norm.bias"}


def test_as_strong_layer_decay_gives_the_fifteen_groups_of_the_spec(frame_encoder):
    # the official AudioSet-strong groups with the frame script's lr 1e-3 and lr_scale s = 0.75: norm_frame lr, blocks.11 lr s,
    # blocks.(12 - k) lr s^k, blocks.0 lr s^12, the rest (patch_embed, pos_embed; mask_embed frozen) lr s^13, head lr
    frame_encoder.mask_embed.requires_grad_(False)
    try:
        head = nn.Linear(192, 407)
        groups = layer_decay_groups(frame_encoder, 0.75, depth=12, head=head, scheme="as_strong")
        optimizer = torch.optim.SGD(groups, lr=0.0, momentum=0.9)
        set_learning_rate(optimizer, 1e-3)
        peak = {g["name"]: g["lr"] for g in optimizer.param_groups}
        assert len(groups) == 15
        assert peak["norm"] == pytest.approx(1e-3) and peak["head"] == pytest.approx(1e-3)
        assert peak["blocks.11"] == pytest.approx(7.5e-4)
        for k in range(1, 13):
            assert peak[f"blocks.{12 - k}"] == pytest.approx(1e-3 * 0.75**k)
        assert peak["blocks.0"] == pytest.approx(3.1676e-5, rel=1e-4)
        assert peak["embed"] == pytest.approx(1e-3 * 0.75**13)
        assert peak["embed"] == pytest.approx(2.3757e-5, rel=1e-4)
        assert "mask_embed" not in _names(frame_encoder, groups[0])
        # the final LR 1e-6 scales the same way: schedule value x scale
        set_learning_rate(optimizer, FINAL_LR)
        assert optimizer.param_groups[1]["lr"] == pytest.approx(1e-6 * 0.75**12)
    finally:
        frame_encoder.mask_embed.requires_grad_(True)


def test_layer_ids_and_bad_names():
    assert encoder_layer_id("pos_embed", 12) == 0 == encoder_layer_id("patch_embed.patch_embed.weight", 12, "as_strong")
    assert encoder_layer_id("blocks.3.mlp.fc1.weight", 12) == 3
    assert encoder_layer_id("blocks.3.mlp.fc1.weight", 12, "as_strong") == 4
    assert encoder_layer_id("norm_frame.weight", 12) == 11 and encoder_layer_id("norm.bias", 12, "as_strong") == 13
    with pytest.raises(ValueError, match="prompt_embed"):
        encoder_layer_id("prompt_embed", 12)
    with pytest.raises(ValueError, match="block 12"):
        encoder_layer_id("blocks.12.norm1.weight", 12)
    with pytest.raises(ValueError, match="scheme"):
        encoder_layer_id("pos_embed", 12, "beit")
    with pytest.raises(ValueError, match="decay"):
        layer_decay_groups(nn.Linear(2, 2), 0.0, depth=12)


def test_set_learning_rate_defaults_to_scale_one():
    optimizer = torch.optim.SGD([{"params": [nn.Parameter(torch.zeros(2))]},
                                 {"params": [nn.Parameter(torch.zeros(2))], "lr_scale": 0.5}], lr=1.0)
    set_learning_rate(optimizer, 0.2)
    assert [g["lr"] for g in optimizer.param_groups] == [0.2, 0.1]


# ------------------------------------------------------------------------------------------------------- EMA
def test_ema_update_of_modules_and_tensor_lists():
    torch.manual_seed(0)
    teacher, student = nn.Linear(3, 2), nn.Linear(3, 2)
    before = [p.clone() for p in teacher.parameters()]
    ema_update(teacher, student, 0.75)
    for old, new, stu in zip(before, teacher.parameters(), student.parameters()):
        torch.testing.assert_close(new, 0.75 * old + 0.25 * stu)
    ema_update(teacher, student, 0.0)  # momentum 0 copies the student
    for new, stu in zip(teacher.parameters(), student.parameters()):
        torch.testing.assert_close(new, stu)
    a, b = [torch.ones(2)], [torch.zeros(2)]
    ema_update(a, b, 1.0)  # momentum 1 keeps the teacher
    assert torch.equal(a[0], torch.ones(2))


def test_ema_update_refuses_mismatched_pairs():
    with pytest.raises(ValueError, match="pair up"):
        ema_update(nn.Linear(3, 2), nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2)), 0.9)
    with pytest.raises(ValueError, match="shape"):
        ema_update([torch.zeros(2)], [torch.zeros(3)], 0.9)
    with pytest.raises(ValueError, match="momentum"):
        ema_update([torch.zeros(2)], [torch.zeros(2)], 1.5)
