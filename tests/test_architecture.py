"""The shape docs/architecture.md draws, checked on the source: the rings, and no cycles.

Every import counts: at module level, under ``TYPE_CHECKING`` and inside functions.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def _modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imported(module: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    if node.level:
        base = module.split(".")
        if MODULES[module].name != "__init__.py":
            base.pop()
        base = base[: len(base) - node.level + 1]
        prefix = ".".join([*base, node.module] if node.module else base)
    else:
        prefix = node.module or ""
    for alias in node.names:
        candidate = f"{prefix}.{alias.name}"
        yield candidate if candidate in MODULES else prefix


def _owner(name: str) -> str | None:
    """The apiward module an imported name lives in (a package's ``__init__`` for a name
    it defines), or None outside apiward."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for name in _imported(module, node):
                    owner = _owner(name)
                    if owner and owner != module:
                        deps.add(owner)
        graph[module] = deps
    return graph


GRAPH = _graph()


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_between_modules() -> None:
    assert _cycles(GRAPH) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


RINGS = [
    # (ring, what it must not import)
    ("apiward.core", ("apiward.services", "apiward.adapters", "apiward.client", "apiward.server")),
    ("apiward.services", ("apiward.adapters", "apiward.client", "apiward.server")),
    ("apiward.client", ("apiward.core", "apiward.services", "apiward.adapters", "apiward.server")),
]


@pytest.mark.parametrize(("ring", "forbidden"), RINGS, ids=[ring for ring, _ in RINGS])
def test_rings_import_inwards_only(ring: str, forbidden: tuple[str, ...]) -> None:
    crossing = sorted(
        f"{module} imports {dep}"
        for module, deps in GRAPH.items()
        if module == ring or module.startswith(ring + ".")
        for dep in deps
        if any(dep == f or dep.startswith(f + ".") for f in forbidden)
    )
    assert crossing == []


def test_the_core_uses_no_framework() -> None:
    """The core is plain Python: no web framework, database or metrics library."""
    frameworks = ("fastapi", "starlette", "sqlalchemy", "prometheus_client", "redis", "httpx")
    used = sorted(
        f"{module} imports {name}"
        for module, path in MODULES.items()
        if module.startswith("apiward.core")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for name in (
            [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        )
        if name.split(".")[0] in frameworks
    )
    assert used == []
