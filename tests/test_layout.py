"""Project habits that code review keeps forgetting: a headless engine and one import direction."""

from __future__ import annotations

import re

from dashboard.serve import ROOT

IMPORT = re.compile(r"^\s*(?:import|from)\s+([\w.]+)", re.MULTILINE)


def _imports(folder: str) -> dict[str, set[str]]:
    return {
        str(path.relative_to(ROOT)): set(IMPORT.findall(path.read_text()))
        for path in (ROOT / folder).rglob("*.py")
    }


def test_engine_never_imports_streamlit_or_the_dashboard() -> None:
    for path, modules in _imports("engine").items():
        bad = {m for m in modules if m.split(".")[0] in {"streamlit", "dashboard", "pages"}}
        assert not bad, f"{path} imports {bad}"


def test_dashboard_never_imports_pages() -> None:
    for path, modules in _imports("dashboard").items():
        assert not {m for m in modules if m.split(".")[0] == "pages"}, path


def test_no_pickle_loading_in_product_code() -> None:
    for folder in ("engine", "dashboard", "pages"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            assert "pickle.load" not in text, path
            for call in re.findall(r"torch\.load\([^)]*\)", text):
                assert "weights_only=True" in call, path
