"""Dashboard cold start to healthy, and the import weight of the engine the pages load."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.runner import ROOT, Result, benchmark, compare, spread
from dashboard.serve import streamlit_server
from engine.paths import cache_root

TIMEOUT = 120.0


def _log_dir() -> Path:
    return cache_root() / "benchmarks" / "logs"


@benchmark("cold_start", repeats=3)
def cold_start(repeats: int) -> Result:
    """Seconds from `streamlit run dashboard/app.py` to an ok `/_stcore/health`, against the same
    server on an empty script: the ratio is what the dashboard adds to Streamlit's own start."""
    logs = _log_dir()
    logs.mkdir(parents=True, exist_ok=True)
    dashboard: list[float] = []
    bare: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty_app.py"
        empty.write_text('"""An empty Streamlit app: the cold-start baseline."""\n')
        for i in range(repeats):
            # Interleaved so both see the same machine load and the same warm file cache.
            with streamlit_server(logs / f"cold_start-dashboard-{i}.log", TIMEOUT) as (_, seconds):
                dashboard.append(seconds)
            with streamlit_server(logs / f"cold_start-empty-{i}.log", TIMEOUT, empty) as (_, s):
                bare.append(s)
    return compare(
        "cold_start.dashboard_healthy",
        "seconds from `streamlit run dashboard/app.py` to /_stcore/health ok (median)",
        dashboard,
        "streamlit run of an empty script",
        bare,
        details={
            # The health endpoint answers before any session runs the page script.
            "note": "health only; the page script first runs when a browser session connects",
            "logs": str(logs),
        },
    )


def _time_python(code: str) -> float:
    """Wall seconds of a fresh interpreter running `code` from the project root."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - started


@benchmark("engine_import", repeats=3)
def engine_import(repeats: int) -> Result:
    """Seconds to `import engine.models` in a fresh interpreter, against `import torch` alone:
    torch is the floor, so a rising ratio means the engine's own import weight grew."""
    # One unmeasured run of each first, so every measured run sees a warm file cache.
    _time_python("import torch")
    _time_python("import engine.models")
    engine: list[float] = []
    torch_only: list[float] = []
    interpreter: list[float] = []
    for _ in range(repeats):
        engine.append(_time_python("import engine.models"))
        torch_only.append(_time_python("import torch"))
        interpreter.append(_time_python("pass"))
    return compare(
        "engine_import.engine_models",
        "seconds for a fresh `python -c 'import engine.models'` (median)",
        engine,
        "python -c 'import torch'",
        torch_only,
        details={"interpreter_startup": spread(interpreter)},  # python -c pass
    )
