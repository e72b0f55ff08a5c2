"""The training kit's run machinery: RunConfig and its flags, launcher topology, the Trainer, the progress line,
the curves PNG, checkpoint files and the resume point."""
from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from atst.training.callbacks import ProgressLine, progress_text
from atst.training.checkpoint_io import AtomicCheckpointIO, read_checkpoint, resume_point
from atst.training.config import RunConfig, add_run_arguments, default_workers, run_config_from_args
from atst.training.curves import curves_figure, plot_curves, read_metrics, smooth
from atst.training.launch import launcher_topology


# ------------------------------------------------------------------------------------------------ RunConfig
@pytest.mark.parametrize("field, value, message", [
    ("devices", 0, r"RunConfig.devices \(--nproc\) must be an integer >= 1, got 0"),
    ("devices", 2.0, r"RunConfig.devices \(--nproc\) must be an integer >= 1, got 2.0"),
    ("num_nodes", True, r"RunConfig.num_nodes \(--num_nodes\) must be an integer >= 1, got True"),
    ("max_steps", 0, r"RunConfig.max_steps \(--max_steps\) must be an integer >= 1"),
    ("num_workers", -1, r"RunConfig.num_workers \(--num_workers\) must be an integer >= 0"),
    ("keep_every_steps", -5, r"RunConfig.keep_every_steps \(--keep_every_steps\) must be an integer >= 0"),
    ("ckpt_every_steps", 0, r"RunConfig.ckpt_every_steps \(--ckpt_every_steps\) must be an integer >= 1"),
    ("accumulate_grad_batches", 0, r"RunConfig.accumulate_grad_batches .* >= 1"),
    ("progress_every", -1, r"RunConfig.progress_every \(--progress_every\) must be an integer >= 0"),
    ("seed", "0", r"RunConfig.seed \(--seed\) must be an integer, got '0'"),
    ("grad_clip", -1.0, r"RunConfig.grad_clip \(--grad_clip\) must be a number >= 0 \(0 = off\)"),
    ("grad_clip", float("nan"), r"RunConfig.grad_clip"),
    ("progress", "yes", r"RunConfig.progress \(--progress\) must be a bool"),
    ("accelerator", "auto", r"RunConfig.accelerator \(--accelerator\) must be one of \('cpu', 'gpu'\)"),
    ("precision", "32", r"RunConfig.precision \(--precision\) must be one of \('32-true', 'bf16-mixed', '16-mixed'\)"),
    ("precision", "16-mixed", r"16-mixed needs a GPU; use bf16-mixed or 32 on CPU"),
    ("save_path", "runs/x", r"RunConfig.save_path \(--save_path\) must be a pathlib.Path"),
])
def test_run_config_rejects_bad_values_naming_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        RunConfig(**{"save_path": Path("/tmp/run"), field: value})


def test_run_config_defaults_flags_and_world_size():
    run = RunConfig(save_path=Path("/tmp/run"), devices=4, num_nodes=2, accelerator="gpu", precision="16-mixed")
    assert run.world_size == 8
    flags = run.as_flags()
    assert flags["nproc"] == 4 and "devices" not in flags and flags["save_path"] == "/tmp/run"
    assert set(flags) == {"nproc", *(f.name for f in dataclasses.fields(RunConfig) if f.name != "devices")}
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.devices = 1  # type: ignore[misc]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    return parser


def test_run_config_from_flags_resolves_launcher_values(tmp_path):
    args = _parser().parse_args(["--save_path", str(tmp_path / "r"), "--accelerator", "cpu"])
    run = run_config_from_args(args, environ={})
    assert (run.devices, run.num_nodes, run.precision, run.save_path) == (1, 1, "32-true", (tmp_path / "r"))
    assert run.num_workers == default_workers(1) and run.max_steps == 1
    torchrun = {"LOCAL_WORLD_SIZE": "2", "WORLD_SIZE": "6"}
    run = run_config_from_args(args, environ=torchrun)
    assert (run.devices, run.num_nodes, run.world_size) == (2, 3, 6)
    explicit = _parser().parse_args(["--save_path", "x", "--accelerator", "cpu", "--nproc", "5", "--num_nodes", "1",
                                     "--num_workers", "0", "--precision", "bf16-mixed"])
    run = run_config_from_args(explicit, environ=torchrun)
    assert (run.devices, run.num_nodes, run.num_workers, run.precision) == (5, 1, 0, "bf16-mixed")
    auto = run_config_from_args(_parser().parse_args(["--save_path", "x"]), environ={})
    assert auto.accelerator == ("gpu" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="--nproc"):
        run_config_from_args(_parser().parse_args(["--save_path", "x", "--nproc", "0"]), environ={})


