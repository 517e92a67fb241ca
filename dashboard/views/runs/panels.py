"""The Runs view's panels: new run, the queue, the jobs table and one job's details."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from datetime import datetime

import pandas as pd
import streamlit as st

from dashboard.charts import job_metrics_chart, job_progress_chart
from dashboard.jobs_panel import (
    JOBS_TABLE_COLUMNS,
    event_tables,
    job_status,
    jobs_table,
    kind_title,
    live_interval,
    log_tail,
    resources_inputs,
    submit_job,
)
from dashboard.views.runs.charts import (
    DIAGNOSTIC_LABELS,
    layer_heatmap,
    memorization_chart,
    resources_chart,
)
from engine.errors import SubnetScopeError
from engine.jobs import (
    ACTIVE_STATES,
    BACKENDS,
    RESULT,
    STATES,
    JobStore,
    JobView,
    get_job,
    job_events,
    list_jobs,
    load_kinds,
    parse_params,
    queue_state,
    save_queue_settings,
    tensorboard_files,
)
from engine.training import KINDS, layer_table, read_diagnostics

HERE = "runs"
SELECTED = "runs_job"  # the selectbox's key; `?job=<id>` preselects it
MAX_ROWS = 200


def new_run() -> None:
    kinds = load_kinds()
    with st.expander("New run", icon=":material/add:"):
        name = st.selectbox(
            "Kind", sorted(kinds), format_func=lambda n: f"{kinds[n].title} ({n})", key="new_kind"
        )
        # Keyed by kind: choosing another kind starts from that kind's defaults.
        text = st.text_area(
            "Params (JSON)",
            value=json.dumps(kinds[name].defaults, indent=2),
            key=f"new_params_{name}",
        )
        backend = st.radio("Backend", BACKENDS, horizontal=True, key="new_backend")
        resources = resources_inputs(key="new_resources")
        if not st.button("Submit", type="primary", key="new_submit"):
            return
        try:
            params = parse_params(text)
        except SubnetScopeError as exc:
            st.error(str(exc))
            return
        job_id = submit_job(name, params, key=SELECTED, backend=backend, resources=resources)
        if job_id:
            st.success(f"Submitted `{job_id}`")


def queue_caption() -> None:
    """How full the local queue is (redrawn with the live table)."""
    state = queue_state(JobStore())
    limits = state.settings
    st.caption(
        f"Local queue: {len(state.running)} of {limits.max_jobs} slots busy · "
        f"{len(state.waiting)} waiting · {state.memory_in_use_gb:g} of {limits.memory_gb:g} GB "
        f"declared memory in use ({limits.source})"
    )


def queue_settings_panel() -> None:
    """The queue's two settings (the environment wins over them)."""
    limits = queue_state(JobStore()).settings
    with st.expander("Queue settings", icon=":material/tune:"):
        cols = st.columns(3, vertical_alignment="bottom")
        slots = cols[0].number_input("Jobs at once", 1, 256, limits.max_jobs, key="queue_slots")
        memory = cols[1].number_input(
            "Memory for all jobs (GB)",
            0.1,
            100_000.0,
            float(limits.memory_gb),
            step=1.0,
            key="queue_memory",
            help="Jobs declare their memory; one that would not fit waits.",
        )
        if cols[2].button("Save", key="queue_save"):
            try:
                saved = save_queue_settings(int(slots), float(memory))
            except SubnetScopeError as exc:
                st.error(str(exc))
            else:
                st.success(f"Saved: {saved.max_jobs} jobs at once, {saved.memory_gb:g} GB")
        st.caption(
            "Saved in cache/queue.json; SUBNETSCOPE_MAX_JOBS and SUBNETSCOPE_JOB_MEMORY_GB win "
            "over it. SLURM jobs never wait here."
        )


def preselect_from_url() -> None:
    """Arriving with `?job=<id or unique prefix>` selects that job."""
    wanted = st.query_params.get("job")
    if not wanted or SELECTED in st.session_state:
        return
    try:
        st.session_state[SELECTED] = get_job(wanted).id
    except SubnetScopeError as exc:
        st.warning(str(exc))


