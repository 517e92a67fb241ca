"""Job resources: memory, CPU time and GPU memory sampled as `resources` events and a final one in
status.json (engine/jobs/resources.py), and shown on Runs."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from engine.jobs import get_job, job_events, submit, wait_job
from engine.jobs.resources import ResourceSampler, _proc_status, sample
from engine.jobs.tensorboard import TB_DIR
from tests.page_support import APP


def test_proc_status_reads_current_and_peak_resident_memory(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmHWM:\t  2000000 kB\nVmRSS:\t  1500000 kB\nThreads:\t3\n")
    assert _proc_status(status) == {"VmHWM": 2.048, "VmRSS": 1.536}
    assert _proc_status(tmp_path / "missing") == {}


def test_sample_follows_this_process(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # no torch: no GPU fields, none imported
    before = sample(time.monotonic())
    block = bytearray(64 * 1024 * 1024)  # 64 MiB, touched so it is resident
    for i in range(0, len(block), 4096):
        block[i] = 1
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:  # burn 0.2 s of CPU
        pass
    after = sample()
    assert after["rss_gb"] - before["rss_gb"] > 0.05
    assert after["peak_rss_gb"] >= after["rss_gb"] > 0
    assert after["cpu_s"] - before["cpu_s"] >= 0.15
    assert after["cpu_s"] == pytest.approx(after["cpu_user_s"] + after["cpu_system_s"], abs=0.02)
    assert "elapsed_s" in before and "elapsed_s" not in after
    assert not any(name.startswith("gpu") for name in after)
    del block


def test_gpu_memory_is_summed_over_devices_only_once_cuda_is_initialized(monkeypatch) -> None:
    allocated, peak, reserved = [1e9, 2e9], [3e9, 4e9], [5e9, 6e9]
    cuda = SimpleNamespace(
        is_initialized=lambda: True,
        device_count=lambda: 2,
        memory_allocated=lambda i: allocated[i],
        max_memory_allocated=lambda i: peak[i],
        max_memory_reserved=lambda i: reserved[i],
    )
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=cuda))
    reading = sample()
    assert (reading["gpu_gb"], reading["gpu_peak_gb"], reading["gpu_reserved_peak_gb"]) == (
        3.0,
        7.0,
        11.0,
    )
    cuda.is_initialized = lambda: False  # a job that never touched CUDA: nothing, nothing started
    assert "gpu_gb" not in sample()


def test_sampler_reports_at_once_then_every_interval_and_a_final_sample() -> None:
    seen: list[dict] = []
    sampler = ResourceSampler(seen.append, every=0.05).start()
    time.sleep(0.3)
    final = sampler.stop()
    assert final["final"] is True and seen[-1] is final
    assert len(seen) >= 3 and not any(s.get("final") for s in seen[:-1])
    elapsed = [s["elapsed_s"] for s in seen]
    assert elapsed == sorted(elapsed) and elapsed[0] < 0.05


@pytest.fixture(scope="module")
def finished_job(tmp_path_factory) -> tuple[str, str]:
    """A real local job (diagnostics.sleep, 1 s) sampled every 0.1 s."""
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SUBNETSCOPE_CACHE", str(cache))
        mp.setenv("SUBNETSCOPE_RESOURCES_S", "0.1")
        view = submit("diagnostics.sleep", {"seconds": 1.0, "steps": 4})
        assert wait_job(view.id, timeout=60).status.state == "succeeded"
    return str(cache), view.id


def test_a_job_records_resources_events_and_the_final_sample_in_its_status(
    finished_job, monkeypatch
) -> None:
    cache, job_id = finished_job
    monkeypatch.setenv("SUBNETSCOPE_CACHE", cache)
    view = get_job(job_id)
    samples = [e for e in job_events(view) if e["type"] == "resources"]
    assert len(samples) >= 5  # 1 s at 0.1 s, the first at once, a final one
    assert [s.get("final", False) for s in samples] == [False] * (len(samples) - 1) + [True]
    final = {k: v for k, v in samples[-1].items() if k not in ("t", "type")}
    assert view.status.resources == final
    assert view.summary()["resources"] == final
    assert 0.01 < final["rss_gb"] <= final["peak_rss_gb"] < 2.0
    assert final["peak_rss_gb"] == pytest.approx(view.status.peak_rss_gb, abs=1e-3)
    assert final["elapsed_s"] >= 1.0 and final["cpu_s"] > 0
    cpu = [s["cpu_s"] for s in samples]
    assert cpu == sorted(cpu)  # CPU time only grows
    assert not (view.path / TB_DIR).exists()  # its params do not ask for TensorBoard


def test_runs_page_shows_what_the_job_used(finished_job, monkeypatch) -> None:
    from dashboard.views.runs.panels import resources_caption

    cache, job_id = finished_job
    monkeypatch.setenv("SUBNETSCOPE_CACHE", cache)
    at = AppTest.from_file(APP, default_timeout=60).switch_page("../pages/runs.py")
    at.query_params["job"] = job_id
    at.run()
    assert not at.exception, at.exception
    caption = next(c.value for c in at.caption if "peak" in c.value)
    assert caption.startswith("resident at the end ") and "cores busy on average" in caption
    assert any('"title": "memory"' in c.spec for c in at.get("vega_lite_chart"))
    # The cores: CPU seconds over wall seconds between the first and the last sample.
    samples = pd.DataFrame({"elapsed_s": [0.0, 2.0, 4.0], "cpu_s": [1.0, 3.0, 7.0]})
    line = resources_caption(
        {"rss_gb": 0.5, "peak_rss_gb": 0.75, "cpu_s": 7.0, "cpu_user_s": 6.0}, samples, final=False
    )
    assert line == (
        "resident now 0.5 GB · peak 0.75 GB · CPU 7.0 s (user 6.0, system 0.0) · "
        "1.50 cores busy on average"
    )
