"""AppTests: the neuron tables of the pruning, ICA, sparsity and LoRA pages link to the passport.

Each page shows a page link to its first (or selected) row's neuron, with the model it belongs to,
and the passport page opened with those query params selects that neuron.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs

import pandas as pd
import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

from dashboard.neuron_links import passport_params, passport_url
from tests.artifact_support import quick_sparc3, quick_templates, write_prose
from tests.page_support import APP, show_view
from tests.tiny import save_tiny_folder, tiny_model


def _open(page: str, models: Path, tmp_path: Path, monkeypatch, **state) -> AppTest:
    monkeypatch.setenv("SUBNETSCOPE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SUBNETSCOPE_MODEL_ROOTS", str(models))
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=180)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    at.switch_page(f"../pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


def _linked_table(at: AppTest) -> pd.DataFrame:
    [table] = [d.value for d in at.dataframe if "passport" in d.value.columns]
    assert len(table), "an empty neuron table"
    return table


def _link_params(at: AppTest) -> dict[str, str]:
    [link] = [p for p in at.page_link if p.value.startswith("Passport of neuron")]
    assert link.proto.page == "passport"  # the url_path st.navigation gave pages/passport.py
    return {k: v[0] for k, v in parse_qs(link.proto.query_string).items()}


def _links_row(at: AppTest, model: str, row: int = 0) -> dict[str, str]:
    """The page link and the table's link column both name row `row`'s neuron of `model`."""
    table = _linked_table(at)
    layer, neuron = int(table["layer"].iloc[row]), int(table["neuron"].iloc[row])
    params = passport_params(model, layer, neuron)
    assert _link_params(at) == params
    assert table["passport"].iloc[row] == passport_url(model, layer, neuron)
    assert [p.value for p in at.page_link if p.value.startswith("Passport")] == [
        f"Passport of neuron L{layer}.{neuron} →"
    ]
    return params


def _assert_passport_selects(params: dict[str, str]) -> None:
    """The passport page run with the link's query params has that neuron in its widgets."""
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.query_params.update(params)
    at.switch_page("../pages/passport.py").run()
    assert not at.exception, at.exception
    assert at.query_params == params  # they survive the switch to the passport page
    assert at.number_input(key="passport_layer").value == int(params["layer"])
    assert at.number_input(key="passport_neuron").value == int(params["neuron"])


# pruning ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pruning_run(tmp_path_factory) -> dict[str, Path]:

    root = tmp_path_factory.mktemp("links-pruning")
    folder = root / "models" / "tiny-llama"
    save_tiny_folder(folder)
    quick_sparc3(folder, root / "result")
    return {"models": root / "models", "model": folder, "result": root / "result"}


def test_pruning_candidates_link_to_the_runs_model(pruning_run, tmp_path, monkeypatch):
    model = str(pruning_run["model"])
    at = _open("pruning", pruning_run["models"], tmp_path, monkeypatch, model_source=model)
    at.text_input(key="scores_typed").set_value(str(pruning_run["result"])).run()
    assert not at.exception, at.exception
    assert "differential" in _linked_table(at).columns
    _links_row(at, model)
    # Selecting a row moves the link to that neuron.
    at.session_state["pruning_cands"] = {"selection": {"rows": [1], "columns": [], "cells": []}}
    at.run()
    params = _links_row(at, model, row=1)
    assert any(b.label == "CSV" for b in at.get("download_button"))
    _assert_passport_selects(params)


# ICA --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ica_templates(tmp_path_factory) -> dict[str, Path]:

    root = tmp_path_factory.mktemp("links-ica")
    folder = root / "models" / "tiny-llama"
    save_tiny_folder(folder)
    templates = quick_templates(folder, write_prose(root), root / "templates" / "templates.json")
    return {"models": root / "models", "model": folder, "templates": templates.path}


def test_ica_component_neurons_link_to_the_templates_model(ica_templates, tmp_path, monkeypatch):
    model = str(ica_templates["model"])
    at = _open("ica", ica_templates["models"], tmp_path, monkeypatch, model_source=model)
    at.text_input(key="templates_typed").set_value(str(ica_templates["templates"])).run()
    assert not at.exception, at.exception
    assert "weight" in _linked_table(at).columns
    params = _links_row(at, model)
    _assert_passport_selects(params)