def job_details(view: JobView) -> None:
    st.subheader(view.id)
    st.caption(f"{kind_title(view.spec.kind)} · {view.spec.kind}")
    job_status(view, key="runs_detail", here=HERE, show_log=False)
    left, right = st.columns(2)
    with left:
        st.markdown("**Params**")
        st.json(view.spec.params)
        st.markdown("**Resources**")
        asked = asdict(view.spec.resources).items()
        st.caption(" · ".join(f"{k.replace('_', ' ')} {v}" for k, v in asked if v is not None))
        s = view.status
        where = f"pid {s.pid}" if s.pid else f"SLURM job {s.slurm_id}" if s.slurm_id else "–"
        st.caption(
            f"{view.spec.backend} · {where} · host {s.host or '–'} · "
            f"started {s.started or '–'} · finished {s.finished or '–'}"
        )
    with right:
        metrics, progress = event_tables(view)
        st.markdown("**Metrics**")
        if metrics.empty:
            st.caption("No metrics reported.")
        else:
            st.altair_chart(job_metrics_chart(metrics), width="stretch")
        st.markdown("**Progress**")
        if progress.empty:
            st.caption("No progress reported.")
        else:
            st.altair_chart(job_progress_chart(progress), width="stretch")
    resources_section(view)
    diagnostics_section(view)
    st.markdown("**Log**")
    log_tail(view)


def resource_samples(view: JobView) -> pd.DataFrame:
    """The job's `resources` events (engine.jobs.resources.sample), one row each, timed in
    seconds since it started."""
    events = [e for e in job_events(view) if e.get("type") == "resources" and _finite(e.get("t"))]
    frame = pd.DataFrame(events)
    if frame.empty:
        return frame
    try:
        origin = datetime.fromisoformat(view.status.started).timestamp()
    except (TypeError, ValueError):
        origin = frame["t"].min()
    return frame.assign(seconds=frame["t"] - origin)


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _gb(value: object) -> str:
    return f"{value:.3g} GB" if _finite(value) else "–"


def resources_caption(last: dict, samples: pd.DataFrame, *, final: bool) -> str:
    """One line: memory now (or at the end), its peak, CPU time and the cores it kept busy."""
    parts = [
        f"resident {'at the end' if final else 'now'} {_gb(last.get('rss_gb'))}",
        f"peak {_gb(last.get('peak_rss_gb'))}",
    ]
    if _finite(last.get("cpu_s")):
        parts.append(
            f"CPU {last['cpu_s']:.1f} s (user {last.get('cpu_user_s', 0):.1f}, "
            f"system {last.get('cpu_system_s', 0):.1f})"
        )
    if len(samples) > 1 and {"cpu_s", "elapsed_s"} <= set(samples):
        span = samples["elapsed_s"].iloc[-1] - samples["elapsed_s"].iloc[0]
        if _finite(span) and span > 0:
            cores = (samples["cpu_s"].iloc[-1] - samples["cpu_s"].iloc[0]) / span
            parts.append(f"{cores:.2f} cores busy on average")
    if _finite(last.get("gpu_peak_gb")):
        parts.append(
            f"GPU peak {_gb(last['gpu_peak_gb'])} allocated, "
            f"{_gb(last.get('gpu_reserved_peak_gb'))} reserved"
        )
    return " · ".join(parts)


