"""The options of `atst-downstream finetune` (official flag names) and the recipe they resolve to.

`FinetuneConfig` holds what the user gave (None = not given); `resolve_recipe` fills the gaps from the official
shell settings of the dataset (`defaults.py`) and the run's topology, checks every value (ValueError naming the flag
and what is accepted) and returns the `Recipe` a run trains with. The run flags (devices, nodes, precision, seed,
workers, gradient clipping, accumulation, checkpoint cadence, progress) are `atst.training.RunConfig`'s.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

from atst.checkpoint import BRANCHES
from atst.training.config import check_flag

from ..linear.readout import PROTOCOLS
from .defaults import MIXUP_BANK, PAPER_GLOBAL_BATCH, OfficialRecipe, official_recipe

MAX_MIXUP_BANK = 1_000_000
GRAD_CLIP = 3.0  # the official gradient_clip_val (the run flag --grad_clip's default for fine-tuning)


@dataclass(frozen=True)
class FinetuneConfig:
    """What `atst-downstream finetune` was given; None: take the official setting of the dataset."""

    ckpt: str
    task: str
    out: str
    protocol: str = "official"
    fold: Optional[int] = None  # k-fold tasks: run this fold only (default: every fold in turn)
    learning_rate: Optional[float] = None  # per 256 clips of global batch
    max_epochs: Optional[int] = None
    warmup_epochs: Optional[int] = None
    batch_size_per_gpu: Optional[int] = None  # default: the paper's global batch of 512 over devices x accumulation
    n_last_blocks: int = 1
    layerwise_lr: float = 0.75  # 0 = one LR for every tensor
    mixup_training: Optional[bool] = None
    alpha: Optional[float] = None
    mixup_ratio: Optional[float] = None
    mixup_bank: int = MIXUP_BANK
    rrc: Optional[bool] = None  # default: on with mixup (the official non-AudioSet target transform)
    balanced_sampling: Optional[bool] = None  # default: on for AudioSet-2M (`audioset=`)
    use_encoder: str = "teacher"


@dataclass(frozen=True)
class Recipe:
    """Every setting a run trains with (no None left), and where each default came from (`sources`)."""

    protocol: str
    learning_rate: float
    max_epochs: int
    warmup_epochs: int
    batch_size_per_gpu: int
    n_last_blocks: int
    layerwise_lr: float
    mixup_training: bool
    alpha: float
    mixup_ratio: float
    mixup_bank: int
    rrc: bool
    balanced_sampling: bool
    use_encoder: str
    selection: str  # "best" validation epoch or "last" epoch (`selection_rule`)
    dataset: str = ""  # the registered dataset whose official settings filled the gaps ("" for other tasks)
    sources: dict = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict:
        """The settings, without `sources` (plain values: what checkpoints and results.json store)."""
        out = asdict(self)
        out.pop("sources")
        return out


def check_config(config: FinetuneConfig) -> None:
    """Refuse given values out of range (before anything is read or created)."""
    for flag, value, accepted in (("--protocol", config.protocol, PROTOCOLS),
                                  ("--use_encoder", config.use_encoder, BRANCHES)):
        if value not in accepted:
            raise ValueError(f"{flag} must be one of {accepted}, got {value!r}")
    if config.fold is not None:
        check_flag("--fold", config.fold, 0, integer=True, note="0-based")
    if config.learning_rate is not None:
        check_flag("--learning_rate", config.learning_rate, 0.0, low_open=True,
                   note="per 256 clips, before the scaling by the global batch / 256")
    if config.max_epochs is not None:
        check_flag("--max_epochs", config.max_epochs, 1, integer=True)
    if config.warmup_epochs is not None:
        check_flag("--warmup_epochs", config.warmup_epochs, 0, integer=True)
    if config.batch_size_per_gpu is not None:
        check_flag("--batch_size_per_gpu", config.batch_size_per_gpu, 1, integer=True)
    check_flag("--n_last_blocks", config.n_last_blocks, 1, integer=True)
    check_flag("--layerwise_lr", config.layerwise_lr, 0.0, 1.0, note="the layer-wise LR decay; 0 = off")
    if config.alpha is not None:
        check_flag("--alpha", config.alpha, 0.0, low_open=True, note="mixup's Beta(alpha, alpha)")
    if config.mixup_ratio is not None:
        check_flag("--mixup_ratio", config.mixup_ratio, 0.0, 1.0, note="the fraction of training clips mixed")
    check_flag("--mixup_bank", config.mixup_bank, 1, MAX_MIXUP_BANK, integer=True,
               note="clips remembered per loader worker")
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")


def selection_rule(protocol: str, dataset: Optional[str], family: str) -> str:
    """"best" (best validation metric; ties: the earlier epoch) or "last" (the last epoch).

    `hear` always selects on validation. `official` reproduces what the official scripts test: ATST-Frame the best
    validation epoch on AudioSet / AS-20K (validated on the eval set) and the last epoch on every other dataset
    (its checkpoint callback monitors nothing there); ATST-Clip always the last epoch (it tests `last.ckpt`)."""
    if protocol == "hear":
        return "best"
    return "best" if family == "frame" and dataset in ("audioset", "audioset_b") else "last"


def default_batch_size(world_size: int, accumulate_grad_batches: int) -> int:
    """The paper's global batch of 512 spread over the devices and accumulation steps."""
    share = world_size * accumulate_grad_batches
    if PAPER_GLOBAL_BATCH % share:
        raise ValueError(f"the paper's global batch of {PAPER_GLOBAL_BATCH} does not divide into {world_size} "
                         f"device(s) x {accumulate_grad_batches} accumulation step(s); pass --batch_size_per_gpu")
    return PAPER_GLOBAL_BATCH // share


