"""`atst-downstream sed --distill-teacher`: frame-level distillation from a trained `sed` model. The loss against
its formula on a hand-made batch, the frozen teacher (parameters, outputs, eval mode), a tiny run that brings the
student's frame scores closer to the teacher's than plain training does, `detect` on the result, the teacher's
numbers in results.json, and the errors of a wrong teacher or flag (resume with another teacher included)."""
from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
import torch.nn.functional as F

from atst import load_checkpoint
from atst.checkpoint import CheckpointError
from downstream.cli import main
from downstream.finetune.schedule import FinetuneSchedule
from downstream.model_file import ENCODER_PREFIX, HEAD_PREFIX
from downstream.sed.detect import Detector
from downstream.sed.distill import DEFAULT_WEIGHT, SedDistillModule, frame_distillation_term
from downstream.sed.model import SedModel
from downstream.sed.recipe import resolve_recipe
from downstream.sed.run import SedConfig, default_run_config, run_sed
from downstream.sed.teacher import SedTeacher, read_sed_teacher
from sed_tasks import cli_script, ddp_env, make_event_task

TINY = "atstframe_tiny.ckpt"
STUDENT = dict(recipe="desed-official", max_epochs=3, warmup_epochs=1, strong_batch=2, weak_batch=2, psds_eval=False)


@pytest.fixture(autouse=True)
def no_audio_cache(monkeypatch):
    monkeypatch.setenv("ATST_AUDIO_CACHE", "off")


def run_config(out):
    return default_run_config(str(out), num_workers=0, accelerator="cpu", progress=False)


@pytest.fixture(scope="module")
def tiny(fixtures):
    return str(fixtures / TINY)


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return make_event_task(tmp_path_factory.mktemp("sed_distill_task"), strong=4, weak=4, valid=2, test=2)


@pytest.fixture(scope="module")
def teacher(tiny, task, tmp_path_factory):
    """A sed model trained twice as long as the students, so its scores differ from theirs."""
    import os

    os.environ["ATST_AUDIO_CACHE"] = "off"
    out = tmp_path_factory.mktemp("sed_teacher") / "run"
    outcome = run_sed(SedConfig(ckpt=tiny, task=task, out=str(out), recipe="desed-official", max_epochs=6,
                                warmup_epochs=1, strong_batch=2, weak_batch=2, psds_eval=False),
                      run_config(out), log=None)
    assert outcome.status == 0
    return out


@pytest.fixture(scope="module")
def swapped(teacher, tmp_path_factory):
    """The teacher with its two class names exchanged: it scores 'tone' where the labels say 'noise' (and the
    reverse), so only distillation (not the labels) brings a student close to it; its classes come in another
    order than the task's, which the student side reorders."""
    raw = torch.load(teacher / "best.ckpt", weights_only=True)
    raw["downstream"]["labels"] = list(reversed(raw["downstream"]["labels"]))
    path = tmp_path_factory.mktemp("sed_swapped") / "best.ckpt"
    torch.save(raw, path)
    return path


@pytest.fixture(scope="module")
def runs(tiny, task, swapped, tmp_path_factory):
    """(distilled student, plain student): the same run but for --distill-teacher (weight 1: the teacher only)."""
    import os

    os.environ["ATST_AUDIO_CACHE"] = "off"
    root = tmp_path_factory.mktemp("sed_students")
    before = swapped.read_bytes()
    student = run_sed(SedConfig(ckpt=tiny, task=task, out=str(root / "student"), distill_teacher=str(swapped),
                                distill_weight=1.0, **STUDENT), run_config(root / "student"), log=None)
    plain = run_sed(SedConfig(ckpt=tiny, task=task, out=str(root / "plain"), **STUDENT), run_config(root / "plain"),
                    log=None)
    assert student.status == 0 and plain.status == 0
    assert swapped.read_bytes() == before  # the teacher file is only read
    return student, plain


