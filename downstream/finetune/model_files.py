"""The model files of a fine-tuning run (`downstream.model_file` format, `downstream.kind = "finetune"`).

While training, the best model so far is `best-step=NNNNNNN.ckpt` (the optimizer step it was taken at), written
atomically by rank 0 when a validation improves on it, the previous one removed after. At the end the selected
model is written once more as `best.ckpt`, with its test metric, and the step-named file goes. Step-named files make
a resumed run exact: `last.ckpt` records the step of the best so far, and a best file written after it (by a run
killed before its next checkpoint) is recognised as not yet chosen and removed (`prune`).
"""
from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from atst import LoadedCheckpoint
from atst.fileio import atomic_open

from ..model_file import ENCODER_PREFIX, HEAD_PREFIX, write_model_file
from .model import FinetuneModel

BEST = "best.ckpt"
_BEST_STEP = re.compile(r"^best-step=(\d+)\.ckpt$")


class ModelFiles:
    """The model files in `folder`. `loaded`: the source checkpoint (its hyper-parameters, and the front end the
    run uses); `info`: the `downstream` description without `selected`, `valid` and `test`."""

    def __init__(self, folder: Path, loaded: LoadedCheckpoint, info: Mapping[str, Any]) -> None:
        self.folder, self.loaded, self.info = Path(folder), loaded, dict(info)

    def best_path(self, step: int) -> Path:
        return self.folder / f"best-step={step:07d}.ckpt"

    def steps(self) -> list[int]:
        """Steps of the best-step files present."""
        found = (_BEST_STEP.match(path.name) for path in self.folder.glob("best-step=*.ckpt"))
        return sorted(int(match.group(1)) for match in found if match)

    def _write(self, path: Path, model: FinetuneModel, record: Mapping[str, Any]) -> Path:
        description = {**self.info, **record}
        return write_model_file(path, replace(self.loaded, encoder=model.encoder), model.head.state_dict(),
                                description)

    def save_best(self, model: FinetuneModel, step: int, record: Mapping[str, Any]) -> Path:
        """Write the best-so-far file of `step` (`record`: selected, valid), then remove the others."""
        path = self._write(self.best_path(step), model, record)
        self.prune(step)
        return path

    def prune(self, keep: Optional[int]) -> None:
        """Remove every best-step file but that of step `keep` (None: all)."""
        for step in self.steps():
            if step != keep:
                self.best_path(step).unlink(missing_ok=True)

    def load(self, model: FinetuneModel, step: int) -> None:
        """Put the weights of the best-step file of `step` into `model` (encoder and head)."""
        path = self.best_path(step)
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: the best model of step {step} was not kept; the run folder "
                                    f"was changed by hand (start afresh in a new --out)")
        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
        for prefix, module in ((ENCODER_PREFIX, model.encoder), (HEAD_PREFIX, model.head)):
            module.load_state_dict({key[len(prefix):]: value for key, value in state.items()
                                    if key.startswith(prefix)})

    def write_final(self, model: FinetuneModel, record: Mapping[str, Any]) -> Path:
        """`best.ckpt` of `model` (`record`: selected, valid, test), then no best-step file is left."""
        path = self._write(self.folder / BEST, model, record)
        self.prune(None)
        return path


def link_or_copy(source: Path, target: Path) -> None:
    """`target` becomes the same file as `source` (a hard link, else a copy written atomically)."""
    target.unlink(missing_ok=True)
    try:
        target.hardlink_to(source)
    except OSError:
        with open(source, "rb") as reader, atomic_open(target, "wb") as writer:
            while block := reader.read(1 << 20):
                writer.write(block)


__all__ = ["BEST", "ModelFiles", "link_or_copy"]
