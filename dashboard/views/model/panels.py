"""The Model view's panels: facts, architecture tables, the generation playground, perplexity."""

from __future__ import annotations

import streamlit as st

from dashboard.jobs_panel import job_launcher, job_watcher
from dashboard.views.model.charts import parameters_by_kind_chart, parameters_by_layer_chart
from dashboard.views.model.loaders import parameters_table, summary_table
from engine.errors import SubnetScopeError
from engine.jobs import get_kind
from engine.models import (
    LoadedModel,
    NeuronMask,
    architecture_facts,
    generate_text,
    has_chat_template,
    parse_neuron_spec,
)


def facts_header(loaded: LoadedModel) -> None:
    facts = architecture_facts(loaded)
    st.title(facts["name"])
    st.caption(
        f"{facts['model_class']} · {facts['architecture']} family · "
        f"{facts['dtype']} on {facts['device']}"
    )
    if loaded.architecture.fallback:
        st.warning(" ".join(loaded.architecture.notes))
    cols = st.columns(4)
    cols[0].metric("Layers", facts["num_layers"])
    cols[1].metric("Hidden size", facts["hidden_size"])
    width = facts["intermediate_size"]
    cols[2].metric(
        "MLP neurons / layer", width if isinstance(width, int) else f"{min(width)}–{max(width)}"
    )
    cols[3].metric("Parameters", f"{facts['num_parameters'] / 1e6:,.1f} M")


def architecture_section(source: str, dtype: str) -> None:
    summary = summary_table(source, dtype)
    by_kind = parameters_table(source, dtype)
    left, right = st.columns([3, 2])
    with left:
        st.subheader("Blocks × modules")
        st.dataframe(summary, hide_index=True, height=320, width="stretch")
    with right:
        st.subheader("Parameters by module type")
        st.altair_chart(parameters_by_kind_chart(by_kind), width="stretch")
    with st.expander("Parameters per layer"):
        st.altair_chart(parameters_by_layer_chart(summary), width="stretch")


def mask_from_widgets(loaded: LoadedModel) -> NeuronMask | None:
    with st.expander("Neuron mask (applies to this call only)"):
        spec = st.text_input(
            "Neurons",
            placeholder="3:17 3:20-25 12:100",
            help="layer:neuron or layer:first-last, on the input of the MLP down projection",
        )
        mode = st.radio("Mode", ["zero", "keep", "scale"], horizontal=True)
        factor = st.number_input("Scale factor", value=0.0, step=0.5) if mode == "scale" else 0.0
    if not spec.strip():
        return None
    total = sum(loaded.architecture.neurons_per_layer)
    pairs = parse_neuron_spec(spec, max_neurons=total)
    mask = NeuronMask.from_pairs(pairs, mode=mode, factor=factor)
    mask.validate(loaded.architecture)
    return mask


def playground(loaded: LoadedModel) -> None:
    st.subheader("Generation playground")
    if not loaded.is_causal_lm:
        st.info(f"{loaded.display_name} is an encoder: no text generation.")
        return
    with st.form("generate"):
        prompt = st.text_area("Prompt", value="What is the capital of France?")
        cols = st.columns(3)
        max_new = cols[0].slider("Max new tokens", 1, 256, 48)
        temperature = cols[1].slider("Temperature (0 = greedy)", 0.0, 1.5, 0.0, 0.05)
        chat = cols[2].checkbox(
            "Chat template",
            value=has_chat_template(loaded.tokenizer),
            disabled=not has_chat_template(loaded.tokenizer),
        )
        try:
            mask, problem = mask_from_widgets(loaded), None
        except SubnetScopeError as exc:  # inside the form: its submit button must still be drawn
            mask, problem = None, str(exc)
        submitted = st.form_submit_button("Generate", type="primary")
    if problem:
        st.error(problem)
    elif submitted:
        with st.spinner("Generating…"):
            result = generate_text(
                loaded,
                prompt,
                max_new_tokens=max_new,
                mask=mask,
                chat=chat,
                temperature=temperature,
            )
        st.markdown("**Output**")
        st.code(result.text or "(no text)", language=None, wrap_lines=True)
        masked = f" · mask: {mask.mode} {mask.size} neurons" if mask else ""
        st.caption(
            f"{result.new_tokens} tokens in {result.seconds:.2f} s "
            f"({result.new_tokens / max(result.seconds, 1e-9):.1f} tok/s){masked}"
        )
        with st.expander("Exact model input"):
            st.code(result.prompt, language=None, wrap_lines=True)


def perplexity_section(loaded: LoadedModel, source: str) -> None:
    st.subheader("Measure perplexity")
    if not loaded.is_causal_lm:
        st.info(f"{loaded.display_name} is an encoder: no next-token perplexity.")
        return
    defaults = get_kind("eval.perplexity").defaults
    st.caption(
        f"Sliding windows of {defaults['window']} tokens over the demo text, scored in a "
        "separate process: the page stays responsive and the run is listed under Runs."
    )
    cols = st.columns(2)
    max_tokens = cols[0].number_input(
        "Max tokens", 64, 65_536, defaults["max_tokens"], step=256, key="ppl_max_tokens"
    )
    stride = cols[1].number_input(
        "Stride",
        1,
        defaults["window"],
        defaults["stride"],
        step=64,
        key="ppl_stride",
        help="tokens between window starts; each window sees window − stride tokens of context",
    )
    params = {"model": source, "text": "demo-general", "max_tokens": max_tokens, "stride": stride}
    job_id = job_launcher("eval.perplexity", params, label="Measure perplexity", key="ppl_job")
    if job_id:
        job_watcher(job_id, key="ppl_watch", here="model")