def test_the_frame_loss_is_w_bce_to_the_teachers_probabilities_plus_1_minus_w_the_sed_loss(tiny, task, teacher):
    generator = torch.Generator().manual_seed(0)
    s_logits, t_logits = torch.randn(3, 5, 2, generator=generator), torch.randn(3, 5, 2, generator=generator)
    s_weak, t_weak = torch.rand(3, 2, generator=generator), torch.rand(3, 2, generator=generator)
    term = frame_distillation_term(torch.sigmoid(s_logits), s_weak, torch.sigmoid(t_logits), t_weak, weak=False)
    expected = F.binary_cross_entropy_with_logits(s_logits, torch.sigmoid(t_logits))
    assert torch.allclose(term, expected, atol=1e-6)
    with_weak = frame_distillation_term(torch.sigmoid(s_logits), s_weak, torch.sigmoid(t_logits), t_weak, weak=True)
    assert torch.allclose(with_weak, expected + F.binary_cross_entropy(s_weak, t_weak), atol=1e-6)
    with pytest.raises(ValueError, match="one shape"):
        frame_distillation_term(torch.rand(3, 4, 2), s_weak, torch.rand(3, 5, 2), t_weak, weak=False)

    # the module's loss on a hand-made batch: 2 strong clips then 1 weak clip
    loaded = load_checkpoint(tiny)
    model = SedModel.from_checkpoint(loaded, 2, "last_block", generator=torch.Generator().manual_seed(1)).eval()
    source = read_sed_teacher(str(teacher), task, loaded.frontend_config)
    recipe = resolve_recipe("default")
    module = SedDistillModule(model, SedTeacher(source), 0.3, {}, FinetuneSchedule.build(0.1, 2, 1, 1, 1, "official"),
                              1, recipe, [])
    audio = torch.randn(3, 16000, generator=generator) * 0.1
    strong_targets = torch.zeros(3, 25, 2)
    strong_targets[0, 5:15, 0] = 1.0
    weak_targets = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    batch = {"audio": audio, "role": torch.tensor([0, 0, 1]), "strong": strong_targets, "weak": weak_targets}
    parts = module.losses(batch)
    with torch.no_grad():
        s_strong, s_weak, _ = model(audio)
        t_strong, t_weak, _ = source.detector.model(audio)
    distill = F.binary_cross_entropy(s_strong, t_strong) + F.binary_cross_entropy(s_weak, t_weak)
    sed = F.binary_cross_entropy(s_strong[:2], strong_targets[:2]) + F.binary_cross_entropy(s_weak[2:], weak_targets[2:])
    assert torch.allclose(parts["distill"], distill, atol=1e-5) and torch.allclose(parts["task"], sed, atol=1e-5)
    assert torch.allclose(parts["loss"], 0.3 * distill + 0.7 * sed, atol=1e-5)
    assert DEFAULT_WEIGHT == 0.5  # spec 3.6, AudioSet-strong: 0.5 BCE(p_S, y) + 0.5 BCE(p_S, p_T)


def test_the_teacher_stays_frozen_in_eval_mode_and_its_outputs_do_not_change(tiny, task, teacher):
    loaded = load_checkpoint(tiny)
    model = SedModel.from_checkpoint(loaded, 2, "all", generator=torch.Generator().manual_seed(1))
    source = read_sed_teacher(str(teacher), task, loaded.frontend_config)
    frozen = SedTeacher(source)
    module = SedDistillModule(model, frozen, 0.5, {}, FinetuneSchedule.build(0.1, 2, 1, 1, 1, "official"), 1,
                              resolve_recipe("as-strong-official"), [])
    params = {name: p.detach().clone() for name, p in frozen.named_parameters()}
    audio = torch.randn(2, 16000, generator=torch.Generator().manual_seed(2)) * 0.1
    before = frozen(audio)
    optimizer = torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=1.0)
    batch = {"audio": audio, "role": torch.tensor([0, 0]), "strong": torch.ones(2, 25, 2), "weak": torch.zeros(2, 2)}
    for _ in range(3):
        module.train()  # as Lightning does at every epoch
        assert model.training and not frozen.training and not any(m.training for m in frozen.modules())
        optimizer.zero_grad()
        module.losses(batch)["loss"].backward()
        optimizer.step()
    assert all(p.grad is None and not p.requires_grad for p in frozen.parameters())
    assert all(torch.equal(params[name], p) for name, p in frozen.named_parameters())
    after = frozen(audio)
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])
    # --teacher-train-mode: the official stochastic teacher follows the module's mode (DropPath 0.1)
    stochastic = SedTeacher(read_sed_teacher(str(teacher), task, loaded.frontend_config, stochastic=True))
    stochastic.train()
    assert stochastic.training and stochastic.model.encoder.blocks[-1].drop_path.rate == pytest.approx(0.1)


