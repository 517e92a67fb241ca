"""The engine's module import graph read with `ast`: every import, function-local ones included.

`python -m tests.import_graph` prints the area-level graph and the count of function-local imports.
"""

from __future__ import annotations

import ast
import collections
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Low → high. An import may point to the same layer or a lower one (docs/architecture.md, "Layers").
LAYERS: tuple[tuple[str, ...], ...] = (
    (
        "engine",
        "engine.errors",
        "engine.paths",
        "engine.names",
        "engine.atomic",
        "engine.runtime",
        "engine.areas",
        "engine.console",
        "engine.lazy",
        "engine.params",
    ),
    ("engine.cache",),
    ("engine.jobs",),
    ("engine.data",),
    ("engine.models",),
    ("engine.evaluation",),
    ("engine.tflite",),
    ("engine.sparsity",),
    ("engine.ica",),
    ("engine.lora",),
    ("engine.attribution",),
    ("engine.training",),
    ("engine.attention",),
    ("engine.capacity",),
    ("engine.sbd",),
    ("engine.neurons",),
    ("engine.demo",),
    ("engine.cli", "engine.__main__"),
)


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    local: bool  # inside a function: runs late, but is still an arrow


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def engine_modules(root: Path = ROOT) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted((root / "engine").rglob("*.py"))}


def _targets(node: ast.Import | ast.ImportFrom, package: str, modules: dict) -> list[str]:
    """The engine modules one import statement loads (`from a import b` is `a.b` if b is one)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            head = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*head, *([base] if base else [])])
        subs = [f"{base}.{alias.name}" for alias in node.names]
        names = [s for s in subs if s in modules] or [base]
    found = []
    for name in names:
        while name and name not in modules:  # `import engine.x.y.attr`-like: the longest module
            name = name.rpartition(".")[0]
        if name.startswith("engine"):
            found.append(name)
    return found


def _imports(tree: ast.AST) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    found = []

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.append((child, local))
            inner = local or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            visit(child, inner)

    visit(tree, False)
    return found


def import_edges(root: Path = ROOT) -> list[Edge]:
    modules = engine_modules(root)
    edges = []
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node, local in _imports(ast.parse(path.read_text(), str(path))):
            for target in _targets(node, package, modules):
                edges.append(Edge(name, target, node.lineno, local))
    return edges


def layer_of(module: str) -> int:
    """The layer of a module: its own entry, else its area's (`engine.x.y` → `engine.x`)."""
    area = ".".join(module.split(".")[:2])
    for index, names in enumerate(LAYERS):
        if module in names or area in names:
            return index
    raise KeyError(f"{module} has no layer: add it (or its area) to LAYERS in {__file__}")


def upward(edges: list[Edge]) -> list[Edge]:
    return [e for e in edges if layer_of(e.target) > layer_of(e.source)]


def own_package(edges: list[Edge]) -> list[Edge]:
    """A submodule importing its own area package: the package imports it back (a circle)."""
    return [e for e in edges if e.source.startswith(e.target + ".") and e.target.count(".") >= 1]


def cycles(edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components of more than one module, and modules importing themselves."""
    graph: dict[str, set[str]] = collections.defaultdict(set)
    for e in edges:
        graph[e.source].add(e.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def area_graph(edges: list[Edge]) -> dict[str, collections.Counter]:
    areas: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for e in edges:
        a, b = (".".join(m.split(".")[:2]) for m in (e.source, e.target))
        if a != b:
            areas[a][b] += 1
    return areas


if __name__ == "__main__":
    all_edges = import_edges()
    for area, targets in sorted(area_graph(all_edges).items(), key=lambda kv: layer_of(kv[0])):
        print(f"{area} [{layer_of(area)}] -> {dict(sorted(targets.items()))}")
    print(f"{sum(e.local for e in all_edges)} function-local imports of engine modules")
    for e in upward(all_edges):
        print(f"upward: {e.source}:{e.line} -> {e.target}")
    for component in cycles(all_edges):
        print("cycle:", " <-> ".join(component))
