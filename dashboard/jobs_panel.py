"""The job panel any page uses: submit a job, then watch it live from its folder until it ends."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import Any

import pandas as pd
import streamlit as st

from dashboard.loaders import chosen_dtype
from dashboard.navigation import page_for
from engine.errors import SubnetScopeError
from engine.jobs import (
    BACKENDS,
    JobView,
    Resources,
    cancel_job,
    get_job,
    get_kind,
    job_events,
    job_log,
    job_result,
    submit,
)

REFRESH_S = 1.0  # how often a live view re-reads the job folder while a job is active
_BADGES = {
    "queued": ("gray", ":material/schedule:"),
    "running": ("blue", ":material/directions_run:"),
    "succeeded": ("green", ":material/check_circle:"),
    "failed": ("red", ":material/error:"),
    "cancelled": ("orange", ":material/cancel:"),
}


# submitting -------------------------------------------------------------------------------
def resources_inputs(*, key: str) -> Resources:
    """One input per `Resources` field, with the field's own help text."""
    values: dict[str, Any] = {}
    columns = st.columns(len(fields(Resources)))
    for column, field in zip(columns, fields(Resources), strict=True):
        label, help_text = field.name.replace("_", " "), field.metadata.get("help")
        if field.type.startswith("float | None"):  # optional numbers: empty = the default
            values[field.name] = column.number_input(
                label,
                min_value=0.0,
                value=None,
                step=1.0,
                help=help_text,
                placeholder="kind's estimate",
                key=f"{key}_{field.name}",
            )
        elif field.default is None or isinstance(field.default, str):
            text = column.text_input(label, help=help_text, key=f"{key}_{field.name}")
            values[field.name] = text.strip() or None
        else:
            step = 1.0 if isinstance(field.default, float) else 1
            values[field.name] = column.number_input(
                label,
                min_value=type(field.default)(0),
                value=field.default,
                step=step,
                help=help_text,
                key=f"{key}_{field.name}",
            )
    return Resources(**values)


def submit_job(
    kind: str,
    params: dict[str, Any],
    *,
    key: str,
    backend: str = "local",
    resources: Resources | None = None,
) -> str | None:
    """Submit; remember the job id in session state under `key`; show an expected failure.
    A kind that loads a model in a `dtype` runs in the sidebar's precision unless told one."""
    try:
        if "dtype" in get_kind(kind).defaults and "dtype" not in params:
            params = {**params, "dtype": chosen_dtype()}
        view = submit(kind, params, backend=backend, resources=resources)
    except SubnetScopeError as exc:
        st.error(str(exc))
        return None
    st.session_state[key] = view.id
    return view.id


def job_launcher(
    kind: str,
    params: dict[str, Any],
    *,
    label: str,
    key: str,
    backend_choice: bool = True,
    resources: Resources | None = None,
) -> str | None:
    """A submit button (and a backend choice); returns the last job submitted under `key`."""
    backend = "local"
    if backend_choice:
        backend = st.radio(
            "Backend",
            BACKENDS,
            horizontal=True,
            key=f"{key}_backend",
            help="local: a process on this machine · slurm: a batch job on the cluster",
        )
    if st.button(label, key=f"{key}_submit", type="primary"):
        submit_job(kind, params, key=key, backend=backend, resources=resources)
    return st.session_state.get(key)


# watching ---------------------------------------------------------------------------------
def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    return (
        f"{minutes} min {rest:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"
    )


def kind_title(kind: str) -> str:
    try:
        return get_kind(kind).title
    except SubnetScopeError:
        return kind  # a kind no longer registered (a plugin that is not loaded)


def state_badge(state: str) -> None:
    color, icon = _BADGES.get(state, ("gray", None))
    st.badge(state, icon=icon, color=color)


def _format_value(value: int | float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:.4g}"


