"""The engine's layers hold in the code: no upward import, no import circle, light job kinds."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from engine.areas import AREAS, kind_modules
from tests.import_graph import (
    ROOT,
    area_graph,
    cycles,
    import_edges,
    layer_of,
    own_package,
    upward,
)

EDGES = import_edges()


def _lines(edges) -> str:
    return "\n".join(f"  {e.source}:{e.line} -> {e.target}" for e in edges)


def test_every_engine_module_has_a_layer() -> None:
    for module in {e.source for e in EDGES} | {e.target for e in EDGES}:
        layer_of(module)  # raises, naming the module, when it has none


def test_no_import_points_to_a_higher_layer() -> None:
    bad = upward(EDGES)
    assert not bad, (
        "imports pointing up the layer order (tests/import_graph.py LAYERS):\n" + _lines(bad)
    )


def test_no_module_imports_its_own_area_package() -> None:
    bad = own_package(EDGES)
    assert not bad, "import the sibling submodule, not the area's __init__:\n" + _lines(bad)


def test_no_import_circles() -> None:
    found = cycles(EDGES)
    assert not found, "import circles (function-local imports count):\n" + "\n".join(
        "  " + " <-> ".join(component) for component in found
    )


def test_function_local_imports_are_counted() -> None:
    local = [e for e in EDGES if e.local]
    print(f"{len(local)} function-local imports of engine modules; areas: {len(area_graph(EDGES))}")
    assert len(local) < len(EDGES)


def test_every_module_named_in_areas_exists() -> None:
    named = [f"engine.{a.name}" for a in AREAS]
    named += [a.cli_module for a in AREAS if a.commands]
    named += list(kind_modules())
    missing = [m for m in named if importlib.util.find_spec(m) is None]
    assert not missing, f"engine/areas.py names modules that do not exist: {missing}"


def test_job_kinds_and_demo_parts_load_without_torch() -> None:
    """`demo status` and the job registry load every kinds module; none may pull in torch."""
    modules = [*kind_modules(), "engine.demo.parts", "engine.demo.registry"]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "    heavy = [h for h in ('torch', 'transformers') if h in sys.modules]\n"
        "    assert not heavy, f'{m} imports {heavy} at module level'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
