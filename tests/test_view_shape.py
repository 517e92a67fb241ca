"""Every view has one shape: a short page, a package of panels by role, engine areas reached
through their public surface (docs/architecture.md, "The view shape"); test_layout keeps
Streamlit out of engine/."""

from __future__ import annotations

import ast
import importlib
from collections import defaultdict
from pathlib import Path

from dashboard.navigation import all_pages
from dashboard.serve import ROOT

PAGES = ROOT / "pages"
DASHBOARD = ROOT / "dashboard"
VIEWS = DASHBOARD / "views"
ENGINE = ROOT / "engine"
PAGE_LINES = 70  # a page is the view's table of contents: defaults, then its panels in order
ROLES = {"__init__", "pickers", "panels", "charts", "loaders"}  # one file name per role
CORE = {"errors", "paths", "names", "atomic", "runtime", "areas"}  # engine's leaf modules


def views() -> list[str]:
    return [page.url_path for page in all_pages()]


def imports(path: Path) -> list[tuple[int, str, str | None]]:
    """(line, module, name) of every import in `path`, function-local ones included; `name` is
    what a `from module import name` takes (None for a plain import)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found += [(node.lineno, node.module, alias.name) for alias in node.names]
    return found


def targets(path: Path) -> set[str]:
    """The modules `path` imports; `from package import module` counts as that module."""
    out = set()
    for _, module, name in imports(path):
        out.add(module)
        if name and (ROOT / module.replace(".", "/") / f"{name}.py").exists():
            out.add(f"{module}.{name}")
        if name and (ROOT / module.replace(".", "/") / name / "__init__.py").exists():
            out.add(f"{module}.{name}")
    return out


def view_files(view: str) -> list[Path]:
    return [PAGES / f"{view}.py", *sorted((VIEWS / view).rglob("*.py"))]


def public_names(area: str) -> set[str]:
    """The names an engine area's `__init__.py` lists in `__all__` (its public surface); the
    areas load their exports lazily (engine/lazy.py), so importing one here is cheap."""
    return set(getattr(importlib.import_module(f"engine.{area}"), "__all__", ()))


def test_every_view_has_a_short_page_and_a_package() -> None:
    assert views()[0] == "home"  # the default page comes first
    for view in views():
        page = PAGES / f"{view}.py"
        assert page.is_file(), f"{view}: no {page.relative_to(ROOT)}"
        lines = len(page.read_text().splitlines())
        assert lines <= PAGE_LINES, (
            f"pages/{view}.py has {lines} lines (budget {PAGE_LINES}): move sections into "
            f"dashboard/views/{view}/"
        )
        assert (VIEWS / view / "__init__.py").is_file(), f"{view}: no dashboard/views/{view}/"


def test_no_page_or_view_package_without_the_other() -> None:
    listed = set(views())
    assert {p.stem for p in PAGES.glob("*.py")} == listed
    assert {p.name for p in VIEWS.iterdir() if (p / "__init__.py").is_file()} == listed


def test_view_packages_name_their_modules_by_role() -> None:
    for view in views():
        odd = {p.stem for p in (VIEWS / view).glob("*.py")} - ROLES
        assert not odd, f"dashboard/views/{view}/ has {odd}: name modules by role {sorted(ROLES)}"


def test_a_page_calls_its_own_view_and_views_share_only_through_dashboard() -> None:
    for view in views():
        for path in view_files(view):
            others = {
                m
                for m in targets(path)
                if m.startswith("dashboard.views.") and m.split(".")[2] != view
            }
            assert not others, f"{path.relative_to(ROOT)} imports another view: {others}"


def test_top_level_dashboard_modules_serve_several_views() -> None:
    """A module at dashboard/'s top level is shared; one that a single view uses moves into it."""
    users: dict[str, set[str]] = defaultdict(set)
    for view in views():
        for path in view_files(view):
            for module in targets(path):
                users[module].add(view)
    shared = {p.stem for p in DASHBOARD.glob("*.py")} - {"__init__"}
    for path in DASHBOARD.glob("*.py"):  # the app shell and shared modules count as a user
        for module in targets(path):
            users[module].add(f"dashboard/{path.name}")
    single = {
        m: sorted(users[f"dashboard.{m}"]) for m in shared if len(users[f"dashboard.{m}"]) == 1
    }
    single = {m: u for m, u in single.items() if u[0] in views()}
    assert not single, f"used by one view only, move into dashboard/views/<view>/: {single}"


def test_pages_and_dashboard_use_engine_areas_through_their_public_surface() -> None:
    bad: list[str] = []
    for path in sorted([*PAGES.rglob("*.py"), *DASHBOARD.rglob("*.py")]):
        for line, module, name in imports(path):
            parts = module.split(".")
            if parts[0] != "engine":
                continue
            where = f"{path.relative_to(ROOT)}:{line}"
            if module == "engine":
                if name not in CORE and not (ENGINE / str(name) / "__init__.py").is_file():
                    bad.append(f"{where} from engine import {name}")
            elif len(parts) > 2 or (parts[1] not in CORE and not (ENGINE / parts[1]).is_dir()):
                bad.append(f"{where} {module}")
            elif parts[1] not in CORE and name not in public_names(parts[1]):
                bad.append(f"{where} {module}.{name} (not in engine/{parts[1]}/__init__ __all__)")
    assert not bad, (
        "import engine areas through their __init__ (add the name to its __all__):\n"
        + "\n".join(dict.fromkeys(bad))  # one line per import statement
    )
