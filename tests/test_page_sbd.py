"""AppTest of the Set block decoding page on a tiny Llama fine-tuned by the real `sbd.train` job
(a few steps, in this process): the decode view shows what the engine's decoders return, block
size 1 with NTP for the first slot is autoregressive, a typed model folder, the trade-off view and
both launchers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from engine.jobs import RESULT, api
from engine.sbd import answer_correct
from tests.generator_support import inside
from tests.job_support import hold_local_jobs
from tests.page_support import open_page, show_view
from tests.sbd_support import TINY_RUN, run_tiny_sbd
from tests.tiny import save_tiny_folder

PROMPT = "What is 17 + 36?"  # the page's default prompt


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("sbd-page")
    model = root / "models" / "tiny-llama"
    save_tiny_folder(model)
    with inside(root):
        job = run_tiny_sbd(str(model), eval_block_size=4)
    result = root / "cache" / "jobs" / job / RESULT
    return {"root": root, "job": job, "result": result, "model": result / "model"}


def open_sbd(workspace: dict, monkeypatch, **state) -> AppTest:
    hold_local_jobs(monkeypatch)
    return open_page(
        monkeypatch,
        "sbd",
        cache=workspace["root"] / "cache",
        models=workspace["root"] / "models",
        state=state,
    )


def decoded(model: Path, k: int, threshold: float, max_new: int, ntp_first: bool = False):
    """What the engine's decoders give for the page's default prompt in the run's template."""
    from engine.data import Example, format_prompt
    from engine.models import ar_generate, load_model, sbd_generate

    loaded = load_model(str(model))
    prompt = format_prompt(Example(instruction=PROMPT, response=""), "basic", loaded.tokenizer)
    sbd = sbd_generate(
        loaded,
        prompt,
        block_size=k,
        threshold=threshold,
        max_new_tokens=max_new,
        ntp_first=ntp_first,
    )
    return sbd, ar_generate(loaded, prompt, max_new_tokens=max_new)


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_decode_shows_the_engines_generation_pass_by_pass(workspace, monkeypatch):
    at = open_sbd(workspace, monkeypatch)
    assert workspace["job"] in at.selectbox(key="sbd_run").value
    assert at.slider(key="sbd_block").value == 4  # the run's eval_block_size
    at.slider(key="sbd_threshold").set_value(1.5).run()
    at.slider(key="sbd_max_new").set_value(12).run()
    assert not at.exception, at.exception
    sbd, ar = decoded(workspace["model"], 4, 1.5, 12)
    shown = metrics(at)
    assert shown["Forward passes, SBD"] == str(sbd.forwards)
    assert shown["Tokens per forward, SBD"] == f"{sbd.tokens_per_forward:.2f}"
    assert shown["Forward passes, autoregressive"] == str(ar.forwards)
    assert shown["Same text as autoregressive"] == ("yes" if sbd.text == ar.text else "no")
    [ratio] = [m.delta for m in at.metric if m.label == "Forward passes, SBD"]
    if sbd.forwards < ar.forwards:
        assert ratio == f"{ar.forwards / sbd.forwards:.2f}× fewer than autoregressive"
    elif sbd.forwards > ar.forwards:
        assert ratio == f"{sbd.forwards / ar.forwards:.2f}× more than autoregressive"
    [header] = [m.value for m in at.markdown if m.value.startswith("**Set block decoding**")]
    right = f"{int(PROMPT.split()[2]) + int(PROMPT.split()[4][:-1])}."
    assert header.endswith(" · answer right" if f"= {right}" in sbd.text else " · answer wrong")
    [header] = [m.value for m in at.markdown if m.value.startswith("**Set block decoding**")]
    right = answer_correct({"instruction": PROMPT}, sbd.text)
    assert header.endswith(" · answer right" if right else " · answer wrong")
    [spans] = [h.proto.body for h in at.get("html")]
    assert spans.count("<sub") == len(sbd.pieces)
    for step in set(sbd.passes):
        assert f'title="pass {step}"' in spans
    if sbd.pieces:
        assert len(at.get("vega_lite_chart")) == 1  # the reveal map
        table = next(d.value for d in at.dataframe if "revealed" in d.value.columns)
        assert table["tokens"].sum() == len(sbd.pieces)
        assert sorted(p for ps in table["positions"] for p in ps) == list(
            range(1, len(sbd.pieces) + 1)
        )
        assert set(table["pass"]) == set(sbd.passes)


def test_block_size_one_with_ntp_first_is_autoregressive(workspace, monkeypatch):
    at = open_sbd(workspace, monkeypatch, sbd_max_new=10)
    at.slider(key="sbd_block").set_value(1).run()
    at.toggle(key="sbd_ntp_first").set_value(True).run()
    assert not at.exception, at.exception
    shown = metrics(at)
    assert shown["Same text as autoregressive"] == "yes"
    assert shown["Forward passes, SBD"] == shown["Forward passes, autoregressive"]
    assert shown["Tokens per forward, SBD"] == "1.00"


def test_a_typed_model_folder_decodes_too(workspace, monkeypatch):
    at = open_sbd(workspace, monkeypatch, sbd_max_new=6)
    [typed] = [o for o in at.selectbox(key="sbd_run").options if o.endswith("…")]
    at.selectbox(key="sbd_run").set_value(typed).run()
    at.text_input(key="sbd_run_typed").set_value(str(workspace["model"])).run()
    assert not at.exception, at.exception
    assert "Forward passes, SBD" in metrics(at)
    at.text_input(key="sbd_run_typed").set_value(str(workspace["root"] / "models" / "tiny-llama"))
    at.run()
    assert any("not SBD-trained" in e.value for e in at.error)  # the base model: no mask token
    at.text_input(key="sbd_run_typed").set_value(str(workspace["root"])).run()
    assert any("neither an SBD run's result folder nor a model folder" in e.value for e in at.error)


