"""pyproject.toml declares what the package imports, each with a floor (nox -s oldest)."""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def imported_modules() -> dict[str, str]:
    """Top-level modules the package imports, each with a file that imports it."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / "telcoflow_trio").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def test_every_imported_distribution_is_declared() -> None:
    declared = {canonicalize_name(Requirement(r).name) for r in PROJECT["dependencies"]}
    for extra in PROJECT["optional-dependencies"].values():
        declared |= {canonicalize_name(Requirement(r).name) for r in extra}
    distributions = packages_distributions()
    missing = {}
    for module, where in imported_modules().items():
        if module in sys.stdlib_module_names or module in ("telcoflow_trio", "__future__"):
            continue
        names = {canonicalize_name(d) for d in distributions.get(module, [module])}
        if not names & declared:
            missing[module] = where
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_every_runtime_dependency_has_one_floor() -> None:
    for line in PROJECT["dependencies"]:
        floors = [s for s in Requirement(line).specifier if s.operator == ">="]
        assert len(floors) == 1, f"{line!r}: nox -s oldest needs one floor (>=)"
