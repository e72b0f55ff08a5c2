"""The demo's stages: each runs one command line of the project in a subprocess and checks what it needs.

The driver imports no door: it runs their command lines (`python -m pretrain`, `python -m hear_atst.launcher`,
`python -m s3prl_upstream`) and only asks `importlib` whether a door is installed.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from ..fileio import atomic_write_text
from .report import write_report
from .settings import ARCH, MODELS, PRETRAIN_PROCESSES, STAGE_HELP, STAGES, Settings

PY = sys.executable
REPO_ROOT = Path(__file__).resolve().parents[2]
HEARTBEAT_S = 20
DEFAULT_SHOW = r"^\[|Looks good|step|loss|acc|Error"


def child_env() -> Dict[str, str]:
    """The environment of every stage: this checkout first on PYTHONPATH, so the stages (run with cwd=OUT) import
    the same packages as the demo even while an editable install is being rebuilt."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                                            if p])
    return env


class StageError(RuntimeError):
    """A stage could not run or its command failed; the message says why."""


def need_module(module: str, what: str) -> None:
    """Raise StageError unless `module` is importable (checked without importing it)."""
    if importlib.util.find_spec(module) is None:
        raise StageError(f"`python -m {module}` ({what}) is not available in this environment: the "
                         f"{module}/ package does not exist yet or is not installed (pip install -e .)")


def s3prl_config_path(name: str) -> Path:
    """The config `name` (a file stem) shipped in `s3prl_upstream/configs`; StageError naming the shipped ones
    when there is no such config."""
    need_module("s3prl_upstream", "the atst-s3prl launcher")
    spec = importlib.util.find_spec("s3prl_upstream")
    assert spec is not None and spec.submodule_search_locations
    configs = Path(list(spec.submodule_search_locations)[0]) / "configs"
    available = sorted(p.stem for p in configs.glob("*.yaml"))
    if name not in available:
        raise StageError(f"no s3prl config named {name!r} in {configs}; available: {', '.join(available)}")
    return configs / f"{name}.yaml"