def test_a_tiny_run_moves_the_student_towards_the_teacher_and_records_it(runs, swapped, task):
    student, plain = runs
    entry = student.results["distillation"]
    gaps = entry["valid_frame_gap"]
    assert gaps["after"] < gaps["before"]  # frame agreement rose during the run
    assert entry["weight"] == 1.0 and entry["weight_source"] == "--distill-weight"
    assert "eval mode" in entry["teacher_mode"] and entry["teacher"] == str(swapped.resolve())
    assert 0.0 <= entry["teacher_test"]["psds1.sed_scores_eval"] <= 1.0
    assert 0.0 <= entry["teacher_test"]["event_f1_200ms.macro"] <= 1.0
    assert student.results["hyper_parameters"]["distill_weight"] == 1.0
    md = (student.out_dir / "results.md").read_text()
    assert "## Distillation" in md and "teacher_test" in md
    # closer to the teacher than the same run without it, on the test frames
    plain_gap = frame_gap_on_test(plain.out_dir, swapped, task)
    assert entry["test_frame_gap"] == pytest.approx(frame_gap_on_test(student.out_dir, swapped, task), rel=1e-4)
    assert entry["test_frame_gap"] < plain_gap
    # the teacher inside last.ckpt is the teacher file's, bit for bit
    state = torch.load(student.out_dir / "last.ckpt", weights_only=True)["state_dict"]
    file_state = torch.load(swapped, weights_only=True)["state_dict"]
    key = "distill_teacher.model.backbone.encoder.blocks.11.mlp.fc1.weight"
    assert torch.equal(state[key], file_state[f"{ENCODER_PREFIX}blocks.11.mlp.fc1.weight"])
    heads = [k for k in file_state if k.startswith(HEAD_PREFIX)]
    assert heads and all(torch.equal(state[f"distill_teacher.model.head.{k[len(HEAD_PREFIX):]}"], file_state[k])
                         for k in heads)


def frame_gap_on_test(out, teacher, task) -> float:
    """Mean |p - p_teacher| over the task's test recordings of the sed model file in `out` (task class order)."""
    from atst.audio_io import load_mono_16k

    student, master = Detector.load(out), Detector.load(teacher)
    order = torch.tensor([master.labels.index(name) for name in student.labels])
    total, count = 0.0, 0
    for clip in task.split("test"):
        wave = load_mono_16k(clip.path)
        a, b = student.scores(wave), master.scores(wave)[:, order]
        total += float((a - b).abs().sum())
        count += a.numel()
    assert count
    return total / count


def test_detect_reads_the_distilled_model(runs, task, tmp_path, capsys):
    student, _ = runs
    detector = Detector.load(student.out_dir)
    assert detector.info["distilled_from"]["weight"] == 1.0 and detector.labels == ["noise", "tone"]
    clip = task.split("test")[0]
    shutil.copy(clip.path, tmp_path / "clip.wav")
    assert main(["detect", str(tmp_path / "clip.wav"), "--model", str(student.out_dir), "--out",
                 str(tmp_path / "events"), "--quiet"]) == 0
    assert (tmp_path / "events" / "events.tsv").is_file()


def test_a_wrong_teacher_or_flag_is_a_clear_error(tiny, task, teacher, runs, tmp_path, capsys):
    frontend = load_checkpoint(tiny).frontend_config
    with pytest.raises(CheckpointError, match="not a sound event detection model"):
        read_sed_teacher(tiny, task, frontend)
    with pytest.raises(FileNotFoundError, match="--distill-teacher"):
        read_sed_teacher(str(tmp_path / "missing"), task, frontend)
    raw = torch.load(teacher / "best.ckpt", weights_only=True)
    raw["downstream"]["labels"] = ["noise", "siren"]
    torch.save(raw, tmp_path / "other_classes.ckpt")
    with pytest.raises(ValueError, match=r"other classes.*\['tone'\].*\['siren'\]"):
        read_sed_teacher(str(tmp_path / "other_classes.ckpt"), task, frontend)
    raw["downstream"]["labels"], raw["downstream"]["frame_seconds"] = ["noise", "tone"], 0.02
    torch.save(raw, tmp_path / "other_rate.ckpt")
    with pytest.raises(CheckpointError, match="frame_seconds must be 0.04"):
        read_sed_teacher(str(tmp_path / "other_rate.ckpt"), task, frontend)
    out = tmp_path / "run"
    for config, message in (
            (SedConfig(ckpt=tiny, task=task, out=str(out), distill_weight=0.5), "--distill-weight needs"),
            (SedConfig(ckpt=tiny, task=task, out=str(out), teacher_train_mode=True), "--teacher-train-mode needs"),
            (SedConfig(ckpt=tiny, task=task, out=str(out), distill_teacher=str(teacher), distill_weight=1.5),
             "--distill-weight")):
        with pytest.raises(ValueError, match=message):
            run_sed(config, run_config(out), log=None)
    assert not out.exists()
    # the finished student's folder with another teacher (another file): refused, naming the teacher
    student, _ = runs
    raw["downstream"]["frame_seconds"] = 0.04
    raw["downstream"]["note"] = "another teacher"
    torch.save(raw, tmp_path / "another.ckpt")
    with pytest.raises(ValueError, match="distill_teacher_sha256"):
        run_sed(SedConfig(ckpt=tiny, task=task, out=str(student.out_dir), distill_teacher=str(tmp_path / "another.ckpt"),
                          distill_weight=1.0, **STUDENT), run_config(student.out_dir), log=None)
    # an unfinished run (its last.ckpt, no results.json) does not resume with another teacher
    partial = tmp_path / "partial"
    shutil.copytree(student.out_dir, partial)
    (partial / "results.json").unlink()
    with pytest.raises(ValueError, match="distill_teacher_sha256"):
        run_sed(SedConfig(ckpt=tiny, task=task, out=str(partial), distill_teacher=str(tmp_path / "another.ckpt"),
                          distill_weight=1.0, **STUDENT), run_config(partial), log=None)
    capsys.readouterr()
    code = main(["sed", "--ckpt", tiny, "--task", "x.tsv", "--out", str(out), "--distill-weight", "0.5"])
    assert code == 2 and "--distill-weight needs --distill-teacher" in capsys.readouterr().err


