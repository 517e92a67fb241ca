"""Sections of the Neuron passport page: pick a neuron, its passport, the overlap matrix."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard.downloads import downloads
from dashboard.jobs_panel import job_watcher, kind_title, submit_job
from dashboard.sources import MODEL_KEY, ignored_link, local_choices
from dashboard.stamps import workspace_stamp
from dashboard.views.passport import charts
from dashboard.views.passport.loaders import (
    cached_matrix,
    cached_passport,
    cached_sets,
    set_contents,
)
from engine.errors import SubnetScopeError
from engine.neurons import DEFAULT_TOP, NeuronSet, NeuronSpace, Passport, list_set, overlap

LAYER_KEY, NEURON_KEY = "passport_layer", "passport_neuron"
P_COLUMNS = {
    name: st.column_config.NumberColumn(format="%.2e")
    for name in ("p_value", "p_layered", "q_layered")
} | {name: st.column_config.NumberColumn(format="%.3f") for name in ("expected", "enrichment")}
JOB_KEY = "passport_job"


def preselect_from_url() -> None:
    """`?model=&layer=&neuron=` (the links of the other views) selects that neuron once; the
    model only when the picker lists it (a link names no path of its own, loads no hub id)."""
    params = st.query_params
    if "model" in params and not st.session_state.get("passport_url_model_done"):
        st.session_state["passport_url_model_done"] = True
        if params["model"] in dict(local_choices()):
            st.session_state[MODEL_KEY] = params["model"]
            st.session_state.pop("model_picker", None)  # let the picker take the model above
        else:
            ignored_link("model", params["model"], "it is none of the local models listed here")
    for name, key in (("layer", LAYER_KEY), ("neuron", NEURON_KEY)):
        done = f"passport_url_{name}_done"
        if name in params and not st.session_state.get(done):
            try:
                st.session_state[key] = int(params[name])
            except ValueError:
                ignored_link(name, params[name], f"it is not a {name} number")
            st.session_state[done] = True


def pick_neuron(space: NeuronSpace) -> tuple[int, int]:
    left, right, _ = st.columns([1, 1, 3])
    for key in (LAYER_KEY, NEURON_KEY):  # a link may name a negative number
        if st.session_state.get(key, 0) < 0:
            st.session_state[key] = 0
    if st.session_state.get(LAYER_KEY, 0) >= space.num_layers:
        st.session_state[LAYER_KEY] = space.num_layers - 1
    layer = left.number_input("Layer", 0, space.num_layers - 1, key=LAYER_KEY, step=1)
    width = space.widths[int(layer)]
    if st.session_state.get(NEURON_KEY, 0) >= width:
        st.session_state[NEURON_KEY] = width - 1
    neuron = right.number_input(f"Neuron (0–{width - 1})", 0, width - 1, key=NEURON_KEY, step=1)
    return int(layer), int(neuron)


def jump_to(source: str) -> None:
    """Notable neurons to jump to: the first of each known set."""
    try:
        sets = [s for s in cached_sets(source, 10, workspace_stamp()) if s.area != "ica"]
    except SubnetScopeError:
        return
    options = {}
    for s in sets:
        for layer, neuron in s.ordered[:3]:
            options.setdefault(f"L{layer}.{neuron} · {s.label}", (layer, neuron))
    if not options:
        return
    picked = st.selectbox(
        "Jump to a notable neuron",
        list(options),
        index=None,
        placeholder="top candidates, top updated, top ΔW …",
        key="passport_jump",
    )
    if picked is not None and st.session_state.get("passport_jumped") != picked:
        st.session_state["passport_jumped"] = picked
        st.session_state[LAYER_KEY], st.session_state[NEURON_KEY] = options[picked]
        st.rerun()


def findings(p: Passport) -> None:
    st.subheader(f"Neuron {p.name}")
    st.caption(
        f"{p.space.family}, {p.space.num_layers} layers × {p.space.widths[p.layer]} neurons. "
        "Artifacts of every model with this layout join here (fine-tunes of one base share "
        "their neuron indices); each table says which model it came from."
    )
    for line in p.findings():
        st.markdown(f"- {line}")


def ica_section(p: Passport) -> None:
    st.markdown("**ICA components** — is it part of a functional network?")
    if p.ica.empty:
        st.caption("No ICA templates on this layout yet.")
        return
    names = list(dict.fromkeys(p.ica["templates"]))
    name = names[0]
    if len(names) > 1:
        name = st.selectbox("Templates", names, key="passport_templates")
    mine = p.ica[p.ica["templates"] == name]
    st.altair_chart(charts.component_z_chart(mine), width="stretch")
    st.dataframe(mine.drop(columns=["templates"]), hide_index=True, width="stretch", height=220)


def table_section(title: str, table: pd.DataFrame, empty: str, chart=None, hide=()) -> None:
    """One view's rows about the neuron: a chart of them when given, then the table."""
    st.markdown(title)
    if table.empty:
        st.caption(empty)
        return
    if chart is not None:
        st.altair_chart(chart(table), width="stretch")
    st.dataframe(table.drop(columns=list(hide)), hide_index=True, width="stretch")


