"""Sections of the ICA page: pick templates, browse, toggle live, train masked, build."""

from __future__ import annotations

import time

import streamlit as st

from dashboard.downloads import downloads
from dashboard.jobs_panel import job_launcher, job_watcher, submit_job
from dashboard.loaders import chosen_dtype, shared_model
from dashboard.neuron_links import neuron_table
from dashboard.sources import artifact_picker
from dashboard.stamps import workspace_stamp
from dashboard.views.ica import charts
from dashboard.views.ica.loaders import template_choices, time_course_of
from engine.errors import SubnetScopeError
from engine.ica import (
    SPACE_LABELS,
    SPACES,
    ComponentArrays,
    Templates,
    component_neurons,
    dataset_means,
    held_out_texts,
    ica_mask,
    jaccard_overlaps,
    key_neuron_counts,
    live_comparison,
    top_tokens,
)
from engine.models import format_layers

HERE = "ica"
PICK_KEY = "templates"
SFT_JOBS = "ica_sft_jobs"
TIME_COURSE_TEXT = (
    "The function returns a list of names.\n"
    "def names(items):\n    return [item.name for item in items if item.visible]"
)


def pick_templates(bar=st.sidebar) -> str | None:
    """A built templates file (the demo's first) or one typed in; `?templates=` preselects."""
    choices = template_choices(workspace_stamp())
    return artifact_picker(
        "Templates",
        choices,
        typed_label="A templates file",
        key=PICK_KEY,
        placeholder="/path/to/global_templates.json",
        container=bar,
        help="ICA templates built by jobs (the demo's first), or a file in seed 001's layout",
    )


# browsing ---------------------------------------------------------------------------------
def headline(templates: Templates) -> None:
    meta = templates.metadata
    cols = st.columns(5)
    cols[0].metric("Components", len(templates.component_ids))
    cols[1].metric("Layers", format_layers(templates.layers) or "–")
    cols[2].metric("Tokens", f"{meta['tokens']:,}" if "tokens" in meta else "–")
    pca, kept = meta.get("pca_dims"), meta.get("explained_variance")
    cols[3].metric(
        "PCA",
        f"{pca} dims" if pca else "none",
        f"{100 * kept:.1f}% variance kept" if kept else None,
        delta_color="off",
    )
    rule = meta.get("threshold", "percentile")
    cols[4].metric(
        "Key neurons",
        f"top {100 - meta.get('percentile', 95):g}%" if rule == "percentile" else "|z| > 1.96",
    )
    st.caption(f"Space: **{templates.space}**, {SPACE_LABELS[templates.space]}")
    if meta.get("source_format"):
        st.caption(
            f"A seed-001 file ({meta.get('name') or 'unnamed'}): MLP output channels of hidden "
            f"size {meta.get('hidden_size')}, no model name or family to check against."
        )
    elif "model" in meta:
        st.caption(
            f"{meta.get('model_name', meta.get('model', '?'))} ({meta.get('family', '?')}) · "
            f"{', '.join(meta.get('datasets', []))} · "
            f"{'standardized features' if meta.get('standardized') else 'raw activations'} · "
            f"built {meta.get('created', '?')}"
        )
    else:
        st.caption("A bare seed-001 file: no metadata, so no check against the model's family.")
    for note in meta.get("notes", []):
        st.warning(note)


def _unit(templates: Templates) -> str:
    return "MLP output channels" if templates.space == "mlp_out" else "neurons"


def _component_label(templates: Templates, arrays: ComponentArrays | None):
    preferred = {}
    if arrays is not None and len(arrays.datasets) > 1:
        means = dataset_means(arrays)
        for c, group in means.groupby("component"):
            preferred[c] = group.loc[group["mean"].idxmax(), "dataset"]

    def label(c: int) -> str:
        extra = f" · prefers {preferred[c]}" if c in preferred else ""
        return f"{c} · {templates.size(c):,} {_unit(templates)}{extra}"

    return label


