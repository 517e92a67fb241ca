"""Neuron pruning: SparC3 attribution (LRP / Wanda), live pruning, toxicity and perplexity."""

from __future__ import annotations

import streamlit as st

from dashboard.sources import model_picker
from dashboard.stamps import follow_workspace
from dashboard.views import pruning as view
from engine.errors import SubnetScopeError

VIEWS = ["Candidates", "Live pruning", "Evaluation", "Compute", "Export"]


def main() -> None:
    st.title("Neuron pruning")
    follow_workspace()
    st.caption(
        "SparC3 (Hatefi et al. 2025): relevance of every up_proj neuron on general text and on "
        "prompts that elicit an unwanted behaviour; the neurons with the most negative "
        "R_general − R_target carry the behaviour. Prune them live and watch toxicity and "
        "perplexity."
    )
    path = view.pick_run()
    source = model_picker(st.sidebar)
    shown = st.segmented_control("View", VIEWS, default=VIEWS[0], key="pruning_view") or VIEWS[0]
    if shown == "Compute" or path is None:
        if path is None and shown != "Compute":
            st.info("No scores yet: run SparC3 here (the demo builds its own in the background).")
        if source is not None:
            view.compute_panel(source)
        return
    result = view.opened(path)
    view.headline(result)
    model = result.summary["config"]["model"]  # the scores belong to the model that made them
    if shown == "Candidates":
        view.candidates_panel(result, model)
    elif shown == "Live pruning":
        view.live_panel(result, model)
    elif shown == "Evaluation":
        view.evaluation_panel(result, model)
    else:
        view.export_panel(result, model)


try:
    main()
except SubnetScopeError as exc:
    st.error(str(exc))
