"""`atst-hear` and the compatibility layer: unit tests (fast) and real harness runs in subprocesses (slow)."""
from __future__ import annotations

import json
import pickle
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from hear_atst import tf_standin
from hear_atst.compat import lightning as compat_lightning
from hear_atst.compat import tf as compat_tf
from hear_atst.launcher import main as launcher_main
from atst.synthetic import make_tasks

BIN = Path(sys.executable).parent
# Runs the launcher in a process where any `import tensorflow` fails, as on a machine without TensorFlow.
WITHOUT_TF = """
import sys
class BlockTensorflow:
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError("No module named 'tensorflow' (blocked by the test)")
        return None
sys.meta_path.insert(0, BlockTensorflow())
from hear_atst.launcher import main
sys.exit(main(sys.argv[1:]))
"""


def run(args: list, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def atst_hear_without_tf(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run([sys.executable, "-c", WITHOUT_TF, *args], cwd=cwd)


# --------------------------------------------------------------------------------------------- fast

def test_standin_serves_torch_models_and_refuses_the_rest():
    standin = types.ModuleType("tensorflow_standin_under_test")
    spec_path = tf_standin.directory() / "tensorflow" / "__init__.py"
    exec(compile(spec_path.read_text(), str(spec_path), "exec"), standin.__dict__)
    assert not isinstance(torch.nn.Linear(1, 1), standin.Module)
    assert standin.test.is_gpu_available(cuda_only=False) == torch.cuda.is_available()
    with standin.device("/GPU:0"):
        pass
    with pytest.raises(AttributeError, match="Install tensorflow to evaluate"):
        standin.float32


def test_auto_policy_uses_standin_when_tensorflow_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # `import tensorflow` raises ImportError
    assert compat_tf.select_tensorflow("auto").startswith("stand-in (tensorflow not importable")
    assert tf_standin.is_standin(sys.modules["tensorflow"])
    import tensorflow
    assert tf_standin.is_standin(tensorflow)


def test_real_policy_without_tensorflow_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    with pytest.raises(RuntimeError, match="install tensorflow-cpu"):
        compat_tf.select_tensorflow("real")
    with pytest.raises(ValueError, match="choose one of auto, real, stand-in"):
        compat_tf.select_tensorflow("gpu")


def fake_tensorflow(gpus: list) -> types.ModuleType:
    fake = types.ModuleType("tensorflow")
    fake.__version__ = "9.9-fake"
    fake.config = types.SimpleNamespace(list_physical_devices=lambda kind: list(gpus))
    return fake


@pytest.mark.parametrize("torch_cuda, tf_gpus, expected", [
    (True, [], "stand-in (torch sees CUDA, tensorflow sees no GPU)"),  # tensorflow-cpu on a CUDA machine
    (True, ["GPU:0"], "tensorflow 9.9-fake"),
    (False, [], "tensorflow 9.9-fake"),
])
def test_auto_policy_keeps_real_tensorflow_only_where_usable(monkeypatch, torch_cuda, tf_gpus, expected):
    monkeypatch.setitem(sys.modules, "tensorflow", fake_tensorflow(tf_gpus))
    monkeypatch.setattr(compat_tf, "_torch_sees_cuda", lambda: torch_cuda)
    assert compat_tf.select_tensorflow("auto") == expected
    assert tf_standin.is_standin(sys.modules["tensorflow"]) == expected.startswith("stand-in")


@pytest.mark.parametrize("gpus, expected", [
    (None, {"accelerator": "cpu", "devices": 1}),
    ([0], {"accelerator": "gpu", "devices": [0]}),
    (2, {"accelerator": "gpu", "devices": 2}),
])
def test_lightning1_gpus_maps_to_accelerator_and_devices(gpus, expected):
    assert compat_lightning._devices_from_gpus(gpus) == expected


def test_prediction_compat_adapts_heareval_in_process_only():
    tp = compat_lightning.apply()
    assert compat_lightning.apply() is tp  # idempotent
    for name in ("ScenePredictionModel", "EventPredictionModel"):
        cls = getattr(tp, name)
        assert cls.validation_epoch_end is None and cls.test_epoch_end is None  # what PL 2 checks
        assert callable(cls.on_validation_epoch_end) and callable(cls.on_test_epoch_end)
    trainer = tp.pl.Trainer(gpus=None, max_epochs=1, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False)
    assert type(trainer.accelerator).__name__ == "CPUAccelerator"
    installed = Path(tp.__file__).read_text()
    assert "gpus=gpus" in installed and "validation_epoch_end" in installed  # the installed file is untouched


class _Exploit:
    def __reduce__(self):
        return (print, ("EXPLOITED",))


def test_prediction_compat_reads_grid_checkpoints_weights_only(tmp_path):
    tp = compat_lightning.apply()
    grid = {"hidden_norm": torch.nn.BatchNorm1d, "embedding_norm": torch.nn.Identity,
            "initialization": torch.nn.init.xavier_uniform_, "optim": torch.optim.Adam, "lr": 1e-3}
    torch.save({"hyper_parameters": {"conf": grid}, "state_dict": {"w": torch.ones(2)}}, tmp_path / "grid.ckpt")
    assert tp.torch.load(tmp_path / "grid.ckpt")["hyper_parameters"]["conf"] == grid
    torch.save({"hyper_parameters": {"conf": _Exploit()}}, tmp_path / "evil.ckpt")
    with pytest.raises(pickle.UnpicklingError, match="print"):
        tp.torch.load(tmp_path / "evil.ckpt")
    with pytest.raises(pickle.UnpicklingError):
        tp.torch.load(tmp_path / "evil.ckpt", weights_only=False)  # the runner cannot switch it off either


def test_launcher_rejects_bad_input_with_clear_messages(tmp_path, capsys):
    with pytest.raises(SystemExit):
        launcher_main(["embed", "--model-options", "[1]"])
    assert "must be a JSON object" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        launcher_main(["embed", "--model", str(tmp_path / "nope.ckpt")])
    assert "does not exist" in capsys.readouterr().err
    assert launcher_main(["predict", str(tmp_path)]) == 2
    assert "run `atst-hear embed` first" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------- slow

@pytest.fixture(scope="module")
def harness_run(tmp_path_factory, tiny_frame_ckpt) -> dict:
    """Tiny generated tasks embedded by `atst-hear embed` (TensorFlow blocked) with n_blocks=1."""
    root = tmp_path_factory.mktemp("harness")
    make_tasks(root / "tasks", size="tiny", seed=3, tasks=["synth_scene", "synth_timbre", "synth_events"])
    proc = atst_hear_without_tf("embed", "--model", str(tiny_frame_ckpt), "--tasks-dir", "tasks",
                                "--embeddings-dir", "embeddings", "--model-options", '{"n_blocks": 1}', cwd=root)
    return {"root": root, "embed_output": proc.stdout + proc.stderr,
            "emb": root / "embeddings" / "hear_atst-n-blocks=1"}


@pytest.mark.slow
def test_validate_passes_without_tensorflow(tmp_path, tiny_clip_ckpt):
    # ATST-Clip here; ATST-Frame goes through the stock `hear-validator` command in test_hear_api
    proc = atst_hear_without_tf("validate", "--model", str(tiny_clip_ckpt), cwd=tmp_path)
    assert "tensorflow: stand-in (tensorflow not importable" in proc.stdout
    assert "Looks good!" in proc.stdout


@pytest.mark.slow
def test_generated_tasks_embed_completely_without_warnings(harness_run):
    assert "missing" not in harness_run["embed_output"].lower()
    assert "warning" not in harness_run["embed_output"].lower()
    for task in sorted((harness_run["root"] / "tasks").iterdir()):
        meta = json.loads((task / "task_metadata.json").read_text())
        for split in meta["splits"]:
            keys = json.loads((task / f"{split}.json").read_text())
            wavs = list((task / "16000" / split).glob("*.wav"))
            dims = json.loads((harness_run["emb"] / task.name / f"{split}.embedding-dimensions.json").read_text())
            per_file = list((harness_run["emb"] / task.name / split).glob("*.embedding.npy"))
            assert len(per_file) == len(keys) == len(wavs), (task.name, split)
            if meta["embedding_type"] == "scene":
                assert dims[0] == len(keys)
            else:  # one row per 40 ms token of every clip
                assert dims[0] == len(keys) * int(meta["sample_duration"] * 1000 // 40)


@pytest.mark.slow
def test_model_options_set_the_stored_embedding_width(harness_run, tiny_frame_ckpt):
    narrow = json.loads((harness_run["emb"] / "synth_scene-v1-full" / "test.embedding-dimensions.json").read_text())
    assert narrow[1] == 192  # n_blocks=1: one block of the tiny (D=192) encoder
    root = harness_run["root"]
    atst_hear_without_tf("embed", "--model", str(tiny_frame_ckpt), "--tasks-dir", "tasks", "--task",
                         "synth_scene-v1-full", "--embeddings-dir", "embeddings", cwd=root)
    wide = json.loads((root / "embeddings" / "hear_atst" / "synth_scene-v1-full" /
                       "test.embedding-dimensions.json").read_text())
    assert wide == [narrow[0], 12 * 192]
    assert sorted(p.name for p in (root / "embeddings" / "hear_atst").iterdir()) == ["synth_scene-v1-full"]


def score_keys(scores: dict) -> dict:
    """Everything the runner stores except wall times, paths and object addresses in hparams."""
    def clean(value):
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if "time_in_min" not in k}
        if isinstance(value, str):
            return re.sub(r" at 0x[0-9a-fA-F]+", "", value)
        return value
    return {k: clean(v) for k, v in scores.items() if k != "embedding_path"}


@pytest.mark.slow
def test_predict_scores_the_metadata_metrics_the_same_on_two_runs(harness_run, tmp_path):
    tasks = ["synth_scene-v1-full", "synth_events-v1-full", "synth_timbre-v1-full"]
    results = []
    for attempt in ("a", "b"):
        copy = tmp_path / attempt
        shutil.copytree(harness_run["emb"], copy)
        proc = run([str(BIN / "atst-hear"), "predict", *[str(copy / t) for t in tasks], "--grid", "faster",
                    "--grid-points", "2"], cwd=tmp_path)
        assert "synth_events-v1-full: {" in proc.stdout
        results.append({t: json.loads((copy / t / "test.predicted-scores.json").read_text()) for t in tasks})
    assert score_keys(results[0]["synth_scene-v1-full"]) == score_keys(results[1]["synth_scene-v1-full"])
    assert score_keys(results[0]["synth_events-v1-full"]) == score_keys(results[1]["synth_events-v1-full"])
    assert score_keys(results[0]["synth_timbre-v1-full"]) == score_keys(results[1]["synth_timbre-v1-full"])

    for task in tasks:
        evaluation = json.loads((harness_run["emb"] / task / "task_metadata.json").read_text())["evaluation"]
        scores = results[0][task]
        per_fold = [scores[k] for k in scores if k == "test" or k.startswith("fold")]
        assert per_fold, scores.keys()
        for fold in per_fold:
            for metric in evaluation:
                assert np.isfinite(fold[f"test_{metric}"]), (task, metric)
        if task == "synth_timbre-v1-full":
            assert len(per_fold) == 3 and "test_top1_acc_mean" in scores["aggregated_scores"]

    # the stored top-1 accuracy is that of the stored test predictions (nothing re-weighted on the way)
    copy = tmp_path / "a" / "synth_scene-v1-full"
    with open(copy / "test.predictions.pkl", "rb") as f:
        stored = pickle.load(f)
    top1 = float((stored["prediction"].argmax(1) == stored["target"].argmax(1)).float().mean())
    assert top1 == pytest.approx(results[0]["synth_scene-v1-full"]["test"]["test_top1_acc"], abs=1e-6)