def resources_section(view: JobView) -> None:
    """What the job used: memory, CPU time and GPU memory over its run; its TensorBoard files."""
    st.markdown("**Resources used**")
    samples = resource_samples(view)
    final = view.status.resources
    last = final or (samples.iloc[-1].dropna().to_dict() if not samples.empty else None)
    if not last:
        peak = view.status.peak_rss_gb
        st.caption(
            "No resources recorded"
            + (f" (peak resident {_gb(peak)})." if peak is not None else ".")
        )
    else:
        st.caption(
            resources_caption(last, samples, final=final is not None),
            help="Resident memory of the job's process (VmRSS, its peak VmHWM); CPU time of "
            "all its threads and waited-for child processes since it started (start-up "
            "included), the cores from the change between the first and last sample; GPU "
            "memory from torch's allocator, summed over the devices, where the job used CUDA.",
        )
        if len(samples) > 1:
            st.altair_chart(resources_chart(samples), width="stretch")
    if tensorboard_files(view.path):
        st.caption(
            f"TensorBoard: `python -m engine jobs tensorboard {view.id}` serves this job's "
            "event files on 127.0.0.1."
        )


def runs(states: list[str], live: bool) -> None:
    views = list_jobs(limit=MAX_ROWS)
    queue_caption()
    if live and not any(v.status.state in ACTIVE_STATES for v in views):
        st.rerun()  # once: the full rerun redefines this fragment without a timer
    shown = [v for v in views if not states or v.status.state in states]
    if not shown:
        st.info("No runs yet." if not views else "No runs in the chosen states.")
        return
    st.dataframe(
        jobs_table(shown), hide_index=True, width="stretch", column_config=JOBS_TABLE_COLUMNS
    )
    by_id = {v.id: v for v in shown}
    if st.session_state.get(SELECTED) not in by_id:
        st.session_state.pop(SELECTED, None)  # filtered out or gone: fall back to the newest
    # Options are bare ids: the selection is kept by its label, which must not change as it runs.
    selected = st.selectbox("Job", list(by_id), key=SELECTED)
    if selected is None:
        return
    st.query_params["job"] = selected  # a link to this page reopens this run
    job_details(by_id[selected])


def jobs_panel() -> None:
    """The state filter and the jobs table, redrawn live while a job is active."""
    states = st.pills(
        "State",
        STATES,
        selection_mode="multi",
        key="runs_states",
        help="Show only jobs in these states; none chosen shows all.",
    )
    live = bool(list_jobs(states=ACTIVE_STATES, limit=1))
    live_runs = st.fragment(runs, run_every=live_interval(live))
    live_runs(states, live)


def diagnostics_section(view: JobView) -> None:
    """Gradient flow, layer activity and memorization of a training job that recorded them
    (`diagnostics_every`, `track_memorization`); nothing for other jobs."""
    layers, memo = read_diagnostics(view.path / RESULT)
    if layers is None and memo is None:
        return
    st.markdown("**Diagnostics**")
    if layers is not None and not layers.empty:
        kind = st.selectbox(
            "Per layer",
            KINDS,
            format_func=lambda k: DIAGNOSTIC_LABELS.get(k, k),
            key=f"runs_diag_kind_{view.id}",
            help="Norms combine a layer's modules (√ of the summed squares); the block output "
            "statistics are over every element of the hidden state at the real tokens of the "
            "step's training passes. Modules outside the blocks (embeddings, final norm, LM "
            "head) are in the job's diagnostics.parquet.",
        )
        st.altair_chart(layer_heatmap(layer_table(layers, kind), kind), width="stretch")
    if memo is not None and not memo.empty:
        last = memo.iloc[-1]
        st.altair_chart(memorization_chart(memo), width="stretch")
        st.caption(
            f"Step {int(last['step'])}: {int(last['members'])} training and "
            f"{int(last['nonmembers'])} held-back texts; loss {last['train_loss']:.3f} vs "
            f"{last['heldout_loss']:.3f} nats/token; attack advantage {last['advantage']:.2f} "
            f"(chance alone reaches {last['chance_advantage']:.2f} with these sample sizes; "
            f"1: a loss threshold separates them), AUC {last['auc']:.2f}.",
            help="Loss-threshold membership inference: a text is called a training text when "
            "its loss is at most t; advantage = max over t of true-positive rate − "
            "false-positive rate, AUC = P(a training text's loss < a held-back one's). The "
            "chance level is the 95th percentile of the advantage over 1000 random relabelings "
            "of the same losses; step 0 is the model before training.",
        )