Defaults = Callable[[str, str], tuple[OfficialRecipe, Optional[str], str]]


def finetune_defaults(task_spec: str, family: str) -> tuple[OfficialRecipe, Optional[str], str]:
    """(official recipe, registered dataset or None, where it comes from in words) of fine-tuning."""
    official, dataset = official_recipe(task_spec, family)
    origin = f"the official ATST-{family.capitalize()} {dataset} script" if dataset else \
        "the official US8K script (no official script for this task)"
    return official, dataset, origin


def resolve_recipe(config: FinetuneConfig, family: str, depth: int, world_size: int,
                   accumulate_grad_batches: int, defaults: Defaults = finetune_defaults) -> Recipe:
    """The recipe of `config` for an ATST-`family` encoder of `depth` blocks on `world_size` processes;
    `defaults`: what a flag left out takes (distillation passes its own table)."""
    check_config(config)
    if config.n_last_blocks > depth:
        raise ValueError(f"--n_last_blocks {config.n_last_blocks}: the encoder has {depth} blocks; pass "
                         f"1..{depth}")
    official, dataset, origin = defaults(config.task, family)
    sources: dict[str, str] = {}

    def pick(name: str, given: object, default: object) -> object:
        if given is not None:
            sources[name] = "flag"
            return given
        sources[name] = origin
        return default

    learning_rate = pick("learning_rate", config.learning_rate, official.learning_rate)
    max_epochs = pick("max_epochs", config.max_epochs, official.max_epochs)
    warmup_epochs = pick("warmup_epochs", config.warmup_epochs, official.warmup_epochs)
    if not warmup_epochs < max_epochs:
        raise ValueError(f"--warmup_epochs ({warmup_epochs}) must be smaller than --max_epochs ({max_epochs})")
    mixup = pick("mixup_training", config.mixup_training, official.mixup_training)
    alpha = pick("alpha", config.alpha, official.alpha)
    mixup_ratio = pick("mixup_ratio", config.mixup_ratio, official.mixup_ratio)
    rrc = config.rrc if config.rrc is not None else mixup
    sources["rrc"] = "flag" if config.rrc is not None else "--mixup_training (the official target transform)"
    balanced = config.balanced_sampling if config.balanced_sampling is not None else dataset == "audioset"
    sources["balanced_sampling"] = "flag" if config.balanced_sampling is not None else \
        ("the official AudioSet-2M recipe" if dataset == "audioset" else "off outside AudioSet-2M")
    if config.batch_size_per_gpu is not None:
        batch, sources["batch_size_per_gpu"] = config.batch_size_per_gpu, "flag"
    else:
        batch = default_batch_size(world_size, accumulate_grad_batches)
        sources["batch_size_per_gpu"] = f"the paper's global batch {PAPER_GLOBAL_BATCH}"
    return Recipe(protocol=config.protocol, learning_rate=float(learning_rate), max_epochs=int(max_epochs),
                  warmup_epochs=int(warmup_epochs), batch_size_per_gpu=int(batch),
                  n_last_blocks=config.n_last_blocks, layerwise_lr=float(config.layerwise_lr),
                  mixup_training=bool(mixup), alpha=float(alpha), mixup_ratio=float(mixup_ratio),
                  mixup_bank=config.mixup_bank, rrc=bool(rrc), balanced_sampling=bool(balanced),
                  use_encoder=config.use_encoder, selection=selection_rule(config.protocol, dataset, family),
                  dataset=dataset or "", sources=sources)


__all__ = ["BRANCHES", "Defaults", "GRAD_CLIP", "FinetuneConfig", "Recipe", "check_config", "default_batch_size",
           "finetune_defaults", "resolve_recipe", "selection_rule"]