def test_run_flags_take_door_defaults_and_refuse_bad_words():
    parser = _parser()
    parser.set_defaults(max_steps=58500)
    args = parser.parse_args(["--save_path", "x", "--progress", "off"])
    assert args.max_steps == 58500 and args.progress is False
    with pytest.raises(SystemExit):
        parser.parse_args(["--save_path", "x", "--progress", "sometimes"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--save_path", "x", "--precision", "8"])


def test_default_workers_leave_a_cpu_per_device():
    assert default_workers(4, cpu_count=48) == 10 and default_workers(4, cpu_count=16) == 3
    assert default_workers(8, cpu_count=4) == 1


def test_topology_comes_from_torchrun_or_slurm():
    assert launcher_topology({}) == (1, 1)
    assert launcher_topology({"LOCAL_WORLD_SIZE": "4", "WORLD_SIZE": "16"}) == (4, 4)
    assert launcher_topology({"SLURM_NTASKS_PER_NODE": "8(x2)", "SLURM_NNODES": "2"}) == (8, 2)
    assert launcher_topology({"LOCAL_WORLD_SIZE": "1", "WORLD_SIZE": "2", "SLURM_NNODES": "9"}) == (1, 2)


def test_trainer_gets_the_progress_line_without_a_bar(tmp_path):
    from pytorch_lightning.callbacks import ModelCheckpoint

    from atst.training.callbacks import CurvesAtEnd, FinalCheckpoint
    from atst.training.launch import build_trainer

    run = RunConfig(save_path=tmp_path, max_steps=5, progress_every=3, keep_every_steps=2)
    trainer = build_trainer(run, show_bar=False)
    kinds = [type(c) for c in trainer.callbacks]
    assert ProgressLine in kinds and FinalCheckpoint in kinds and CurvesAtEnd in kinds
    assert sum(k is ModelCheckpoint for k in kinds) == 2 and trainer.max_steps == 5
    assert ProgressLine not in [type(c) for c in build_trainer(run, show_bar=True).callbacks]
    quiet = dataclasses.replace(run, progress_every=0)
    assert ProgressLine not in [type(c) for c in build_trainer(quiet, show_bar=False).callbacks]


# --------------------------------------------------------------------------------------------- progress line
def test_progress_text_format():
    metrics = {"loss": torch.tensor(1.23456), "lr": torch.tensor(3.2e-4), "samples_per_sec": 812.34}
    assert progress_text(120, 5000, metrics, seconds=65.2) == \
        "step 120/5000 loss 1.2346 lr 3.20e-04 samples/s 812.3 elapsed 0:01:05"
    assert progress_text(1, 10, {"loss": 2.0}) == "step 1/10 loss 2.0000"


def test_progress_line_prints_every_n_optimizer_steps_on_rank_zero(capsys):
    line = ProgressLine(every_steps=2)
    trainer = SimpleNamespace(global_step=0, max_steps=5, is_global_zero=True,
                              callback_metrics={"loss": torch.tensor(0.5), "lr": torch.tensor(1e-3)})
    line.on_train_start(trainer, None)
    for step in (1, 2, 2, 3, 4, 5):  # step 2 twice: an accumulation micro-batch prints nothing new
        trainer.global_step = step
        line.on_train_batch_end(trainer, None, None, None, 0)
    lines = capsys.readouterr().out.splitlines()
    assert [text.split(" loss")[0] for text in lines] == ["step 2/5", "step 4/5", "step 5/5"]
    assert lines[0].startswith("step 2/5 loss 0.5000 lr 1.00e-03 elapsed 0:00:0")
    trainer.is_global_zero, trainer.global_step = False, 6
    line.on_train_batch_end(trainer, None, None, None, 0)
    assert capsys.readouterr().out == ""


# ------------------------------------------------------------------------------------------------------ curves
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


def test_curves_show_smoothed_loss_over_raw_lr_and_std_with_the_collapse_threshold(tmp_path):
    steps = range(40)
    metrics = {"loss": [(s, 2.0 - s / 40 + (0.3 if s % 2 else -0.3)) for s in steps],
               "lr": [(s, 1e-3 * s / 40) for s in steps],
               "std_frm_tea": [(s, 0.05) for s in steps], "std_frm_stu": [(s, 0.04) for s in steps],
               "ema": [(s, 0.99) for s in steps], "unplotted": [(0, 1.0)]}
    figure = curves_figure(metrics, collapse_std=0.01)
    titles = [ax.get_title() for ax in figure.axes]
    assert titles == ["loss (smoothed over raw)", "learning rate", "embedding std (collapse < threshold)",
                      "EMA momentum"]
    loss_ax, _, std_ax, _ = figure.axes
    raw, smoothed = loss_ax.get_lines()
    assert list(raw.get_ydata()) == [v for _, v in metrics["loss"]]
    def variation(values):
        return sum(abs(a - b) for a, b in zip(values[1:], values[:-1]))

    assert variation(list(smoothed.get_ydata())) < 0.5 * variation(list(raw.get_ydata()))
    labels = [line.get_label() for line in std_ax.get_lines()]
    assert labels == ["std_frm_stu", "std_frm_tea", "collapse 0.01"]
    assert list(std_ax.get_lines()[-1].get_ydata()) == [0.01, 0.01]
    import matplotlib.pyplot as plt

    plt.close(figure)
    folder = tmp_path / "csv_logs" / "version_0"
    folder.mkdir(parents=True)
    (folder / "metrics.csv").write_text("step,loss,lr\n0,2.0,0.0\n1,1.5,0.1\n")
    out = plot_curves(tmp_path, tmp_path / "curves.png", collapse_std=0.01)
    assert out.read_bytes()[:4] == b"\x89PNG" and not list(tmp_path.glob(".curves.png.tmp-*"))
    with pytest.raises(ValueError, match="none of the plotted metrics"):
        curves_figure({"other": [(0, 1.0)]})


def test_smoothing_is_a_debiased_running_average():
    assert smooth([1.0, 1.0, 1.0], 0.9) == pytest.approx([1.0, 1.0, 1.0])
    assert smooth([0.0, 10.0], 0.5) == pytest.approx([0.0, 10.0 * 0.5 / 0.75])
    assert smooth([3.0, 4.0, 5.0]) == [3.0, 4.0, 5.0]  # too few points to smooth


# ------------------------------------------------------------------------------------------------ checkpoints
class Opaque:
    """An object a weights_only load must refuse (no allow-list names it)."""


def test_checkpoints_are_written_atomically_and_read_weights_only(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "sub" / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(2)}, "global_step": 3}, path)
    assert torch.equal(io.load_checkpoint(path)["state_dict"]["w"], torch.ones(2))
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]
    torch.save({"obj": Opaque()}, tmp_path / "evil.ckpt")  # arbitrary objects are refused
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        read_checkpoint(tmp_path / "evil.ckpt")
    with pytest.raises(FileNotFoundError, match="not found"):
        read_checkpoint(tmp_path / "none.ckpt")


