"""Adapt `heareval.predictions.task_predictions` (heareval 2021.1.3) to PyTorch-Lightning 2 and torch >= 2.6.

Only names inside that module's namespace are replaced (its installed file is never edited); training, model
selection and scoring are heareval's own code, so scores are those of the stock runner. The five adjustments:

1. `pl.Trainer(gpus=...)`: the module sees a Trainer that maps `gpus` to `accelerator`/`devices`.
2. `validation_epoch_end`/`test_epoch_end` (removed in PL 2): the prediction models are subclasses that collect
   the step outputs and hand them to heareval's `_score_epoch_end` from `on_*_epoch_end`.
3. `torch.load(best_model_path)`: the module sees a `torch` whose `load` reads weights-only with an allow-list of
   exactly the classes and functions heareval's parameter grid can put in a checkpoint's hyper-parameters
   (`torch.nn.Identity`, `BatchNorm1d`, `LayerNorm`, `torch.optim.Adam`, `torch.nn.init.xavier_*`, ...), so no
   other object is ever unpickled.
4. `trainer.fit_loop.current_epoch = epoch` (a silent no-op since PL 1.6): the best epoch is restored through
   `fit_loop.epoch_progress.current.completed`, which `LightningModule.current_epoch` reads.
5. `trainer.test(ckpt_path=...)`: reads the checkpoint weights-only with the same allow-list.
"""
from __future__ import annotations

import inspect
import types
from typing import Any, Dict, List

MARK = "_hear_atst_compat"


def _devices_from_gpus(gpus: Any) -> Dict[str, Any]:
    """Lightning-1 `gpus` (None, int, list of indices, or "0,1") as Lightning-2 `accelerator`/`devices`."""
    if gpus is None or gpus == 0 or gpus == [] or gpus == "":
        return {"accelerator": "cpu", "devices": 1}
    return {"accelerator": "gpu", "devices": gpus}


def grid_globals(*param_grids: Dict[str, List[Any]]) -> List[Any]:
    """The classes and functions heareval parameter grids can store in a checkpoint's hyper-parameters."""
    found = {id(v): v for grid in param_grids for values in grid.values() for v in values if callable(v)}
    return list(found.values())


def _trainer_class(pl: types.ModuleType, allowed: List[Any]) -> type:
    import torch

    major = int(pl.__version__.split(".")[0])
    takes_weights_only = "weights_only" in inspect.signature(pl.Trainer.test).parameters

    class CompatTrainer(pl.Trainer):  # type: ignore[misc, valid-type]
        """`pl.Trainer` accepting Lightning-1 `gpus=` and testing the runner's own checkpoints weights-only."""

        def __init__(self, *args: Any, gpus: Any = None, **kwargs: Any) -> None:
            if major >= 2:
                if "accelerator" not in kwargs and "devices" not in kwargs:
                    kwargs.update(_devices_from_gpus(gpus))
            else:
                kwargs["gpus"] = gpus
            super().__init__(*args, **kwargs)

        def test(self, *args: Any, **kwargs: Any) -> Any:
            if takes_weights_only:
                kwargs.setdefault("weights_only", True)
            with torch.serialization.safe_globals(allowed):
                return super().test(*args, **kwargs)

    return CompatTrainer


class _Proxy(types.ModuleType):
    """A module that answers from `target` except for the names given as overrides."""

    def __init__(self, target: types.ModuleType, **overrides: Any) -> None:
        super().__init__(target.__name__, getattr(target, "__doc__", None))
        self._target = target
        self.__dict__.update(overrides)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


class _CollectEpochOutputs:
    """Mixin for heareval's prediction models: PL 2 epoch-end hooks fed with the collected step outputs."""

    validation_epoch_end = None  # PL 2 refuses models whose `validation_epoch_end` is callable
    test_epoch_end = None

    def _outputs(self, name: str) -> List[Dict[str, Any]]:
        store = self.__dict__.setdefault("_hear_atst_outputs", {})
        return store.setdefault(name, [])

    def on_validation_epoch_start(self) -> None:
        self._outputs("val").clear()

    def on_test_epoch_start(self) -> None:
        self._outputs("test").clear()

    def validation_step(self, batch: Any, batch_idx: int) -> Dict[str, Any]:
        out = super().validation_step(batch, batch_idx)  # type: ignore[misc]
        self._outputs("val").append(out)
        return out

    def test_step(self, batch: Any, batch_idx: int) -> Dict[str, Any]:
        out = super().test_step(batch, batch_idx)  # type: ignore[misc]
        self._outputs("test").append(out)
        return out

    def on_validation_epoch_end(self) -> None:
        outputs = list(self._outputs("val"))
        self._outputs("val").clear()
        self._score_epoch_end("val", outputs)  # type: ignore[attr-defined]

    def on_test_epoch_end(self) -> None:
        outputs = list(self._outputs("test"))
        self._outputs("test").clear()
        self._score_epoch_end("test", outputs)  # type: ignore[attr-defined]


def apply() -> types.ModuleType:
    """Adapt `heareval.predictions.task_predictions` in this process (idempotent); return that module."""
    import pytorch_lightning as pl
    import torch
    from heareval.predictions import task_predictions as tp

    if getattr(tp, MARK, False):
        return tp
    major = int(pl.__version__.split(".")[0])
    allowed = grid_globals(tp.PARAM_GRID, tp.FAST_PARAM_GRID, tp.FASTER_PARAM_GRID,
                           *tp.TASK_SPECIFIC_PARAM_GRID.values())

    def load_own_checkpoint(*args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = True
        with torch.serialization.safe_globals(allowed):
            return torch.load(*args, **kwargs)

    tp.torch = _Proxy(torch, load=load_own_checkpoint)
    tp.pl = _Proxy(pl, Trainer=_trainer_class(pl, allowed))

    if major >= 2:
        for name in ("ScenePredictionModel", "EventPredictionModel"):
            stock = getattr(tp, name)
            setattr(tp, name, type(name, (_CollectEpochOutputs, stock), {"__module__": __name__}))

    stock_test = tp.task_predictions_test

    def task_predictions_test(embedding_path: Any, grid_point: Any, *args: Any, **kwargs: Any) -> Any:
        grid_point.trainer.fit_loop.epoch_progress.current.completed = grid_point.epoch
        return stock_test(embedding_path, grid_point, *args, **kwargs)

    tp.task_predictions_test = task_predictions_test
    setattr(tp, MARK, True)
    return tp
