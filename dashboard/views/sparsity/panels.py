"""The sparsity view's panels: heatmap, ranks, localization, coverage, compare, shells and
training runs. The numerics live in engine.sparsity; this module draws them."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard.downloads import downloads
from dashboard.jobs_panel import event_tables, job_launcher, job_watcher, live_interval
from dashboard.neuron_links import neuron_table
from dashboard.sources import local_choices
from dashboard.stamps import path_stamp
from dashboard.views.sparsity.charts import (
    coverage_chart,
    depth_profile_chart,
    layer_distribution_chart,
    rank_bars_chart,
    seed_coverage_chart,
    shell_bars_chart,
    update_heatmap_chart,
)
from dashboard.views.sparsity.loaders import compared, config_shells, diffed, series_of
from dashboard.views.sparsity.pickers import TRAIN_KINDS, Tuned, open_run, train_options
from engine.errors import SubnetScopeError
from engine.jobs import RESULT, get_job, list_jobs
from engine.names import percent
from engine.sparsity import (
    BASES,
    BF16,
    BLOCK_CHANGED,
    SCRIPT,
    SEED_NAME_TOKENS,
    TENSOR_FRO,
    DiffConfig,
    DiffResult,
    list_checkpoints,
    result_precision,
    script_report,
    shell_boundaries,
    shell_summary,
    shell_table,
)

HERE = "sparsity"
TRAIN_JOB = "sparsity_train_job"  # session key: the last training job launched here
COMPARE_BASES = {"count": BASES[BLOCK_CHANGED], "fraction": "changed share per block"}


# panels -----------------------------------------------------------------------------------
def _table(table: pd.DataFrame, stem: str, key: str) -> None:
    st.dataframe(table, hide_index=True, width="stretch")
    downloads(table, stem, key)


def headline(result: DiffResult, criterion: str) -> None:
    s = result.summary
    changed = result.counts(criterion)
    cols = st.columns(4)
    cols[0].metric("Tensors", f"{s['tensors']:,}")
    cols[1].metric("Weights", f"{s['numel']:,}")
    count = int(changed["changed"].sum())
    cols[2].metric(
        f"Changed ({criterion})",
        percent(count / s["numel"]) if s["numel"] else "–",
        help=f"{count:,} of {s['numel']:,} weights",
    )
    cols[3].metric("‖ΔW‖ / ‖W‖", f"{s['rel_norm']:.3g}")
    share = s.get("bf16_invisible_share")
    if share is not None and share == share:  # NaN when nothing changed
        st.caption(
            f"PULSE caveat: {share:.1%} of the stored changes vanish in a bf16 copy — sparsity "
            'read off bf16 weights counts them as untouched ("The Path Not Taken", PULSE).'
        )
    for note in s["layout"]["notes"]:
        st.caption(note)


def precision_note(result: DiffResult, criterion: str) -> None:
    """Why this picture looks the way it does, given how the checkpoints store their weights."""
    changed = result.summary["changed"]
    bf16 = changed[BF16]["fraction"]
    precision = result_precision(result)
    if precision == "16-bit":
        st.caption(
            "bf16 checkpoints: **exact** counts the weights whose stored bf16 value changed — "
            f"what {SCRIPT} counts as nonzero, and what the seed's bf16 runs show as sparse."
        )
        return
    if precision == "mixed":
        st.caption(
            "bf16 weights against an fp32 base: the base's own rounding to bf16 differs from it "
            "almost everywhere, so exact and τ mark nearly every weight. **bf16-visible** "
            f"compares both sides rounded to bf16 — what the run changed ({bf16:.2%} here)."
        )
        return
    if criterion == BF16:
        st.caption(
            "fp32 checkpoints seen through a bf16 cast: only the changes a bf16 copy would "
            f"store ({bf16:.2%} of the weights; {SCRIPT} casts to bf16 by default)."
        )
        return
    here = changed.get(criterion, {}).get("fraction")
    dense = f": {here:.1%} of the weights changed at {criterion}" if here is not None else ""
    st.info(
        f"These checkpoints store **fp32** weights{dense}. An fp32 optimizer step moves "
        "nearly every weight by a tiny amount, so an fp32 run looks dense. The seed's RL runs "
        "train bf16 weights, where steps that small round away: switch **Changed means** to "
        f"**bf16-visible** to see what a bf16 copy stores ({bf16:.2%} here).",
        icon=":material/info:",
    )


def reference_panel(result: DiffResult) -> None:
    """The seed's own numbers (check_sparsity.py), labelled as such, when the diff computed them."""
    ref = result.summary.get("reference")
    if ref is None:
        st.caption(
            f"Turn on **Seed's reference numbers** in the sidebar for what {SCRIPT} prints "
            "for this pair."
        )
        return
    with st.expander(f"The seed's reference computation ({SCRIPT})", expanded=True):
        st.caption(
            f"Both checkpoints cast to {ref['dtype']} (the script's default), Δ subtracted in "
            f"{ref['dtype']}, 'close to zero' = torch.isclose(Δ, 0, atol=τ), which in bf16 "
            "means |Δ| ≤ bf16(τ); layers are unweighted means of per-tensor nonzero shares "
            "over names under model.layers. SubnetScope's own criteria above compare in the "
            "stored dtype and weight every element equally."
        )
        taus = list(ref["close_fraction"])
        table = pd.DataFrame(
            {
                "τ": taus,
                "fraction close to zero (script)": [ref["close_fraction"][t] for t in taus],
                "changed (1 − that)": [ref["changed_fraction"][t] for t in taus],
            }
        )
        cols = st.columns(2)
        cols[0].metric("Share of Δ == 0", f"{ref['zero_fraction']:.4%}")
        cols[1].metric("Tensors compared", f"{ref['tensors']:,}")
        _table(table, "sparsity-reference", "sparsity_reference_totals")
        if ref["layers"]:
            layers = pd.DataFrame(
                {"layer": list(ref["layers"]), "nonzero share (mean)": list(ref["layers"].values())}
            )
            _table(layers, "sparsity-reference-layers", "sparsity_reference_layers")
        if ref.get("note"):
            st.caption(ref["note"])
        st.code(script_report(ref), language="text")


