"""End-to-end pre-training runs on CPU: 2-process DDP (gloo), kill -9 and resume, Ctrl-C / SIGTERM (stop with a
checkpoint, then resume), one run per save path, torchrun with two 'nodes'.

Runs are tiny (tiny arch, 1 s crops, batch 2) and use free loopback ports chosen at run time.
"""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import hear_atst
from atst.synthetic import harmonic_tone
from conftest import free_port, kill_after_checkpoint

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
RUN_TIMEOUT = 900
STOP_TIMEOUT = 300  # from a stop signal to the end of the run (generous: one step, a save, the curves)
COLLAPSE_STD = 0.01


def env() -> dict:
    out = dict(os.environ, PYTHONUNBUFFERED="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    out.pop("LOCAL_RANK", None)
    return out


def tiny_flags(data: Path, save: Path, steps: int, nproc: int = 1, **extra) -> list[str]:
    flags = dict(arch="tiny", data_path=data, save_path=save, nproc=nproc, accelerator="cpu", anchor_len=1.0,
                 batch_size_per_gpu=2, projector_hidden=256, max_steps=steps, warmup_steps=3, learning_rate=0.05,
                 ema=0.99, num_workers=1, ckpt_every_steps=4, keep_every_steps=0, progress="false",
                 collapse_std=COLLAPSE_STD, subset=0)
    flags.update(extra)
    return [f"--{k}={v}" for k, v in flags.items()]


def run_pretrain(flags: list[str]) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "pretrain", *flags], cwd=REPO, env=env(), capture_output=True,
                            text=True, timeout=RUN_TIMEOUT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return result


