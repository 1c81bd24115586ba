"""The import graph of ``opengslb`` follows the floors (DESIGN.md 15).

Wire format and constants at the bottom, listeners above them, wiring on
top: no import cycles (counting imports inside functions and under
``TYPE_CHECKING``, so neither can hide one), no function-level imports
outside the entry points that defer loading on purpose, and no arrow from a
lower room to a higher one.  The graph is read with :mod:`ast`; nothing is
imported.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple

import opengslb

ROOT = Path(opengslb.__file__).resolve().parent

#: Modules that import lazily on purpose: command-line entry points that load
#: only the part a subcommand needs.  Nowhere else may an import sit in a function.
LAZY_ENTRY_POINTS = frozenset({"opengslb.cli", "opengslb.tap", "opengslb.agent.main"})

#: Rooms on the lower floors and what they must never import (prefixes match
#: the module and everything inside it).
BELOW: Dict[str, Tuple[str, ...]] = {
    "opengslb.stats": ("opengslb.",),
    "opengslb.limits": ("opengslb.",),
    "opengslb.dns.wire": ("opengslb.",),
    "opengslb.config.model": ("opengslb.",),
    "opengslb.routing": ("opengslb.config", "opengslb.dns", "opengslb.health", "opengslb.state",
                         "opengslb.cluster", "opengslb.api"),
    "opengslb.config": ("opengslb.dns", "opengslb.health", "opengslb.state", "opengslb.cluster",
                        "opengslb.api", "opengslb.httpserve", "opengslb.metrics"),
    "opengslb.dns.reply": ("opengslb.dns.server", "opengslb.dns.fastpath", "opengslb.dns.forward",
                           "opengslb.dns.resolver", "opengslb.dns.view"),
    "opengslb.dns": ("opengslb.health", "opengslb.state", "opengslb.cluster", "opengslb.api",
                     "opengslb.httpserve", "opengslb.metrics"),
    "opengslb.state": ("opengslb.cluster", "opengslb.dns", "opengslb.api", "opengslb.health"),
}

#: Wiring on top: imported by nobody but the entry points.
TOP = ("opengslb.service", "opengslb.tap", "opengslb.cli")


@dataclass(frozen=True)
class Edge:
    """One import of an ``opengslb`` module by another."""

    importer: str
    imported: str
    line: int
    in_function: bool
    type_checking: bool


def module_name(path: Path) -> str:
    """The dotted name of the module at ``path`` (a package's ``__init__`` is the package)."""
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> Dict[str, Path]:
    """Every module of the package by dotted name."""
    return {module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def _resolve(name: str, known: Dict[str, Path]) -> Optional[str]:
    """The module ``name`` loads: itself, or the longest known prefix (a name inside a module)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def _targets(node: ast.stmt, importer: str, is_package: bool, known: Dict[str, Path]) -> Iterator[str]:
    """The ``opengslb`` modules one import statement loads."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            package = importer if is_package else importer.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = f"{package}.{base}" if base else package
        # ``from package import submodule`` loads the submodule; ``from module import name`` the module.
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
    else:
        return
    for name in names:
        if name == "opengslb" or name.startswith("opengslb."):
            target = _resolve(name, known)
            if target is not None and target != importer:
                yield target


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_edges(name: str, path: Path, known: Dict[str, Path]) -> List[Edge]:
    """The imports of one module, with where each sits."""
    is_package = path.name == "__init__.py"
    found: List[Edge] = []

    def visit(node: ast.AST, in_function: bool, type_checking: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                for target in _targets(child, name, is_package, known):
                    found.append(Edge(name, target, child.lineno, in_function, type_checking))
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for statement in child.body:
                    visit(ast.Module(body=[statement], type_ignores=[]), in_function, True)
                for statement in child.orelse:
                    visit(ast.Module(body=[statement], type_ignores=[]), in_function, type_checking)
            else:
                visit(child, in_function or isinstance(
                    child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)), type_checking)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)), False, False)
    return found


def edges() -> List[Edge]:
    """Every import between ``opengslb`` modules, with where it sits."""
    known = modules()
    return [edge for name, path in known.items() for edge in _module_edges(name, path, known)]


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components of ``graph`` with more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                connect(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def _within(module: str, prefix: str) -> bool:
    return module == prefix.rstrip(".") or module.startswith(prefix if prefix.endswith(".") else prefix + ".")


def test_the_graph_is_read() -> None:
    """The reader finds the imports it must (so the checks below cannot pass on an empty graph)."""
    found = {(edge.importer, edge.imported) for edge in edges()}
    assert ("opengslb.dns.server", "opengslb.dns.wire") in found
    assert ("opengslb.core", "opengslb.stats") in found
    assert ("opengslb.tap", "opengslb.service") in found
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    """No two modules reach each other, counting function-level and TYPE_CHECKING imports."""
    graph: Dict[str, Set[str]] = {name: set() for name in modules()}
    for edge in edges():
        graph[edge.importer].add(edge.imported)
    assert cycles(graph) == []


def test_no_function_level_imports_outside_entry_points() -> None:
    """Imports sit at module level, except in the entry points that load subcommands lazily."""
    hidden = [f"{edge.importer}:{edge.line} imports {edge.imported}" for edge in edges()
              if edge.in_function and edge.importer not in LAZY_ENTRY_POINTS]
    assert hidden == []


def test_no_arrow_runs_back_up() -> None:
    """Lower floors never import the rooms above them; only entry points import the wiring."""
    upward = []
    for edge in edges():
        rooms = [room for room in BELOW if _within(edge.importer, room)]
        for room in rooms:
            if any(_within(edge.imported, banned) for banned in BELOW[room]):
                upward.append(f"{edge.importer}:{edge.line} imports {edge.imported}")
        if any(_within(edge.imported, top) for top in TOP) and edge.importer not in (
                *TOP, "opengslb.__main__", *LAZY_ENTRY_POINTS):
            upward.append(f"{edge.importer}:{edge.line} imports the wiring {edge.imported}")
    assert upward == []
