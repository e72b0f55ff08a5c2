"""Read every ATST checkpoint family, infer the encoder config from tensor shapes, and export encoders.

Checkpoints are untrusted input: they are read with `torch.load(weights_only=True)` (or safetensors), so no
arbitrary object is ever unpickled. Families:

* official ATST-Frame / ATST-Clip Lightning `.ckpt` and this project's pre-training checkpoints
  (`state_dict` with `model.{teacher,student}.encoder.*`);
* DINO-style ATST-Clip files (top-level `teacher` / `student` dicts, keys possibly prefixed `module.`/`backbone.`);
* a bare encoder state dict (the keys of `ATSTEncoder.state_dict()`);
* exported encoders (`atst export`): safetensors with the config in the metadata.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch
from torch import Tensor

from .encoder import ATSTEncoder, EncoderConfig, arch_name, count_parameters
from .fileio import atomic_path
from .frontend import FrontendConfig
from .hub import requested_release, resolve_checkpoint
from .mapped_pages import MappedFile

PathLike = Union[str, os.PathLike]
BRANCHES = ("teacher", "student")
EXPORT_FORMAT = "atst-encoder"
EXPORT_FORMAT_VERSION = "1"
DEFAULT_CLIP_TRAIN_LEN = 6.0  # seconds; the official ATST-Clip downstream default when hyper-parameters lack it
HEAD_PREFIXES = ("projector.", "predictor.", "head.")
SAFETENSORS_MAGIC_OFFSET = 8
PATCH_MEL_BINS = 64  # one patch row of 64 mel bins: every released ATST model
PICKLE_PROTOCOL_2_PLUS = 0x80  # first byte of a pickle of protocol >= 2 (torch's legacy format)


class CheckpointError(ValueError):
    """A file that is not a readable ATST checkpoint of the requested kind."""


@dataclass
class LoadedCheckpoint:
    """What `load_checkpoint` found: the encoder (eval mode), where it came from, and the file's extras."""

    encoder: ATSTEncoder
    config: EncoderConfig
    frontend_config: FrontendConfig
    family_source: str  # "lightning", "dino", "state_dict" or "export"
    branch: str
    path: str
    hyper_parameters: dict = field(default_factory=dict)
    clip_train_len: float = DEFAULT_CLIP_TRAIN_LEN

    @property
    def family(self) -> str:
        return self.config.family


def _safe_globals() -> list:
    """The non-container types ATST files hold besides tensors, none of which can run code when rebuilt:
    `argparse.Namespace` (the `args` of DINO-style files: attributes only) and NumPy numbers (metrics and schedule
    values training scripts log, e.g. `np.float64(0.5)`): their rebuilding function under the NumPy 1 and 2 module
    names, `np.dtype` and the numeric dtype classes only, so object, string and structured dtypes stay refused."""
    import numpy as np

    allowed: list = [argparse.Namespace]
    core = getattr(np, "_core", None) or np.core
    scalar = core.multiarray.scalar
    allowed += [(scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"), np.dtype]
    numeric = ("Bool", "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64", "Float16",
               "Float32", "Float64", "LongDouble", "Complex64", "Complex128")
    dtypes = getattr(np, "dtypes", None)  # NumPy >= 1.25
    allowed += [getattr(dtypes, f"{name}DType") for name in numeric if hasattr(dtypes, f"{name}DType")]
    return allowed


def _read_raw(path: Path) -> Any:
    """torch.load with weights_only=True and mmap when the file allows it; clear errors for everything else."""
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes); the download or copy did not finish")
    is_zip = zipfile.is_zipfile(path)
    if not is_zip:
        with open(path, "rb") as handle:
            head = handle.read(16)
        if head[:1] != bytes([PICKLE_PROTOCOL_2_PLUS]):
            raise CheckpointError(f"{path} is not a PyTorch or safetensors checkpoint (it starts with {head!r}); "
                                  f"expected a .ckpt/.pt/.pth written by torch.save or an `atst export` file")
    try:
        # only the allowances missing from the process-wide list are added: the context manager removes what it
        # was given on exit, which would also drop an allowance someone else had set
        missing = [item for item in _safe_globals() if item not in torch.serialization.get_safe_globals()]
        with torch.serialization.safe_globals(missing):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"refusing to load {path}: it holds Python objects other than tensors, dicts, lists, strings and "
            f"numbers, which ATST checkpoints never contain (loading is weights_only for safety). Details: {error}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as error:
        raise CheckpointError(
            f"could not read {path} as a torch checkpoint: the file is truncated, corrupt or of another format "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
        ) from None


def _is_safetensors(path: Path) -> bool:
    if path.suffix == ".safetensors":
        return True
    with open(path, "rb") as handle:
        head = handle.read(SAFETENSORS_MAGIC_OFFSET + 2)
    return len(head) == SAFETENSORS_MAGIC_OFFSET + 2 and head[SAFETENSORS_MAGIC_OFFSET:] == b"{\""


def _strip(state: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}


def _tensors_only(state: Mapping, path: Path) -> dict[str, Tensor]:
    """The encoder entries, each a tensor under a string key (anything else is named)."""
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, Tensor):
            raise CheckpointError(f"{path}: encoder entry {key!r} holds a {type(value).__name__}, expected a tensor")
    return dict(state)


