"""pyproject.toml declares what syncd imports and ships every package syncd has.

Each third-party module imported anywhere under syncd/ (an AST walk, so imports inside
functions count) is traced to the installed distribution that provides its file, and that
distribution must be a declared dependency or extra: an undeclared import works in this venv
(some other package pulled it in) and breaks a fresh install when that package changes.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import importlib.util
import os
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip())
    assert match, requirement
    return _canonical(match.group())


def _declared() -> dict[str, set[str]]:
    """Distribution name -> where it is declared ("dependencies" or "extra NAME")."""
    project = PYPROJECT["project"]
    found: dict[str, set[str]] = {}
    for requirement in project["dependencies"]:
        found.setdefault(_requirement_name(requirement), set()).add("dependencies")
    for extra, requirements in project["optional-dependencies"].items():
        for requirement in requirements:
            found.setdefault(_requirement_name(requirement), set()).add(f"extra {extra}")
    return found


def _imports(folder: Path) -> dict[str, str]:
    """Every absolute module imported under ``folder``: dotted name -> first file:line."""
    found: dict[str, str] = {}
    for path in sorted(folder.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name, f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def _third_party(imports: dict[str, str]) -> dict[str, str]:
    return {
        name: where
        for name, where in imports.items()
        if name.split(".")[0] not in sys.stdlib_module_names
        and name.split(".")[0] not in ("syncd", "__future__")
    }


@functools.cache
def _file_owners() -> dict[str, str]:
    """Installed file (normalised path) -> the distribution that installed it."""
    owners: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = _canonical(dist.metadata["Name"])
        for file in dist.files or ():
            owners[os.path.normpath(str(dist.locate_file(file)))] = name
    return owners


def _distribution(module: str, owners: dict[str, str]) -> str | None:
    """The distribution whose files hold ``module``: its top-level package, or for a namespace
    package (``google``) the first level below it that is a file."""
    parts = module.split(".")
    for depth in range(1, len(parts) + 1):
        spec = importlib.util.find_spec(".".join(parts[:depth]))
        if spec is None:
            return None
        if spec.origin and spec.origin not in ("built-in", "frozen"):
            return owners.get(os.path.normpath(spec.origin))
    return None


def test_every_third_party_import_is_declared() -> None:
    declared = _declared()
    owners = _file_owners()
    imports = _third_party({**_imports(ROOT / "syncd"), **_imports(ROOT / "migrations")})
    assert "googleapiclient.discovery" in imports and "httplib2" in imports  # the walk works
    undeclared = []
    for module, where in sorted(imports.items()):
        dist = _distribution(module, owners)
        assert dist, f"{where}: imports {module}, which no installed distribution provides"
        if dist not in declared:
            undeclared.append(f"{where}: {module} comes from {dist}")
    assert not undeclared, "add to pyproject.toml dependencies:\n" + "\n".join(undeclared)


def test_the_product_needs_no_extra_but_postgres_for_what_it_imports() -> None:
    """A module syncd/ imports at run time is a dependency, not only a test extra."""
    declared = _declared()
    owners = _file_owners()
    for module, where in _third_party(_imports(ROOT / "syncd")).items():
        dist = _distribution(module, owners)
        assert dist and declared[dist] & {"dependencies", "extra postgres"}, (where, dist)


def test_psycopg_is_the_postgres_extra() -> None:
    assert _declared()["psycopg"] == {"extra postgres"}


def test_lint_tools_are_pinned_exactly() -> None:
    test_extra = PYPROJECT["project"]["optional-dependencies"]["test"]
    pins = {_requirement_name(r): r for r in test_extra}
    for tool in ("ruff", "mypy", "types-pyyaml"):
        assert re.fullmatch(r"[\w.-]+==[\w.]+", pins[tool]), pins[tool]


def test_the_build_backend_can_write_the_license_metadata() -> None:
    """``license = "Apache-2.0"`` (an SPDX expression, PEP 639) needs setuptools 77."""
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    (setuptools,) = [r for r in PYPROJECT["build-system"]["requires"] if "setuptools" in r]
    low = re.fullmatch(r"setuptools>=(\d+)(\.\d+)*", setuptools.replace(" ", ""))
    assert low and int(low.group(1)) >= 77, setuptools


def test_every_package_ships() -> None:
    """Each package under syncd/ is in [tool.setuptools] packages, or the wheel lacks it."""
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "syncd").rglob("__init__.py")
    }
    assert on_disk - listed == set(), "add to pyproject.toml [tool.setuptools] packages"


def test_the_constraints_pin_every_declared_dependency() -> None:
    pins = {
        _canonical(line.split("==")[0]): line.split("==")[1]
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert all("==" in line for line in (ROOT / "constraints.txt").read_text().splitlines()
               if line and not line.startswith("#"))  # fmt: skip
    missing = set(_declared()) - set(pins)
    assert not missing, f"run `make constraints`: {sorted(missing)} not pinned"
