"""The Set block decoding view's cached loaders: finished SBD runs, their run.json and tables, and
the SBD and autoregressive generations of a prompt."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import streamlit as st

from dashboard.loaders import shared_model
from engine.errors import SubnetScopeError

if TYPE_CHECKING:
    from engine.models import CountedGeneration


@st.cache_data(max_entries=4, show_spinner=False)
def run_list(stamp: str) -> list[tuple[str, str, str, bool]]:
    """(result folder, label, job id, is the demo part's) of every finished SBD fine-tune, the
    demo's first; `stamp` (the workspace stamp) brings in new ones."""
    from engine.sbd import run_label, sbd_runs

    return [(str(r.path), run_label(r), r.view.id, r.is_demo) for r in sbd_runs()]


@st.cache_data(max_entries=8, show_spinner=False)
def run_meta(folder: str, stamp: str) -> dict[str, Any]:
    """The run's run.json: its model folder, template, dataset, block sizes, losses. A folder
    without one (a model folder typed in) is its own model, prompted in the "auto" template (the
    tokenizer's chat template where it has one, else alpaca). `stamp` (the folder's fingerprint)
    re-reads it."""
    from engine.sbd import MODEL_DIR, RUN_JSON

    path = Path(folder).expanduser()
    if (path / RUN_JSON).is_file():
        meta = json.loads((path / RUN_JSON).read_text())
        if (path / MODEL_DIR / "config.json").is_file():  # wherever the job folder now lies
            meta["model_dir"] = str(path / MODEL_DIR)
        return meta
    if (path / MODEL_DIR / "config.json").is_file():
        return {"model_dir": str(path / MODEL_DIR), "template": "auto"}
    if (path / "config.json").is_file():
        return {"model_dir": str(path), "template": "auto"}
    raise SubnetScopeError(f"'{folder}' is neither an SBD run's result folder nor a model folder")


@st.cache_data(max_entries=8, show_spinner=False)
def rendered_prompt(model_dir: str, dtype: str, template: str, instruction: str) -> str:
    """The instruction in the run's prompt template, as training showed it (response empty)."""
    from engine.data import Example, format_prompt

    tokenizer = shared_model(model_dir, dtype).tokenizer
    return format_prompt(Example(instruction=instruction, response=""), template, tokenizer)


@st.cache_data(max_entries=64, show_spinner="Set block decoding…")
def sbd_generation(
    model_dir: str,
    stamp: str,
    dtype: str,
    prompt: str,
    block_size: int,
    threshold: float,
    ntp_first: bool,
    max_new: int,
) -> CountedGeneration:
    """One SBD generation of the rendered prompt; `stamp` follows the model folder's weights.
    Cached: its `seconds` are those of the call that computed it."""
    from engine.models import sbd_generate

    return sbd_generate(
        shared_model(model_dir, dtype),
        prompt,
        block_size=block_size,
        threshold=threshold,
        max_new_tokens=max_new,
        ntp_first=ntp_first,
    )


@st.cache_data(max_entries=32, show_spinner="Decoding autoregressively…")
def ar_generation(
    model_dir: str, stamp: str, dtype: str, prompt: str, max_new: int
) -> CountedGeneration:
    """Greedy autoregressive decoding of the same model and prompt, one token per forward."""
    from engine.models import ar_generate

    return ar_generate(shared_model(model_dir, dtype), prompt, max_new_tokens=max_new)


@st.cache_data(max_entries=4, show_spinner=False)
def evaluation_list(stamp: str) -> list[tuple[str, str, str, str]]:
    """(result folder, label, the job id of the run it evaluated, its own job id) of every
    trade-off table: a fine-tune's own, then each `sbd.evaluate` job's (its run as the job
    resolved it, else its `run` param: a job id, a unique prefix of one, or "demo")."""
    from engine.sbd import EVAL_KIND, evaluations, run_label

    listed = []
    for found in evaluations():
        gammas = ", ".join(f"{t:g}" for t in found.params.get("thresholds", ()))
        if found.view.spec.kind != EVAL_KIND:
            run, label = found.view.id, f"at the end of training, γ {gammas} · {found.view.id}"
        else:
            asked = str(found.params.get("run", ""))
            run, label = (
                evaluation_facts(str(found.path), stamp).get("run") or asked,
                run_label(found),
            )
        listed.append((str(found.path), label, run, found.view.id))
    return listed


@st.cache_data(max_entries=16, show_spinner=False)
def evaluation_facts(folder: str, stamp: str) -> dict[str, Any]:
    """The evaluation's summary (evaluation.json: the run, which examples, the best γ in one
    sentence); empty where a folder has none."""
    from engine.sbd import EVAL_SUMMARY

    path = Path(folder) / EVAL_SUMMARY
    return json.loads(path.read_text()) if path.is_file() else {}


@st.cache_data(max_entries=16, show_spinner=False)
def result_table(folder: str, name: str, stamp: str) -> pd.DataFrame:
    """One parquet table of a job's result folder; `stamp` (the workspace stamp) re-reads it."""
    path = Path(folder) / name
    if not path.is_file():
        raise SubnetScopeError(f"no {name} in '{folder}'")
    return pd.read_parquet(path)