def result_summary(view: JobView) -> None:
    """The numbers of the job's summary as metrics; the whole manifest in an expander."""
    manifest = job_result(view)
    if manifest is None:
        st.caption("No result manifest.")
        return
    summary = manifest.get("summary")
    if isinstance(summary, dict):
        numbers = {
            k: v
            for k, v in summary.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        for column, (name, value) in zip(st.columns(4), list(numbers.items())[:4], strict=False):
            column.metric(name.replace("_", " "), _format_value(value))
    with st.expander("Result"):
        st.json(manifest, expanded=2)


def result_link(view: JobView, *, here: str | None = None) -> None:
    """A link to the page that shows this kind of result, unless that page is `here`."""
    try:
        url_path = get_kind(view.spec.kind).result_page
    except SubnetScopeError:
        return  # a kind no longer registered: its result page is unknown
    page = page_for(url_path) if url_path and url_path != here else None
    if page is not None:
        st.page_link(
            str(page.path),
            label=f"Open in {page.title}",
            icon=page.icon,
            query_params={"job": view.id},
        )


def log_tail(view: JobView, max_bytes: int = 8_000) -> None:
    st.code(job_log(view, max_bytes=max_bytes) or "(no output yet)", language=None, height=300)


def job_status(view: JobView, *, key: str, here: str | None = None, show_log: bool = True) -> None:
    """State, progress, elapsed and cancel while it runs; its result or its failure once ended."""
    s = view.status
    cols = st.columns([2, 5, 2, 2], vertical_alignment="center")
    with cols[0]:
        state_badge(s.state)
    cols[1].progress(s.fraction, text=s.message or s.state)
    cols[2].caption(f"elapsed {format_seconds(view.elapsed())}")
    if not s.is_final and cols[3].button("Cancel", key=f"{key}_cancel", icon=":material/stop:"):
        cancel_job(view.id)  # non-blocking: the next refresh shows it ending
        st.toast(f"Cancel requested for {view.id}")
    if s.state == "succeeded":
        result_summary(view)
        result_link(view, here=here)
    elif s.state == "failed":
        st.error(s.message or "the job failed")
        if show_log:
            with st.expander("Log tail"):
                log_tail(view)
    elif s.state == "cancelled":
        st.warning(s.message or "cancelled")


def live_interval(active: bool) -> float | None:
    """`run_every` for a live fragment: tick while something runs, stay still once all ended."""
    return REFRESH_S if active else None


def job_watcher(job_id: str, *, key: str, here: str | None = None) -> None:
    """Watch one job: re-read its folder every REFRESH_S seconds while it is active."""
    try:
        active = not get_job(job_id).status.is_final
    except SubnetScopeError as exc:
        st.error(str(exc))
        return

    @st.fragment(run_every=live_interval(active))
    def watch() -> None:
        try:
            view = get_job(job_id)
        except SubnetScopeError as exc:
            st.error(str(exc))
            return
        st.caption(f"{kind_title(view.spec.kind)} · `{view.id}` · {view.spec.backend}")
        job_status(view, key=key, here=here)
        if active and view.status.is_final:
            st.rerun()  # once: the full rerun redefines this fragment without a timer

    watch()


# tables -----------------------------------------------------------------------------------
def jobs_table(views: list[JobView]) -> pd.DataFrame:
    """One row per job, for st.dataframe (a damaged folder is a row too, its reason the message)."""
    table = pd.DataFrame(
        [
            {
                "id": v.id,
                "kind": v.spec.kind,
                "state": v.status.state,
                "queue": v.status.position if v.status.state == "queued" else None,
                "progress": v.status.fraction,
                "elapsed_s": v.elapsed(),
                "backend": v.spec.backend,
                "created": v.spec.created,
                "message": v.status.message,
            }
            for v in views
        ],
        columns=[
            "id",
            "kind",
            "state",
            "queue",
            "progress",
            "elapsed_s",
            "backend",
            "created",
            "message",
        ],
    )
    table["created"] = pd.to_datetime(table["created"], errors="coerce", utc=True)
    table["queue"] = table["queue"].astype("Int64")
    table["progress"] = pd.to_numeric(table["progress"], errors="coerce")
    return table


JOBS_TABLE_COLUMNS = {
    "progress": st.column_config.ProgressColumn(
        "progress", min_value=0.0, max_value=1.0, format="percent", color="blue"
    ),
    "elapsed_s": st.column_config.NumberColumn("elapsed", format="%.1f s"),
    "queue": st.column_config.NumberColumn("queue", help="place in the local queue (1 = next)"),
    "created": st.column_config.DatetimeColumn("created (UTC)", format="YYYY-MM-DD HH:mm:ss"),
}


def event_tables(view: JobView) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The job's metric and progress events, timed in seconds since it started."""
    events = [e for e in job_events(view) if _is_number(e.get("t"))]
    try:
        started = datetime.fromisoformat(view.status.started) if view.status.started else None
    except (TypeError, ValueError):
        started = None
    origin = started.timestamp() if started else min((e["t"] for e in events), default=0.0)
    metrics = pd.DataFrame(
        [
            {
                "name": str(e.get("name")),
                "value": e["value"],
                "step": e.get("step"),
                "seconds": e["t"] - origin,
            }
            for e in events
            if e.get("type") == "metric" and _is_number(e.get("value"))
        ],
        columns=["name", "value", "step", "seconds"],
    )
    progress = pd.DataFrame(
        [
            {"seconds": e["t"] - origin, "fraction": e["fraction"], "message": e.get("message")}
            for e in events
            if e.get("type") == "progress" and _is_number(e.get("fraction"))
        ],
        columns=["seconds", "fraction", "message"],
    )
    return metrics, progress


def _is_number(value: object) -> bool:
    """A finite int or float (events are read from files a job, or damage, wrote)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value