def heatmap_panel(result: DiffResult, criterion: str) -> None:
    blocks = result.blocks(criterion)
    precision_note(result, criterion)
    st.altair_chart(update_heatmap_chart(blocks), width="stretch")
    reference_panel(result)
    st.markdown("**Block × module**")
    _table(blocks, f"sparsity-blocks-{criterion}", "sparsity_blocks")
    with st.expander("Per tensor"):
        _table(result.counts(criterion), f"sparsity-tensors-{criterion}", "sparsity_tensors")
    with st.expander("Long table (every tolerance)"):
        _table(result.tensors, "sparsity-long", "sparsity_long")


def ranks_panel(result: DiffResult) -> None:
    if not result.config.ranks:
        st.info("Turn on **Compute ranks** in the sidebar: an exact SVD of every 2-D ΔW.")
        return
    ranks = result.ranks
    done = ranks[ranks["method"] != "skipped"]
    long = done.assign(
        classical=done["rank"] / done["max_rank"],
        effective=done["effective_rank"] / done["max_rank"],
        stable=done["stable_rank"] / done["max_rank"],
    ).melt(id_vars=["module"], value_vars=["classical", "effective", "stable"], var_name="measure")
    bars = long.groupby(["module", "measure"], as_index=False)["value"].mean()
    st.altair_chart(rank_bars_chart(bars.rename(columns={"value": "ratio"})), width="stretch")
    if skipped := int((ranks["method"] == "skipped").sum()):
        st.caption(f"{skipped} matrices over the rank memory limit were skipped, not approximated.")
    _table(ranks, "sparsity-ranks", "sparsity_ranks")


def localization_panel(result: DiffResult, criterion: str) -> None:
    blocks = BASES[BLOCK_CHANGED]
    shown = [
        ("blocks", result.localization(criterion, by="layer")),
        ("module types", result.localization(criterion, by="module")),
        ("tracked tensors", result.localization(basis=TENSOR_FRO)),
    ]
    rows = [{**loc, "basis": BASES[loc["basis"]], "over": over} for over, loc in shown]
    columns = ["basis", "over", "n", "active", "gini", "gini_unscaled", "entropy", "top_k", "k"]
    metrics = pd.DataFrame(rows).reindex(columns=columns)
    st.markdown("**Localization** — Gini 0 uniform … 1 all in one; entropy 1 uniform … 0 one")
    _table(metrics, f"sparsity-localization-{criterion}", "sparsity_loc")
    st.caption(
        f"Two distributions, each labelled. *{blocks}*: the weights changed under {criterion} "
        f"in each block (or module type) — SubnetScope's basis. *{BASES[TENSOR_FRO]}*: what "
        "seed 000 logs (SparseLLM-RL `compute_localization_summary`): ‖ΔW‖_F of each 2-D weight "
        "whose name holds an attention / MLP / lm_head token, one value per tensor, whatever τ. "
        "The Gini is scaled by n/(n−1) so that all-in-one gives 1; the seed's code logs the "
        "unscaled value (gini_unscaled). Nothing changed: NaN, where the seed's code says 0.0."
    )
    layers = result.layers(criterion)
    total = layers["changed"].sum()
    layers = layers.assign(share=layers["changed"] / total if total else 0.0)
    st.markdown(f"**Per-layer distribution** ({blocks})")
    st.altair_chart(layer_distribution_chart(layers), width="stretch")
    _table(layers, f"sparsity-layers-{criterion}", "sparsity_layers")


