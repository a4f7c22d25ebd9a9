"""pyproject.toml declares what aries imports and nothing it does not."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).parents[2]
NEEDED_WITHOUT_IMPORT = {
    "gguf": "transformers reads the embedded model's GGUF file with it",
    "accelerate": "TRL's trainers run on it, and `accelerate launch` trains on several GPUs",
    "deepspeed": "accelerate/deepspeed_zero*.yaml load it through accelerate",
    "transformers": "the deepspeed extra excludes one transformers release",
}
"""Declared distributions that aries' own code never imports, and why they are declared."""


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _declared() -> tuple[set[str], dict[str, set[str]]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = {k: {_name(r) for r in v} for k, v in project["optional-dependencies"].items()}
    return {_name(r) for r in project["dependencies"]}, extras


def _imported_distributions() -> set[str]:
    """Distributions of the third-party modules that aries/ imports."""
    modules = set()
    for path in (ROOT / "aries").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    third_party = modules - set(sys.stdlib_module_names) - {"aries", "__future__"}
    known = importlib.metadata.packages_distributions()
    return {known.get(m, [m])[0].lower().replace("_", "-") for m in third_party}


def test_every_import_is_declared_and_every_declaration_is_used():
    main, extras = _declared()
    declared = main | set().union(*extras.values()) - {"aries-llm"}
    imported = _imported_distributions()
    assert imported - declared == set(), "imported but not declared in pyproject.toml"
    unused = main - imported - set(NEEDED_WITHOUT_IMPORT)
    assert unused == set(), "declared dependencies that aries never imports"
    assert "rich" not in main
    assert {"pydantic", "fastapi", "uvicorn"} <= extras["serve"] and "openai" not in extras["serve"]
    assert "openai" in extras["dev"] and "deepspeed" in extras["deepspeed"]


def test_lower_bounds_meet_what_the_installed_trl_requires():
    from packaging.requirements import Requirement
    from packaging.version import Version

    ours = {
        _name(r): Requirement(r)
        for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    }
    for text in importlib.metadata.requires("trl"):
        needed = Requirement(text)
        if needed.marker is not None or _name(needed.name) not in ours:
            continue  # an extra of TRL's, or a package aries does not declare itself
        floors = [Version(s.version) for s in needed.specifier if s.operator in (">=", ">")]
        ours_floor = [
            Version(s.version) for s in ours[_name(needed.name)].specifier if ">" in s.operator
        ]
        for floor in floors:
            assert ours_floor and max(ours_floor) >= floor, f"{needed.name}: TRL needs {needed}"


def test_the_floor_environment_pins_every_declared_floor():
    """constraints/floor.txt (`make test-floor`, run by .ci/run) holds each direct dependency at
    the lowest version pyproject.toml admits; torch at the CPU build CI can install, not lower."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    pins = {}
    for line in (ROOT / "constraints" / "floor.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, pinned = line.split("==")
            pins[_name(name)] = Version(pinned)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_name(r): Requirement(r) for r in project["dependencies"]}
    assert set(pins) == set(declared)
    for name, requirement in declared.items():
        floor = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
        assert len(floor) == 1, f"{name}: declare one >= floor"
        assert pins[name] in requirement.specifier, f"{name}: pin outside the declared range"
        if name != "torch":
            assert pins[name] == floor[0], f"{name}: floor.txt pins {pins[name]}, not {floor[0]}"
