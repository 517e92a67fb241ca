"""Sparsity heatmaps: which weights fine-tuning moved, how localized, and runs that track it."""

from __future__ import annotations

import streamlit as st

from dashboard.sources import model_picker
from dashboard.stamps import follow_workspace
from dashboard.views import sparsity as view
from engine.errors import SubnetScopeError

VIEWS = ["Heatmap", "Ranks", "Localization", "Neurons", "Coverage", "Compare", "Shells", "Train"]


def main() -> None:
    st.title("Sparsity heatmaps")
    follow_workspace()
    st.caption(
        "Base against tuned, streamed tensor by tensor: the share of weights each block and "
        "module changed, their update ranks, how localized the changes are, the neurons they "
        "touch most, and runs over steps."
    )
    view.preselect_from_url()
    base = model_picker(st.sidebar)
    tuned = view.pick_tuned(base)
    config = view.pick_config()
    criterion = view.pick_criterion(config)
    # One panel per run (not st.tabs, which would compute and draw all of them every time).
    shown = st.segmented_control("View", VIEWS, default="Heatmap", key="sparsity_view") or "Heatmap"
    if shown == "Train":
        view.train_panel()
        return
    model, base = base, view.diff_base(base, tuned)  # a run's checkpoints: its own base/
    if base is None or tuned.tuned is None:
        st.info("Pick a base model and the tuned weights (or a run's checkpoints) in the sidebar.")
        return
    if shown == "Coverage":
        view.coverage_panel(base, tuned, config)
        return
    if shown == "Compare":
        view.compare_panel(base, tuned, config, criterion)
        return
    if shown == "Heatmap" and view.run_is_active(tuned.run_dir):
        view.live_heatmap(base, tuned.run_dir, config, criterion)
        return
    result = view.diff_of(base, tuned.tuned, config)
    view.headline(result, criterion)
    if shown == "Heatmap":
        view.heatmap_panel(result, criterion)
    elif shown == "Ranks":
        view.ranks_panel(result)
    elif shown == "Localization":
        view.localization_panel(result, criterion)
    elif shown == "Neurons":
        view.neurons_panel(result, model or base, criterion)  # passports of the picked model
    else:
        view.shells_panel(result, base, criterion)


try:
    main()
except SubnetScopeError as exc:
    st.error(str(exc))