def _branch_encoder_state(raw: Any, branch: str, path: Path) -> tuple[dict[str, Tensor], str, dict]:
    """Find the encoder tensors of `branch` in a loaded object: (state, family_source, hyper_parameters)."""
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"{path} holds a {type(raw).__name__}, not a checkpoint dictionary")
    hparams = raw.get("hyper_parameters", {})
    if not isinstance(hparams, Mapping):
        raise CheckpointError(f"{path}: 'hyper_parameters' must be a dictionary, got {type(hparams).__name__}")
    if isinstance(raw.get("state_dict"), Mapping):
        state = {k: v for k, v in raw["state_dict"].items() if isinstance(k, str)}
        present = [b for b in BRANCHES if any(k.startswith(f"model.{b}.encoder.") for k in state)]
        if not present:
            raise CheckpointError(
                f"{path} is a Lightning checkpoint but has no ATST encoder: expected keys "
                f"'model.teacher.encoder.*' or 'model.student.encoder.*', found e.g. {_sample_keys(state)}"
            )
        if branch not in present:
            raise CheckpointError(
                f"{path} has no {branch} encoder (it holds only: {', '.join(present)}); "
                f"pass branch={present[0]!r} to load that one"
            )
        return _tensors_only(_strip(state, f"model.{branch}.encoder."), path), "lightning", dict(hparams)
    if any(isinstance(raw.get(b), Mapping) for b in BRANCHES):
        present = [b for b in BRANCHES if isinstance(raw.get(b), Mapping)]
        if branch not in present:
            raise CheckpointError(
                f"{path} has no {branch!r} weights (it holds only: {', '.join(present)}); "
                f"pass branch={present[0]!r} to load that one"
            )
        state = _tensors_only(raw[branch], path)
        for prefix in ("module.", "backbone.", "encoder."):
            if state and all(key.startswith(prefix) or key.startswith(HEAD_PREFIXES) for key in state):
                state = {k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in state.items()}
        state = {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIXES)}
        args = raw.get("args")
        args = vars(args) if isinstance(args, argparse.Namespace) else (args or {})
        if not isinstance(args, Mapping):
            raise CheckpointError(f"{path}: 'args' must be a dictionary or Namespace, got {type(args).__name__}")
        return _tensors_only(state, path), "dino", dict(args)
    if "pos_embed" in raw and "patch_embed.patch_embed.weight" in raw:
        return {k: v for k, v in raw.items() if isinstance(v, Tensor)}, "state_dict", {}
    raise CheckpointError(
        f"{path} is not an ATST checkpoint: expected a Lightning checkpoint ('state_dict' with "
        f"'model.teacher.encoder.*'), a DINO-style file ('teacher'/'student'), a bare encoder state dict or an "
        f"`atst export` file; found top-level keys {_sample_keys(raw)}"
    )


def _sample_keys(mapping: Mapping, limit: int = 6) -> str:
    keys = list(mapping.keys())
    shown = ", ".join(repr(k) for k in keys[:limit])
    return f"[{shown}{', ...' if len(keys) > limit else ''}] ({len(keys)} keys)"


def _block_indices(state: Mapping[str, Tensor]) -> list[int]:
    """Sorted block indices of the `blocks.<i>.` keys; they must run 0, 1, ..., depth - 1 without a gap."""
    indices = sorted({int(m.group(1)) for key in state if (m := re.match(r"blocks\.(\d+)\.", key))})
    for expected, index in enumerate(indices):
        if index != expected:
            key = next(k for k in state if k.startswith(f"blocks.{index}."))
            raise CheckpointError(f"encoder block indices must run 0..depth-1 without a gap: found {key!r} where "
                                  f"block {expected} was expected ({len(indices)} block indices in all)")
    return indices