def activation_section(p: Passport) -> None:
    st.markdown("**Activations** — what makes it fire?")
    a = p.activation
    if a is None:
        st.caption("No activation statistics yet.")
        return
    cols = st.columns(5)
    cols[0].metric("Mean", f"{a['mean']:+.3g}")
    cols[1].metric("Std", f"{a['std']:.3g}")
    cols[2].metric("Max", f"{a['max']:.3g}")
    cols[3].metric("Positive share", f"{a['positive_share']:.1%}")
    cols[4].metric("Rank in layer (mean |a|)", f"{a['mean_abs_rank_in_layer']}")
    st.caption(f"On {a['dataset']} ({a['tokens']} tokens) with {a['model']}.")
    if not p.snippets.empty:
        shown = p.snippets[["rank", "value", "left", "token", "right"]]
        st.dataframe(shown, hide_index=True, width="stretch")


def missing_section(p: Passport) -> None:
    if not p.missing:
        return
    st.markdown("**Not computed yet**")
    for i, m in enumerate(p.missing):
        left, right = st.columns([4, 1])
        left.markdown(f"{m.what}  \n`{m.command}`")
        if right.button(f"Run {m.job_kind}", key=f"passport_run_{i}", help=kind_title(m.job_kind)):
            submit_job(m.job_kind, m.params, key=JOB_KEY)
    if st.session_state.get(JOB_KEY):
        job_watcher(st.session_state[JOB_KEY], key="passport_watch", here="passport")


def passport_panel(source: str, space: NeuronSpace) -> None:
    jump_to(source)
    layer, neuron = pick_neuron(space)
    p = cached_passport(source, layer, neuron, workspace_stamp())
    findings(p)
    ica_section(p)
    table_section(
        "**Pruning scores (SparC3)** — does it carry the unwanted behaviour?",
        p.attribution,
        "No SparC3 run on this layout yet.",
        hide=["job_id"],
    )
    table_section(
        "**Weight updates** — did SFT or RL move it?",
        p.updates,
        "No diffed run on this layout yet.",
        charts.updates_chart,
        hide=["key"],
    )
    table_section(
        "**LoRA adapters** — does an adapter write into it?",
        p.adapters,
        "No LoRA adapter on this layout yet.",
        charts.adapter_roles_chart,
    )
    activation_section(p)
    missing_section(p)
    st.download_button(
        "Passport (JSON)",
        _json(p),
        file_name=f"passport-{p.name}.json",
        mime="application/json",
        key="passport_json",
    )


def _json(p: Passport) -> str:
    import json

    return json.dumps(p.as_dict(), indent=2, default=str)


def user_set() -> NeuronSet | None:
    text = st.text_area(
        "Your neurons (optional)",
        key="passport_user_list",
        height=80,
        placeholder="12.345, 29.1291 — or one 'layer neuron' per line",
        help="Joins the matrix as the set 'list:yours'",
    )
    if not text.strip():
        return None
    return list_set(text, name="yours")


def overlap_panel(source: str, space: NeuronSpace) -> None:
    st.caption(
        "Every pair of neuron sets the views know for this layout: Jaccard, the overlap "
        "expected by chance, and two p-values — one hypergeometric draw over all neurons, and "
        "one that keeps each set's per-layer sizes (so sets that merely favour the same layers "
        "are not called related). q: Benjamini–Hochberg over all pairs; a red ring marks q < 0.05."
    )
    left, right = st.columns(2)
    top = left.slider(
        "N for top-N sets (pruning, updates, adapters)",
        10,
        1000,
        DEFAULT_TOP,
        step=10,
        key="passport_top",
    )
    value = (
        right.segmented_control(
            "Colour", ["−log10 q", "Jaccard"], default="−log10 q", key="passport_colour"
        )
        or "−log10 q"
    )
    sets = cached_sets(source, top, workspace_stamp())
    mine = user_set()
    if mine is not None:
        sets = [*sets, mine]
    areas = sorted({s.area for s in sets})
    default_areas = [a for a in areas if a != "ica" or len(sets) < 30]  # many components: opt in
    chosen_areas = st.multiselect(
        "Areas", areas, default=default_areas, key=f"passport_areas_{'-'.join(areas)}"
    )
    shown = [s for s in sets if s.area in chosen_areas]
    options = [s.spec for s in shown]
    # keyed by the options: a new set (your list, a finished job) joins the selection
    picked = st.multiselect(
        "Sets", options, default=options, key=f"passport_sets_{hash(tuple(options))}"
    )
    chosen = [s for s in shown if s.spec in picked]
    if len(chosen) < 2:
        st.info("Pick two sets or more to compare (the views fill these as their jobs finish).")
        return
    pairs = cached_matrix(set_contents(chosen), chosen, space.widths)
    st.altair_chart(
        charts.overlap_matrix_chart(
            pairs, [s.spec for s in chosen], "jaccard" if value == "Jaccard" else "q"
        ),
        width="content",
    )
    sets_table = pd.DataFrame(
        [
            {"set": s.spec, "what": s.label, "neurons": len(s), "model": s.model, "from": s.note}
            for s in chosen
        ]
    )
    st.dataframe(sets_table, hide_index=True, width="stretch")
    ranked = pairs.sort_values("p_layered").reset_index(drop=True)
    st.dataframe(ranked, hide_index=True, width="stretch", height=280, column_config=P_COLUMNS)
    downloads(ranked, "neuron-set-overlaps", key="passport_pairs_dl")
    labels = [f"{r.a} × {r.b}" for r in ranked.itertuples()]
    pair = st.selectbox("Per layer", labels, key="passport_pair")
    if pair:
        a, b = (next(s for s in chosen if s.spec == name) for name in pair.split(" × "))
        one = overlap(a, b, space.widths)
        st.altair_chart(charts.overlap_layers_chart(one.layers), width="stretch")
        st.dataframe(
            one.layers, hide_index=True, width="stretch", height=240, column_config=P_COLUMNS
        )