def components_panel(templates: Templates, arrays: ComponentArrays | None, source: str) -> None:
    st.subheader(f"Key {_unit(templates)} per component and layer")
    st.altair_chart(
        charts.key_neuron_heatmap(key_neuron_counts(templates), _unit(templates)),
        width="stretch",
    )
    if arrays is not None and len(arrays.datasets) > 1:
        st.caption("Mean source value per dataset: which text each component prefers.")
        st.altair_chart(charts.dataset_preference_chart(dataset_means(arrays)), width="stretch")
    component = st.selectbox(
        "Component",
        templates.component_ids,
        key="ica_component",
        format_func=_component_label(templates, arrays),
    )
    tokens_col, neurons_col = st.columns([3, 2])
    with tokens_col:
        st.markdown("**Top-activating tokens** (the token in `[[…]]`)")
        if arrays is None:
            st.info("This templates file has no captured data beside it (a seed-001 file).")
        else:
            top = top_tokens(
                arrays, shared_model(source, chosen_dtype()).tokenizer, component, n=25
            )
            st.dataframe(top, hide_index=True, height=360, width="stretch")
    with neurons_col:
        neurons = component_neurons(templates, arrays, component)
        if templates.space == "mlp_out":
            # Hidden-size output channels: not neurons a passport (intermediate space) describes.
            st.markdown("**Key channels** (layer, channel of the down projection's output)")
            st.dataframe(neurons, hide_index=True, width="stretch", height=320)
        else:
            st.markdown("**Key neurons** (layer, neuron on the down projection's input)")
            # The neurons belong to the model the templates were built on (bare files name none).
            model = templates.metadata.get("model") or source
            neuron_table(neurons, model, key=f"ica_neurons_{component}", height=320)
        downloads(neurons, f"ica-component-{component}-neurons", key="ica_neurons_dl")
    if arrays is not None:
        time_course_section(templates, arrays, source, component)


def time_course_section(
    templates: Templates, arrays: ComponentArrays, source: str, component: int
) -> None:
    st.subheader("Time course over your text")
    text = st.text_area("Text", TIME_COURSE_TEXT, key="ica_time_text", height=100)
    others = [c for c in templates.component_ids if c != component]
    also = st.multiselect("Also show", others, key="ica_time_also")
    try:
        course = time_course_of(
            source, chosen_dtype(), str(templates.path), templates.path.stat().st_mtime_ns, text
        )
    except SubnetScopeError as exc:
        st.error(str(exc))
        return
    st.altair_chart(charts.time_course_chart(course, [component, *also]), width="stretch")


def overlap_panel(templates: Templates) -> None:
    st.subheader("Overlap between components")
    st.caption("Jaccard index |A ∩ B| / |A ∪ B| of the components' key-neuron sets.")
    overlaps = jaccard_overlaps(templates)
    st.altair_chart(charts.overlap_heatmap(overlaps), width="stretch")
    pairs = overlaps[overlaps["a"] < overlaps["b"]].sort_values("jaccard", ascending=False)
    st.dataframe(pairs.head(50), hide_index=True, width="stretch")
    downloads(pairs, "ica-overlaps", key="ica_overlaps_dl")


