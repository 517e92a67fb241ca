"""AppTest of the Capacity page: no meter yet, a finished meter's bits/param and charts, and the
launcher's job."""

from __future__ import annotations

import pandas as pd

from engine.capacity.config import CAPACITY_FILE, KIND, RUNS_FILE
from engine.capacity.sweep import RUN_COLUMNS, capacity_table
from engine.jobs import RESULT, api
from engine.jobs.status_file import update_status
from tests.job_support import hold_local_jobs
from tests.page_support import open_page


def _runs() -> pd.DataFrame:
    rows = []
    for size, width, params in (("1L×d8", 8, 1_000), ("1L×d16", 16, 3_000)):
        for precision, per_param in (("fp32", 3.0), ("bf16", 2.5)):
            for n in (4, 16, 64):
                data = n * 256.0
                mem = min(0.95 * data, per_param * params)
                rows.append(
                    {
                        "size": size,
                        "layers": 1,
                        "width": width,
                        "params": params,
                        "n": n,
                        "precision": precision,
                        "seed": 0,
                        "data_bits": data,
                        "nll_bits": data - mem,
                        "memorized_bits": mem,
                        "mem_u_bits": mem,
                        "best_step": 100,
                        "steps": 100,
                        "converged": True,
                        "seconds": 1.0,
                    }
                )
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def test_capacity_page_shows_a_finished_meter_and_launches_one(tmp_path, monkeypatch):
    hold_local_jobs(monkeypatch)
    at = open_page(monkeypatch, "capacity", cache=tmp_path / "cache")
    assert any("No finished capacity meter" in i.value for i in at.info)
    runs = _runs()
    view = api.submit(KIND, {"sizes": [[1, 8], [1, 16]], "precisions": ["fp32", "bf16"]})
    (view.path / RESULT).mkdir(parents=True, exist_ok=True)
    runs.to_parquet(view.path / RESULT / RUNS_FILE)
    capacity_table(runs).to_parquet(view.path / RESULT / CAPACITY_FILE)
    update_status(view.path, state="succeeded", fraction=1.0)

    at = open_page(monkeypatch, "capacity", cache=tmp_path / "cache")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["1L×d16 · fp32"] == "3.00 bits/param"
    assert metrics["1L×d16 · bf16"] == "2.50 bits/param"
    assert len(at.get("vega_lite_chart")) == 2  # bits/param vs size, memorized vs data bits
    table = next(d.value for d in at.dataframe if "bits_per_param" in d.value.columns)
    assert len(table) == 4 and table["saturated"].all()
    at.text_input(key="capacity_sizes").set_value("1x4 2x8").run()
    at.text_input(key="capacity_n").set_value("8, 32").run()
    at.button(key="capacity_job_submit").click().run()
    assert not at.exception, at.exception
    [job] = [v for v in api.list_jobs(kind=KIND) if v.id != view.id]
    assert any(view.id in o for o in at.selectbox(key="capacity_run").options)
    assert job.spec.params["sizes"] == [[1, 4], [2, 8]] and job.spec.params["n"] == [8, 32]
