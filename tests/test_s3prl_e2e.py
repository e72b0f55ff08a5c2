"""End to end: `atst-s3prl` trains and evaluates SUPERB KS and SID on tiny generated datasets with a checkpoint
in the official ATST-Frame layout, using the shipped configs; the accuracies are the ones s3prl reports."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from atst.synthetic.superb import make_speech_commands, make_voxceleb1

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def launcher() -> str:
    script = Path(sys.executable).parent / "atst-s3prl"
    assert script.is_file(), f"console script missing: {script} (pip install -e .[s3prl])"
    return str(script)


def run(args, cwd, cache) -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO), ATST_S3PRL_CACHE=str(cache), CUDA_VISIBLE_DEVICES="",
               TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([launcher(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def best_dev_test_acc(log: Path) -> tuple[int, float]:
    """(step, test accuracy at that step) of the last dev improvement, from s3prl's log.log."""
    text = log.read_text()
    best_step = int(re.findall(r"New best on dev at step (\d+)", text)[-1])
    test = {int(step): float(acc) for step, acc in re.findall(r"test at step (\d+): ([0-9.]+)", text)}
    return best_step, test[best_step]


def train_then_evaluate(tmp_path, ckpt, downstream, overrides) -> tuple[float, float, str]:
    exp = tmp_path / f"exp_{downstream}"
    base = "config.runner.log_step=10,,config.optimizer.lr=1e-3,,config.runner.gradient_accumulate_steps=1"
    run(["-m", "train", "-u", "atst_frame", "-k", str(ckpt), "-d", downstream, "-c", downstream,
         "-p", str(exp), "-o", f"{base},,{overrides}"], tmp_path, tmp_path / "cache")
    assert (exp / "dev-best.ckpt").is_file()
    step, logged = best_dev_test_acc(exp / "log.log")
    output = run(["-m", "evaluate", "-e", str(exp / "dev-best.ckpt")], tmp_path, tmp_path / "cache")
    reported = float(re.findall(r"test acc: ([0-9.]+)", output)[-1])
    return logged, reported, output


def test_speech_commands_train_and_evaluate(tmp_path, tiny_frame_ckpt):
    data = make_speech_commands(tmp_path / "ks", seed=0)
    overrides = ",,".join([
        "config.runner.total_steps=40", "config.runner.eval_step=20", "config.runner.save_step=20",
        f"config.downstream_expert.datarc.speech_commands_root={data['train']}",
        f"config.downstream_expert.datarc.speech_commands_test_root={data['test']}",
        "config.downstream_expert.datarc.num_workers=0", "config.downstream_expert.datarc.batch_size=8",
    ])
    logged, reported, _ = train_then_evaluate(tmp_path, tiny_frame_ckpt, "speech_commands", overrides)
    assert reported == pytest.approx(logged, abs=1e-6)  # evaluate reproduces the test accuracy of dev-best
    assert reported > 1 / 8  # 8 test classes (6 words, _unknown_, _silence_): better than chance


def test_voxceleb1_train_and_evaluate(tmp_path, tiny_frame_ckpt):
    data = make_voxceleb1(tmp_path / "vox", seed=0)
    overrides = ",,".join([
        "config.runner.total_steps=20", "config.runner.eval_step=10", "config.runner.save_step=10",
        f"config.downstream_expert.datarc.file_path={data['file_path']}",
        f"config.downstream_expert.datarc.meta_data={data['meta_data']}",
        "config.downstream_expert.datarc.num_workers=0", "config.downstream_expert.datarc.train_batch_size=4",
    ])
    logged, reported, output = train_then_evaluate(tmp_path, tiny_frame_ckpt, "voxceleb1", overrides)
    assert reported == pytest.approx(logged, abs=1e-6)
    assert "there are 4 files found" in output  # the test list of this root, not a stale cache
    caches = list((tmp_path / "cache" / "voxceleb1").iterdir())
    assert len(caches) == 1 and {p.name for p in caches[0].iterdir()} == {"train.pkl", "dev.pkl", "test.pkl"}