def neurons_panel(result: DiffResult, base: str, criterion: str) -> None:
    """The most updated MLP neurons, each linked to its passport on the base model."""
    table = result.neurons(criterion).sort_values("mean", ascending=False, kind="stable")
    roles = [r for r in ("up", "gate", "down") if r in table.columns]
    st.markdown(
        f"**Most updated neurons** ({criterion}) — the changed share of each neuron's row of "
        "up/gate and column of down, and their mean"
    )
    left, right = st.columns(2)
    changed_only = left.checkbox("Only changed neurons", True, key="sparsity_neurons_changed")
    shown = table[table["mean"] > 0] if changed_only else table
    if shown.empty:
        st.info(f"No MLP neuron changed under {criterion}.")
        return
    top = right.number_input("Show top", 1, 100_000, 200, step=50, key="sparsity_neurons_top")
    shares = {c: st.column_config.NumberColumn(format="percent") for c in [*roles, "mean"]}
    neuron_table(
        shown.head(int(top)), base, key="sparsity_neurons", height=360, column_config=shares
    )
    downloads(table, f"sparsity-neurons-{criterion}", "sparsity_neurons_dl")


def coverage_panel(base: str, tuned: Tuned, config: DiffConfig) -> None:
    if tuned.run_dir is None:
        st.info("Pick **Run checkpoints** as the tuned weights to follow a run over its steps.")
        return
    # `base` is the run's own base/ when it has one (diff_base, said on the page).
    result = series_of(base, tuned.run_dir, path_stamp(tuned.run_dir), config)
    criterion = config.mask_criterion
    st.markdown("**Coverage, all tensors**")
    st.caption(
        f"Coverage at step t: the share of the final mask ({criterion}, every tensor) changed by t."
    )
    st.altair_chart(coverage_chart(result.steps), width="stretch")
    _table(result.steps, "sparsity-series", "sparsity_series")
    if len(result.seed):
        st.markdown("**Coverage as the seed computes it**")
        st.caption(
            "analyze_sparse_subnetwork.py: only the 2-D weights whose names hold "
            f"{' / '.join(SEED_NAME_TOKENS)} (a tied lm_head is its embedding), "
            "|ΔW| > τ in float32, at τ = 1e-7, 1e-6 and 1e-5; density = changed / tracked."
        )
        st.altair_chart(seed_coverage_chart(result.seed), width="stretch")
        _table(result.seed, "sparsity-series-seed", "sparsity_series_seed")
    with st.expander("Per layer and step"):
        _table(result.layers, "sparsity-series-layers", "sparsity_series_layers")


def compare_panel(base: str, tuned: Tuned, config: DiffConfig, criterion: str) -> None:
    st.caption("A second model's update distribution on normalized depth, against this one.")
    models = dict(local_choices())
    left, right = st.columns(2)
    other_base = left.selectbox(
        "Second base",
        list(models),
        index=list(models).index(base) if base in models else 0,
        format_func=models.get,
        key="sparsity_cmp_base",
    )
    other = right.text_input(
        "Second tuned", key="sparsity_cmp_tuned", placeholder="model folder, .safetensors, adapter"
    ).strip()
    basis = st.radio(
        "Distribution of",
        list(COMPARE_BASES),
        horizontal=True,
        key="sparsity_cmp_basis",
        format_func=COMPARE_BASES.get,
        help="The per-block distribution the profile and gini / entropy / top_k describe; the "
        f"seed_* columns are always seed 000's basis ({BASES[TENSOR_FRO]})",
    )
    if not other:
        st.info("Enter a second tuned model to compare.")
        return
    runs = (f"this={base}:{tuned.tuned}", f"second={other_base}:{other}")
    stamps = tuple(path_stamp(s) for s in (base, tuned.tuned, other_base, other))
    result = compared(runs, stamps, config, criterion, basis)
    st.altair_chart(depth_profile_chart(result.profiles), width="stretch")
    _table(result.metrics, "sparsity-compare", "sparsity_cmp")
    st.caption(
        f"gini, entropy, top_k: {COMPARE_BASES[basis]}. seed_*: {BASES[TENSOR_FRO]} over the "
        "tensors seed 000 tracks (seed_tensors of them); seed_gini_unscaled is the Gini as the "
        "seed's code logs it, without the n/(n−1) scaling."
    )
    if len(result.overlap):
        st.markdown("**Mask overlap (Jaccard)**")
        _table(result.overlap, "sparsity-overlap", "sparsity_overlap")


