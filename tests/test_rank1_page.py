"""AppTest of the LoRA page's training form: ReLoRA's warm start and full-rank choice, and the
rank-1 run's update rule and optimizer, reach the submitted job's params."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.page_support import open_page, show_view
from tests.tiny import save_tiny_folder


@pytest.fixture
def page(tmp_path, monkeypatch) -> AppTest:
    folder = tmp_path / "models" / "tiny-llama"
    save_tiny_folder(folder)
    at = open_page(
        monkeypatch,
        "lora",
        cache=tmp_path / "cache",
        models=tmp_path / "models",
        state={"model_source": str(folder)},
        clear_resources=True,
    )
    show_view(at, "Train")
    return at


def _submitted(kind: str) -> dict:
    from engine.jobs import list_jobs

    [job] = [v for v in list_jobs() if v.spec.kind == kind]
    return job.spec.params


def test_relora_warm_start_options_reach_the_job(page):
    page.get("button_group")[-1].set_value("relora").run()
    assert not page.exception, page.exception
    assert page.number_input(key="lora_tr_relora_warm").value is None  # a quarter of the steps
    page.number_input(key="lora_tr_relora_warm").set_value(6).run()
    page.selectbox(key="lora_tr_relora_full").set_value("norms").run()
    page.button(key="lora_tr_go").click().run()
    assert not page.exception, page.exception
    params = _submitted("train.relora")
    assert (params["warm_start_steps"], params["full_rank"]) == (6, "norms")


def test_rank1_method_options_reach_the_job(page):
    page.get("button_group")[-1].set_value("rank1").run()
    assert page.selectbox(key="lora_tr_rank1_method").value == "gradient-svd"
    page.selectbox(key="lora_tr_rank1_method").set_value("random-projection").run()
    page.selectbox(key="lora_tr_rank1_opt").set_value("sgd").run()
    page.button(key="lora_tr_go").click().run()
    assert not page.exception, page.exception
    params = _submitted("train.rank1")
    assert (params["method"], params["optimizer"]) == ("random-projection", "sgd")


def test_full_fine_tuning_submits_and_its_subspace_trajectory_is_drawn(page):
    import json
    import time

    page.get("button_group")[-1].set_value("full").run()
    assert not page.exception, page.exception
    page.button(key="lora_tr_go").click().run()
    assert not page.exception, page.exception
    params = _submitted("train.full")
    assert params["steps"] == 40 and params["trainable"] == "all"
    assert not any(n.key == "lora_tr_full_r" for n in page.number_input)  # no rank to choose
    from engine.jobs import list_jobs

    [job] = [v for v in list_jobs() if v.spec.kind == "train.full"]
    with (job.path / "events.jsonl").open("a") as events:
        for step, name, value in (
            (5, "rank/effective", 3.0),
            (10, "rank/effective", 5.0),
            (10, "subspace/overlap_prev", 0.4),
            (5, "subspace/overlap_final", 0.7),
            (10, "subspace/overlap_final", 0.9),
        ):
            event = {"t": time.time(), "type": "metric", "name": name, "value": value}
            events.write(json.dumps({**event, "step": step}) + "\n")
    page.run()
    assert not page.exception, page.exception
    assert any("Subspace trajectory" in m.value for m in page.markdown)
