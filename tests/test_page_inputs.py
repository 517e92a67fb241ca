"""Input that cannot hurt, page by page: a URL parameter preselects only what the page lists (never
a path of its own choosing, never a download), a hub id downloads only after its button, and a
neuron range too large to build is one error (issue 15)."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import dashboard.loaders
import dashboard.sources
import engine.runtime
from engine.errors import SubnetScopeError
from tests.page_support import APP
from tests.tiny import save_tiny_folder

HOSTILE = ["/etc/passwd", "../../x", "org/repo", "$(touch /tmp/p)", "x\ny"]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("inputs-page") / "models"
    save_tiny_folder(root / "tiny-llama")
    return root


@pytest.fixture
def online(models, tmp_path, monkeypatch) -> list:
    """A workspace that believes the hub is reachable; every download attempt is recorded."""
    monkeypatch.setenv("SUBNETSCOPE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SUBNETSCOPE_MODEL_ROOTS", str(models))
    monkeypatch.setattr(engine.runtime, "hub_reachable", lambda *a: True)
    monkeypatch.setattr(dashboard.sources, "hub_reachable", lambda *a: True)
    calls: list = []

    def no_network(*args, **kwargs):
        calls.append((args, kwargs))
        raise OSError("the network is off in tests")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_network)
    st.cache_data.clear()
    return calls


def open_page(models: Path, page: str, params: dict[str, str]) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.session_state["model_source"] = str(models / "tiny-llama")
    at.run()
    at.query_params.update(params)
    at.switch_page(f"../pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


def ignored(at: AppTest, name: str) -> bool:
    return any(f"Ignored `{name}=" in w.value for w in at.warning)


@pytest.mark.parametrize("value", HOSTILE)
def test_sparsity_links_name_no_path_and_start_no_download(models, online, value) -> None:
    for name in ("tuned", "run_dir", "job"):
        at = open_page(models, "sparsity", {name: value})
        assert ignored(at, name), [w.value for w in at.warning]
        assert at.session_state["sparsity_tuned_mode"] != "Path"
        assert "sparsity_tuned_path" not in at.session_state
    assert online == []  # not one download was tried


def test_sparsity_link_to_a_listed_model_is_taken(models, online) -> None:
    # the tuned side may be any listed model folder; here the only one is the base itself
    tiny = str(models / "tiny-llama")
    at = open_page(models, "sparsity", {"tuned": tiny})
    assert not ignored(at, "tuned")
    assert at.session_state["sparsity_tuned_mode"] == "Model folder"


def test_a_typed_hub_id_downloads_only_after_its_button(models, online) -> None:
    at = open_page(models, "sparsity", {})
    at.radio(key="sparsity_tuned_mode").set_value("Path").run()
    at.text_input(key="sparsity_tuned_path").set_value("org/repo").run()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] and "download it first with the button" in at.error[0].value
    assert all(kw.get("local_files_only") for _, kw in online)  # looked in the local cache only
    [button] = [b for b in at.button if b.label == "Download org/repo"]
    assert button.label == "Download org/repo"


@pytest.mark.parametrize(
    ("page", "key"), [("pruning", "scores"), ("ica", "templates"), ("sbd", "sbd_run")]
)
@pytest.mark.parametrize("value", HOSTILE)
def test_artifact_links_preselect_listed_results_only(models, online, page, key, value) -> None:
    at = open_page(models, page, {key: value})
    assert ignored(at, key)
    assert not at.session_state[f"{key}_typed"] if f"{key}_typed" in at.session_state else True
    assert not [t for t in at.text_input if t.value == value]


def test_adapter_links_preselect_listed_adapters_only(models, online) -> None:
    at = open_page(models, "lora", {"adapters": "/etc,../../x"})
    assert ignored(at, "adapters")
    assert at.multiselect(key="adapters").value == []


@pytest.mark.parametrize("value", HOSTILE)
def test_passport_link_names_only_a_listed_model(models, online, value) -> None:
    at = open_page(models, "passport", {"model": value, "layer": "-3", "neuron": "9" * 5000})
    assert ignored(at, "model")
    assert at.session_state["model_source"] == str(models / "tiny-llama")
    assert at.number_input(key="passport_layer").value == 0


def test_model_picker_loads_a_hub_id_only_after_its_button(models, online, monkeypatch) -> None:
    loads: list[str] = []
    real = dashboard.loaders.load_model

    def load(source: str, **kwargs):
        loads.append(source)
        if source == "org/repo":
            raise SubnetScopeError("no hub in tests")
        return real(source, **kwargs)

    monkeypatch.setattr(dashboard.loaders, "load_model", load)
    at = open_page(models, "model", {})
    loads.clear()
    at.selectbox(key="model_picker").set_value("Hub id…").run()
    at.text_input(key="model_hub_id").set_value("../../etc").run()
    assert any("is not a hub id" in e.value for e in at.error)
    at.text_input(key="model_hub_id").set_value("org/repo").run()
    assert loads == [] and online == []
    at.button(key="model_hub_go").click().run()
    assert loads == ["org/repo"]
    assert any("no hub in tests" in e.value for e in at.error)


def test_a_neuron_range_too_large_to_build_is_one_error(models, online) -> None:
    at = open_page(models, "model", {})
    [box] = [t for t in at.text_input if t.label == "Neurons"]
    box.set_value("0:0-999999999")
    [go] = [b for b in at.button if b.label == "Generate"]
    go.click().run()  # a form's inputs arrive with its submit button
    assert not at.exception, at.exception
    assert not any(m.value == "**Output**" for m in at.markdown)  # nothing was generated
    assert any("past the model's 96 neurons" in e.value for e in at.error)
