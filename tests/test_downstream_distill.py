"""`atst-downstream distill` (ATST-C2F): the loss is the formula on hand-made logits and in the module, the teacher
stays frozen (bitwise) and in eval mode (train mode with --teacher-train-mode), a run moves the student towards the
teacher and writes a model file that `predict` and `hear_atst` read, the C2F defaults, and the usage errors."""
from __future__ import annotations

import csv
import json
import math
from dataclasses import replace

import pytest
import torch

from atst import load_checkpoint
from atst.frontend import FrontendConfig
from atst.synthetic import make_tasks
from downstream.cli import main
from downstream.datasets import load_task
from downstream.distill.config import DistillConfig
from downstream.distill.defaults import c2f_defaults, default_weight
from downstream.distill.loss import agreement, distillation_loss
from downstream.distill.module import DistillModule
from downstream.distill.teacher import FrozenTeacher, check_frontends, read_teacher
from downstream.finetune.config import resolve_recipe
from downstream.finetune.data import ClipMels, MelClipDataset, collate_mels
from downstream.finetune.model import FinetuneModel
from downstream.finetune.schedule import FinetuneSchedule
from downstream.model_file import ENCODER_PREFIX, HEAD_PREFIX, read_model_file

FAST = ["--batch_size_per_gpu", "4", "--num_workers", "0", "--accelerator", "cpu", "--progress", "false",
        "--progress_every", "0"]
# a confident teacher in a few seconds: no mixup (cross-entropy), a large LR
TEACHER_RECIPE = ["--max_epochs", "8", "--warmup_epochs", "1", "--learning_rate", "16", "--mixup_training", "false"]
STUDENT_RECIPE = ["--max_epochs", "6", "--warmup_epochs", "1", "--learning_rate", "16", "--mixup_training", "false"]


@pytest.fixture(autouse=True)
def no_audio_cache(monkeypatch):
    monkeypatch.setenv("ATST_AUDIO_CACHE", "off")


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill_tasks")
    return {p.name.split("-")[0]: p for p in make_tasks(root, size="tiny", seed=5,
                                                        tasks=["synth_scene", "synth_timbre"])}


@pytest.fixture(scope="module")
def teacher(fixtures, tasks, tmp_path_factory):
    """The --out folder of `finetune` of the tiny ATST-Clip fixture on synth_scene (official read-out: 6 s chunks,
    CLS + token mean), read-only."""
    out = tmp_path_factory.mktemp("teacher") / "clip"
    assert main(["finetune", "--ckpt", str(fixtures / "atstclip_tiny.ckpt"), "--task", str(tasks["synth_scene"]),
                 "--out", str(out), *TEACHER_RECIPE, *FAST]) == 0
    return out


def _bce(logits: list, targets: list) -> float:
    """Mean over every entry of -(t log sigmoid(s) + (1 - t) log(1 - sigmoid(s))), by hand."""
    terms = [-(t * math.log(1 / (1 + math.exp(-s))) + (1 - t) * math.log(1 - 1 / (1 + math.exp(-s))))
             for row_s, row_t in zip(logits, targets) for s, t in zip(row_s, row_t)]
    return sum(terms) / len(terms)


def _log_softmax(row: list) -> list:
    top = math.log(sum(math.exp(v) for v in row))
    return [v - top for v in row]


# -------------------------------------------------------------------------------------------------- the loss

STUDENT = [[2.0, -1.0, 0.5], [0.0, 1.0, -2.0]]
TEACHER = [[1.0, 0.0, -1.0], [-0.5, 2.0, 0.3]]