def shells_panel(result: DiffResult, base: str, criterion: str) -> None:
    known = config_shells(base, path_stamp(base))
    text = st.text_input(
        "Shell boundaries",
        ", ".join(map(str, known)),
        key="sparsity_shells",
        help="Nested FFN widths, the full width last (MatFormer: e.g. 8192, 16384); 0 is "
        "added. Filled from a Gemma-3n config.",
    )
    if not text.strip():
        st.info("Enter nested FFN widths (e.g. 2048, 4096): the base's config lists no nesting.")
        return
    try:
        points = shell_boundaries(text.replace(",", " ").split())
    except SubnetScopeError as exc:
        st.error(str(exc))
        return
    table = shell_table(result, points, criterion)
    summary = shell_summary(table)
    st.altair_chart(shell_bars_chart(summary), width="stretch")
    _table(summary, f"sparsity-shells-{criterion}", "sparsity_shells_sum")
    with st.expander("Per layer"):
        _table(table, f"sparsity-shells-layers-{criterion}", "sparsity_shells")


# training runs ----------------------------------------------------------------------------
def run_metrics(job_id: str) -> None:
    """The run's sparsity metrics (`changed_fraction`, …) live, while it runs."""
    active = not get_job(job_id).status.is_final

    @st.fragment(run_every=live_interval(active))
    def draw() -> None:
        from dashboard.charts import job_metrics_chart

        view = get_job(job_id)
        metrics, _ = event_tables(view)
        shown = metrics[metrics["name"].str.contains("fraction|coverage", regex=True)]
        if shown.empty:
            st.caption("No changed_fraction reported yet: it comes with each checkpoint.")
        else:
            st.altair_chart(job_metrics_chart(shown), width="stretch")
        if any((view.path / RESULT).glob("checkpoint-*")):
            st.button(
                "Show this run's checkpoints",
                key="sparsity_open_run",
                on_click=open_run,
                args=(job_id,),
                icon=":material/grid_on:",
            )

    draw()


def train_panel() -> None:
    picked = train_options()
    if picked is None:
        return
    kind, params = picked
    job_id = job_launcher(kind, params, label=f"Start {TRAIN_KINDS[kind]} run", key=TRAIN_JOB)
    if job_id:
        job_watcher(job_id, key="sparsity_train_watch", here=HERE)
        run_metrics(job_id)


# live heatmap ------------------------------------------------------------------------------
LIVE_S = 5.0  # a running job writes a checkpoint every few minutes on CPU; poll gently


def run_is_active(run_dir: str | None) -> bool:
    """True when `run_dir` is the result folder of a training job that is still running."""
    if not run_dir:
        return False
    return any(
        str(v.path / RESULT) == run_dir
        for kind in TRAIN_KINDS
        for v in list_jobs(kind=kind, states=("queued", "running"))
    )


def live_heatmap(base: str, run_dir: str, config: DiffConfig, criterion: str) -> None:
    """While the run trains, re-diff its newest checkpoint every few seconds: the heatmap fills
    in as the job writes checkpoints. Stops polling once the job has ended."""

    @st.fragment(run_every=LIVE_S)
    def panel() -> None:
        checkpoints = list_checkpoints(run_dir)
        if not checkpoints:
            st.info("The run has not written a checkpoint yet; this view refreshes by itself.")
            return
        step, latest = checkpoints[-1]
        active = run_is_active(run_dir)
        st.caption(
            f"Checkpoint {step} of a {'running' if active else 'finished'} run"
            + (f" · refreshes every {LIVE_S:.0f} s" if active else "")
        )
        result = diffed(base, str(latest), (path_stamp(base), path_stamp(str(latest))), config)
        headline(result, criterion)
        heatmap_panel(result, criterion)
        if not active:
            st.rerun()  # once: the full page takes over, without a timer

    panel()