# sparsity ---------------------------------------------------------------------------------
UP = "model.layers.1.mlp.up_proj.weight"  # (48, 32): neuron 7 moves 8 weights, neuron 3 four


@pytest.fixture(scope="module")
def sparsity_pair(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("links-sparsity")
    model = tiny_model("llama").model
    state = model.state_dict()  # aliases the parameters
    with torch.no_grad():
        model.save_pretrained(root / "models" / "base")
        state[UP][7, :8] += 0.5
        state[UP][3, :4] += 0.5
        model.save_pretrained(root / "models" / "tuned")
    return {
        "models": root / "models",
        "base": root / "models" / "base",
        "tuned": root / "models" / "tuned",
    }


def test_sparsity_neurons_view_links_the_most_updated_neurons(sparsity_pair, tmp_path, monkeypatch):
    base = str(sparsity_pair["base"])
    at = _open("sparsity", sparsity_pair["models"], tmp_path, monkeypatch)
    [picker] = [s for s in at.selectbox if s.label == "Model"]
    picker.set_value(base).run()
    [tuned] = [s for s in at.selectbox if s.label == "Tuned model"]
    tuned.set_value(str(sparsity_pair["tuned"])).run()
    show_view(at, "Neurons")
    table = _linked_table(at)
    assert list(table[["layer", "neuron"]].itertuples(index=False, name=None)) == [(1, 7), (1, 3)]
    assert table["up"].tolist() == [8 / 32, 4 / 32]
    assert table["mean"].tolist() == pytest.approx([8 / 32 / 3, 4 / 32 / 3])
    params = _links_row(at, base)
    assert params["layer"] == "1" and params["neuron"] == "7"
    at.checkbox(key="sparsity_neurons_changed").uncheck().run()
    assert len(_linked_table(at)) == 2 * 48  # every neuron, still the most updated first
    _assert_passport_selects(params)


# LoRA -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lora_adapters(tmp_path_factory) -> dict:
    from tests.lora_support import save_tiny_adapter

    root = tmp_path_factory.mktemp("links-lora")
    folder = root / "models" / "tiny-llama"
    model = save_tiny_folder(folder).model
    adapters = [
        save_tiny_adapter(
            model,
            root / "adapters" / name,
            seed=i,
            base=str(folder),
            targets=("up_proj", "down_proj", "q_proj"),
        )
        for i, name in enumerate(("prose", "code"))
    ]
    return {"models": root / "models", "model": folder, "adapters": adapters}


def test_lora_geometry_links_each_adapters_top_neurons(lora_adapters, tmp_path, monkeypatch):
    from engine.lora.adapters import load_adapter
    from engine.lora.neuron_norms import neuron_delta_norms

    model = str(lora_adapters["model"])
    at = _open("lora", lora_adapters["models"], tmp_path, monkeypatch, model_source=model)
    typed = "\n".join(str(p) for p in lora_adapters["adapters"])
    at.text_area(key="adapters_typed").set_value(typed).run()
    show_view(at, "Geometry")
    architecture = tiny_model("llama").architecture
    for name, path in zip(("prose", "code"), lora_adapters["adapters"], strict=True):
        at.selectbox(key="lora_neurons_of").set_value(name).run()
        assert not at.exception, at.exception
        table = _linked_table(at)
        expected = neuron_delta_norms(load_adapter(path), architecture)
        best = expected.loc[expected["total"].idxmax()]
        assert (table["layer"].iloc[0], table["neuron"].iloc[0]) == (best.layer, best.neuron)
        assert table["total"].is_monotonic_decreasing and table["gate"].isna().all()
        params = _links_row(at, model)
    at.selectbox(key="lora_neurons_of").set_value("blend").run()
    assert not at.exception, at.exception
    assert _linked_table(at)["total"].is_monotonic_decreasing
    _assert_passport_selects(params)
