"""Is a file the released checkpoint it is meant to be? It must load weights-only and its tensors must have exactly
the names, shapes and dtypes of the release's manifest (`atst/manifests/<name>.json`).

A Lightning file (the official layout) is compared entry by entry over its whole `state_dict`. A DINO-style file
(top-level `teacher` / `student`, as the official ATST-Clip code also writes) keeps its heads under other names, so
its encoders are compared, renamed into the manifest's `model.<branch>.encoder.*` names. Files are read memory-mapped:
only the tensor headers are touched, never the weights.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from torch import Tensor

from .checkpoint import BRANCHES, CheckpointError, _branch_encoder_state, _read_raw
from .releases import ManifestEntry

Layout = Dict[str, Tuple[Tuple[int, ...], str]]
SHOWN = 3  # differences named per kind in an error


def tensor_layout(state: Mapping[str, Any], prefix: str = "") -> Layout:
    """{prefix + name: (shape, dtype name)} of a state dict; a non-tensor entry gets shape () and its type's name."""
    layout: Layout = {}
    for key, value in state.items():
        if isinstance(value, Tensor):
            layout[f"{prefix}{key}"] = (tuple(value.shape), str(value.dtype).replace("torch.", ""))
        else:
            layout[f"{prefix}{key}"] = ((), type(value).__name__)
    return layout


def _describe(entry: Tuple[Tuple[int, ...], str]) -> str:
    return f"{list(entry[0])} {entry[1]}"


def layout_differences(expected: Layout, found: Layout) -> List[str]:
    """Human-readable differences: missing names, unexpected names, names with another shape or dtype."""
    missing = [key for key in expected if key not in found]
    unexpected = [key for key in found if key not in expected]
    changed = [f"{key} is {_describe(found[key])}, expected {_describe(expected[key])}"
               for key in expected if key in found and found[key] != expected[key]]
    problems = []
    for label, items in (("wrong shape or dtype", changed), ("missing", missing), ("unexpected", unexpected)):
        if items:
            more = f" (and {len(items) - SHOWN} more)" if len(items) > SHOWN else ""
            problems.append(f"{label}: {'; '.join(items[:SHOWN])}{more}")
    return problems


def _found_layout(raw: Any, expected: Layout, path: Path) -> Tuple[Layout, Layout]:
    """(the layout to compare, the part of the manifest it is compared with) for a read checkpoint object."""
    if isinstance(raw, Mapping) and isinstance(raw.get("state_dict"), Mapping):
        return tensor_layout(raw["state_dict"]), expected
    if not (isinstance(raw, Mapping) and isinstance(raw.get(BRANCHES[0]), Mapping)):
        raise CheckpointError(f"{path} is neither an official Lightning checkpoint ('state_dict') nor a DINO-style "
                              f"one ('teacher' / 'student')")
    found: Layout = {}
    for branch in BRANCHES:
        if isinstance(raw.get(branch), Mapping):
            state, _, _ = _branch_encoder_state(raw, branch, path)
            found.update(tensor_layout(state, prefix=f"model.{branch}.encoder."))
    prefixes = tuple(f"model.{b}.encoder." for b in BRANCHES if isinstance(raw.get(b), Mapping))
    return found, {key: value for key, value in expected.items() if key.startswith(prefixes)}


def check_layout(path: Path, manifest: Sequence[ManifestEntry], what: str) -> None:
    """Raise `CheckpointError` unless the file at `path` loads weights-only and matches `manifest`; `what` names
    the file and the release in messages (e.g. "the file downloaded from URL is not the released atstframe_base")."""
    expected: Layout = {key: (tuple(shape), dtype) for key, shape, dtype in manifest}
    try:
        raw = _read_raw(Path(path))
        found, compared = _found_layout(raw, expected, Path(path))
    except CheckpointError as error:
        raise CheckpointError(f"{what}: {error}") from None
    problems = layout_differences(compared, found)
    if problems:
        raise CheckpointError(f"{what}: its tensors differ from the release's manifest: {'; '.join(problems)}")


__all__ = ["check_layout", "layout_differences", "tensor_layout"]