@pytest.mark.parametrize("weight", [0.5, 1.0])
def test_the_loss_is_the_formula_on_a_hand_made_batch(weight):
    student, teacher = torch.tensor(STUDENT), torch.tensor(TEACHER)
    # multi-label (or mixup): w * BCE(student, sigmoid(teacher)) + (1 - w) * BCE(student, y)
    multi_hot = [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    soft = [[1 / (1 + math.exp(-t)) for t in row] for row in TEACHER]
    expected = weight * _bce(STUDENT, soft) + (1 - weight) * _bce(STUDENT, multi_hot)
    loss, distill, task = distillation_loss(student, teacher, torch.tensor(multi_hot), bce=True, weight=weight)
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert float(distill) == pytest.approx(_bce(STUDENT, soft), rel=1e-6)
    # single-label without mixup: w * CE(student, softmax(teacher)) + (1 - w) * CE(student, label)
    labels = [0, 1]
    q = [[math.exp(v) for v in _log_softmax(row)] for row in TEACHER]
    soft_ce = sum(-sum(qi * li for qi, li in zip(q_row, _log_softmax(s_row))) for q_row, s_row in zip(q, STUDENT)) / 2
    hard_ce = sum(-_log_softmax(s_row)[label] for s_row, label in zip(STUDENT, labels)) / 2
    loss, distill, task = distillation_loss(student, teacher, torch.tensor(labels), bce=False, weight=weight)
    assert float(loss) == pytest.approx(weight * soft_ce + (1 - weight) * hard_ce, rel=1e-6)
    assert (float(distill), float(task)) == pytest.approx((soft_ce, hard_ce), rel=1e-6)
    # with mixup on a single-label task the targets are one-hot vectors and the form is BCE (spec 3.3)
    one_hot = torch.nn.functional.one_hot(torch.tensor(labels), 3).float()
    loss, _, _ = distillation_loss(student, teacher, one_hot, bce=True, weight=weight)
    assert float(loss) == pytest.approx(weight * _bce(STUDENT, soft) + (1 - weight) * _bce(STUDENT, one_hot.tolist()),
                                        rel=1e-6)


def test_agreement_is_the_top1_match_rate():
    student, teacher = torch.tensor(STUDENT), torch.tensor(TEACHER)
    assert agreement(student, teacher) == 1.0  # argmax 0 / 0 and 1 / 1
    assert agreement(student, teacher[:, [1, 0, 2]]) == 0.0
    assert math.isnan(agreement(student[:0], teacher[:0]))


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")  # compute_loss outside a Trainer
@pytest.mark.parametrize("bce", [True, False])
def test_the_module_loss_feeds_both_networks_the_same_batch(fixtures, tasks, teacher, bce):
    task = load_task(str(tasks["synth_scene"]))
    loaded = load_checkpoint(fixtures / "atstframe_tiny.ckpt")
    student = FinetuneModel.from_checkpoint(loaded, "official", 1, task.labels.num_labels)
    frozen = FrozenTeacher.build(read_teacher(str(teacher), task))
    module = DistillModule(student, frozen, 0.5, {"layerwise_lr": 0.75}, FinetuneSchedule.build(1.0, 2, 1, 3, 3,
                                                                                                "exact"),
                           3, task.metric, bce, "last").eval()
    mels = ClipMels(student.backbone.frontend, loaded.config.patch_w, "official", "frame")
    batch = collate_mels([MelClipDataset(task.splits["train"], task.labels, mels, one_hot=bce)[i] for i in range(4)])
    with torch.no_grad():
        s, t = student(batch["mel"], batch["frames"]), frozen(batch["mel"], batch["frames"])
        expected, _, _ = distillation_loss(s, t, batch["targets"], bce, 0.5)
        assert torch.equal(module.compute_loss(batch), expected)
    # the teacher's logits come from its own encoder, read-out and head (its model file), not the student's
    file = read_model_file(teacher)
    assert frozen.model.clip_train_len == 6.0 and frozen.model.protocol == "official"
    assert torch.equal(frozen.model.head.linear.weight, file.head_state["linear.weight"])
    assert not any(p.requires_grad for p in frozen.parameters())


# ------------------------------------------------------------------------------------ the teacher in a run

def _teacher_state(path) -> dict:
    state = torch.load(read_model_file(path).path, weights_only=True)["state_dict"]
    out = {f"teacher.model.backbone.encoder.{k[len(ENCODER_PREFIX):]}": v for k, v in state.items()
           if k.startswith(ENCODER_PREFIX)}
    out.update({f"teacher.model.head.{k[len(HEAD_PREFIX):]}": v for k, v in state.items() if k.startswith(HEAD_PREFIX)})
    return out


@pytest.mark.parametrize("train_mode", [False, True], ids=["eval", "train_mode"])
def test_the_teacher_stays_frozen_and_in_its_mode(fixtures, tasks, teacher, tmp_path, monkeypatch, train_mode):
    seen: list[dict] = []
    probe = torch.linspace(-1, 1, 2 * 64 * 101).reshape(2, 64, 101)
    original = DistillModule.compute_loss

    def recording(self, batch):
        record = {"modes": {m.training for m in self.teacher.modules()}, "student": self.model.training,
                  "grad": any(p.requires_grad or p.grad is not None for p in self.teacher.parameters())}
        if not train_mode:  # (a train-mode probe would move the head's running statistics)
            record["probe"] = self.teacher(probe, torch.tensor([101, 101])).clone()
        seen.append(record)
        return original(self, batch)

    monkeypatch.setattr(DistillModule, "compute_loss", recording)
    out = tmp_path / "run"
    assert main(["distill", "--teacher", str(teacher), "--ckpt", str(fixtures / "atstframe_tiny.ckpt"), "--task",
                 str(tasks["synth_scene"]), "--out", str(out), "--max_epochs", "2", "--warmup_epochs", "1", *FAST]
                + (["--teacher-train-mode"] if train_mode else [])) == 0
    assert len(seen) == 6 and all(r["student"] for r in seen) and not any(r["grad"] for r in seen)
    assert all(r["modes"] == {train_mode} for r in seen)  # every teacher module, every step (across epochs)
    saved = torch.load(out / "last.ckpt", weights_only=True)["state_dict"]
    reference = _teacher_state(teacher)
    assert set(reference) == {k for k in saved if k.startswith("teacher.")}
    params = {k for k in reference if "running_" not in k and "num_batches" not in k}
    assert all(torch.equal(saved[k], reference[k]) for k in params)  # parameters: bitwise the teacher file's
    moved = [k for k in reference if k not in params and not torch.equal(saved[k], reference[k])]
    if train_mode:  # the official behaviour: the head's batch norm keeps updating its running statistics
        assert "teacher.model.head.norm.running_mean" in moved
    else:
        assert not moved
        assert all(torch.equal(r["probe"], seen[0]["probe"]) for r in seen)
        fresh = FrozenTeacher.build(read_teacher(str(teacher), load_task(str(tasks["synth_scene"]))))
        assert torch.equal(fresh(probe, torch.tensor([101, 101])), seen[0]["probe"])
    results = json.loads((out / "results.json").read_text())
    assert results["distillation"]["teacher"]["train_mode"] is train_mode
    teacher_scores = {e["teacher"] for e in results["epochs"]}
    assert len(teacher_scores) == 1 or train_mode  # eval mode: the teacher's validation score never moves


# --------------------------------------------------------------------------------------------- a whole run

def _distill(fixtures, tasks, teacher, out, weight):
    args = ["distill", "--teacher", str(teacher), "--ckpt", str(fixtures / "atstframe_tiny.ckpt"), "--task",
            str(tasks["synth_scene"]), "--out", str(out), "--distill-weight", str(weight), *STUDENT_RECIPE, *FAST]
    assert main(args) == 0
    return args, json.loads((out / "results.json").read_text())


def test_a_run_moves_the_student_towards_the_teacher_and_writes_a_model_file(fixtures, tasks, teacher, tmp_path,
                                                                             capsys):
    args, results = _distill(fixtures, tasks, teacher, tmp_path / "w1", 1.0)
    out = capsys.readouterr().out
    assert "teacher test top1_acc" in out and "test agreement" in out
    distill = results["distillation"]
    before, after = distill["initial_valid"], results["epochs"][-1]
    assert after["agreement"] > before["agreement"] and after["distill_loss"] < 0.5 * before["distill_loss"]
    assert distill["valid_agreement"] == {"before": before["agreement"], "after": after["agreement"],
                                          "selected": after["agreement"]}  # official: the last epoch
    assert results["kind"] == "distillation" and results["selected"]["rule"] == "last"
    assert distill["teacher_test"] == read_model_file(teacher).info["test"]  # its own read-out, eval mode
    assert distill["loss"] == "1 x cross-entropy towards softmax(teacher logits) + 0 x cross-entropy on the labels"
    assert "## Distillation" in (tmp_path / "w1" / "results.md").read_text()
    assert (tmp_path / "w1" / "curves.png").stat().st_size > 0
    rows = (next((tmp_path / "w1" / "csv_logs").glob("version_*")) / "metrics.csv").read_text().splitlines()[0]
    assert {"loss_distill", "loss_task", "valid_agreement", "valid_distill_loss"} <= set(rows.split(","))
    # the label loss alone (w = 0), same seed: the student ends further from the teacher
    _, control = _distill(fixtures, tasks, teacher, tmp_path / "w0", 0.0)
    assert control["epochs"][-1]["distill_loss"] > after["distill_loss"]

    # the model file: an ordinary downstream model (predict, hear_atst), with the teacher described
    model = read_model_file(tmp_path / "w1")
    assert model.kind == "distill" and model.info["distill_weight"] == 1.0
    assert model.info["teacher"]["family"] == "clip" and model.info["readout"]["family"] == "frame"
    clips = tasks["synth_scene"] / "16000"
    assert main(["predict", "--model", str(tmp_path / "w1"), str(clips), "--out", str(tmp_path / "p.csv"),
                 "--quiet"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "p.csv", newline="")))
    assert len(rows) == 30 and rows[0]["label_1"] in model.labels
    import hear_atst

    embedder = hear_atst.load_model(str(tmp_path / "w1" / "best.ckpt"))
    stock = hear_atst.load_model(str(fixtures / "atstframe_tiny.ckpt"))
    assert hear_atst.get_scene_embeddings(torch.zeros(1, 16000), embedder).shape == \
        (1, stock.scene_embedding_size)
    source = load_checkpoint(fixtures / "atstframe_tiny.ckpt").encoder.state_dict()
    assert not torch.equal(embedder.encoder.state_dict()["blocks.11.mlp.fc1.weight"], source["blocks.11.mlp.fc1.weight"])

    # a fine-tuned ATST-Frame model (here this distilled one) is taken as a teacher too (docs: families)
    task = load_task(str(tasks["synth_scene"]))
    frame_teacher = FrozenTeacher.build(read_teacher(str(tmp_path / "w1"), task))
    mel = torch.zeros(2, 64, 101)
    assert frame_teacher.model.encoder.config.family == "frame"
    assert frame_teacher(mel, torch.tensor([101, 101])).shape == (2, task.labels.num_labels)

    # the same command: reported, not trained again; another weight in the same folder: refused
    capsys.readouterr()
    assert main(args) == 0
    assert "holds a finished run with these settings" in capsys.readouterr().err
    assert main([*args, "--distill-weight", "0.5"]) == 2
    assert "finished distillation run with other settings (distill_weight" in capsys.readouterr().err