def read_ckpt(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def metrics(save: Path, version: int | None = None) -> list[dict]:
    files = sorted((save / "csv_logs").glob("version_*/metrics.csv")) if version is None else \
        [save / "csv_logs" / f"version_{version}" / "metrics.csv"]
    rows = []
    for path in files:
        with open(path, newline="") as handle:
            rows += list(csv.DictReader(handle))
    return rows


def series(rows: list[dict], key: str) -> list[tuple[int, float]]:
    return [(int(float(r["step"])), float(r[key])) for r in rows if r.get(key)]


@pytest.fixture(scope="module")
def corpus(tone_corpus) -> Path:
    """12 mono 16 kHz clips of 0.6-1.7 s, one stereo 44.1 kHz FLAC, one corrupt WAV (conftest's `tone_corpus`)."""
    return tone_corpus


@pytest.fixture(scope="module")
def ddp_run(corpus, tmp_path_factory):
    save = tmp_path_factory.mktemp("ddp")
    result = run_pretrain(tiny_flags(corpus, save, steps=30, nproc=2, ckpt_every_steps=10))
    return save, result.stdout + result.stderr


def test_ddp_two_processes_finish_report_skipped_file_and_write_a_loadable_checkpoint(ddp_run, corpus):
    save, output = ddp_run
    assert "skipped 1 file(s) that could not be decoded" in output and "corrupt.wav" in output
    # 30 steps are 10 epochs of this corpus: the bad file is warned about once per rank at most, not every epoch
    warnings = [line for line in output.splitlines() if "skipping undecodable file" in line]
    assert 1 <= len(warnings) <= 2 and all("corrupt.wav" in line for line in warnings), warnings
    assert (save / "skipped_files.txt").read_text().split() == [str(corpus / "corrupt.wav")]
    ckpt = read_ckpt(save / "last.ckpt")
    assert ckpt["global_step"] == 30
    assert ckpt["hyper_parameters"]["nproc"] == 2 and ckpt["hyper_parameters"]["arch"] == "tiny"
    assert ckpt["hyper_parameters"]["learning_rate"] == pytest.approx(0.05 * 2 * 2 / 256)
    assert {k.split(".")[1] + "." + k.split(".")[2] for k in ckpt["state_dict"]} == {
        "student.encoder", "student.projector", "student.predictor", "teacher.encoder", "teacher.projector"}
    model = hear_atst.load_model(str(save / "last.ckpt"))
    audio = torch.from_numpy(harmonic_tone(300, 1.0))[None]
    scene = hear_atst.get_scene_embeddings(audio, model)
    assert scene.shape == (1, model.scene_embedding_size) and torch.isfinite(scene).all()
    # the teacher moved away from the student copy it started as (EMA ran)
    state = ckpt["state_dict"]
    assert not torch.equal(state["model.teacher.encoder.blocks.0.attn.qkv.weight"],
                           state["model.student.encoder.blocks.0.attn.qkv.weight"])
    assert (save / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert list((save / "tb_logs").rglob("events.out.tfevents.*"))


def test_tiny_run_trains_loss_falls_and_std_stays_above_collapse(ddp_run):
    save, _ = ddp_run
    rows = metrics(save)
    loss = [v for _, v in series(rows, "loss")]
    assert len(loss) == 30  # logged on every step
    assert np.mean(loss[-5:]) < np.mean(loss[:5])
    for key in ("std_frm_tea", "std_frm_stu"):
        values = [v for _, v in series(rows, key)]
        assert len(values) == 30 and min(values) > COLLAPSE_STD
    ema = [v for _, v in series(rows, "ema")]
    assert 0.99 <= min(ema) and max(ema) <= 1.0 and ema == sorted(ema)


def test_plot_command_writes_png(ddp_run, tmp_path):
    save, _ = ddp_run
    out = tmp_path / "curves.png"
    result = subprocess.run([sys.executable, "-m", "pretrain", "plot", str(save), "--out", str(out)], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_sigkill_then_resume_continues_from_the_checkpoint(corpus, tmp_path):
    manifest = tmp_path / "train.csv"
    files = sorted(str(p) for p in corpus.rglob("*") if p.suffix in (".wav", ".flac"))
    manifest.write_text("path\n" + "\n".join(files) + "\n")
    save = tmp_path / "run"
    flags = tiny_flags(manifest, save, steps=16, num_workers=0)
    last = save / "last.ckpt"
    killed_at = kill_after_checkpoint([sys.executable, "-m", "pretrain", *flags], env(), last, 4)
    ckpt = read_ckpt(last)  # readable after the kill
    assert 4 <= killed_at < 16 and ckpt["optimizer_states"][0]["state"]
    result = run_pretrain(flags)
    assert f"resuming from {last} at step {killed_at}" in result.stdout + result.stderr
    ckpt = read_ckpt(last)
    assert ckpt["global_step"] == 16
    resumed_steps = [s for s, _ in series(metrics(save, version=1), "loss")]
    assert resumed_steps[0] == killed_at and resumed_steps[-1] == 15
    # the schedules continue: the lr of the first resumed step is the lr of that step, not of step 0
    lr = dict(series(metrics(save, version=1), "lr"))
    assert lr[killed_at] > 0
    # train longer: the same command with a larger --max_steps
    run_pretrain(tiny_flags(manifest, save, steps=18, num_workers=0))
    assert read_ckpt(last)["global_step"] == 18
    assert not list(save.glob(".*.tmp-*"))


def processes_of(save: Path) -> list[int]:
    """PIDs of live processes whose command line names `save` (ranks and their data-loader workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and str(save).encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def wait_for_step(process: subprocess.Popen, lines: list[str], step: int) -> None:
    """Read the run's output into `lines` until its progress line reaches `step`."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise AssertionError("the run ended early:\n" + "".join(lines[-60:]))
        lines.append(line)
        if line.startswith("step ") and int(line.split()[1].split("/")[0]) >= step:
            return
    raise AssertionError("no progress in time:\n" + "".join(lines[-60:]))


def interrupted_run(flags: list[str], at_step: int, interrupt) -> tuple[int, str]:
    """Start a run, call `interrupt(process)` once its progress line reaches `at_step`, read it to its end:
    (exit status, output)."""
    process = subprocess.Popen([sys.executable, "-m", "pretrain", *flags], cwd=REPO, env=env(), text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    lines: list[str] = []
    try:
        wait_for_step(process, lines, at_step)
        interrupt(process)
        lines.append(process.communicate(timeout=STOP_TIMEOUT)[0])  # a rank that missed the stop would hang
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    return process.returncode, "".join(lines)


def check_stopped(save: Path, status: int, output: str, signum: signal.Signals) -> int:
    """The step a signal stopped the run at, checked: exit status 128 + signum, no traceback, last.ckpt at that
    step, no rank or worker left; from the `stopped by NAME after step N of M: ...` message."""
    marker = f"stopped by {signum.name} after step "
    assert status == 128 + signum and marker in output, output[-4000:]
    step = int(output.split(marker)[1].split()[0])
    assert "run the same command again to resume" in output and "Traceback" not in output
    assert read_ckpt(save / "last.ckpt")["global_step"] == step
    time.sleep(1)
    assert not processes_of(save), "a rank or worker outlived the stop"
    return step


def test_ctrl_c_stops_every_rank_after_the_step_with_a_checkpoint_and_the_save_path_is_locked_meanwhile(
        corpus, tmp_path):
    save = tmp_path / "run"
    refusals = []

    def second_run_then_ctrl_c(process: subprocess.Popen) -> None:
        refusals.append((process.pid, subprocess.run(
            [sys.executable, "-m", "pretrain", *tiny_flags(corpus, save, steps=10)], cwd=REPO, env=env(),
            capture_output=True, text=True, timeout=RUN_TIMEOUT)))
        os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: every rank and worker gets it

    # no periodic save before step 1000: a last.ckpt can only come from the stop
    status, output = interrupted_run(tiny_flags(corpus, save, steps=400, nproc=2, ckpt_every_steps=1000,
                                                progress_every=1), 3, second_run_then_ctrl_c)
    pid, second = refusals[0]
    assert second.returncode != 0
    assert f"--save_path {save} is in use by another run (PID {pid} on host " in second.stderr
    step = check_stopped(save, status, output, signal.SIGINT)
    assert 3 <= step < 400
    # the lock went with the run; the same command resumes from the stopping step
    result = run_pretrain(tiny_flags(corpus, save, steps=step + 2, nproc=2, ckpt_every_steps=1000))
    assert f"resuming from {save / 'last.ckpt'} at step {step}" in result.stdout + result.stderr
    assert read_ckpt(save / "last.ckpt")["global_step"] == step + 2


def test_sigterm_to_the_launching_process_alone_stops_the_run_with_a_checkpoint(corpus, tmp_path):
    save = tmp_path / "run"
    # rank 0 only gets it: rank 1 learns of it from the all-reduce after the step
    status, output = interrupted_run(tiny_flags(corpus, save, steps=400, nproc=2, ckpt_every_steps=1000,
                                                progress_every=1, num_workers=0), 2,
                                     lambda process: process.send_signal(signal.SIGTERM))
    assert check_stopped(save, status, output, signal.SIGTERM) >= 2


def test_a_checkpoint_of_step_n_holds_the_teacher_of_step_n(corpus, tmp_path):
    # --ema 0 and a far --max_steps make the momentum of the first steps ~2e-7: the teacher is the student once
    # the EMA update of a step has run, a step of Adam (~1e-4) away from it before. The run is stopped as a batch
    # system stops a job: SIGTERM to every process, data-loader workers included.
    save = tmp_path / "run"
    status, output = interrupted_run(tiny_flags(corpus, save, steps=10000, ema=0.0, keep_every_steps=2,
                                                ckpt_every_steps=1000, progress_every=1, num_workers=2), 3,
                                     lambda process: os.killpg(process.pid, signal.SIGTERM))
    stopped = check_stopped(save, status, output, signal.SIGTERM)
    kept = sorted(save.glob("checkpoint-step=*.ckpt"))
    assert [read_ckpt(path)["global_step"] for path in kept] == list(range(2, stopped + 1, 2))
    for path in (kept[0], save / "last.ckpt"):  # periodic, and written on the stop
        state = read_ckpt(path)["state_dict"]
        teacher = {k: v for k, v in state.items() if k.startswith("model.teacher.encoder.")}
        assert teacher
        for key, value in teacher.items():
            student = state[key.replace("model.teacher.", "model.student.")]
            assert torch.allclose(value, student, rtol=0, atol=1e-6), (path.name, key)


def test_torchrun_two_nodes_on_loopback(corpus, tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    files = sorted(p for p in corpus.rglob("*") if p.suffix in (".wav", ".flac"))
    for index in range(2):
        with tarfile.open(shards / f"{index:06d}.tar", "w") as archive:
            for path in files[index::2]:
                archive.add(path, arcname=f"{path.stem}.{path.suffix[1:]}")
    save = tmp_path / "run"
    port = free_port()
    # --nproc / --num_nodes left out: they come from torchrun's environment
    flags = [f for f in tiny_flags(str(shards / "{000000..000001}.tar"), save, steps=6) if not f.startswith("--nproc")]
    processes = []
    for node in range(2):
        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
                   f"--node_rank={node}", "--master_addr=127.0.0.1", f"--master_port={port}", "-m", "pretrain",
                   *flags]
        processes.append(subprocess.Popen(command, cwd=REPO, env=env(), stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True, start_new_session=True))
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=RUN_TIMEOUT)[0])
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    assert [p.returncode for p in processes] == [0, 0], "\n".join(o[-4000:] for o in outputs)
    ckpt = read_ckpt(save / "last.ckpt")
    assert ckpt["global_step"] == 6 and ckpt["hyper_parameters"]["num_nodes"] == 2
    assert "skipped 1 file(s)" in outputs[0]
