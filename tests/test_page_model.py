"""AppTest of the Model page on the demo model: facts, tables, chart and a generation."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.page_support import APP

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()  # Home, the default page
    at.switch_page("../pages/model.py").run()
    assert not at.exception, at.exception
    return at


def generate_button(app: AppTest):
    return next(b for b in app.button if b.label == "Generate")


def test_model_page_shows_architecture(app: AppTest) -> None:
    assert app.title[0].value == "SmolLM2-135M-Instruct"
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Layers"] == "30"
    assert metrics["MLP neurons / layer"] == "1536"
    table = app.dataframe[0].value
    assert set(table["role"]) >= {"mlp.up", "mlp.gate", "mlp.down", "attention", "norm"}
    assert len(app.get("vega_lite_chart")) >= 1


def test_playground_answers_a_prompt(app: AppTest) -> None:
    next(t for t in app.text_area if t.label == "Prompt").set_value(
        "What is the capital of France?"
    )
    next(s for s in app.slider if s.label == "Max new tokens").set_value(12)
    generate_button(app).click().run()
    assert not app.exception, app.exception
    assert "Paris" in app.code[0].value


def test_bad_mask_shows_one_error(app: AppTest) -> None:
    inputs = [t for t in app.text_input if t.label == "Neurons"]
    inputs[0].set_value("99:1")
    generate_button(app).click().run()
    assert not app.exception
    assert any("layers 0..29" in e.value for e in app.error)
