"""The package's shape, read from the source with ``ast`` (nothing is imported).

- No import cycle between syncd's parts (``syncd.X``: a top-level module or package). Every
  import counts, including those inside functions and under ``TYPE_CHECKING``: a deferred
  import is still a dependency.
- Every import points down the layers of docs/architecture.md ("Dependency direction").
- No module over 500 lines.
- The plan is pure: it imports only the standard library, the directory's data types and the
  domain vocabulary.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "syncd"
MAX_LINES = 500


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def imported(path: Path) -> Iterator[str]:
    """Every module ``path`` imports (absolute names; relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield module
            for alias in node.names:  # `from syncd import manual` imports syncd.manual
                yield f"{module}.{alias.name}"


def part(module: str) -> str | None:
    """The top-level part of syncd a module belongs to (``syncd.kms.kmip.binary`` ->
    ``syncd.kms``); None outside syncd or for the package root itself."""
    names = module.split(".")
    if names[0] != "syncd" or len(names) < 2:
        return None
    return ".".join(names[:2])


def part_graph() -> dict[str, set[str]]:
    existing = {part(module_name(path)) for path in modules()} - {None}
    graph: dict[str, set[str]] = {str(name): set() for name in existing}
    for path in modules():
        source = part(module_name(path))
        if source is None:
            continue
        for module in imported(path):
            target = part(module)
            if target is not None and target != source and target in existing:
                graph[source].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each as a path
    that closes on its first node, e.g. ``[a, b, a]``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(_closed_path(graph, set(component)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _closed_path(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """One cycle through the component's first node (breadth-first, so the shortest)."""
    start = min(component)
    paths = [[start]]
    seen = {start}
    while paths:
        path = paths.pop(0)
        for target in sorted(graph[path[-1]] & component):
            if target == start:
                return [*path, start]
            if target not in seen:
                seen.add(target)
                paths.append([*path, target])
    raise AssertionError(f"no cycle through {start}")  # unreachable for a real component


def test_the_cycle_finder_names_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"d"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_parts() -> None:
    found = cycles(part_graph())
    assert not found, "import cycles between syncd's parts: " + "; ".join(
        " -> ".join(path) for path in found
    )


# docs/architecture.md's dependency direction, top to bottom: a part may import only parts
# after it. Parts on one line are peers of one layer and import none of each other.
LAYERS = [
    ["__main__"],
    ["cli"],
    ["service"],
    ["app"],
    ["report", "pipeline"],
    ["plan", "credentials"],
    ["kms", "directory"],
    ["google", "sandbox"],
    ["pki", "state"],
    ["config"],
    ["domain", "errors", "logs", "output", "budget"],
]


def test_every_part_has_a_layer() -> None:
    layered = {f"syncd.{name}" for layer in LAYERS for name in layer}
    assert set(part_graph()) - layered == set(), "add the new part to LAYERS and the doc"


def test_imports_point_down_the_layers() -> None:
    depth = {f"syncd.{name}": rank for rank, layer in enumerate(LAYERS) for name in layer}
    wrong = sorted(
        f"{source} -> {target}"
        for source, targets in part_graph().items()
        for target in targets
        if depth.get(target, len(LAYERS)) <= depth.get(source, -1)
    )
    assert not wrong, "imports against docs/architecture.md's direction: " + ", ".join(wrong)


def _line_cases() -> list[object]:
    return [
        pytest.param(path, id=path.relative_to(PACKAGE.parent).as_posix()) for path in modules()
    ]


@pytest.mark.parametrize("path", _line_cases())
def test_module_is_at_most_500_lines(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    relative = path.relative_to(PACKAGE.parent).as_posix()
    assert lines <= MAX_LINES, f"{relative} has {lines} lines (at most {MAX_LINES})"


def test_the_plan_does_no_io_imports() -> None:
    allowed_syncd = {"syncd.directory.base", "syncd.domain"}
    plan_paths = [PACKAGE / "plan.py"] if (PACKAGE / "plan.py").exists() else []
    plan_paths += sorted((PACKAGE / "plan").rglob("*.py")) if (PACKAGE / "plan").is_dir() else []
    assert plan_paths, "syncd/plan.py (or syncd/plan/) is missing"
    wrong = set()
    for path in plan_paths:
        for module in imported(path):
            top = module.split(".")[0]
            if top == "syncd":
                if module.startswith("syncd.plan"):
                    continue
                # `from syncd.directory.base import Snapshot` yields the module and its names
                if not any(module == ok or module.startswith(ok + ".") for ok in allowed_syncd):
                    wrong.add(module)
            elif top != "__future__" and top not in sys.stdlib_module_names:
                wrong.add(module)
            elif top in {"socket", "subprocess", "urllib", "http", "sqlite3", "ssl", "os"}:
                wrong.add(module)  # the standard library's I/O modules are I/O all the same
    assert not wrong, f"syncd.plan imports beyond its data types and the stdlib: {sorted(wrong)}"