def test_trade_off_view_and_the_evaluate_launcher(workspace, monkeypatch):
    from engine.sbd import EVAL_KIND

    at = open_sbd(workspace, monkeypatch)
    show_view(at, "Trade-off")
    before = {v.id for v in api.list_jobs(kind=EVAL_KIND)}
    shown = metrics(at)
    assert "Accuracy, autoregressive" in shown and "Fewest passes within 2 points" in shown
    assert len(at.get("vega_lite_chart")) == 2  # accuracy and forwards per token against γ
    captions = " ".join(c.value for c in at.caption)
    assert f"The fine-tune: {TINY_RUN['steps']} steps" in captions
    assert f"{TINY_RUN['eval_examples']} examples: the run's held-out records" in captions
    table = next(d.value for d in at.dataframe if "forwards_per_token" in d.value.columns)
    assert list(table["method"]) == ["autoregressive"] + ["sbd"] * len(TINY_RUN["thresholds"])
    assert at.number_input(key="sbd_eval_k").value == 4  # the run's own evaluation k
    at.text_input(key="sbd_eval_thresholds").set_value("0.2, 0.5").run()
    at.number_input(key="sbd_eval_examples").set_value(2).run()
    at.button(key="sbd_eval_job_submit").click().run()
    assert not at.exception, at.exception
    [job] = [v for v in api.list_jobs(kind=EVAL_KIND) if v.id not in before]
    assert job.spec.params["run"] == workspace["job"]
    assert job.spec.params["thresholds"] == [0.2, 0.5]
    assert job.spec.params["eval_examples"] == 2


def test_an_evaluation_link_opens_its_run_on_the_trade_off_view(workspace, monkeypatch):
    """The Runs page's result link (`/sbd?job=<id>`) of an `sbd.evaluate` job that named its run
    by a prefix of the id: the run, the Trade-off view and that evaluation are chosen."""
    from engine.jobs.status_file import update_status
    from engine.sbd import EVAL_FILE, EVAL_KIND, SAMPLES_FILE
    from tests.page_support import APP

    hold_local_jobs(monkeypatch)
    monkeypatch.setenv("SUBNETSCOPE_CACHE", str(workspace["root"] / "cache"))
    view = api.submit(EVAL_KIND, {"run": workspace["job"][:-2], "thresholds": [0.0, 1.0]})
    (view.path / RESULT).mkdir(parents=True, exist_ok=True)
    for name in (EVAL_FILE, SAMPLES_FILE):
        shutil.copy(workspace["result"] / name, view.path / RESULT / name)
    update_status(view.path, state="succeeded", fraction=1.0)
    st.cache_data.clear()
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.query_params["job"] = view.id
    at.switch_page("../pages/sbd.py").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="sbd_run").value == str(workspace["result"])
    assert at.selectbox(key="sbd_eval").value == str(view.path / RESULT)
    assert len(at.selectbox(key="sbd_eval").options) == 2  # the run's own and this one
    assert not at.warning, [w.value for w in at.warning]


def test_no_run_yet_then_the_train_launcher(tmp_path, monkeypatch):
    from engine.sbd import TRAIN_KIND

    hold_local_jobs(monkeypatch)
    at = open_page(monkeypatch, "sbd", cache=tmp_path / "cache")
    assert any("No SBD-trained run yet" in i.value for i in at.info)
    at.number_input(key="sbd_train_steps").set_value(7).run()
    at.toggle(key="sbd_train_lora").set_value(True).run()
    at.text_input(key="sbd_train_blocks").set_value("4-8").run()
    at.text_input(key="sbd_train_thresholds").set_value("0.1 0.6").run()
    at.button(key="sbd_train_job_submit").click().run()
    assert not at.exception, at.exception
    [job] = api.list_jobs(kind=TRAIN_KIND)
    params = job.spec.params
    assert params["steps"] == 7 and params["lora"] is True
    assert params["block_sizes"] == "4-8" and params["thresholds"] == [0.1, 0.6]
    at.text_input(key="sbd_train_blocks").set_value("1-4").run()
    assert any("block_sizes" in e.value for e in at.error)


def test_tokens_are_escaped_and_passes_counted() -> None:
    from dashboard.views.sbd.panels import coloured, legend, pass_table, token_frame
    from engine.models import CountedGeneration

    gen = CountedGeneration(
        prompt="p",
        text="<b>\n*",
        token_ids=[5, 6, 7],
        pieces=["<b>", "\n", "*"],
        passes=[2, 1, 2],
        forwards=2,
        seconds=0.0,
        method="sbd",
        block_size=3,
        threshold=1.0,
        stopped_at_eos=False,
    )
    drawn = coloured(gen)
    assert "&lt;b&gt;" in drawn and "<b>" not in drawn
    assert 'title="pass 1: 1 token"' in legend(gen.passes) and ">2 ×2<" in legend(gen.passes)
    table = pass_table(token_frame(gen))
    assert table.to_dict("list") == {
        "pass": [1, 2],
        "block": [1, 1],
        "tokens": [1, 2],
        "slots": [[2], [1, 3]],
        "positions": [[2], [1, 3]],
        "revealed": [["⏎"], ["<b>", "*"]],
    }