def test_a_kfold_task_distils_the_teachers_fold(fixtures, tasks, tmp_path, capsys):
    timbre = str(tasks["synth_timbre"])
    short = ["--max_epochs", "2", "--warmup_epochs", "1", *FAST]
    assert main(["finetune", "--ckpt", str(fixtures / "atstclip_tiny.ckpt"), "--task", timbre, "--out",
                 str(tmp_path / "teacher"), "--fold", "1", *short]) == 0
    base = ["distill", "--teacher", str(tmp_path / "teacher" / "fold01"), "--ckpt", str(fixtures / "atstframe_tiny.ckpt"),
            "--task", timbre, "--out", str(tmp_path / "student"), *short]
    assert main([*base, "--fold", "2"]) == 2  # a teacher of fold 1 trained on fold 2's test clips
    assert "was fine-tuned on fold01 (its training clips include fold 2's test clips)" in capsys.readouterr().err
    assert main(base) == 0  # no --fold: the teacher's
    results = json.loads((tmp_path / "student" / "results.json").read_text())
    assert [fold["fold"] for fold in results["folds"]] == ["fold01"] and results["kind"] == "distillation"
    assert results["distillation"]["teacher"]["fold"] == "fold01"


# ------------------------------------------------------------------------------------------ defaults, errors

