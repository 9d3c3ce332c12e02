"""The package is layered in pipeline order, read from the imports themselves.

runtimes -> devices -> models -> pruning -> latency -> task -> search -> compile -> cli:
a module may import its own layer and the layers before it, never a later one (lazy
imports inside functions count too), and no two modules import each other.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "hwprune"
LAYERS = [
    {"hwprune", "hwprune.errors", "hwprune._io", "hwprune._paths", "hwprune._imports"},
    {"hwprune.runtimes"},
    {"hwprune.devices"},
    {"hwprune.models", "hwprune.onnx_export"},
    {"hwprune.pruning"},
    {"hwprune.latency"},
    {"hwprune.task"},
    {"hwprune.search", "hwprune.rundir"},
    {"hwprune.compile"},
    {"hwprune.cli", "hwprune.__main__"},
]
MAX_FUNCTION_LINES = 80


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> int:
    best = (-1, 0)
    for i, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best[1]:
                best = (i, len(name))
    assert best[0] >= 0, f"{module} belongs to no layer: add it to LAYERS"
    return best[0]


def _imports(path: Path, module: str) -> set[str]:
    out = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("hwprune")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if base.startswith("hwprune"):
                out.add(base)
                out |= {f"{base}.{a.name}" for a in node.names if (PKG.parent / f"{base}.{a.name}".replace(".", "/")).exists()
                        or (PKG.parent / (f"{base}.{a.name}".replace(".", "/") + ".py")).exists()}
    return out


MODULES = {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}
GRAPH = {m: _imports(p, m) for m, p in MODULES.items()}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_import_of_a_later_stage(module):
    later = sorted(i for i in GRAPH[module] if _layer(i) > _layer(module))
    assert not later, f"{module} (layer {_layer(module)}) imports later stages: {later}"


def test_no_import_cycle_between_modules():
    def reaches(src: str, dst: str) -> bool:
        seen, todo = set(), [src]
        while todo:
            m = todo.pop()
            for nxt in GRAPH.get(m, ()):
                if nxt == dst:
                    return True
                if nxt in MODULES and nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return False

    cycles = sorted((a, b) for a in MODULES for b in GRAPH[a] if b in MODULES and b != a
                    and not MODULES[a].name == "__init__.py" and not MODULES[b].name == "__init__.py"
                    and reaches(b, a))
    assert not cycles, f"modules importing each other: {cycles[:5]}"


def test_no_function_over_80_lines():
    long = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{module}.{node.name} ({n} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"
