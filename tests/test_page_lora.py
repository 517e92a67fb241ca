"""AppTest of the LoRA blender on three tiny adapters of a tiny Llama."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.lora_support import save_tiny_adapter
from tests.page_support import open_page, show_view
from tests.tiny import save_tiny_folder

NAMES = ("prose", "code", "math")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("lora-page")
    folder = root / "models" / "tiny-llama"
    model = save_tiny_folder(folder).model
    adapters = [
        save_tiny_adapter(model, root / "adapters" / name, seed=i, base=str(folder))
        for i, name in enumerate(NAMES)
    ]
    return {"models": root / "models", "model": folder, "adapters": adapters}


@pytest.fixture
def page(workspace, tmp_path, monkeypatch) -> AppTest:
    at = open_page(
        monkeypatch,
        "lora",
        cache=tmp_path / "cache",
        models=workspace["models"],
        state={"model_source": str(workspace["model"])},
        clear_resources=True,
    )
    assert any("No adapters picked" in i.value for i in at.info)
    typed = "\n".join(str(p) for p in workspace["adapters"])
    at.text_area(key="adapters_typed").set_value(typed).run()
    assert not at.exception, at.exception
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def generations(at: AppTest):
    return next(d.value for d in at.dataframe if "blend" in d.value.columns)


def test_sliders_blend_error_and_generations(page):
    assert [s.label for s in page.slider][:3] == list(NAMES)
    shown = metrics(page)
    # svd at the largest input rank (4 of 12): the error is the truncation, nothing more.
    assert float(shown["Blend error"]) == pytest.approx(float(shown["Truncation"]), rel=1e-3)
    errors = next(d.value for d in page.dataframe if "truncation" in d.value.columns)
    assert errors["error"].is_monotonic_decreasing and len(errors) == 4  # 2 layers × q_proj, v_proj
    table = generations(page)
    assert list(table.columns) == ["prompt", "base", *NAMES, "blend"]
    # One adapter at weight 1, the others 0, blended exactly (cat): the blend is that adapter.
    page.selectbox(key="lora_method").set_value("cat").run()
    for i, weight in enumerate((0.0, 1.0, 0.0)):
        page.slider(key=f"lora_w_{i}").set_value(weight).run()
    assert not page.exception, page.exception
    assert float(metrics(page)["Blend error"]) < 1e-6
    table = generations(page)
    assert table["blend"].tolist() == table["code"].tolist()


def test_peft_methods_and_density(page):
    page.selectbox(key="lora_method").set_value("ties").run()
    assert not page.exception, page.exception
    page.slider(key="lora_density").set_value(0.3).run()
    assert not page.exception, page.exception
    assert metrics(page)["Engine"] == "PEFT"


def test_geometry_and_delta_map(page):
    show_view(page, "Geometry")
    assert len(page.get("vega_lite_chart")) >= 3
    geometry = next(d.value for d in page.dataframe if "stable_rank" in d.value.columns)
    assert set(geometry["adapter"]) == {*NAMES, "blend"}
    show_view(page, "Delta map")
    points = next(d.value for d in page.dataframe if "x" in d.value.columns)
    assert set(NAMES) <= set(points["name"]) and "blend" in set(points["name"])
    before = points.set_index("name").loc["blend", ["x", "y"]].tolist()
    page.slider(key="lora_w_0").set_value(2.0).run()
    points = next(d.value for d in page.dataframe if "x" in d.value.columns)
    assert points.set_index("name").loc["blend", ["x", "y"]].tolist() != before


def test_save_blend_never_overwrites(page, tmp_path):
    show_view(page, "Save")
    page.text_input(key="lora_save_name").set_value("mix").run()
    page.button(key="lora_save_go").click().run()
    assert not page.exception, page.exception
    saved = tmp_path / "cache" / "adapters" / "mix"
    assert (saved / "adapter_config.json").is_file()
    assert (saved / "adapter_model.safetensors").is_file()
    stamp = (saved / "adapter_model.safetensors").stat().st_mtime_ns
    page.run()
    assert "mix" in page.multiselect(key="adapters").options  # listed with the adapters now
    page.button(key="lora_save_go").click().run()
    assert any("exists already" in e.value for e in page.error)
    assert (saved / "adapter_model.safetensors").stat().st_mtime_ns == stamp


@pytest.mark.parametrize("name", ["../../escaped", "/tmp/abs-blend", ".hidden", "a b", "x\x00y"])
def test_save_refuses_a_name_that_is_not_a_plain_folder(page, tmp_path, name):
    show_view(page, "Save")
    page.text_input(key="lora_save_name").set_value(name).run()
    page.button(key="lora_save_go").click().run()
    assert not page.exception, page.exception
    assert [e.value for e in page.error] and "is not a valid blend name" in page.error[0].value
    assert not (tmp_path / "cache" / "adapters").exists()
    assert not (tmp_path / "escaped").exists() and not Path("/tmp/abs-blend").exists()


def test_not_an_adapter_is_one_error(page, tmp_path):
    page.text_area(key="adapters_typed").set_value(str(tmp_path)).run()
    assert not page.exception, page.exception
    assert [e.value for e in page.error] and "not a PEFT adapter folder" in page.error[0].value


def test_train_view_submits_a_relora_run(page, workspace):
    show_view(page, "Train")
    page.get("button_group")[-1].set_value("relora").run()
    assert not page.exception, page.exception
    page.button(key="lora_tr_go").click().run()
    assert not page.exception, page.exception
    from engine.jobs import list_jobs

    [job] = [v for v in list_jobs() if v.spec.kind == "train.relora"]
    assert job.spec.params["model"] == str(workspace["model"])
    page.number_input(key="lora_tr_relora_k").set_value(1).run()  # shorter than its re-warmup
    page.button(key="lora_tr_go").click().run()
    assert any("must be shorter than reset_every" in e.value for e in page.error)
    assert len([v for v in list_jobs() if v.spec.kind == "train.relora"]) == 1


def test_big_models_generate_on_a_button_press(workspace, tmp_path, monkeypatch):
    import dashboard.views.lora.panels as panels

    monkeypatch.setattr(panels, "LIVE_PARAMETERS", 1)  # the tiny model counts as big
    at = open_page(
        monkeypatch,
        "lora",
        cache=tmp_path / "cache",
        models=workspace["models"],
        state={"model_source": str(workspace["model"])},
        clear_resources=True,
    )
    at.text_area(key="adapters_typed").set_value(
        "\n".join(str(p) for p in workspace["adapters"])
    ).run()
    assert not at.toggle(key="lora_live_generations").value
    assert not any("blend" in d.value.columns for d in at.dataframe)  # nothing generated yet
    at.button(key="lora_generate").click().run()
    assert not at.exception, at.exception
    assert list(generations(at).columns) == ["prompt", "base", *NAMES, "blend"]