def test_the_c2f_defaults_per_dataset():
    def recipe(task: str):
        config = DistillConfig("c", task, "o", teacher="t")
        return resolve_recipe(config, "frame", 12, 4, 1, defaults=c2f_defaults)

    # spec 3.5: lr (per 256; x2 at the global batch of 512), epochs, warm-up, mixup, alpha
    expected = {"nsynth": (1e-2, 50, 5, True, 0.5), "spcv2": (2.0, 50, 5, True, 0.5),
                "voxceleb1": (5e-2, 50, 5, False, 10.0), "audioset_b": (3.0, 200, 5, True, 0.5),
                "fsd50k": (2.0, 100, 5, True, 10.0)}
    for name, values in expected.items():
        r = recipe(f"{name}=/data")
        assert (r.learning_rate, r.max_epochs, r.warmup_epochs, r.mixup_training, r.alpha) == values, name
        assert r.batch_size_per_gpu == 128 and "C2F" in r.sources["learning_rate"]
    as2m = recipe("audioset=/data")  # not in the repository: the ATST-Frame AS-2M fine-tuning settings
    assert (as2m.learning_rate, as2m.max_epochs, as2m.warmup_epochs, as2m.mixup_ratio) == (0.5, 11, 2, 0.5)
    assert default_weight("audioset")[0] == 1.0
    assert [default_weight(d)[0] for d in ("audioset_b", "spcv2", "fsd50k", None)] == [0.5] * 4