def infer_config(state: Mapping[str, Tensor], num_heads: Optional[int] = None) -> EncoderConfig:
    """Encoder config from tensor shapes alone (hyper-parameters are never read for shapes).

    D from `pos_embed`, depth from the block indices (contiguous from 0), heads = D / 64 unless given, family from
    `cls_token`, 64 mel bins per patch (every released model; the patch width follows from the patch embedding).
    Every value is range-checked before anything is built from it.
    """
    required = ("pos_embed", "patch_embed.patch_embed.weight", "blocks.0.attn.qkv.weight", "blocks.0.mlp.fc1.weight")
    missing = [key for key in required if key not in state]
    if missing:
        raise CheckpointError(f"encoder weights are incomplete: missing {missing}")
    pos, patch = state["pos_embed"], state["patch_embed.patch_embed.weight"]
    fc1 = state["blocks.0.mlp.fc1.weight"]
    for key, tensor, rank in (("pos_embed", pos, 3), ("patch_embed.patch_embed.weight", patch, 2),
                              ("blocks.0.mlp.fc1.weight", fc1, 2)):
        if tensor.ndim != rank:
            raise CheckpointError(f"{key} has shape {tuple(tensor.shape)}, expected a rank-{rank} tensor")
    if pos.shape[0] != 1:
        raise CheckpointError(f"pos_embed has shape {tuple(pos.shape)}, expected [1, tokens + 1, D]")
    dim = int(pos.shape[-1])
    patch_h = PATCH_MEL_BINS
    patch_dim = int(patch.shape[1])
    if patch_dim % patch_h:
        raise CheckpointError(f"patch_embed.patch_embed.weight takes {patch_dim} features, which is not "
                              f"{patch_h} mel bins x a whole number of frames")
    try:
        return EncoderConfig(
            family="clip" if "cls_token" in state else "frame",
            embed_dim=dim,
            depth=len(_block_indices(state)),
            num_heads=num_heads or max(1, dim // 64),
            mlp_hidden_dim=int(fc1.shape[0]),
            qkv_bias="blocks.0.attn.qkv.bias" in state,
            n_mels=patch_h,
            patch_h=patch_h,
            patch_w=patch_dim // patch_h,
            max_tokens=int(pos.shape[1]) - 1,
        )
    except ValueError as error:
        raise CheckpointError(f"the encoder tensors describe an unsupported shape: {error}") from None


def _hyper_parameter(hparams: Mapping, key: str, default: Any, kind: type, path: Path) -> Any:
    """`hparams[key]` as `kind` (int or float), or `default` when absent; a value of another type is refused."""
    value = hparams.get(key, default)
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not numeric or (kind is int and not float(value).is_integer()):
        raise CheckpointError(f"{path}: hyper_parameters[{key!r}] must be {'an int' if kind is int else 'a number'},"
                              f" got {value!r}")
    return kind(value)


def frontend_config_from(hyper_parameters: Mapping, config: EncoderConfig, path: Path = Path("?")) -> FrontendConfig:
    """Front-end settings the checkpoint was trained with (win_length is a training flag of ATST-Frame)."""
    win_length = _hyper_parameter(hyper_parameters, "win_length", 1024, int, path) if config.family == "frame" \
        else 1024
    try:
        return FrontendConfig(win_length=win_length, n_mels=config.n_mels)
    except ValueError as error:
        raise CheckpointError(f"{path}: hyper_parameters['win_length'] is unusable: {error}") from None


def clip_train_len_from(hyper_parameters: Mapping, path: Path) -> float:
    """ATST-Clip training crop in seconds (`train_len`), positive and finite."""
    seconds = _hyper_parameter(hyper_parameters, "train_len", DEFAULT_CLIP_TRAIN_LEN, float, path)
    if not 0.0 < seconds < float("inf"):
        raise CheckpointError(f"{path}: hyper_parameters['train_len'] must be a positive number of seconds, "
                              f"got {seconds!r}")
    return seconds


def build_encoder(config: EncoderConfig, state: Mapping[str, Tensor], source: str, trainable: bool = False,
                  mapped: Optional[MappedFile] = None) -> ATSTEncoder:
    """Instantiate without initialising (meta device) and load the tensors; mismatches name the keys.

    The encoder is returned in eval mode; its parameters require gradients only when `trainable`. Its weights are
    private float32 copies, independent of the file; `mapped`: the memory-mapped file `state` lives in, whose pages
    are released as each tensor is copied (the peak holds the weights once, see `atst.mapped_pages`)."""
    with torch.device("meta"):
        encoder = ATSTEncoder(config)
    expected = set(encoder.state_dict().keys())
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        raise CheckpointError(
            f"encoder weights in {source} do not match an ATST-{config.family} encoder: "
            f"missing keys {missing[:8]}{' ...' if len(missing) > 8 else ''}, "
            f"unexpected keys {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}"
        )
    reference = encoder.state_dict()
    tensors = {}
    for key in expected:
        value = state[key]
        if tuple(value.shape) != tuple(reference[key].shape):
            raise CheckpointError(
                f"{source}: {key} has shape {tuple(value.shape)}, expected {tuple(reference[key].shape)}"
            )
        if not value.is_floating_point():
            raise CheckpointError(f"{source}: {key} has dtype {value.dtype}, expected a floating-point tensor")
        if not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{source}: {key} holds NaN or Inf values; the weights are corrupt (embeddings "
                                  f"from them would be NaN)")
        tensors[key] = value.detach().to(torch.float32, copy=True)
        if mapped is not None:
            mapped.release(value)
    encoder.load_state_dict(tensors, assign=True)
    return encoder.eval().requires_grad_(trainable)


def load_checkpoint(path: PathLike, branch: str = "teacher", trainable: bool = False) -> LoadedCheckpoint:
    """Read any supported checkpoint file, or a released checkpoint by name (`atstframe_base`: downloaded once,
    verified and cached, see `atst.hub`), and return its encoder (teacher by default) in eval mode.

    `trainable=False` (embedding) builds it frozen; `trainable=True` (fine-tuning, s3prl `-f`) with parameters that
    require gradients."""
    if branch not in BRANCHES:
        raise ValueError(f"branch must be one of {BRANCHES}, got {branch!r}")
    path = resolve_checkpoint(path)
    if path.exists() and path.is_file() and _is_safetensors(path):
        return _load_export(path, trainable)
    return _loaded_from_raw(_read_raw(path), branch, path, trainable)


def _loaded_from_raw(raw: Any, branch: str, path: Path, trainable: bool = False) -> LoadedCheckpoint:
    """Build the encoder of `branch` from an already-read checkpoint object."""
    state, source, hparams = _branch_encoder_state(raw, branch, path)
    config = infer_config(state)
    frontend_config = frontend_config_from(hparams, config, path)
    train_len = clip_train_len_from(hparams, path) if config.has_cls else DEFAULT_CLIP_TRAIN_LEN
    return LoadedCheckpoint(
        encoder=build_encoder(config, state, str(path), trainable, MappedFile(path)),
        config=config,
        frontend_config=frontend_config,
        family_source=source,
        branch=branch,
        path=str(path),
        hyper_parameters=_plain(hparams),
        clip_train_len=train_len,
    )


def _plain(hparams: Mapping) -> dict:
    """Keep only JSON-representable hyper-parameters (for `info` and export metadata)."""
    out = {}
    for key, value in hparams.items():
        if isinstance(value, (str, int, float, bool)) or value is None:
            out[str(key)] = value
    return out


def check_export_target(source: PathLike, target: PathLike, overwrite: bool = False) -> Path:
    """Refuse an export target that is the source file, not a regular file, in a missing folder, or (without
    `overwrite`) already there; returns the target path."""
    source, target = Path(source), Path(target)
    if target.is_dir():
        raise ValueError(f"export target {target} is a folder; name the output file, e.g. "
                         f"{target / 'encoder.safetensors'}")
    if not target.parent.is_dir():
        raise ValueError(f"export target folder {target.parent} does not exist; create it first")
    if target.exists() or target.is_symlink():
        if source.exists() and os.path.samefile(source, target):
            raise ValueError(f"export target {target} is the input checkpoint itself; write to another file")
        if not target.is_file():
            raise ValueError(f"export target {target} exists and is not a regular file; refusing to write over it")
        if not overwrite:
            raise ValueError(f"export target {target} already exists; pass --force (overwrite=True) to replace it")
    return target


def export_encoder(checkpoint: LoadedCheckpoint, out_path: PathLike, overwrite: bool = False) -> Path:
    """Write the encoder as safetensors (no pickle) with its config in the metadata, atomically, with the umask's
    permissions. The target is checked first (`check_export_target`)."""
    from safetensors.torch import save_file

    out_path = check_export_target(checkpoint.path, out_path, overwrite)
    metadata = {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_FORMAT_VERSION,
        "encoder_config": json.dumps(checkpoint.config.to_dict()),
        "frontend_config": json.dumps(checkpoint.frontend_config.__dict__),
        "clip_train_len": repr(checkpoint.clip_train_len),
        "source": os.path.basename(checkpoint.path),
        "branch": checkpoint.branch,
        "hyper_parameters": json.dumps(checkpoint.hyper_parameters),
    }
    tensors = {k: v.detach().contiguous().cpu() for k, v in checkpoint.encoder.state_dict().items()}
    with atomic_path(out_path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return out_path


def _load_export(path: Path, trainable: bool = False) -> LoadedCheckpoint:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"could not read {path} as safetensors: {error}") from None
    if metadata.get("format") != EXPORT_FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not an `atst export` encoder (no atst metadata)")
    try:
        config = EncoderConfig(**json.loads(metadata["encoder_config"]))
        frontend = FrontendConfig(**json.loads(metadata["frontend_config"]))
        train_len = float(metadata.get("clip_train_len", DEFAULT_CLIP_TRAIN_LEN))
        hparams = json.loads(metadata.get("hyper_parameters", "{}"))
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: malformed atst export metadata ({error})") from None
    encoder = build_encoder(config, state, str(path), trainable)
    return LoadedCheckpoint(encoder, config, frontend, "export", metadata.get("branch", "teacher"), str(path),
                            hparams, train_len)


def _load_branches(raw: Any, path: Path) -> tuple[dict[str, str], dict[str, LoadedCheckpoint]]:
    """Each branch's health ("ok", "absent" or why it is broken) and the branches that load."""
    health: dict[str, str] = {}
    loaded: dict[str, LoadedCheckpoint] = {}
    for branch in BRANCHES:
        try:
            loaded[branch] = _loaded_from_raw(raw, branch, path)
            health[branch] = "ok"
        except CheckpointError as error:
            health[branch] = "absent" if f"has no {branch}" in str(error) else f"broken: {error}"
        if branch in loaded and loaded[branch].family_source == "state_dict":  # a bare encoder has one branch
            health.update({other: "absent" for other in BRANCHES if other != branch})
            break
    return health, loaded


def _contents(raw: Mapping, notes: dict) -> list[str]:
    """Human-readable contents of a read checkpoint; bookkeeping entries go into `notes`."""
    if not isinstance(raw.get("state_dict"), Mapping):
        return [str(k) for k in raw.keys()]
    state = {k: v for k, v in raw["state_dict"].items() if isinstance(k, str)}
    groups = sorted({".".join(k.split(".")[:3]) for k in state if k.startswith("model.")})
    contents = [f"{g} ({sum(v.numel() for k, v in state.items() if k.startswith(g + '.') and isinstance(v, Tensor)):,}"
                f" values)" for g in groups]
    for key in ("epoch", "global_step", "pytorch-lightning_version"):
        if key in raw:
            notes[key] = raw[key]
    optim = raw.get("optimizer_states", [])
    if isinstance(optim, list):
        notes["optimizer_states"] = f"{len(optim)} optimizer(s)" + (
            " with moments" if any(isinstance(o, Mapping) and o.get("state") for o in optim) else "")
    else:
        notes["optimizer_states"] = f"unreadable: a {type(optim).__name__}, expected a list"
    return contents


def describe_checkpoint(path: PathLike) -> dict:
    """What a checkpoint file (or released checkpoint, by name) holds, for `atst info`: family, arch, parameter
    count, the health of each branch (`branches`: "ok", "absent" or why it is broken) and extras; for a release its
    name, licence and citation. Describes the teacher, else the student."""
    release = requested_release(path)
    path = resolve_checkpoint(path)
    notes: dict[str, Any] = {}
    if path.is_file() and _is_safetensors(path):
        loaded = _load_export(path)
        notes["contents"] = ["encoder (exported)"]
        branches = {loaded.branch: "ok"}
    else:
        raw = _read_raw(path)
        notes["contents"] = _contents(raw, notes) if isinstance(raw, Mapping) else []
        branches, usable = _load_branches(raw, path)
        if not usable:  # nothing loads: raise the default branch's own error
            _loaded_from_raw(raw, BRANCHES[0], path)
        loaded = next(usable[branch] for branch in BRANCHES if branch in usable)
    config = loaded.config
    return {
        **({"release": release.name, "licence": release.licence, "citation": release.citation} if release else {}),
        "path": str(path),
        "family": f"ATST-{config.family.capitalize()}",
        "format": loaded.family_source,
        "branch": loaded.branch,
        "branches": branches,
        "arch": arch_name(config),
        "embed_dim": config.embed_dim,
        "depth": config.depth,
        "num_heads": config.num_heads,
        "max_tokens": config.max_tokens,
        "encoder_parameters": count_parameters(loaded.encoder),
        "frontend": loaded.frontend_config.__dict__,
        **({"clip_train_len": loaded.clip_train_len} if config.family == "clip" else {}),
        **notes,
        "hyper_parameters": loaded.hyper_parameters,
    }
