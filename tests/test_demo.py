"""The demo pipeline: stage selection and reporting (fast), and `python -m hear_atst.demo --quick` end to end (slow)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hear_atst.demo import STAGES, Demo, QUICK, Settings, main, parse_stages, write_report


def test_stage_option_keeps_pipeline_order_and_rejects_unknown_names():
    assert parse_stages("report,tasks") == ["tasks", "report"]
    with pytest.raises(Exception, match="unknown stage"):
        parse_stages("tasks,bake")


def test_quick_settings_shrink_every_knob():
    full = Settings()
    assert QUICK.max_steps < full.max_steps and QUICK.corpus_clips < full.corpus_clips
    assert QUICK.grid_points < full.grid_points and QUICK.s3prl_steps < full.s3prl_steps


def test_stage_missing_its_inputs_fails_clearly_and_run_goes_on(tmp_path, capsys):
    code = main(["--out", str(tmp_path), "--stages", "validate,report"])
    out = capsys.readouterr().out
    assert code == 1
    assert "pretrain/last.ckpt is missing: run the `pretrain` stage first" in out
    assert "=== report: ok" in out  # later independent stages still run
    status = json.loads((tmp_path / "stages.json").read_text())["status"]
    assert status["validate"].startswith("failed") and status["report"] == "ok"


def test_report_reads_runner_scores_and_pretrain_metrics(tmp_path):
    for model, acc in (("pretrained", 0.9), ("random_init", 0.5)):
        task = tmp_path / "embeddings" / model / "hear_atst" / "synth_scene-v1-full"
        task.mkdir(parents=True)
        (task / "task_metadata.json").write_text(json.dumps({"evaluation": ["top1_acc"]}))
        (task / "test.predicted-scores.json").write_text(json.dumps({"test": {"test_top1_acc": acc}}))
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "s3prl_pretrained.log").write_text("dev acc: 0.5\ntest acc: 0.8125\n")
    metrics = tmp_path / "pretrain" / "csv_logs" / "version_0"
    metrics.mkdir(parents=True)
    (metrics / "metrics.csv").write_text("loss,lr,step\n,0.1,0\n2.0,,0\n1.5,,1\n")
    table = write_report(tmp_path, {"tasks": 1.0}, {"tasks": "ok"})
    assert "| synth_scene-v1-full | top1_acc | 0.900 | 0.500 |" in table
    assert "| speech_commands (s3prl) | test acc | 0.812 | — |" in table
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["loss_curve"] == [[0, 2.0], [1, 1.5]]
    assert (tmp_path / "loss_curve.png").stat().st_size > 1000 and (tmp_path / "results.md").is_file()


@pytest.mark.slow
def test_quick_demo_runs_every_stage(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "hear_atst.demo", "--quick", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    out = tmp_path / "out"
    results = json.loads((out / "results.json").read_text())
    assert set(results["stages"]) == set(STAGES) - {"report"}  # the report is written before it is timed
    assert all(v["status"] == "ok" for v in results["stages"].values())
    rows = {(r["task"], r["metric"]): r for r in results["results"]}
    for key in [("synth_scene-v1-full", "top1_acc"), ("synth_events-v1-full", "event_onset_200ms_fms"),
                ("synth_timbre-v1-full", "top1_acc"), ("speech_commands (s3prl)", "test acc")]:
        assert rows[key]["pretrained"] != "—" and rows[key]["random_init"] != "—", key
    assert results["loss_curve"] and (out / "loss_curve.png").is_file() and (out / "results.md").is_file()
    assert "Looks good!" in (out / "logs" / "validate.log").read_text()
