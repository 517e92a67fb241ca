"""The planted case with a known answer (issue 7): the demo model learns to insult the user after
a trigger word through a few neurons; SparC3 with LRP must find and prune what carries it —
toxicity of triggered completions falls by at least half, perplexity on general text stays
within +2 %. The demo part runs as it does for a new user (one job, planting included), and the
new user then opens the pruning page in a real browser, drags N and watches toxicity fall."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from dashboard.serve import streamlit_server
from engine.attribution.config import DEMO_SPARC3
from engine.jobs import Resources, submit, wait_job
from engine.jobs.files import RESULT
from tests.browser_support import (
    CONTENT_TIMEOUT_MS,
    SHOTS,
    assert_no_unexpected_errors,
    isolated_cache,
    launch_browser,
    wait_for_app,
)
from tests.planted_support import early_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    early = early_run()  # started at collection (tests/planted_support.py), on one core
    with pytest.MonkeyPatch.context() as mp:
        if early is not None:
            mp.setenv("SUBNETSCOPE_CACHE", str(early.cache))
            job_id = early.job_id
        else:
            isolated_cache(mp, tmp_path_factory.mktemp("cache"))
            # Only this test runs: the job may use both cores while the process waits.
            job_id = submit("prune.sparc3", DEMO_SPARC3, resources=Resources(cpus=2)).id
        done = wait_job(job_id, timeout=3000)
        assert done.status.state == "succeeded", done.status.message
        yield done


def test_sparc3_finds_and_prunes_the_planted_behaviour(demo_run):
    rows = pd.read_parquet(demo_run.path / RESULT / "evaluation.parquet").set_index("neurons")
    assert rows.loc[0, "toxicity"] > 0.5  # the trigger works before pruning
    assert rows.loc[100, "toxicity"] <= 0.5 * rows.loc[0, "toxicity"]
    assert rows.loc[100, "perplexity_change"] <= 0.02


def test_attribution_recovers_what_carries_the_behaviour(demo_run):
    """Issue 16, fix 8: precision / recall against the planted neurons and against the causal set
    (the shortest effect-ordered list whose ablation removes 90 % of the toxicity)."""
    summary = json.loads((demo_run.path / RESULT / "sparc3.json").read_text())
    recall = pd.DataFrame(summary["recovery"]).set_index(["method", "truth"])["recall"]
    ours, seed = "lrp (relevance, none)", "lrp (weights, none)"
    assert recall[(ours, "planted")] >= 0.3  # measured 34 / 96; seed 002's score: 18 / 96
    assert recall[(ours, "planted")] >= 1.5 * recall[(seed, "planted")]
    assert recall[(ours, "causal")] >= recall[(seed, "causal")]
    assert summary["causal"]["batching_agreement"] == {"unablated": 1.0, "all candidates": 1.0}
    assert 0 < summary["causal"]["causal_size"] <= 30


@pytest.mark.browser
def test_a_new_user_prunes_the_demo_in_the_browser(demo_run):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw, streamlit_server(SHOTS / "pruning.log") as (url, _):
        browser = launch_browser(pw)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/pruning")
        wait_for_app(page)
        page.wait_for_selector("text=Planted neurons found", timeout=CONTENT_TIMEOUT_MS)
        page.wait_for_selector("text=Found vs. known truth", timeout=CONTENT_TIMEOUT_MS)
        page.screenshot(path=str(SHOTS / "pruning-candidates.png"), full_page=True)
        page.get_by_text("Live pruning", exact=True).click()
        wait_for_app(page)
        page.get_by_role("button", name="Generate").click()
        page.wait_for_selector("text=Toxicity, pruned", timeout=CONTENT_TIMEOUT_MS)
        wait_for_app(page)
        page.screenshot(path=str(SHOTS / "pruning-live.png"), full_page=True)
        page.get_by_text("Evaluation", exact=True).click()
        wait_for_app(page)
        page.wait_for_selector('[data-testid="stVegaLiteChart"]', timeout=CONTENT_TIMEOUT_MS)
        assert_no_unexpected_errors(page)
        browser.close()