def test_the_command_line_flags_reach_the_run_config():
    import argparse

    from downstream.commands import sed as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(["--ckpt", "c", "--task", "t", "--out", "o", "--distill-teacher", "runs/teacher",
                              "--distill_weight", "0.25", "--teacher-train-mode"])
    values = {name: getattr(args, name) for name in command.OPTIONS}
    assert (values["distill_teacher"], values["distill_weight"], values["teacher_train_mode"]) == \
        ("runs/teacher", 0.25, True)
    config = SedConfig(ckpt="c", task="t", out="o", **values)
    assert config.distill_teacher == "runs/teacher" and config.distill_weight == 0.25
    plain = parser.parse_args(["--ckpt", "c", "--task", "t", "--out", "o"])
    assert plain.distill_teacher is None and plain.distill_weight is None and not plain.teacher_train_mode


def test_plain_runs_record_no_teacher_and_refuse_one_on_rerun(runs, swapped, tiny, task, tmp_path):
    from downstream.finetune.run import finished_results
    from downstream.sed.report import KIND
    from downstream.sed.run import STRUCTURAL

    _, plain = runs
    hp = plain.results["hyper_parameters"]
    keys = ("distill_teacher", "distill_teacher_sha256", "distill_weight", "teacher_train_mode")
    assert all(hp[key] is None for key in keys)
    older = tmp_path / "older"  # a plain run folder written before the option still reads as the same settings
    older.mkdir()
    results = json.loads((plain.out_dir / "results.json").read_text())
    results["hyper_parameters"] = {k: v for k, v in results["hyper_parameters"].items() if k not in keys}
    (older / "results.json").write_text(json.dumps(results))
    assert finished_results(older, hp, KIND, STRUCTURAL) is not None
    with pytest.raises(ValueError, match="distill_teacher_sha256"):
        run_sed(SedConfig(ckpt=tiny, task=task, out=str(plain.out_dir), distill_teacher=str(swapped), **STUDENT),
                run_config(plain.out_dir), log=None)


@pytest.mark.slow
def test_ddp_two_processes_distil(fixtures, tmp_path):
    import subprocess
    import sys

    from conftest import REPO

    task_dir = tmp_path / "task"
    task = make_event_task(task_dir, strong=4, weak=8, valid=2, test=2)
    teacher_out = tmp_path / "teacher"
    assert run_sed(SedConfig(ckpt=str(fixtures / TINY), task=task, out=str(teacher_out), max_epochs=2,
                             **{k: v for k, v in STUDENT.items() if k != "max_epochs"}),
                   run_config(teacher_out), log=None).status == 0
    script = cli_script(tmp_path / "run_sed.py", task_dir, REPO / "tests", strong=4, weak=8, valid=2, test=2)
    out = tmp_path / "ddp"
    command = [sys.executable, str(script), "sed", "--ckpt", str(fixtures / TINY), "--task", "synth", "--out",
               str(out), "--recipe", "desed-official", "--strong_batch", "1", "--weak_batch", "2", "--max_epochs",
               "2", "--warmup_epochs", "1", "--nproc", "2", "--accelerator", "cpu", "--num_workers", "0",
               "--progress", "false", "--psds_eval", "false", "--distill-teacher", str(teacher_out)]
    env = ddp_env()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    results = json.loads((out / "results.json").read_text())
    entry = results["distillation"]
    assert results["hyper_parameters"]["world_size"] == 2 and entry["weight"] == DEFAULT_WEIGHT
    assert all(math.isfinite(e["frame_gap"]) for e in results["epochs"]) and math.isfinite(entry["test_frame_gap"])
    assert Detector.load(out).info["distilled_from"]["weight"] == DEFAULT_WEIGHT
