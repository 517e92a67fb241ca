"""Sections of the Capacity page: a finished meter's charts and tables, and the launcher."""

from __future__ import annotations

import streamlit as st

from dashboard.downloads import downloads
from dashboard.jobs_panel import job_launcher, job_watcher
from dashboard.stamps import workspace_stamp
from dashboard.views.capacity import charts
from dashboard.views.capacity.loaders import meter_list, result_table
from engine.capacity import (
    CAPACITY_FILE,
    KIND,
    PAPER_BITS_PER_PARAM,
    PRECISIONS,
    RUNS_FILE,
    MeterConfig,
)
from engine.errors import SubnetScopeError

HERE = "capacity"


def results_panel() -> None:
    """The chosen finished meter: bits per parameter, memorized vs dataset bits, its tables."""
    found = meter_list(workspace_stamp())
    if not found:
        st.info("No finished capacity meter yet: start one below.")
        return
    labels = dict(found)
    folder = st.selectbox("Meter run", list(labels), format_func=labels.get, key="capacity_run")
    runs = result_table(folder, RUNS_FILE, workspace_stamp())
    capacity = result_table(folder, CAPACITY_FILE, workspace_stamp())
    cols = st.columns(max(1, min(len(capacity), 6)))
    for col, row in zip(cols, capacity.itertuples(), strict=False):
        paper = PAPER_BITS_PER_PARAM[row.precision]
        col.metric(
            f"{row.size} · {row.precision}",
            # Not model-limited: the data set the maximum, the capacity is at least this.
            f"{'' if row.saturated else '≥ '}{row.bits_per_param:.2f} bits/param",
            f"{row.bits_per_param / paper - 1:+.0%} vs the paper's {paper}",
            delta_color="off",
        )
    st.subheader("Bits per parameter against model size")
    st.altair_chart(charts.bits_per_param_chart(capacity), width="stretch")
    st.caption(
        "Capacity = the most bits a size memorized over the dataset sizes N (mean over seeds), "
        "divided by its parameters (tied and position embeddings counted once). Dashed rules: "
        "the paper's means over its GPT-2 sizes at V = 2048, S = 64 after 10⁶ steps (3.51 bf16, "
        "3.83 fp32). Model-limited: at its maximum the size memorized under 90 % of the data's "
        "bits, so the model, not the data, set it; otherwise it needs a larger N and its "
        "bits/param is only a lower bound."
    )
    st.subheader("Memorized bits against dataset bits")
    st.altair_chart(charts.memorized_chart(runs), width="stretch")
    st.caption(
        "Memorized = H(X) − Σ −log₂ p(x | model) over the training sequences (the paper's "
        "dataset-level number). The dotted line y = x: everything memorized. Each size follows "
        "it, then flattens at its capacity."
    )
    st.dataframe(capacity, hide_index=True, width="stretch")
    st.dataframe(runs, hide_index=True, width="stretch")
    st.caption(
        "mem_u_bits: Σ per sequence max(0, log₂p(x|model) − log₂p(x|uniform)), a lower bound. "
        "converged: the run stopped at a plateau (no gain above tol after its last lr drop), "
        "not at max_steps. Bits are those of the best measured checkpoint (best_step)."
    )
    downloads(runs, "capacity-runs", key="capacity_runs_dl")


def launch_panel() -> None:
    """Sizes, dataset sizes and precisions in; a `capacity.meter` job out, watched live."""
    from engine.jobs import get_kind

    st.subheader("Measure")
    defaults = get_kind(KIND).defaults
    cols = st.columns(4)
    sizes = cols[0].text_input(
        "Sizes",
        " ".join(f"{layers}x{width}" for layers, width in defaults["sizes"]),
        key="capacity_sizes",
        help="GPT-2 sizes as layers x width",
    )
    ns = cols[1].text_input("Dataset sizes N", " ".join(map(str, defaults["n"])), key="capacity_n")
    precisions = cols[2].multiselect(
        "Precisions", PRECISIONS, default=defaults["precisions"], key="capacity_precisions"
    )
    seeds = cols[3].number_input("Seeds", 1, 5, len(defaults["seeds"]), key="capacity_seeds")
    try:
        chosen_n = [int(n) for n in ns.replace(",", " ").split()]
    except ValueError:
        st.error(f"dataset sizes must be whole numbers, got {ns!r}")
        return
    try:
        params = MeterConfig.from_params(
            {
                **defaults,
                "sizes": sizes.replace(",", " ").split(),
                "n": chosen_n,
                "precisions": precisions,
                "seeds": list(range(int(seeds))),
            },
            what=KIND,
        ).to_params()
    except SubnetScopeError as exc:
        st.error(str(exc))
        return
    st.caption(
        f"V = {defaults['vocab']}, S = {defaults['length']}: {defaults['length']} uniformly random "
        "tokens per sequence. Each run trains with Adam until its memorized bits stop rising "
        f"(at most {defaults['max_steps']:,} steps). The default sweep (15 runs, fp32) took 22 "
        "minutes on one shared CPU core, 17 s to 3 min per run; bf16 adds as much again."
    )
    job_id = job_launcher(KIND, params, label="Run the meter", key="capacity_job")
    if job_id:
        job_watcher(job_id, key="capacity_watch", here=HERE)
