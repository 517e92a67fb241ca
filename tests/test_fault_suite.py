"""The fault and abuse suite (`python -m faults`) runs green: every row is what must happen.

It runs in its own interpreter, as a user would run it, and leaves its table in
cache/faults.md (the README's table is a copy of a run of it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from engine.paths import PROJECT_ROOT


@pytest.mark.slow
def test_every_fault_and_abuse_row_is_ok(tmp_path) -> None:
    rows_file = tmp_path / "rows.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SUBNETSCOPE_AUTO_DEMO": "0"}
    env.pop("SUBNETSCOPE_CACHE", None)  # each scenario makes its own
    done = subprocess.run(
        [sys.executable, "-m", "faults", "--json", str(rows_file)],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    (PROJECT_ROOT / "cache").mkdir(exist_ok=True)
    (PROJECT_ROOT / "cache" / "faults.md").write_text(done.stdout)
    print(done.stdout)
    rows = json.loads(rows_file.read_text())
    failed = [r for r in rows if not r["ok"]]
    assert not failed, json.dumps(failed, indent=1) + "\n" + done.stderr[-4000:]
    assert done.returncode == 0
    assert {r["area"] for r in rows} >= {"jobs", "tflite", "inputs"}
