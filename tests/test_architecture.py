"""The dependency rule (docs/architecture.md), checked on the source: doors import `atst`, never each other;
`atst` imports no door; Lightning is imported by one module (`atst.training.lightning`) that the training kit and
doors take it from; harness packages only in the door that serves them."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOORS = ("hear_atst", "s3prl_upstream", "pretrain", "downstream")
LIGHTNING = ("pytorch_lightning", "lightning", "lightning_fabric")
HARNESS_HOME = {"hearvalidator": "hear_atst", "heareval": "hear_atst", "s3prl": "s3prl_upstream"}


def imported_packages(package: str) -> dict[str, set[str]]:
    """{top-level package imported anywhere in a module (also inside functions): {module files}} of `package`."""
    found: dict[str, set[str]] = {}
    root = REPO / package
    for path in sorted(root.rglob("*.py")) if root.is_dir() else []:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(REPO)))
    return found


def test_the_scan_sees_imports_inside_functions():
    imports = imported_packages("atst")
    assert "torch" in imports and "safetensors" in imports  # safetensors is imported inside a function


@pytest.mark.parametrize("door", [d for d in DOORS if (REPO / d).is_dir()])
def test_no_door_imports_another_door(door):
    imports = imported_packages(door)
    crossings = {other: sorted(imports[other]) for other in DOORS if other != door and other in imports}
    assert not crossings, f"{door} imports other doors: {crossings}"


def test_atst_imports_no_door():
    imports = imported_packages("atst")
    crossings = {door: sorted(imports[door]) for door in DOORS if door in imports}
    assert not crossings, f"atst imports doors: {crossings}"


def test_lightning_is_imported_in_one_module_of_the_training_kit():
    # the training doors take Lightning's names from atst.training.lightning; the one exception is the HEAR door's
    # compatibility layer, which adapts the Lightning that heareval itself imports
    allowed = {"atst/training/lightning.py"}
    for package in ("atst",) + DOORS:
        imports = imported_packages(package)
        outside = sorted(f for name in LIGHTNING for f in imports.get(name, ())
                         if f not in allowed and not f.startswith("hear_atst/compat/"))
        assert not outside, f"Lightning imported outside atst/training/lightning.py: {outside}"


def test_harness_packages_are_imported_only_by_the_door_that_serves_them():
    for package in ("atst",) + DOORS:
        imports = imported_packages(package)
        wrong = {name: sorted(imports[name]) for name, home in HARNESS_HOME.items()
                 if name in imports and package != home}
        assert not wrong, f"{package} imports another door's harness: {wrong}"


@pytest.mark.parametrize("module", ["atst", "hear_atst"])
def test_importing_the_encoder_or_the_hear_door_loads_no_lightning(module):
    code = (f"import sys, {module}; "
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {LIGHTNING!r}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"import {module} loaded {result.stdout.strip()}"