def test_resume_point_refuses_another_model_shape(tmp_path):
    assert resume_point(tmp_path, {}, ("arch",)) is None
    AtomicCheckpointIO().save_checkpoint({"global_step": 7, "hyper_parameters": {"arch": "tiny", "n_mels": 64}},
                                         tmp_path / "last.ckpt")
    assert resume_point(tmp_path, {"arch": "tiny", "n_mels": 64, "method": "frame"}, ("method", "arch")) == \
        (tmp_path / "last.ckpt", 7)
    with pytest.raises(ValueError, match="arch: 'tiny' in .*'small' now"):
        resume_point(tmp_path, {"arch": "small", "n_mels": 64}, ("arch", "n_mels"))


# ------------------------------------------------------------------------------------------------ imports
def test_lightning_is_imported_only_where_training_needs_it():
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    code = (
        "import sys\n"
        "import atst, hear_atst\n"
        "assert 'atst.training' not in sys.modules, 'import atst imported atst.training'\n"
        "import atst.training.config, atst.training.launch, atst.training.schedules, atst.training.optim\n"
        "import atst.training.ema, atst.training.distributed, atst.training.heads, atst.training.curves\n"
        "import atst.training.corpus, atst.training.corpus_datasets, pretrain.cli\n"
        "found = sorted(m for m in sys.modules if 'lightning' in m)\n"
        "assert not found, found\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
