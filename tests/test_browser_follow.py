"""Views that follow the data, in a real browser: one dashboard keeps running while a SparC3 job
(a real local job process on a tiny model) finishes; the pages already open show its run without
a click or a restart — the passport's pruning section and its overlap sets, the pruning page —
and so does a page opened afterwards (issue 15)."""

from __future__ import annotations

import re
import time

import pytest

from dashboard.serve import streamlit_server
from tests.browser_support import (
    CONTENT_TIMEOUT_MS,
    SHOTS,
    assert_no_unexpected_errors,
    isolated_cache,
    launch_browser,
    wait_for_app,
)
from tests.tiny import save_tiny_folder

pytestmark = [pytest.mark.slow, pytest.mark.browser]
JOB_TIMEOUT_S = 600
# the pages look for new results every FOLLOW_S (3 s) and read the job folders every 2 s
FOLLOW_TIMEOUT_MS = 60_000
SPARC3 = {
    "method": "wanda",
    "general_seeds": [0],
    "general_samples": 2,
    "target_samples": 2,
    "generate": 4,
    "max_length": 32,
    "num_neurons": 8,
    "eval_nums": [0, 8],
    "eval_max_tokens": 64,
}


def finished_job(kind: str, params: dict) -> str:
    """Submit a real local job and wait for its process to end; its id."""
    from engine.jobs import api

    view = api.submit(kind, params)
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while not view.status.is_final:
        assert time.monotonic() < deadline, f"{kind} still {view.status.state}"
        time.sleep(1.0)
        view = api.get_job(view.id)
    assert view.status.state == "succeeded", (view.status.message, (view.path / "log.txt"))
    return view.id


def test_open_pages_show_a_run_as_its_job_finishes(tmp_path, monkeypatch) -> None:
    from playwright.sync_api import expect, sync_playwright

    isolated_cache(monkeypatch, tmp_path / "cache")
    model = tmp_path / "models" / "tiny-llama"
    save_tiny_folder(model)
    monkeypatch.setenv("SUBNETSCOPE_MODEL_ROOTS", str(tmp_path / "models"))
    with sync_playwright() as pw, streamlit_server(SHOTS / "follow.log") as (url, _):
        browser = launch_browser(pw)
        passport = browser.new_page(viewport={"width": 1400, "height": 1100})
        passport.goto(f"{url}/passport?model={model}&layer=1&neuron=5")
        wait_for_app(passport)
        p_main = passport.locator('[data-testid="stMain"]')
        expect(p_main).to_contain_text(
            "No SparC3 run on this layout yet.", timeout=CONTENT_TIMEOUT_MS
        )
        pruning = browser.new_page(viewport={"width": 1400, "height": 1100})
        pruning.goto(f"{url}/pruning")
        wait_for_app(pruning)
        r_main = pruning.locator('[data-testid="stMain"]')
        expect(r_main).to_contain_text("No scores yet", timeout=CONTENT_TIMEOUT_MS)

        job = finished_job("prune.sparc3", {"model": str(model), **SPARC3})

        # no click, no reload: the open pages follow the job folders on their own
        expect(p_main).to_contain_text(
            re.compile(r"Pruning candidate #\d+ of 96"), timeout=FOLLOW_TIMEOUT_MS
        )
        expect(p_main).not_to_contain_text("No SparC3 run on this layout yet.")
        expect(r_main).to_contain_text(
            "Candidates: most target-specific first", timeout=FOLLOW_TIMEOUT_MS
        )
        pruning.screenshot(path=str(SHOTS / "follow-pruning.png"), full_page=True)
        p_main.get_by_text("Overlaps", exact=True).click()
        expect(p_main).to_contain_text(re.compile(r"pruning:\d+"), timeout=CONTENT_TIMEOUT_MS)
        passport.screenshot(path=str(SHOTS / "follow-overlaps.png"), full_page=True)

        # a session opened now, on the same server, has it too
        fresh = browser.new_page(viewport={"width": 1400, "height": 1100})
        fresh.goto(f"{url}/passport?model={model}&layer=1&neuron=5")
        expect(fresh.locator('[data-testid="stMain"]')).to_contain_text(
            re.compile(r"Pruning candidate #\d+ of 96"), timeout=CONTENT_TIMEOUT_MS
        )
        for page in (passport, pruning, fresh):
            assert_no_unexpected_errors(page)
        browser.close()
    assert job
