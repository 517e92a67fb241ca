"""AppTest of the TFLite explorer on the synthetic demo set and a real mediapipe model."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard.views.tflite.loaders import available_files
from engine.tflite.samples import ensure_samples
from tests.page_support import open_page
from tests.tflite_support import MEDIAPIPE, need_mediapipe


@pytest.fixture
def page(tmp_path, monkeypatch) -> AppTest:
    monkeypatch.setenv("SUBNETSCOPE_CACHE", str(tmp_path))
    ensure_samples()
    env = {"SUBNETSCOPE_TFLITE_ROOTS": MEDIAPIPE}
    return open_page(monkeypatch, "tflite", cache=tmp_path, env=env, timeout=120)


def _select(at: AppTest, label: str, value) -> AppTest:
    [box] = [s for s in at.selectbox if s.label == label]
    return box.set_value(value).run()


def _view(at: AppTest, name: str) -> AppTest:
    return at.segmented_control(key="tflite_view").set_value(name).run()


def _file(tmp_path: Path, name: str) -> str:
    return str(tmp_path / "tflite-samples" / name)


def test_gemma3n_bundle_shows_findings_and_sections(page, tmp_path) -> None:
    at = _select(page, "File", _file(tmp_path, "gemma3n_like.task"))
    assert not at.exception, at.exception
    sections = next(s for s in at.selectbox if s.label == "Section").options
    assert len(sections) >= 2  # decoder plus the embedders
    _select(at, "Section", sections[0])
    at = _view(at, "Findings")
    findings = [d.value for d in at.dataframe if "confidence" in d.value.columns]
    assert findings, "no findings table"
    kinds = set(findings[0]["kind"])
    assert {"ffn_widths", "altup", "laurel"} <= kinds
    at = _view(at, "Graph")
    assert not at.exception, at.exception
    assert len(at.get("graphviz_chart")) == 1  # a neighbourhood
    at.radio(key="graph_mode").set_value("Layer").run()
    assert not at.exception and len(at.get("graphviz_chart")) == 1  # a whole layer


def test_findings_see_a_head_tied_to_another_sections_embedding(page, tmp_path) -> None:
    """Seed 000's finding: the decoder's LM head holds the embedder section's table."""
    at = _select(page, "File", _file(tmp_path, "gemma3n_like.task"))
    decoder = next(s for s in at.selectbox if s.label == "Section").options
    _select(at, "Section", next(o for o in decoder if "PREFILL_DECODE" in o))
    at = _view(at, "Findings")
    assert not at.exception, at.exception
    [table] = [d.value for d in at.dataframe if "confidence" in d.value.columns]
    tied = table[table["kind"] == "tied_embedding"]
    assert any("TF_LITE_EMBEDDER" in str(row) for row in tied.astype(str).values.tolist()), tied


def test_findings_show_the_config_read_from_a_converted_model(page) -> None:
    """Issue 18: the Findings view reads the config back off the converter's graph, with its
    evidence, and checks it against the config the sample was converted from."""
    from tests.converted_support import converted

    at = _view(_select(page, "File", str(converted("gemma3-tiny").tflite)), "Findings")
    assert not at.exception, at.exception
    [table] = [d.value for d in at.dataframe if "evidence" in d.value.columns]
    rows = table.set_index("field")
    assert rows.loc["sliding_window", "value"] == "32"
    assert rows.loc["num_hidden_layers", "evidence"].startswith("ops ")
    assert rows["equal"].all(), table


def test_weights_view_matches_a_converted_model_to_its_source(page, tmp_path) -> None:
    """Issue 18, item 3: a converter sample's weights, traced to its own HF folder (found by
    itself); any other file asks for the folder."""
    from tests.converted_support import converted

    at = _view(_select(page, "File", str(converted("qwen2-tiny").tflite)), "Weights")
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Tensors matched"] == "42 / 106", metrics
    assert metrics["Max |Δ|"] == "0" and metrics["All within step"] == "yes"
    assert any("q_proj.weight" in " ".join(d.value.get("hf", [])) for d in at.dataframe)
    at = _select(at, "File", _file(tmp_path, "gemma3n_like.task"))
    assert not at.exception and at.text_input(key="tflite_weights_hf") is not None


def test_tensor_inspector_reads_dequantized_values(page, tmp_path) -> None:
    at = _view(_select(page, "File", _file(tmp_path, "quantized.tflite")), "Tensors")
    [inspect] = [s for s in at.selectbox if s.label == "Inspect tensor"]
    constant = next(
        i for i in inspect.options if "weight" in i or "kernel" in i or "w" in i.split(": ")[1]
    )
    inspect.set_value(int(constant.split(":")[0])).run()
    assert not at.exception, at.exception
    stats = [d.value for d in at.dataframe if "mean" in d.value.columns]
    assert stats and stats[0]["count"].iloc[0] > 0
    assert any(b.label == "Download .npy" for b in at.get("download_button"))


def test_diff_mode_compares_two_files(page, tmp_path) -> None:
    page.toggle(key="tflite_diff").set_value(True).run()
    at = _select(page, "Compare with", _file(tmp_path, "mlp.tflite"))
    _select(at, "File", _file(tmp_path, "quantized.tflite"))
    assert not at.exception, at.exception
    assert any("added" in str(j.value) or "changed" in str(j.value) for j in at.json)


def test_real_mediapipe_model_opens(page) -> None:
    need_mediapipe()
    at = _select(page, "File", str(MEDIAPIPE / "face_landmark.tflite"))
    assert not at.exception and not at.error
    metrics = {m.label: m.value for m in at.metric}
    assert int(metrics["Ops"].replace(",", "")) > 100


def test_broken_file_is_one_error(page, tmp_path) -> None:
    broken = tmp_path / "uploads"
    broken.mkdir(exist_ok=True)
    (broken / "broken.tflite").write_bytes(b"\x00" * 12 + b"TFL3" + b"\xff" * 64)
    available_files.clear()  # the listing is cached for 30 s
    at = page.run()
    _select(at, "File", str(broken / "broken.tflite"))
    assert not at.exception
    assert len(at.error) == 1
