"""The demo pipeline: stage selection, presets and reporting (fast), and `python -m atst.demo --quick` end to end
(slow). Expected values come from the demo's own settings and the task writer, not from copies of them."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import fields

import pytest

from atst.demo import (FULL, MODELS, PRESETS, QUICK, STAGES, Demo, Settings, StageError, main, parse_stages,
                       s3prl_config_path, score_value, winner, write_report)
from atst.demo.report import S3PRL_ROW
from atst.synthetic.hear_tasks import task_dir_name

SCENE_TASK = task_dir_name("synth_scene")


def test_stage_option_keeps_pipeline_order_and_rejects_unknown_names():
    assert parse_stages("report,tasks") == ["tasks", "report"]
    assert parse_stages(",".join(reversed(STAGES))) == list(STAGES)
    with pytest.raises(Exception, match="unknown stage"):
        parse_stages("tasks,bake")


def test_quick_settings_shrink_every_knob():
    assert Settings() == FULL == PRESETS["full"] and PRESETS["quick"] == QUICK
    assert QUICK.max_steps < FULL.max_steps and QUICK.corpus_clips < FULL.corpus_clips
    assert QUICK.grid_points < FULL.grid_points and QUICK.s3prl_steps < FULL.s3prl_steps
    assert QUICK.clip_max_steps < FULL.clip_max_steps and QUICK.sed_epochs < FULL.sed_epochs


def test_presets_name_s3prl_configs_that_exist():
    from s3prl_upstream.tasks import available_configs, config_path

    for name, settings in PRESETS.items():
        assert settings.s3prl_config in available_configs(), name
        assert s3prl_config_path(settings.s3prl_config) == config_path(settings.s3prl_config)
    with pytest.raises(StageError, match=r"no s3prl config named 'quick'.*available: .*speech_commands"):
        s3prl_config_path("quick")


def test_random_baseline_does_not_start_from_the_pretraining_init():
    from pretrain.cli import build_parser

    pretrain_seed = build_parser().get_default("seed")  # the seed the demo's pre-training starts from
    assert all(settings.random_seed != pretrain_seed for settings in PRESETS.values())


def test_command_line_picks_the_preset_and_overrides(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "q"), "--quick", "--stages", "report"]) == 0
    assert f"(quick settings: {QUICK})" in capsys.readouterr().out
    assert main(["--out", str(tmp_path / "f"), "--max-steps", "7", "--stages", "report"]) == 0
    shown = capsys.readouterr().out
    assert "(full settings: Settings(" in shown and "max_steps=7," in shown
    assert all(f"{f.name}={getattr(FULL, f.name)!r}" in shown for f in fields(FULL) if f.name != "max_steps")


def test_winner_knows_which_metrics_improve_downwards():
    assert score_value("0.444 ± 0.192") == 0.444 and score_value("—") is None
    assert winner("top1_acc", "0.600 ± 0.100", "0.400 ± 0.050") == "pretrained"
    assert winner("event_onset_200ms_fms", "0.300", "0.500") == "random_init"
    assert winner("segment_1s_er", "1.200", "1.500") == "pretrained"  # an error rate: lower wins
    assert winner("mAP", "0.500", "0.500") == "tie" and winner("mAP", "0.500", "—") is None


def test_stage_missing_its_inputs_fails_clearly_and_run_goes_on(tmp_path, capsys):
    code = main(["--out", str(tmp_path), "--stages", "validate,report"])
    out = capsys.readouterr().out
    assert code == 1
    assert "pretrain/last.ckpt is missing: run the `pretrain` stage first" in out
    assert "=== report: ok" in out  # later independent stages still run
    status = json.loads((tmp_path / "stages.json").read_text())["status"]
    assert status["validate"].startswith("failed") and status["report"] == "ok"


def test_report_reads_runner_scores_and_pretrain_metrics(tmp_path):
    for model, acc in zip(MODELS, (0.9, 0.5)):
        task = tmp_path / "embeddings" / model / "hear_atst" / SCENE_TASK
        task.mkdir(parents=True)
        (task / "task_metadata.json").write_text(json.dumps({"evaluation": ["top1_acc"]}))
        (task / "test.predicted-scores.json").write_text(json.dumps({"test": {"test_top1_acc": acc}}))
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / f"s3prl_{MODELS[0]}.log").write_text("dev acc: 0.5\ntest acc: 0.8125\n")
    metrics = tmp_path / "pretrain" / "csv_logs" / "version_0"
    metrics.mkdir(parents=True)
    (metrics / "metrics.csv").write_text("loss,lr,step\n,0.1,0\n2.0,,0\n1.5,,1\n")
    table = write_report(tmp_path, {"tasks": 1.0}, {"tasks": "ok"})
    assert f"| {SCENE_TASK} | top1_acc | **0.900** | 0.500 | pre-trained |" in table
    assert f"| {S3PRL_ROW} | test acc | 0.812 | — | — |" in table
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["loss_curve"] == [[0, 2.0], [1, 1.5]]
    assert saved["pretrained_wins_on"] == [SCENE_TASK]
    assert f"Pre-trained beats random init on: {SCENE_TASK}" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "loss_curve.png").stat().st_size > 1000 and (tmp_path / "results.md").is_file()


def test_rerun_stages_never_score_stale_outputs(tmp_path, monkeypatch):
    # heareval skips a task it finds embedded or marked done: after new tasks or a new checkpoint a re-run of
    # `embed`/`predict` must redo them, not report the previous run's scores
    demo = Demo(out=tmp_path, settings=Settings())
    calls = []
    monkeypatch.setattr(Demo, "run", lambda self, stage, args, **kw: calls.append((stage, [str(a) for a in args])))
    demo.tasks.mkdir(parents=True)
    for model in MODELS:
        demo.checkpoint(model).parent.mkdir(parents=True, exist_ok=True)
        demo.checkpoint(model).write_bytes(b"ckpt")
        task = demo.embeddings(model) / "hear_atst" / SCENE_TASK
        task.mkdir(parents=True)
        (task / "prediction-done.json").write_text("{}")
    demo.stage_predict()
    assert not list(tmp_path.glob("embeddings/*/hear_atst/*/prediction-done.json"))
    assert [c[0] for c in calls] == ["predict"] * len(MODELS)
    assert str(demo.embeddings(MODELS[0]) / "hear_atst" / SCENE_TASK) in calls[0][1]
    stale = demo.embeddings(MODELS[0]) / "hear_atst" / SCENE_TASK / "train.embeddings.npy"
    stale.write_bytes(b"old")
    demo.stage_embed()
    assert not stale.exists() and [c[0] for c in calls[len(MODELS):]] == ["embed"] * len(MODELS)


@pytest.mark.slow
def test_quick_demo_runs_every_stage(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "atst.demo", "--quick", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    out = tmp_path / "out"
    results = json.loads((out / "results.json").read_text())
    assert set(results["stages"]) == set(STAGES) - {"report"}  # the report is written before it is timed
    assert all(v["status"] == "ok" for v in results["stages"].values())
    rows = {(r["task"], r["metric"]): r for r in results["results"]}
    tasks = sorted(p for p in (out / "tasks").iterdir() if p.is_dir())
    assert {SCENE_TASK, task_dir_name("synth_timbre"), task_dir_name("synth_events")} <= {p.name for p in tasks}
    keys = [(p.name, json.loads((p / "task_metadata.json").read_text())["evaluation"][0]) for p in tasks]
    for key in keys + [(S3PRL_ROW, "test acc")]:
        assert all(rows[key][model] != "—" for model in MODELS), key
    from atst.demo.report import DOWNSTREAM_ROWS
    for kind, label in DOWNSTREAM_ROWS:  # linear, finetune, the ATST-Clip fine-tune (its pre-training), distill
        assert any(task.endswith(f"({label})") and all(rows[(task, metric)][m] != "—" for m in MODELS)
                   for task, metric in rows), kind
    assert results["loss_curve"] and (out / "loss_curve.png").is_file() and (out / "results.md").is_file()
    # the point of the demo: pre-training helps. Checked on the numbers themselves, not on the report's verdict
    generated = [r for r in results["results"] if r["task"] != S3PRL_ROW]
    wins = sorted({r["task"] for r in generated
                   if winner(r["metric"], r["pretrained"], r["random_init"]) == "pretrained"})
    assert wins, "pre-trained never beats random init:\n" + (out / "results.md").read_text()
    assert results["pretrained_wins_on"] == wins
    assert any(r["pretrained"] != r["random_init"] for r in generated), "identical columns: pre-training did nothing"
    assert "Looks good!" in (out / "logs" / "validate.log").read_text()


def test_report_adds_the_downstream_runs(tmp_path):
    from atst.demo.report import result_rows

    for model, (linear, finetune) in {"pretrained": (0.8, 0.7), "random_init": (0.6, 0.75)}.items():
        for kind, score, extra in (("linear", linear, {"test_std": 0.05}), ("finetune", finetune, {})):
            folder = tmp_path / "downstream" / model / kind
            folder.mkdir(parents=True)
            task = "synth_timbre" if kind == "linear" else "synth_scene"
            (folder / "results.json").write_text(json.dumps({"task": task, "metric": "top1_acc",
                                                             "test": {"top1_acc": score}, **extra}))
    rows = {r["task"]: r for r in result_rows(tmp_path)}
    linear = rows["synth_timbre (atst-downstream linear)"]
    assert (linear["pretrained"], linear["random_init"], linear["winner"]) == ("0.800 ± 0.050", "0.600 ± 0.050",
                                                                               "pretrained")
    assert rows["synth_scene (atst-downstream finetune)"]["winner"] == "random_init"


def test_report_adds_the_clip_and_distillation_runs(tmp_path):
    from atst.demo.report import DOWNSTREAM_ROWS, result_rows

    labels = dict(DOWNSTREAM_ROWS)
    for model, (clip, distill) in {"pretrained": (0.7, 0.9), "random_init": (0.65, 0.8)}.items():
        for kind, score in (("clip_finetune", clip), ("distill", distill)):
            folder = tmp_path / "downstream" / model / kind
            folder.mkdir(parents=True)
            (folder / "results.json").write_text(json.dumps({"task": "synth_scene", "metric": "top1_acc",
                                                             "test": {"top1_acc": score}}))
    rows = {r["task"]: r for r in result_rows(tmp_path)}
    clip = rows[f"synth_scene ({labels['clip_finetune']})"]
    distill = rows[f"synth_scene ({labels['distill']})"]
    assert (clip["pretrained"], clip["random_init"], clip["winner"]) == ("0.700", "0.650", "pretrained")
    assert (distill["pretrained"], distill["random_init"], distill["winner"]) == ("0.900", "0.800", "pretrained")


def test_report_adds_the_sed_rows(tmp_path):
    from atst.demo.report import result_rows

    for model, (psds1, f1) in {"pretrained": (0.61, 0.5), "random_init": (0.42, 0.55)}.items():
        folder = tmp_path / "sed" / model
        folder.mkdir(parents=True)
        (folder / "results.json").write_text(json.dumps({"task": "synth_events", "metric": "psds1.sed_scores_eval",
                                                         "test": {"psds1.sed_scores_eval": psds1,
                                                                  "event_f1_200ms.macro": f1}}))
    rows = [r for r in result_rows(tmp_path) if r["task"] == "synth_events (atst-downstream sed)"]
    assert [(r["metric"], r["pretrained"], r["random_init"], r["winner"]) for r in rows] == [
        ("PSDS1", "0.610", "0.420", "pretrained"), ("event F1 (200 ms)", "0.500", "0.550", "random_init")]