@dataclass
class Demo:
    """One demo run into `out`: stage methods `stage_<name>`, `execute` runs a list of them."""
    out: Path
    settings: Settings
    verbose: bool = False
    timings: Dict[str, float] = field(default_factory=dict)  # wall seconds per stage
    status: Dict[str, str] = field(default_factory=dict)     # "ok" or "failed: why" per stage

    # ---------------------------------------------------------------------------------------- paths
    @property
    def corpus(self) -> Path:
        return self.out / "corpus"

    @property
    def tasks(self) -> Path:
        return self.out / "tasks"

    def checkpoint(self, model: str) -> Path:
        return self.out / "pretrain" / "last.ckpt" if model == "pretrained" else self.out / "random_init.ckpt"

    def embeddings(self, model: str) -> Path:
        return self.out / "embeddings" / model

    def existing_checkpoint(self, model: str) -> Path:
        return self.need(self.checkpoint(model), "pretrain" if model == "pretrained" else "random")

    # ------------------------------------------------------------------------------------- running
    def run(self, stage: str, args: Sequence[object], show: str = DEFAULT_SHOW, log_name: Optional[str] = None) -> None:
        """Run one command, logging everything to `logs/<log_name or stage>.log`; echo lines matching `show` and
        a heartbeat every 20 s. StageError when it exits non-zero."""
        log_path = self.out / "logs" / f"{log_name or stage}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        pattern = re.compile(show)
        print(f"  $ {' '.join(str(a) for a in args)}", flush=True)
        last = {"line": ""}
        start = time.perf_counter()
        with open(log_path, "a") as log:
            proc = subprocess.Popen([str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, bufsize=1, cwd=self.out, env=child_env())
            done = threading.Event()

            def heartbeat() -> None:
                while not done.wait(HEARTBEAT_S):
                    print(f"  ... {stage}: {time.perf_counter() - start:.0f} s, last output: "
                          f"{last['line'][:100]}", flush=True)

            threading.Thread(target=heartbeat, daemon=True).start()
            assert proc.stdout is not None
            for raw in proc.stdout:
                log.write(raw)
                line = raw.rstrip().split("\r")[-1]
                if line.strip():
                    last["line"] = line.strip()
                if self.verbose or pattern.search(line):
                    print(f"  | {line[:160]}", flush=True)
            code = proc.wait()
            done.set()
        if code != 0:
            tail = log_path.read_text().splitlines()[-15:]
            raise StageError(f"command exited with {code}; last lines of {log_path}:\n    " + "\n    ".join(tail))

    def need(self, path: Path, stage: str) -> Path:
        if not path.exists():
            raise StageError(f"{path} is missing: run the `{stage}` stage first (or it failed)")
        return path

    def synthetic(self, stage: str, command: str, *args: object, log_name: Optional[str] = None) -> None:
        """Run `python -m atst.synthetic COMMAND ARGS`."""
        self.run(stage, [PY, "-m", "atst.synthetic", command, *args], log_name=log_name)

    # -------------------------------------------------------------------------------------- stages
    def stage_corpus(self) -> None:
        s = self.settings
        self.synthetic("corpus", "corpus", self.corpus, "--n-clips", s.corpus_clips, "--seconds", s.corpus_seconds)

    def stage_tasks(self) -> None:
        self.synthetic("tasks", "tasks", self.tasks, "--size", self.settings.task_size)

    def stage_pretrain(self) -> None:
        need_module("pretrain", "ATST-Frame pre-training")
        s = self.settings
        self.need(self.corpus, "corpus")
        self.run("pretrain", [PY, "-m", "pretrain", "--arch", ARCH, "--data_path", self.corpus, "--save_path",
                              self.out / "pretrain", "--nproc", PRETRAIN_PROCESSES, "--accelerator", "cpu",
                              "--max_steps", s.max_steps, "--warmup_steps", s.warmup_steps, "--batch_size_per_gpu",
                              s.batch_size_per_gpu, "--anchor_len", s.anchor_len, "--learning_rate", s.learning_rate,
                              "--ema", s.ema, "--projector_hidden", s.projector_hidden, "--num_workers", 0],
                 show=r"^\[|step|loss|Error|rror")
        self.need(self.checkpoint("pretrained"), "pretrain")

    def stage_random(self) -> None:
        # pre-training initialises its student (and teacher) from seed 0: a seed-0 baseline would be that very
        # starting point, so the baseline uses another seed (same architecture and init scheme)
        self.synthetic("random", "checkpoint", self.checkpoint("random_init"), "--arch", ARCH, "--seed",
                       self.settings.random_seed)

    def stage_validate(self) -> None:
        ckpt = self.existing_checkpoint("pretrained")
        self.run("validate", [PY, "-m", "hear_atst.launcher", "validate", "--model", ckpt])

    def stage_embed(self) -> None:
        self.need(self.tasks, "tasks")
        for model in MODELS:
            ckpt = self.existing_checkpoint(model)
            # the runner skips tasks it finds embedded: a re-run after new tasks or a new checkpoint must not
            # score stale embeddings
            shutil.rmtree(self.embeddings(model), ignore_errors=True)
            self.run("embed", [PY, "-m", "hear_atst.launcher", "embed", "--model", ckpt, "--tasks-dir",
                               self.tasks, "--embeddings-dir", self.embeddings(model)])

    def stage_predict(self) -> None:
        s = self.settings
        for model in MODELS:
            root = self.need(self.embeddings(model) / "hear_atst", "embed")
            task_dirs = sorted(p for p in root.iterdir() if p.is_dir())
            for done in root.glob("*/prediction-done.json"):  # the runner skips tasks marked done
                done.unlink()
            self.run("predict", [PY, "-m", "hear_atst.launcher", "predict", *task_dirs, "--grid", s.grid,
                                 "--grid-points", s.grid_points], show=r"^\[atst-hear\]|Error")

    def stage_s3prl(self) -> None:
        config = s3prl_config_path(self.settings.s3prl_config)
        data = self.out / "speech_commands"
        self.synthetic("s3prl", "speech_commands", data)
        steps = self.settings.s3prl_steps
        overrides = [f"config.downstream_expert.datarc.speech_commands_root={data / 'train'}",
                     f"config.downstream_expert.datarc.speech_commands_test_root={data / 'test'}",
                     "config.downstream_expert.datarc.num_workers=0",
                     # evaluate dev and test once, at the last step, so the log holds the test accuracy
                     f"config.runner.total_steps={steps}", f"config.runner.eval_step={steps}",
                     f"config.runner.save_step={steps}", f"config.runner.log_step={max(1, steps // 10)}"]
        for model in MODELS:
            args: List[object] = [PY, "-m", "s3prl_upstream", "-m", "train", "-u", "atst_frame", "-k",
                                  self.existing_checkpoint(model), "-d", "speech_commands", "-c", config, "-p",
                                  self.out / "s3prl" / model, "--device", "cpu", "-o", ",,".join(overrides)]
            self.run("s3prl", args, show=r"^\[|acc|Error|rror", log_name=f"s3prl_{model}")

    def stage_downstream(self) -> None:
        need_module("downstream", "linear evaluation and fine-tuning")
        s = self.settings
        for model in MODELS:
            ckpt = self.existing_checkpoint(model)
            out = self.out / "downstream" / model
            self.run("downstream", [PY, "-m", "downstream", "linear", "--ckpt", ckpt, "--task",
                                    self.task_dir(s.linear_task), "--out", out / "linear", "--protocol", "hear",
                                    "--num_workers", 0], log_name=f"linear_{model}")
            self.run("downstream", [PY, "-m", "downstream", "finetune", "--ckpt", ckpt, "--task",
                                    self.task_dir(s.finetune_task), "--out", out / "finetune",
                                    *self.finetune_args()], log_name=f"finetune_{model}")

    def stage_sed(self) -> None:
        need_module("downstream", "sound event detection")
        s = self.settings
        for model in MODELS:
            self.run("sed", [PY, "-m", "downstream", "sed", "--ckpt", self.existing_checkpoint(model), "--task",
                             self.task_dir(s.sed_task), "--out", self.out / "sed" / model, "--recipe", "default",
                             "--max_epochs", s.sed_epochs, "--warmup_epochs", 1, "--strong_batch", s.sed_batch,
                             "--learning_rate", s.sed_learning_rate, "--psds_eval", "false", "--accelerator", "cpu",
                             "--num_workers", 0, "--progress", "false"], log_name=f"sed_{model}")

    def clip_checkpoint(self, model: str) -> Path:
        """The ATST-Clip checkpoint of `model`: OUT/pretrain_clip/last.ckpt or OUT/random_init_clip.ckpt."""
        return self.out / "pretrain_clip" / "last.ckpt" if model == "pretrained" else self.out / "random_init_clip.ckpt"

    def clip_teacher(self, model: str) -> Path:
        return self.out / "downstream" / model / "clip_finetune"

    def finetune_args(self) -> List[object]:
        s = self.settings
        return ["--protocol", "hear", "--max_epochs", s.finetune_epochs, "--warmup_epochs", 1, "--batch_size_per_gpu",
                s.finetune_batch, "--learning_rate", s.finetune_learning_rate, "--accelerator", "cpu",
                "--num_workers", 0, "--progress", "false"]

    def stage_clip(self) -> None:
        need_module("pretrain", "ATST-Clip pre-training")
        s = self.settings
        self.need(self.corpus, "corpus")
        self.run("clip", [PY, "-m", "pretrain", "--method", "clip", "--arch", ARCH, "--data_path", self.corpus,
                          "--save_path", self.out / "pretrain_clip", "--nproc", PRETRAIN_PROCESSES, "--accelerator",
                          "cpu", "--max_steps", s.clip_max_steps, "--warmup_steps", s.clip_warmup_steps,
                          "--batch_size_per_gpu", s.clip_batch_size_per_gpu, "--train_len", s.clip_train_len,
                          "--positive_len", s.clip_train_len, "--read_len", s.clip_read_len, "--learning_rate",
                          s.clip_learning_rate, "--projector_hidden", s.clip_projector_hidden, "--num_workers", 0],
                 show=r"^\[|step|loss|Error|rror", log_name="pretrain_clip")
        self.need(self.clip_checkpoint("pretrained"), "clip")
        self.synthetic("clip", "checkpoint", self.clip_checkpoint("random_init"), "--arch", ARCH, "--family", "clip",
                       "--seed", s.random_seed, log_name="random_init_clip")
        for model in MODELS:
            self.run("clip", [PY, "-m", "downstream", "finetune", "--ckpt", self.clip_checkpoint(model), "--task",
                              self.task_dir(s.finetune_task), "--out", self.clip_teacher(model),
                              *self.finetune_args()], log_name=f"clip_finetune_{model}")

    def stage_distill(self) -> None:
        need_module("downstream", "ATST-C2F distillation")
        teacher = self.need(self.clip_teacher("pretrained") / "best.ckpt", "clip")
        for model in MODELS:
            self.run("distill", [PY, "-m", "downstream", "distill", "--teacher", teacher.parent, "--ckpt",
                                 self.existing_checkpoint(model), "--task", self.task_dir(self.settings.finetune_task),
                                 "--out", self.out / "downstream" / model / "distill", *self.finetune_args()],
                     log_name=f"distill_{model}")

    def task_dir(self, name: str) -> Path:
        """The generated task `name` (e.g. `synth_timbre`) under OUT/tasks."""
        found = sorted(self.need(self.tasks, "tasks").glob(f"{name}-*"))
        if not found:
            raise StageError(f"no generated task {name!r} under {self.tasks}: run the `tasks` stage first")
        return found[0]

    def stage_report(self) -> None:
        print(write_report(self.out, self.timings, self.status))

    # -------------------------------------------------------------------------------------- driver
    def execute(self, stages: Sequence[str]) -> int:
        """Run `stages` in order; a failed stage is reported and the others still run. Exit status 0 or 1."""
        state_path = self.out / "stages.json"
        if state_path.is_file():  # keep what earlier partial runs measured, for the report
            saved = json.loads(state_path.read_text())
            self.timings.update(saved.get("timings", {}))
            self.status.update(saved.get("status", {}))
        actions: Dict[str, Callable[[], None]] = {name: getattr(self, f"stage_{name}") for name in STAGES}
        total = time.perf_counter()
        for index, name in enumerate(stages, 1):
            print(f"\n=== [{index}/{len(stages)}] {name}: {STAGE_HELP[name]}", flush=True)
            start = time.perf_counter()
            try:
                actions[name]()
                self.status[name] = "ok"
            except StageError as error:
                self.status[name] = f"failed: {str(error).splitlines()[0]}"
                print(f"!!! stage {name} FAILED: {error}", flush=True)
            self.timings[name] = round(time.perf_counter() - start, 1)
            print(f"=== {name}: {self.status[name]} ({self.timings[name]:.1f} s)", flush=True)
            atomic_write_text(state_path, json.dumps({"timings": self.timings, "status": self.status}, indent=2))
        print(f"\ndemo wall time {time.perf_counter() - total:.1f} s; per stage: "
              + ", ".join(f"{k} {v:.1f} s" for k, v in self.timings.items()), flush=True)
        failed = [k for k in stages if self.status.get(k) != "ok"]
        if failed:
            print(f"failed stages: {', '.join(failed)} (logs under {self.out / 'logs'})", flush=True)
        return 1 if failed else 0
