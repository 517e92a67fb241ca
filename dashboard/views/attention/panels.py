"""Sections of the Attention page: heads (layout, heatmaps, a head's passport, attention maps),
base vs tuned, localizing global layers with their sweep, statistics against context length."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlencode

import pandas as pd
import streamlit as st

from dashboard.downloads import downloads
from dashboard.jobs_panel import job_launcher, job_watcher
from dashboard.loaders import chosen_dtype, shared_model
from dashboard.stamps import path_stamp, workspace_stamp
from dashboard.views.attention import charts
from dashboard.views.attention.loaders import (
    TextsConfig,
    compared,
    context_results,
    layout_of,
    localized_generation,
    localized_perplexity,
    map_of,
    result_table,
    source_texts,
    stats_of,
    sweep_results,
)
from dashboard.views.attention.pickers import head_picker, stat_picker, tuned_picker
from engine.attention import (
    CONTEXT_FILE,
    CONTEXT_KIND,
    STAT_LABELS,
    STATS,
    SWEEP_FILE,
    SWEEP_KIND,
    TIMING_FILE,
    change_by_kind,
)

if TYPE_CHECKING:
    from engine.attention import HeadStats

HERE = "attention"
LAST_COMPARE = "attention_last_compare"  # the key of the comparison drawn last
MAP_TEXT = "The cat sat on the mat because the mat was warm. Then the cat fell asleep on it."
PROMPT = "The history of the city begins"
MEANING = {
    "entropy": "how spread a head's attention is over the keys (0 = all on one token)",
    "distance": "how far back a head looks on average, Σ p·(query − key) in tokens",
    "window_share": "the attention on the w most recent tokens: near 1 = the head acts local",
    "sink": "the attention on the text's first token (an attention sink)",
}


def headline(layout: pd.DataFrame, stats: HeadStats) -> None:
    local = int((layout["kind"] == "local").sum())
    cols = st.columns(5)
    cols[0].metric("Layers", len(layout))
    cols[1].metric("Local · global", f"{local} · {len(layout) - local}")
    windows = sorted({int(w) for w in layout["window"].dropna()})
    cols[2].metric("Sliding window", ", ".join(map(str, windows)) if windows else "none")
    first = layout.iloc[0]
    cols[3].metric("Heads · KV heads", f"{first['heads']} · {first['kv_heads']}")
    cols[4].metric("Tokens · texts read", f"{stats.tokens:,} · {stats.texts}")


# heads --------------------------------------------------------------------------------------
def heads_panel(source: str, config: TextsConfig) -> None:
    dtype = chosen_dtype()
    layout = layout_of(source, dtype)
    stats = stats_of(source, dtype, config)
    headline(layout, stats)
    with st.expander("Layout: layer kind, window, RoPE base, heads", expanded=False):
        st.dataframe(layout, hide_index=True, width="stretch")
        st.caption("Read from the model's config. RoPE base: none for learned positions (GPT-2).")
    st.subheader("Every head, every layer")
    stat = stat_picker("attention_stat")
    st.altair_chart(charts.head_heatmap(stats.frame, stat, STAT_LABELS[stat]), width="stretch")
    st.caption(
        f"{STAT_LABELS[stat].capitalize()}: {MEANING[stat]}. Mean over every query position but "
        f"the first of {stats.texts} texts ({stats.tokens:,} tokens, w = {stats.window}); "
        "L marks a local (sliding-window) layer, G a global one."
    )
    downloads(stats.frame, "attention-heads", key="attention_heads_dl")
    st.subheader("Head passport")
    layer, head = head_picker(stats.frame)
    head_passport(source, dtype, stats.frame, layer, head)
    map_section(source, dtype, layer, head, config.max_tokens)


def _ranks(frame: pd.DataFrame, layer: int, head: int) -> pd.DataFrame:
    """The head's value and its rank among all heads for every statistic (1 = highest)."""
    at = (frame["layer"] == layer) & (frame["head"] == head)
    rows = []
    for stat in STATS:
        ranks = frame[stat].rank(ascending=False, method="min")
        rows.append(
            {
                "statistic": STAT_LABELS[stat],
                "value": float(frame.loc[at, stat].iloc[0]),
                "rank (1 = highest)": f"{int(ranks[at].iloc[0])} of {len(frame)}",
                "median head": float(frame[stat].median()),
            }
        )
    return pd.DataFrame(rows)


def head_passport(source: str, dtype: str, frame: pd.DataFrame, layer: int, head: int) -> None:
    """What every part of this view says about one head."""
    at = (frame["layer"] == layer) & (frame["head"] == head)
    if not at.any():
        st.info(f"No head {head} in layer {layer}.")
        return
    kind = frame.loc[at, "kind"].iloc[0]
    with st.container(border=True):
        st.markdown(f"**Head L{layer}.H{head}** · a {kind} layer")
        st.dataframe(_ranks(frame, layer, head), hide_index=True, width="stretch")
        notes = [_sweep_note(source, layer, kind), _compare_note(source, dtype, layer, head)]
        for note in notes:
            st.caption(note)


def _sweep_note(source: str, layer: int, kind: str) -> str:
    if kind == "local":
        return "Sweep: a local layer already; the sweep makes global layers local."
    found = [r for r in sweep_results(workspace_stamp()) if r[2] == source]
    if not found:
        return "Sweep: none finished on this model yet (Localize view)."
    sweep = result_table(found[0][0], SWEEP_FILE, workspace_stamp())
    rows = sweep[sweep["layer"] == layer]
    if rows.empty:
        return f"Sweep: layer {layer} is not in the first sweep listed for this model (Localize)."
    swept = int(sweep.groupby("window")["layer"].count().max())
    costs = ", ".join(
        f"{r.delta_nll:+.4f} nats/token at w = {r.window} (rank {r.rank} of {swept})"
        for r in rows.itertuples()
    )
    return f"Sweep: making layer {layer} local costs {costs}; rank 1 is the cheapest layer."


def _compare_note(source: str, dtype: str, layer: int, head: int) -> str:
    last = st.session_state.get(LAST_COMPARE)
    if not last or last[0] != (source, dtype):
        return "Fine-tuning: no comparison made yet (Compare view)."
    _, choice, stamp, config, stat = last
    diff = compared(source, dtype, choice, stamp, config, stat)
    row = diff[(diff["layer"] == layer) & (diff["head"] == head)]
    if row.empty:
        return f"Fine-tuning: no row for this head under {choice.label}."
    parts = [f"{STAT_LABELS[s]} {row[f'{s}_delta'].iloc[0]:+.4g}" for s in STATS]
    return f"Fine-tuning ({choice.label} − base): " + ", ".join(parts) + "."


def map_section(source: str, dtype: str, layer: int, head: int, max_tokens: int) -> None:
    st.subheader(f"Attention map of head L{layer}.H{head}")
    text = st.text_area("Text", MAP_TEXT, key="attention_map_text", height=80)
    limit = st.slider(
        "Tokens shown",
        8,
        128,
        min(48, max_tokens),
        key="attention_map_tokens",
        help="the map is drawn for the text's first tokens (a map holds T² cells)",
    )
    amap = map_of(source, dtype, text, layer, int(limit))
    st.altair_chart(charts.attention_map_chart(amap.tokens, amap.probs[head]), width="content")
    st.caption("Row = query, column = key; each row sums to 1 over the keys at or before it.")


# compare ------------------------------------------------------------------------------------
def compare_panel(source: str, config: TextsConfig) -> None:
    dtype = chosen_dtype()
    st.subheader("What fine-tuning changed in the heads")
    st.caption(
        "The same statistics, on the same token ids, for the base and a tuned model: a run's "
        "checkpoint is loaded on its own, an adapter is applied per call on the shared base."
    )
    choice = tuned_picker(source)
    if choice is None:
        st.info(
            "No tuned model yet: finish an SFT / GRPO / PPO run or a LoRA training (Runs, LoRA "
            "blender), or type a checkpoint or adapter folder."
        )
        return
    stamp = path_stamp(str(choice.path))
    stat = stat_picker("attention_compare_stat")
    diff = compared(source, dtype, choice, stamp, config, stat)
    st.session_state[LAST_COMPARE] = ((source, dtype), choice, stamp, config, stat)
    title = f"Δ {STAT_LABELS[stat]}"
    st.altair_chart(charts.delta_heatmap(diff, f"{stat}_delta", title), width="stretch")
    reference = (
        "the run's own saved base (its weights before training, in the run's precision: the "
        "rounding of an fp32 base to bf16 is not counted as training)"
        if choice.base is not None
        else "the base model"
    )
    st.caption(
        f"Tuned − reference, per head ({choice.label}); the reference is {reference}. "
        "L local, G global layers."
    )
    left, right = st.columns([3, 2])
    with left:
        st.markdown("**Heads that changed most**")
        top = diff.sort_values("rank").head(15)
        links = [
            f"{HERE}?{urlencode({'layer': int(r.layer), 'head': int(r.head)})}"
            for r in top.itertuples()
        ]
        columns = [
            "rank",
            "layer",
            "head",
            "kind",
            f"{stat}_base",
            f"{stat}_tuned",
            f"{stat}_delta",
        ]
        st.dataframe(
            top[columns].assign(passport=links),
            hide_index=True,
            width="stretch",
            column_config={
                "passport": st.column_config.LinkColumn(
                    "passport", display_text="open", help="This head's passport (a new tab)"
                )
            },
        )
    with right:
        st.markdown("**Local vs global layers**")
        st.dataframe(change_by_kind(diff, stat), hide_index=True, width="stretch")
    downloads(diff, "attention-compare", key="attention_compare_dl")


# localize -----------------------------------------------------------------------------------
def localize_panel(source: str, config: TextsConfig) -> None:
    dtype = chosen_dtype()
    loaded = shared_model(source, dtype)
    if not loaded.is_causal_lm:
        st.info(f"{loaded.display_name} is an encoder: no next-token loss to localize against.")
        return
    layout = layout_of(source, dtype)
    st.subheader("Make global layers local")
    st.caption(
        "Within these calls the chosen global layers attend only to the w most recent tokens "
        "(the query included), as a sliding-window layer does; no weight changes, and the RoPE "
        "base stays the layer's global one. Other sessions never see it."
    )
    global_layers = layout.loc[layout["kind"] == "global", "layer"].astype(int).tolist()
    if not global_layers:
        st.info("Every layer of this model is local already.")
    else:
        live_section(source, dtype, config, global_layers)
    sweep_section(source)


def live_section(source: str, dtype: str, config: TextsConfig, layers: list[int]) -> None:
    cols = st.columns([3, 2])
    chosen = cols[0].multiselect("Global layers to make local", layers, key="attention_local")
    window = cols[1].slider(
        "Window w",
        1,
        max(2, config.max_tokens),
        min(config.window, config.max_tokens),
        key="attention_local_window",
    )
    texts = source_texts(config.source, config.texts, config.stamp)
    text = st.text_area("Text", "\n\n".join(texts), key="attention_local_text", height=120)
    picked = tuple(sorted(int(layer) for layer in chosen))
    base = localized_perplexity(source, dtype, (), window, text, config.max_tokens)
    cols = st.columns(2)
    cols[0].metric("Perplexity, base", f"{base.perplexity:.3f}")
    if picked:
        local = localized_perplexity(source, dtype, picked, window, text, config.max_tokens)
        cols[1].metric(
            f"Perplexity, {', '.join(map(str, picked))} local",
            f"{local.perplexity:.3f}",
            f"{local.perplexity / base.perplexity - 1:+.2%}",
            delta_color="inverse",
        )
    st.caption(
        f"The text's first {base.tokens + 1:,} tokens in one window (every token sees all "
        f"before it); with w ≥ {base.tokens + 1} nothing can change."
    )
    with st.form("attention_generate"):
        prompt = st.text_input("Prompt", PROMPT, key="attention_prompt")
        max_new = st.slider("New tokens", 8, 96, 32, key="attention_max_new")
        go = st.form_submit_button(
            "Generate base and localized", type="primary", key="attention_generate_go"
        )
    if go:
        left, right = st.columns(2)
        left.markdown("**Base**")
        left.code(localized_generation(source, dtype, (), window, prompt, max_new) or "(no text)")
        right.markdown(f"**Layers {', '.join(map(str, picked)) or 'none'} local (w = {window})**")
        right.code(
            localized_generation(source, dtype, picked, window, prompt, max_new) or "(no text)"
        )


def sweep_section(source: str) -> None:
    from engine.jobs import get_kind

    st.subheader("Which layer can go local: the sweep")
    found = [r for r in sweep_results(workspace_stamp()) if r[2] == source]
    if found:
        labels = {folder: label for folder, label, _ in found}
        folder = st.selectbox("Sweep", list(labels), format_func=labels.get, key="attention_sweep")
        sweep = result_table(folder, SWEEP_FILE, workspace_stamp())
        st.altair_chart(charts.sweep_chart(sweep), width="stretch")
        st.caption(
            "Δ NLL: the mean loss per token with the layer made local minus the base's, on the "
            "sweep's texts; rank 1 is the cheapest layer to make local at that window."
        )
        st.dataframe(sweep.sort_values(["window", "rank"]), hide_index=True, width="stretch")
    else:
        st.info(f"No finished sweep on {source} yet.")
    defaults = get_kind(SWEEP_KIND).defaults
    cols = st.columns(3)
    windows = cols[0].text_input(
        "Windows", ", ".join(map(str, defaults["windows"])), key="attention_sweep_w"
    )
    layers = cols[1].text_input(
        "Layers",
        str(defaults["layers"]),
        key="attention_sweep_layers",
        help="'global' (every global layer) or a pattern: 0-5, 0,2,4",
    )
    texts = cols[2].number_input(
        "Texts", 1, 64, int(defaults["texts"]), key="attention_sweep_texts"
    )
    try:
        widths = [int(w) for w in windows.replace(",", " ").split()]
    except ValueError:
        st.error(f"windows must be whole numbers, got {windows!r}")
        return
    params = {
        **defaults,
        "model": source,
        "windows": widths,
        "layers": layers.strip(),
        "texts": int(texts),
    }
    job_id = job_launcher(SWEEP_KIND, params, label="Run a sweep", key="attention_sweep_job")
    if job_id:
        job_watcher(job_id, key="attention_sweep_watch", here=HERE)


# context length -----------------------------------------------------------------------------
def context_panel(source: str) -> None:
    from engine.jobs import get_kind

    st.subheader("Attention against context length")
    found = [r for r in context_results(workspace_stamp()) if r[2] == source]
    if found:
        labels = {folder: label for folder, label, _ in found}
        folder = st.selectbox("Run", list(labels), format_func=labels.get, key="attention_ctx_run")
        frame = result_table(folder, CONTEXT_FILE, workspace_stamp())
        cols = st.columns(2)
        with cols[0]:
            stat = stat_picker("attention_ctx_stat")
        by = cols[1].radio(
            "Lines",
            ["kind", "layer"],
            horizontal=True,
            key="attention_ctx_by",
            format_func={"kind": "local vs global", "layer": "per layer"}.get,
        )
        means = frame.groupby(["length", by], as_index=False)[stat].mean()
        st.altair_chart(charts.context_chart(means, stat, STAT_LABELS[stat], by), width="stretch")
        st.caption("Mean over the heads of each line's layers, at each text length.")
        timing = result_table(folder, TIMING_FILE, workspace_stamp())
        st.dataframe(timing, hide_index=True, width="stretch")
    else:
        st.info(f"No finished context-length run on {source} yet.")
    defaults = get_kind(CONTEXT_KIND).defaults
    lengths = st.text_input(
        "Lengths", ", ".join(map(str, defaults["lengths"])), key="attention_ctx_lengths"
    )
    try:
        sizes = [int(n) for n in lengths.replace(",", " ").split()]
    except ValueError:
        st.error(f"lengths must be whole numbers, got {lengths!r}")
        return
    params = {**defaults, "model": source, "lengths": sizes}
    job_id = job_launcher(CONTEXT_KIND, params, label="Run over lengths", key="attention_ctx_job")
    if job_id:
        job_watcher(job_id, key="attention_ctx_watch", here=HERE)
