"""Streamlit never hashes a cached function's parameters whose names start with "_": whatever
must invalidate a cache (a stamp, an mtime, a version) is a plain, hashed parameter."""

from __future__ import annotations

import ast
from pathlib import Path

from engine.paths import PROJECT_ROOT

KEYS = ("stamp", "mtime", "version", "key", "path", "root", "source", "spec")


def cached_functions() -> list[tuple[Path, ast.FunctionDef]]:
    found = []
    for folder in ("dashboard", "pages"):
        for path in sorted((PROJECT_ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef) and any(
                    "cache_data" in ast.unparse(d) or "cache_resource" in ast.unparse(d)
                    for d in node.decorator_list
                ):
                    found.append((path, node))
    return found


def test_no_cache_key_hides_behind_an_underscore() -> None:
    functions = cached_functions()
    assert len(functions) > 20  # the walk finds the dashboard's caches
    hidden = [
        f"{path.name}:{fn.lineno} {fn.name}({arg.arg})"
        for path, fn in functions
        for arg in fn.args.args + fn.args.kwonlyargs
        if arg.arg.startswith("_") and any(k in arg.arg.lower() for k in KEYS)
    ]
    assert not hidden, hidden