def test_frontends_must_agree():
    check_frontends(FrontendConfig(), FrontendConfig(), "t")
    with pytest.raises(ValueError, match="win_length 1024 \\(teacher\\) vs 640 \\(student\\)"):
        check_frontends(FrontendConfig(), replace(FrontendConfig(), win_length=640), "t")


def test_usage_errors_name_what_is_wrong_and_create_nothing(fixtures, tasks, teacher, tiny_linear_run, tmp_path,
                                                            capsys):
    out = tmp_path / "out"
    base = ["distill", "--ckpt", str(fixtures / "atstframe_tiny.ckpt"), "--out", str(out), *FAST]
    scene, timbre = str(tasks["synth_scene"]), str(tasks["synth_timbre"])
    cases = [
        (["--teacher", str(fixtures / "atstclip_tiny.ckpt"), "--task", scene],
         "not a trained downstream model"),  # a pre-training checkpoint
        (["--teacher", str(tiny_linear_run), "--task", scene], "is a 'linear' model"),
        (["--teacher", str(teacher), "--task", timbre], "was trained on other classes than task synth_timbre"),
        (["--teacher", str(tmp_path / "nowhere"), "--task", scene], "--teacher: no such model file"),
        (["--teacher", str(teacher), "--task", scene, "--distill-weight", "1.5"],
         "--distill-weight must be a finite number in [0, 1]"),
        (["--teacher", str(teacher), "--task", scene, "--distill-weight", "-0.1"],
         "--distill-weight must be a finite number in [0, 1]"),
        (["--teacher", str(teacher), "--task", scene, "--distill_weight", "nan"],
         "--distill-weight must be a finite number in [0, 1]"),
    ]
    for extra, message in cases:
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert "atst-downstream distill: error:" in err and message in err, err
    assert not out.exists()


# ------------------------------------------------------------------------------------------ DDP, kill, resume

@pytest.mark.slow
def test_ddp_two_processes_train_mode_teacher_sigkill_then_resume(fixtures, tasks, teacher, tmp_path):
    """The official train-mode teacher under DDP (its head's batch norm is a collective), killed and resumed."""
    import subprocess
    import sys

    from conftest import REPO, free_port, kill_after_checkpoint, subprocess_env

    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "downstream", "distill", "--teacher", str(teacher), "--ckpt",
               str(fixtures / "atstframe_tiny.ckpt"), "--task", str(tasks["synth_scene"]), "--out", str(out),
               "--teacher-train-mode", "--nproc", "2", "--accelerator", "cpu", "--batch_size_per_gpu", "2",
               "--max_epochs", "3", "--warmup_epochs", "1", "--num_workers", "1", "--ckpt_every_steps", "2",
               "--progress", "false", "--progress_every", "1"]
    env = subprocess_env(PYTHONUNBUFFERED="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()),
                         ATST_AUDIO_CACHE="off")
    env.pop("LOCAL_RANK", None)
    last = out / "last.ckpt"
    kill_after_checkpoint(command, env, last, 4, timeout=600)  # 10 clips / 2 ranks / 2: 3 steps per epoch
    killed = torch.load(last, weights_only=True)
    assert 4 <= killed["global_step"] < 9 and killed["distill"]["initial"]["agreement"] is not None
    env["MASTER_PORT"] = str(free_port())
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert f"resuming from {last} at step {killed['global_step']}" in output
    results = json.loads((out / "results.json").read_text())
    assert [(e["epoch"], e["step"]) for e in results["epochs"]] == [(1, 3), (2, 6), (3, 9)]
    assert results["hyper_parameters"]["world_size"] == 2 and results["distillation"]["teacher"]["train_mode"]
    assert results["distillation"]["initial_valid"] == killed["distill"]["initial"]  # kept across the resume
    final = torch.load(last, weights_only=True)["state_dict"]
    reference = _teacher_state(teacher)
    assert torch.equal(final["teacher.model.head.linear.weight"], reference["teacher.model.head.linear.weight"])
    assert not torch.equal(final["teacher.model.head.norm.running_mean"],
                           reference["teacher.model.head.norm.running_mean"])  # the official drifting statistics
    assert read_model_file(out).kind == "distill"