# live toggles -----------------------------------------------------------------------------
def toggles_panel(templates: Templates, arrays: ComponentArrays | None, source: str) -> None:
    st.subheader("Lesion or preserve components, live")
    st.caption(
        "The mask holds for these calls only: other sessions and the shared model never see it. "
        "Perplexity is scored on held-out general text the decomposition did not see."
    )
    loaded = shared_model(source, chosen_dtype())
    templates.validate(loaded.architecture, loaded.display_name)
    with st.form("ica_toggles"):
        chosen = st.multiselect(
            "Components", templates.component_ids, default=[0], key="ica_toggle_components"
        )
        mode = st.radio(
            "Mode",
            ["lesion", "preserve"],
            horizontal=True,
            key="ica_toggle_mode",
            help="lesion: zero their key channels · preserve: zero every other channel of the "
            f"templates' layers, in their space ({templates.space})",
        )
        prompt = st.text_input("Prompt", "The history of the city begins", key="ica_prompt")
        max_new = st.slider("New tokens", 8, 96, 40, key="ica_max_new")
        go = st.form_submit_button("Compare", type="primary")
    if not go:
        return
    mask = ica_mask(templates, chosen, mode)
    texts = held_out_texts(arrays)
    with st.spinner("Generating and scoring with and without the mask…"):
        result = live_comparison(loaded, mask, prompt, texts, max_new_tokens=max_new)
    left, right = st.columns(2)
    left.markdown("**Unmasked**")
    left.code(result.base_text or "(no text)", language=None, wrap_lines=True)
    left.metric("Held-out perplexity", f"{result.base_ppl:.2f}")
    right.markdown(
        f"**{mode.capitalize()} {', '.join(map(str, chosen))}** "
        f"({result.masked_neurons:,} {_unit(templates)} off)"
    )
    right.code(result.masked_text or "(no text)", language=None, wrap_lines=True)
    right.metric(
        "Held-out perplexity",
        f"{result.masked_ppl:.2f}",
        f"{result.masked_ppl / result.base_ppl - 1:+.1%}",
        delta_color="inverse",
    )
    st.caption(f"{result.tokens_scored:,} tokens of {len(texts)} held-out texts scored.")


# masked fine-tuning -----------------------------------------------------------------------
def sft_panel(templates: Templates, source: str) -> None:
    from engine.jobs import get_kind
    from engine.training import three_way

    st.subheader("Masked fine-tuning")
    st.caption(
        "LoRA SFT with the chosen components lesioned or preserved during training (seed 001), "
        "scored on held-out task examples and on general text (forgetting) before and after. "
        f"The mask acts in the templates' space ({templates.space})."
    )
    defaults = get_kind("train.sft_masked").defaults
    cols = st.columns(4)
    dataset = cols[0].text_input(
        "Task data",
        defaults["dataset"],
        key="ica_sft_data",
        help="a .jsonl/.json/.parquet file in any instruction format",
    )
    steps = cols[1].number_input("Steps", 1, 10_000, defaults["steps"], key="ica_sft_steps")
    lr = cols[2].number_input(
        "Learning rate", 1e-6, 1e-1, defaults["lr"], format="%.0e", key="ica_sft_lr"
    )
    template = cols[3].selectbox(
        "Prompt template", ["auto", "chat", "alpaca", "chatml"], key="ica_sft_template"
    )
    cols = st.columns(3)
    components = cols[0].multiselect(
        "Components", templates.component_ids, default=[0], key="ica_sft_components"
    )
    mode = cols[1].selectbox("Mask", ["lesion", "preserve", "none"], key="ica_sft_mode")
    anti_drift = cols[2].checkbox(
        "Anti-drift rows",
        key="ica_sft_anti_drift",
        help="W = frozen + row_mask · delta: the weights carrying masked channels cannot drift "
        "under Adam",
    )
    params = {
        **defaults,
        "model": source,
        "dataset": dataset,
        "steps": int(steps),
        "lr": float(lr),
        "template": template,
        "ica_templates": str(templates.path),
        "ica_component_ids": components,
        "mask_mode": None if mode == "none" else mode,
        "anti_drift_row_param": anti_drift,
    }
    left, right = st.columns(2)
    if left.button("Start run", key="ica_sft_start", icon=":material/play_arrow:"):
        job = submit_job("train.sft_masked", params, key="ica_sft_last")
        st.session_state[SFT_JOBS] = [job] if job else []
    if right.button(
        "Three-way comparison (LoRA · lesion · preserve)",
        key="ica_sft_three",
        type="primary",
        icon=":material/compare:",
    ):
        group = time.strftime("cmp-%Y%m%d-%H%M%S")
        jobs = [
            submit_job("train.sft_masked", p, key="ica_sft_last") for p in three_way(params, group)
        ]
        st.session_state[SFT_JOBS] = [j for j in jobs if j]
    for i, job_id in enumerate(st.session_state.get(SFT_JOBS, [])):
        job_watcher(job_id, key=f"ica_sft_watch_{i}", here=HERE)
    comparison_section()


