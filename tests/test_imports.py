"""The package's import graph: no cycles between its modules (lazy imports inside functions
included), and the core (models, matching, pipeline, ...) never reaches the transformers facade
(`keypoints.hf`). Every module also imports on its own in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

PACKAGE = ROOT / "src" / "keypoints"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_lines(tree: ast.AST) -> set[int]:
    """Lines inside ``if TYPE_CHECKING:`` blocks (imports there never run)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def imports(module: str) -> set[str]:
    """The package modules ``module`` imports (at top level or inside functions)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    skip = _type_checking_lines(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, path, node)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # submodules
    return {name for name in found if name in MODULES and name != module}


GRAPH = {module: imports(module) for module in MODULES}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module (the cycles)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
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
            visit(node)
    return found


def reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for other in GRAPH[todo.pop()]:
            if other not in seen:
                seen.add(other)
                todo.append(other)
    return seen


def test_the_graph_is_read():
    # sanity: the checker sees known edges, lazy ones included
    assert "keypoints.models.registry" in GRAPH["keypoints.detection"]
    assert "keypoints.pipeline.engines.ray" in GRAPH["keypoints.pipeline.extract"]  # lazy
    assert "keypoints.hf.lightglue" in GRAPH["keypoints.hf.auto"]
    assert strongly_connected({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_no_import_cycles():
    assert strongly_connected(GRAPH) == []


CORE = [
    m
    for m in MODULES
    if m.startswith(("keypoints.models", "keypoints.pipeline", "keypoints.evaluation"))
    or m
    in (
        "keypoints.matching",
        "keypoints.detection",
        "keypoints.presets",
        "keypoints.features",
        "keypoints.image",
        "keypoints.io",
        "keypoints.io.hloc",
        "keypoints.io.colmap",
    )
]


@pytest.mark.parametrize("module", CORE)
def test_the_core_never_reaches_the_transformers_facade(module):
    facade = sorted(m for m in reachable(module) if m.startswith("keypoints.hf"))
    assert facade == [], f"{module} reaches {facade}"
    assert "keypoints" not in reachable(module)  # nor the package's public namespace


def test_every_module_imports_alone_in_a_fresh_interpreter():
    code = (
        "import importlib, sys\n"
        f"for name in {sorted(MODULES)!r}:\n"
        "    if name.endswith('__main__'): continue\n"
        "    for loaded in [m for m in sys.modules if m.startswith('keypoints')]:\n"
        "        del sys.modules[loaded]\n"
        "    importlib.import_module(name)\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=600)  # fmt: skip
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
