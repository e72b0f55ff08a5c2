"""Options of the `atst_frame` upstream, read from s3prl's `-g/--upstream_model_config`.

`-g` may be a YAML or JSON file, or inline `key=value` pairs separated by commas (`window_secs=6,final_norm=true`).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from typing import Any, Mapping, Optional, Union

from atst import EncoderConfig, FrontendConfig
from atst.flags import parse_bool

_FRONTEND, _ENCODER = FrontendConfig(), EncoderConfig()
TOKEN_SECS = _FRONTEND.hop_length * _ENCODER.patch_w / _FRONTEND.sample_rate  # 0.04 s: 640 samples at 16 kHz
MAX_WINDOW_SECS = _ENCODER.max_tokens * TOKEN_SECS  # 10 s: the positional table of every released checkpoint
MODES = ("hear", "official")


@dataclass
class UpstreamOptions:
    """What the upstream computes.

    window_secs: encoder window in seconds (a multiple of 0.04 s, at most 10 s); longer inputs are split into
        contiguous windows of this length, all windows batched through the encoder. Default: the checkpoint's
        own window (10 s for ATST-Frame, the training crop, 6 s by default, for ATST-Clip).
    mode: "hear" (each utterance's front end and attention see only its own samples, so a feature never depends on
        the other utterances of a batch) or "official" (the official embedding code's convention: every utterance
        is taken at the padded batch length, zeros included in its log-mel floor and its attention).
    layers: which states `hidden_states` holds (0 = patch embedding + positions, i = after block i); default all.
    final_norm: apply the encoder's final LayerNorm to every returned hidden state (default False:
        un-normalised states; `last_hidden_state` is always normalised).
    max_windows_per_call: bound on windows per encoder call (memory).
    branch: "teacher" (default) or "student" weights of a pre-training checkpoint.
    """

    window_secs: Optional[float] = None
    mode: str = "hear"
    layers: Optional[list] = None
    final_norm: bool = False
    max_windows_per_call: int = 32
    branch: str = "teacher"

    def __post_init__(self) -> None:
        if self.window_secs is not None:
            try:
                self.window_secs = float(self.window_secs)
            except (TypeError, ValueError):
                raise ValueError(f"window_secs must be a number of seconds in (0, {MAX_WINDOW_SECS}], "
                                 f"got {self.window_secs!r}") from None
            tokens = self.window_secs / TOKEN_SECS
            if not 0 < self.window_secs <= MAX_WINDOW_SECS or abs(tokens - round(tokens)) > 1e-6:
                raise ValueError(f"window_secs must be a multiple of {TOKEN_SECS} s in (0, {MAX_WINDOW_SECS}], "
                                 f"got {self.window_secs!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if isinstance(self.final_norm, str):
            self.final_norm = parse_bool(self.final_norm, "final_norm")
        if not isinstance(self.final_norm, bool):
            raise ValueError(f"final_norm must be true or false, got {self.final_norm!r}")
        if self.layers is not None:
            self.layers = _parse_layers(self.layers)
        if isinstance(self.max_windows_per_call, bool) or not isinstance(self.max_windows_per_call, int) \
                or self.max_windows_per_call < 1:
            raise ValueError(f"max_windows_per_call must be a positive int, got {self.max_windows_per_call!r}")
        if self.branch not in ("teacher", "student"):
            raise ValueError(f"branch must be 'teacher' or 'student', got {self.branch!r}")

    @property
    def window_tokens(self) -> Optional[int]:
        return None if self.window_secs is None else int(round(self.window_secs / TOKEN_SECS))


def _parse_layers(value: Any) -> list:
    if isinstance(value, str):
        value = [part for part in value.replace(";", " ").replace("+", " ").split() if part]
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    try:
        layers = [int(v) for v in value]
    except (TypeError, ValueError):
        raise ValueError(f"layers must be a list of layer indices (0 = embedding, 1..depth = blocks), "
                         f"got {value!r}") from None
    if not layers:
        raise ValueError("layers must name at least one layer (0 = embedding, 1..depth = blocks)")
    return layers


def _split_pairs(text: str) -> list:
    """Split `a=1,b=[0, 6, 12]` at the commas outside brackets."""
    parts, depth, current = [], 0, []
    for char in text:
        depth += char in "[{("
        depth -= char in "]})"
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _scalar(key: str, text: str) -> Any:
    """`key=value` values: YAML scalars (numbers, booleans, lists such as [0, 6, 12])."""
    import yaml

    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as error:
        reason = str(error).splitlines()[0]
        raise ValueError(f"upstream option {key}={text!r} is not a valid value ({reason}); write key=value pairs "
                         f"separated by commas, numbers as 6, booleans as true/false, lists as [0, 6, 12]") from None


def read_model_config(model_config: Union[None, str, os.PathLike, Mapping[str, Any]]) -> UpstreamOptions:
    """Parse `-g`: None, a mapping, a YAML/JSON file path, or `key=value[,key=value...]`.

    Unknown keys raise a ValueError that lists the accepted ones.
    """
    if model_config is None or (isinstance(model_config, str) and not model_config.strip()):
        raw: dict = {}
    elif isinstance(model_config, Mapping):
        raw = dict(model_config)
    else:
        text = os.fspath(model_config)
        if os.path.isfile(text):
            raw = _read_file(text)
        elif "=" in text:
            raw = {}
            for part in _split_pairs(text):
                if not part.strip():
                    continue
                if "=" not in part:
                    raise ValueError(f"upstream model config {text!r}: {part!r} is not key=value")
                key, value = (piece.strip() for piece in part.split("=", 1))
                if not key:
                    raise ValueError(f"upstream model config {text!r}: {part!r} has no option name before '='")
                raw[key] = _scalar(key, value)
        else:
            raise ValueError(f"upstream model config {text!r} is neither an existing YAML/JSON file nor "
                             f"key=value pairs (e.g. 'window_secs=6,final_norm=true')")
    accepted = option_names()
    unknown = sorted(set(raw) - set(accepted))
    if unknown:
        raise ValueError(f"unknown upstream option(s) {unknown}; accepted: {accepted}")
    return UpstreamOptions(**raw)


def option_names() -> list:
    """The keys `-g` accepts."""
    return sorted(f.name for f in fields(UpstreamOptions))


def _read_file(path: str) -> dict:
    import yaml

    with open(path, "r", encoding="utf-8") as handle:
        text = handle.read()
    try:
        data = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ValueError(f"upstream model config {path} is not valid YAML/JSON: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"upstream model config {path} must hold a mapping of options, got {type(data).__name__}")
    return data