def comparison_section() -> None:
    from engine.training import comparison_long, masked_runs

    runs = masked_runs()
    st.subheader("Finished runs")
    if runs.empty:
        st.info("No masked SFT run has finished yet.")
        return
    groups = sorted({g for g in runs["group"] if g}, reverse=True)
    group = st.selectbox("Comparison", ["all runs", *groups], key="ica_sft_group")
    shown = runs if group == "all runs" else runs[runs["group"] == group]
    st.altair_chart(charts.comparison_chart(comparison_long(shown)))
    st.dataframe(
        shown,
        hide_index=True,
        width="stretch",
        column_config={
            "forgetting": st.column_config.NumberColumn(format="percent"),
            "task_gain": st.column_config.NumberColumn(format="%.2f×"),
        },
    )
    downloads(shown, "masked-sft-runs", key="ica_runs_dl")


# building ---------------------------------------------------------------------------------
def build_panel(source: str) -> None:
    from engine.ica import BuildConfig

    st.subheader("Build templates")
    st.caption(
        "Capture activations over each dataset, PCA + FastICA, then key channels per "
        "component (seed 001's buildtemplates), as a job."
    )
    d = BuildConfig()
    datasets = st.text_input(
        "Datasets (comma-separated)",
        ", ".join(d.datasets),
        key="ica_build_datasets",
        help="files, 'demo-general', 'demo-code' or hub dataset ids",
    )
    cols = st.columns(4)
    samples = cols[0].number_input("Samples per dataset", 1, 100_000, 100, key="ica_build_n")
    components = cols[1].number_input("Components", 1, 500, d.components, key="ica_build_k")
    percentile = cols[2].number_input("Percentile", 50.0, 99.9, d.percentile, key="ica_build_p")
    layers = cols[3].text_input("Layers", d.layers, key="ica_build_layers")
    cols = st.columns(4)
    max_length = cols[0].number_input("Tokens per text", 8, 4096, 64, key="ica_build_len")
    threshold = cols[1].selectbox("Key-neuron rule", ["percentile", "zscore"], key="ica_build_rule")
    standardize = cols[2].checkbox(
        "Standardize features",
        value=d.standardize,
        key="ica_build_std",
        help="z-score every feature before ICA, as seed 001's reference does (off: raw "
        "activations, where the loud last layers dominate the key sets)",
    )
    space = cols[3].selectbox(
        "Neuron space",
        list(SPACES),
        index=list(SPACES).index(d.space),
        key="ica_build_space",
        format_func=lambda s: {
            "mlp_neurons": "mlp_neurons · intermediate neurons",
            "mlp_out": "mlp_out · MLP output (seed 001)",
        }[s],
        help="mlp_neurons: the down projection's input (the neurons SparC3 and the passport "
        "use) · mlp_out: its output, hidden-size channels, as seed 001's reference captures",
    )
    params = {
        **d.to_params(),
        "model": source,
        "datasets": [s.strip() for s in datasets.split(",") if s.strip()],
        "samples_per_ds": int(samples),
        "components": int(components),
        "percentile": float(percentile),
        "layers": layers,
        "max_length": int(max_length),
        "threshold": threshold,
        "standardize": standardize,
        "space": space,
    }
    job_id = job_launcher(
        "ica.build_templates", params, label="Build templates", key="ica_build_job"
    )
    if job_id:
        job_watcher(job_id, key="ica_build_watch", here=HERE)
