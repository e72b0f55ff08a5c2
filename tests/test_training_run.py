"""The training kit's run machinery: RunConfig and its flags, flag checks, launcher topology and rank, the run folder
and its lock, the Trainer, the progress line, the curves PNG, checkpoint files and the resume point (with its type
and fit checks)."""
from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from atst.training.callbacks import ProgressLine, progress_text
from atst.training.checkpoint_io import AtomicCheckpointIO, read_checkpoint, resume_point
from atst.training.config import RunConfig, add_run_arguments, check_flag, default_workers, run_config_from_args
from atst.training.curves import curves_figure, plot_curves, read_metrics, smooth
from atst.training.launch import launch_rank, launcher_topology
from atst.training.run_folder import LOCK_NAME, SavePathInUse, claim_save_path
from conftest import subprocess_env


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


@pytest.mark.parametrize("value, kwargs, message", [
    (0, dict(low=1, high=64, integer=True), r"--x must be an integer in \[1, 64\], got 0"),
    (2.0, dict(low=1, integer=True), r"--x must be an integer >= 1, got 2.0"),
    (True, dict(low=0, integer=True), r"--x must be an integer >= 0, got True"),
    (-1.0, dict(low=0.0, low_open=True, note="per 256 samples"), r"--x must be a finite number > 0 \(per 256 samples\), got -1.0"),
    (float("nan"), dict(low=0.0), r"--x must be a finite number >= 0, got nan"),
    (float("inf"), dict(), r"--x must be a finite number, got inf"),
    (1.0, dict(low=0.0, high=1.0, low_open=True, high_open=True), r"--x must be a finite number in \(0, 1\), got 1.0"),
])
def test_check_flag_names_the_flag_the_accepted_values_and_the_value_given(value, kwargs, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        check_flag("--x", value, **kwargs)
    check_flag("--x", 0.5, 0.0, 1.0)
    check_flag("--x", 3, 1, integer=True)


def test_launch_rank_picks_the_one_process_that_is_global_rank_zero():
    assert launch_rank(2, {}) == 0  # the process a user started (it starts the others itself)
    assert launch_rank(2, {"NODE_RANK": "1"}) == 2  # ... on the second node of a plain multi-node launch
    assert launch_rank(2, {"LOCAL_RANK": "1", "NODE_RANK": "0", "WORLD_SIZE": "2"}) == 1  # a rank Lightning started
    assert launch_rank(1, {"LOCAL_WORLD_SIZE": "1", "WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "0"}) == 1
    assert launch_rank(1, {"LOCAL_WORLD_SIZE": "1", "WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}) == 0
    assert launch_rank(4, {"SLURM_NTASKS_PER_NODE": "4", "SLURM_NNODES": "2", "SLURM_PROCID": "5"}) == 5


# ------------------------------------------------------------------------------------------ run folder and lock
_HOLDER = """
import os, sys, time
from pathlib import Path
from atst.training.run_folder import claim_save_path
lock = claim_save_path(Path(sys.argv[1]), take_lock=True)
child = os.fork()  # a forked child (as a data-loader worker) must not keep the lock once the holder is gone
if child == 0:
    time.sleep(120)
    os._exit(0)
print(os.getpid(), child, flush=True)
time.sleep(120)
"""


def test_a_second_claim_of_a_save_path_is_refused_naming_the_holder_and_a_kill_frees_it(tmp_path):
    save = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(save)], stdout=subprocess.PIPE, text=True,
                              env=subprocess_env())
    child = None
    try:
        pid, child = (int(word) for word in holder.stdout.readline().split())
        with pytest.raises(SavePathInUse, match=rf"--save_path {save} is in use by another run \(PID {pid} on host "
                                                rf"\S+, started \d{{4}}-.*; wait for it to end"):
            claim_save_path(save, take_lock=True)
        claim_save_path(save, take_lock=False)  # other ranks of the same run do not take it
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
        deadline = time.monotonic() + 10  # the kernel frees it at the holder's death, not when its child ends
        lock = None
        while lock is None:
            try:
                lock = claim_save_path(save, take_lock=True)
            except SavePathInUse:
                assert time.monotonic() < deadline, "the lock outlived its holder"
                time.sleep(0.1)
        assert os.path.exists(f"/proc/{child}")  # the forked child still runs: it did not keep the lock
        with pytest.raises(SavePathInUse, match=f"PID {os.getpid()} "):  # a second claim in one process too
            claim_save_path(save, take_lock=True)
        lock.release()
        claim_save_path(save, take_lock=True).release()
    finally:
        if holder.poll() is None:
            holder.kill()
        if child:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_save_path_that_cannot_be_a_run_folder_is_refused_up_front(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ValueError, match=f"--save_path {a_file} is a file; it must be a folder"):
        claim_save_path(a_file, take_lock=True)
    with pytest.raises(ValueError, match=f"--save_path {a_file / 'run'} cannot be created \\(NotADirectoryError"):
        claim_save_path(a_file / "run", take_lock=True)
    lock = claim_save_path(tmp_path / "new" / "run", take_lock=True)
    assert (tmp_path / "new" / "run" / LOCK_NAME).is_file()
    lock.release()


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
    AtomicCheckpointIO().save_checkpoint({"global_step": 7, "hyper_parameters": {"arch": "tiny", "n_mels": 64},
                                          "state_dict": {}, "optimizer_states": []}, tmp_path / "last.ckpt")
    assert resume_point(tmp_path, {"arch": "tiny", "n_mels": 64, "method": "frame"}, ("method", "arch")) == \
        (tmp_path / "last.ckpt", 7)
    with pytest.raises(ValueError, match="arch: 'tiny' in .*'small' now"):
        resume_point(tmp_path, {"arch": "small", "n_mels": 64}, ("arch", "n_mels"))


def _training_checkpoint(**changes) -> dict:
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW([{"params": [model.weight]}, {"params": [model.bias]}])
    checkpoint = {"global_step": 5, "epoch": 0, "hyper_parameters": {"arch": "tiny"}, "loops": {}, "callbacks": {},
                  "lr_schedulers": [], "state_dict": {f"net.{k}": v for k, v in model.state_dict().items()},
                  "optimizer_states": [optimizer.state_dict()]}
    checkpoint.update(changes)
    return checkpoint


@pytest.mark.parametrize("changes, key", [
    (dict(hyper_parameters=["arch", "tiny"]), r"'hyper_parameters' must be a dict, found list"),
    (dict(optimizer_states={"state": {}}), r"'optimizer_states' must be a list of optimizer states, found dict"),
    (dict(optimizer_states=["adamw"]), r"optimizer_states\[0\] must be an optimizer state dict, found str 'adamw'"),
    (dict(optimizer_states=[{"state": {}, "param_groups": [{"params": 3}]}]),
     r"optimizer_states\[0\]\['param_groups'\]\[0\]\['params'\] must be a list, found int 3"),
    (dict(optimizer_states=[{"state": [], "param_groups": []}]), r"optimizer_states\[0\]\['state'\] must be a dict"),
    (dict(state_dict={"net.weight": "w"}), r"state_dict\['net.weight'\] must be a tensor, found str 'w'"),
    (dict(global_step="5"), r"'global_step' must be an int >= 0, found str '5'"),
    (dict(global_step=-1), r"'global_step' must be an int >= 0, found -1"),
    (dict(loops=[]), r"'loops' must be a dict, found list"),
    (dict(optimizer_states=None), r"'optimizer_states' must be a list of optimizer states, found NoneType None"),
])
def test_resume_point_names_the_file_and_the_key_of_a_mistyped_checkpoint(tmp_path, changes, key):
    AtomicCheckpointIO().save_checkpoint(_training_checkpoint(**changes), tmp_path / "last.ckpt")
    with pytest.raises(ValueError, match=f"^{tmp_path / 'last.ckpt'}: {key}.*; it cannot be resumed: move it away"):
        resume_point(tmp_path, {"arch": "tiny"}, ("arch",))


def test_resume_point_refuses_a_checkpoint_of_another_make_or_one_that_does_not_fit(tmp_path):
    last = tmp_path / "last.ckpt"
    torch.save([1, 2], last)
    with pytest.raises(ValueError, match=f"^{last}: the checkpoint must be a dict of training state, found list"):
        resume_point(tmp_path, {}, ())
    AtomicCheckpointIO().save_checkpoint({"state_dict": {}, "global_step": 1}, last)  # weights only
    with pytest.raises(ValueError, match=f"^{last}: key 'optimizer_states' is missing"):
        resume_point(tmp_path, {}, ())
    net = torch.nn.Module()
    net.net = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW([{"params": [net.net.weight]}, {"params": [net.net.bias]}])
    AtomicCheckpointIO().save_checkpoint(_training_checkpoint(), last)
    assert resume_point(tmp_path, {}, (), model=net, optimizers=[optimizer]) == (last, 5)
    wider = torch.nn.Module()
    wider.net = torch.nn.Linear(4, 2)
    with pytest.raises(ValueError, match=r"state_dict has other shapes for 1 tensor\(s\) of this model, e.g. "
                                         r"net.weight \(2, 3\) \(model \(2, 4\)\)"):
        resume_point(tmp_path, {}, (), model=wider, optimizers=[optimizer])
    one_group = torch.optim.AdamW(net.parameters())
    with pytest.raises(ValueError, match=r"optimizer_states\[0\]\['param_groups'\] has groups of \[1, 1\] "
                                         r"parameters; this run's optimizer has \[2\]"):
        resume_point(tmp_path, {}, (), model=net, optimizers=[one_group])
    with pytest.raises(ValueError, match="optimizer_states holds 1 optimizer"):
        resume_point(tmp_path, {}, (), model=net, optimizers=[])


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
