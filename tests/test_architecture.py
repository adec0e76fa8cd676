"""The package's layout is its architecture: subpackages by responsibility, a thin top level,
no import cycles, and layers that only import downwards (README "Architecture")."""

from __future__ import annotations

import ast
from pathlib import Path

import compatmatrix

PACKAGE = Path(compatmatrix.__file__).parent
# What each layer may import (besides itself and the top-level helpers errors and _text).
ALLOWED = {
    "host": {"host"},
    "binary": {"binary", "host"},
    "model": {"model", "host", "binary"},
    "stages": {"model", "host", "binary"},  # never another stage
    "run": {"run", "stages", "model", "host", "binary"},
    "report": {"report", "model", "host"},
    "ci": {"ci", "model", "host"},
    "doctor": {"doctor", "model", "host", "binary"},
    "init": {"init", "model", "host"},
    # the tox plugin: a front end, like the command line
    "tox": {"tox", "model", "host", "run", "report", "ci", "init"},
}
TOP_HELPERS = {"compatmatrix", "compatmatrix.errors", "compatmatrix._text"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.startswith("compatmatrix"):
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                found.add(name if name in modules else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("compatmatrix"))
    return {name for name in found if name in modules}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()) \
        else "top"


def test_subpackages_and_a_thin_top_level() -> None:
    subpackages = [p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()]
    top = [p.name for p in PACKAGE.glob("*.py")]
    assert len(subpackages) >= 5, subpackages
    assert len(top) <= 10, top


def test_no_relative_imports_and_layers_import_downwards() -> None:
    modules = _modules()
    wrong = []
    for module, path in sorted(modules.items()):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if any(isinstance(n, ast.ImportFrom) and n.level for n in ast.walk(tree)):
            wrong.append(f"{module}: a relative import")
        layer = _layer(module)
        if layer == "top":
            continue
        for target in _imports(path, modules):
            if target in TOP_HELPERS:
                continue
            target_layer = _layer(target)
            same_stage = layer == "stages" and target == module
            if target_layer not in ALLOWED[layer] or (
                    layer == target_layer == "stages" and not same_stage):
                wrong.append(f"{module} imports {target}")
    assert wrong == []


def test_no_import_cycles() -> None:
    modules = _modules()
    graph = {m: _imports(p, modules) - {m} for m, p in modules.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target):], target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []
