"""Sections of the neuron-pruning page: runs, candidates, live toggles, evaluation, export."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from dashboard.downloads import downloads
from dashboard.jobs_panel import job_launcher, job_watcher
from dashboard.loaders import chosen_dtype, shared_model
from dashboard.neuron_links import neuron_table
from dashboard.sources import artifact_picker
from dashboard.stamps import workspace_stamp
from dashboard.views.pruning import charts
from dashboard.views.pruning.loaders import run_choices
from engine.attribution import Selected, SparC3Result, layer_distribution
from engine.errors import SubnetScopeError

HERE = "pruning"
_SCORE_NAMES = {"weights": "Σ|W ⊙ ∂W| per neuron (seed 002)", "relevance": "|net relevance|"}


def _score_name(config: dict) -> str:
    if config["method"] == "wanda":
        return "|W| · ‖X‖₂ per neuron"
    return _SCORE_NAMES.get(config.get("score", "weights"), str(config.get("score")))


PICK_KEY = "scores"


def pick_run(bar=st.sidebar) -> str | None:
    """A finished SparC3 run (the demo's first) or a result folder; `?scores=` preselects."""
    return artifact_picker(
        "Scores",
        run_choices(workspace_stamp()),
        typed_label="A result folder",
        key=PICK_KEY,
        placeholder="cache/jobs/<id>/result",
        help="finished SparC3 runs (the demo's first)",
        container=bar,
    )


def headline(result: SparC3Result) -> None:
    s = result.summary
    config = s["config"]
    cols = st.columns(4)
    cols[0].metric("Method", config["method"].upper())
    cols[1].metric("Selected neurons", len(result.neurons))
    cols[2].metric("General seeds", len(config["general_seeds"]))
    if "planted" in s:
        cols[3].metric("Planted neurons found", f"{s['planted_found']} / {s['planted']}")
    st.caption(
        f"{s.get('model_name', config['model'])} · general: {config['general']} · target: "
        f"{config['target']} · differential R_general − R_target "
        f"({'raw' if config['normalize'] == 'none' else config['normalize'] + '-normalized'})"
        f" of {_score_name(config)}"
        f" · {s.get('seconds', '?')} s"
    )


# candidates -------------------------------------------------------------------------------
def candidates_panel(result: SparC3Result, model: str) -> None:
    """The ranked neurons, each linked to its passport on the run's model."""
    st.subheader("Candidates: most target-specific first")
    table = result.candidates
    layers = sorted(table["layer"].unique())
    cols = st.columns(3)
    lo, hi = (
        cols[0].select_slider(
            "Layers", options=layers, value=(layers[0], layers[-1]), key="pruning_layers"
        )
        if len(layers) > 1
        else (layers[0],) * 2
    )
    top = cols[1].number_input(
        "Show top", 10, len(table), min(200, len(table)), step=10, key="pruning_top"
    )
    negative_only = cols[2].checkbox("Only negative differential", True, key="pruning_neg")
    shown = table.head(int(top))
    shown = shown[(shown["layer"] >= lo) & (shown["layer"] <= hi)]
    if negative_only:
        shown = shown[shown["differential"] < 0]
    neuron_table(shown, model, key="pruning_cands", height=360)
    downloads(shown, "pruning-candidates", key="pruning_cands_dl")
    st.markdown("**Per layer** (top candidates)")
    st.altair_chart(charts.layer_bars(layer_distribution(shown, len(shown))), width="stretch")
    recovery_section(result)


def recovery_section(result: SparC3Result) -> None:
    """How many of the neurons that carry the behaviour each method found (when known)."""
    table = result.recovery
    if table.empty:
        return
    st.markdown(
        "**Found vs. known truth**: precision (share of the selection that is in the "
        "truth) and recall (share of the truth selected)"
    )
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={
            k: st.column_config.NumberColumn(format="percent") for k in ("precision", "recall")
        },
    )
    causal = result.summary.get("causal")
    if causal is None:
        st.caption(
            "planted: the neurons the demo trained. Run with the causal option to "
            "measure which neurons actually carry the behaviour."
        )
        return
    base = causal["baseline"]["toxicity"]
    st.caption(
        f"causal: the shortest list of candidates (every planted and every selected neuron, "
        f"ordered by the log-probability the unpruned completions lose when each is ablated alone, "
        f"less what the control prompts' completions lose) whose joint "
        f"ablation removes ≥ {causal['removal']:.0%} of the toxicity ({base:.3f}) — "
        f"{causal['causal_size']} of {causal['candidates']} candidates."
    )
    if result.causal is not None and not result.causal.empty:
        st.altair_chart(charts.effects(result.causal), width="stretch")
    if result.causal_groups is not None:
        st.dataframe(result.causal_groups, hide_index=True, width="stretch")


# live -------------------------------------------------------------------------------------
def chosen_neurons(result: SparC3Result) -> list[Selected]:
    """The slider's first N, with per-neuron checkboxes to drop or add candidates."""
    table = result.candidates
    n = st.slider(
        "N: neurons to prune",
        0,
        min(len(table), 500),
        min(len(result.neurons), 500),
        key="pruning_n",
    )
    editable = table.head(max(n + 20, 40))[["rank", "layer", "neuron", "differential"]].copy()
    editable.insert(0, "prune", editable["rank"] <= n)
    with st.expander(f"Per-neuron toggles ({n} checked)"):
        edited = st.data_editor(
            editable,
            hide_index=True,
            height=280,
            key=f"pruning_edit_{n}",
            disabled=["rank", "layer", "neuron", "differential"],
        )
    rows = edited[edited["prune"]]
    return [Selected(int(r.layer), int(r.neuron), float(r.differential)) for r in rows.itertuples()]


def live_panel(result: SparC3Result, source: str) -> None:
    from engine.attribution import live_pruning, pruning_mask
    from engine.data import load_texts
    from engine.ica import held_out_texts

    st.subheader("Prune live")
    st.caption(
        "Pruning applies per call (masks on the shared model); completions are raw "
        "continuations, scored for toxicity; perplexity on held-out general text."
    )
    neurons = chosen_neurons(result)
    loaded = shared_model(source, chosen_dtype())
    config = result.summary["config"]
    defaults = load_texts(config["eval_prompts"])[:4]
    text = st.text_area("Prompts (one per line)", "\n".join(defaults), key="pruning_prompts")
    prompts = [p for p in text.splitlines() if p.strip()]
    if not st.button("Generate", type="primary", key="pruning_go"):
        return
    if not prompts:
        st.error("Type at least one prompt.")
        return
    mask = pruning_mask(neurons) if neurons else None
    if mask is not None:
        mask.validate(loaded.architecture)
    with st.spinner("Generating with and without the pruning…"):
        live = live_pruning(loaded, mask, prompts, held_out_texts(None, n=8))
    before = live.completions["unpruned_toxicity"].mean()
    after = live.completions["pruned_toxicity"].mean()
    cols = st.columns(3)
    cols[0].metric("Toxicity, unpruned", f"{before:.3f}")
    cols[1].metric(
        "Toxicity, pruned", f"{after:.3f}", f"{after - before:+.3f}", delta_color="inverse"
    )
    cols[2].metric(
        "Perplexity",
        f"{live.pruned_ppl:.2f}",
        f"{live.pruned_ppl / live.base_ppl - 1:+.2%} vs {live.base_ppl:.2f}",
        delta_color="inverse",
    )
    st.caption(
        f"{len(neurons)} neurons pruned · toxicity by {live.scorer} · "
        f"{live.tokens_scored} tokens scored for perplexity"
    )
    st.dataframe(
        live.completions,
        hide_index=True,
        width="stretch",
        column_config={
            "unpruned_toxicity": st.column_config.ProgressColumn(
                min_value=0.0, max_value=1.0, format="%.2f"
            ),
            "pruned_toxicity": st.column_config.ProgressColumn(
                min_value=0.0, max_value=1.0, format="%.2f"
            ),
        },
    )


# evaluation -------------------------------------------------------------------------------
def evaluation_panel(result: SparC3Result, source: str) -> None:
    st.subheader("Toxicity and perplexity against N")
    if result.evaluation is not None:
        table = result.evaluation
        st.altair_chart(charts.curves(table), width="stretch")
        st.caption(f"toxicity by {table['scorer'].iloc[0]}")
        st.dataframe(
            table,
            hide_index=True,
            width="stretch",
            column_config={
                "perplexity_change": st.column_config.NumberColumn(format="percent"),
                "toxicity_change": st.column_config.NumberColumn(format="percent"),
            },
        )
        downloads(table, "pruning-evaluation", key="pruning_eval_dl")
    st.markdown(
        "**Evaluate other N** (a job: perplexity on the general text, toxicity of "
        "the held-out prompts' completions)"
    )
    nums = st.text_input("N values", "0 10 25 50 100 200", key="pruning_eval_nums")
    try:
        values = [int(v) for v in nums.replace(",", " ").split()]
    except ValueError:
        st.error("Write the N values as whole numbers, e.g. 0 25 50 100.")
        return
    params = {
        "model": source,
        "neurons": str(result.path / "neurons.json"),
        "nums": values,
        "prompts": result.summary["config"]["eval_prompts"],
    }
    job_id = job_launcher("prune.evaluate", params, label="Evaluate", key="pruning_eval_job")
    if job_id:
        job_watcher(job_id, key="pruning_eval_watch", here=HERE)
        evaluation_result(job_id)


def evaluation_result(job_id: str) -> None:
    from engine.jobs import RESULT, get_job

    view = get_job(job_id)
    table = view.path / RESULT / "evaluation.parquet"
    if view.status.state == "succeeded" and table.is_file():
        st.altair_chart(charts.curves(pd.read_parquet(table)), width="stretch")


# compute and export -----------------------------------------------------------------------
def compute_panel(source: str) -> None:
    from engine.attribution import SparC3Config

    st.subheader("Compute scores")
    st.caption(
        "The whole SparC3 pipeline as a job: general text over several seeds and the "
        "target prompts (each completed by the model), differential scores, top-N, "
        "evaluation. LRP patches torch process-wide, so it only ever runs in a job."
    )
    d = SparC3Config()
    cols = st.columns(4)
    method = cols[0].selectbox("Method", ["lrp", "wanda"], key="pruning_method")
    general = cols[1].text_input("General text", d.general, key="pruning_general")
    target = cols[2].text_input("Target prompts", d.target, key="pruning_target")
    num = cols[3].number_input("Neurons", 1, 10_000, d.num_neurons, key="pruning_num")
    cols = st.columns(3)
    samples = cols[0].number_input(
        "General texts per seed", 1, 10_000, d.general_samples, key="pruning_samples"
    )
    seeds = cols[1].text_input("Seeds", "0 1 2", key="pruning_seeds")
    eval_prompts = cols[2].text_input("Evaluation prompts", d.eval_prompts, key="pruning_evalp")
    params = {
        **d.to_params(),
        "model": source,
        "method": method,
        "general": general,
        "target": target,
        "num_neurons": int(num),
        "general_samples": int(samples),
        "general_seeds": [int(s) for s in seeds.replace(",", " ").split() if s.isdigit()],
        "eval_prompts": eval_prompts,
    }
    job_id = job_launcher("prune.sparc3", params, label="Run SparC3", key="pruning_job")
    if job_id:
        job_watcher(job_id, key="pruning_watch", here=HERE)


def export_panel(result: SparC3Result, source: str) -> None:
    from engine.attribution import save_pruned_model
    from engine.names import named_folder
    from engine.paths import models_dir

    st.subheader("Export")
    n = st.number_input(
        "First N neurons", 1, len(result.neurons), len(result.neurons), key="pruning_export_n"
    )
    chosen = result.neurons[: int(n)]
    payload = {
        "format": "subnetscope.neuron-list",
        "mode": "zero",
        "metadata": {"source": str(result.path), "model": source},
        "neurons": [{"layer": s.layer, "neuron": s.neuron, "score": s.score} for s in chosen],
    }
    st.download_button(
        "Neuron list (JSON)",
        json.dumps(payload, indent=1),
        f"pruned-neurons-{n}.json",
        "application/json",
        key="pruning_dl_list",
    )
    name = st.text_input("Pruned model folder name", f"pruned-{n}", key="pruning_export_name")
    if st.button("Save pruned model", key="pruning_export_go"):
        try:
            out = named_folder(models_dir(), name.strip(), "model folder name")
        except SubnetScopeError as exc:
            st.error(str(exc))
            return
        with st.spinner(f"Saving {out}…"):
            save_pruned_model(source, chosen, out, {"result": str(result.path)})
        st.success(f"Saved {out}: it is listed in the model picker.")
