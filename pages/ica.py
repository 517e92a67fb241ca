"""ICA components: functional networks of MLP neurons, live lesion / preserve, masked SFT."""

from __future__ import annotations

import streamlit as st

from dashboard.sources import model_picker
from dashboard.stamps import follow_workspace
from dashboard.views import ica as view
from engine.errors import SubnetScopeError

VIEWS = ["Components", "Overlap", "Live toggles", "Masked SFT", "Build"]


def main() -> None:
    st.title("ICA components")
    follow_workspace()
    st.caption(
        "Functional networks of MLP neurons (seed 001, after Liu et al. 2025): independent "
        "components of neuron activations, their key neurons, what they respond to, and what "
        "switching them off or isolating them does."
    )
    source = model_picker(st.sidebar)
    path = view.pick_templates()
    shown = st.segmented_control("View", VIEWS, default="Components", key="ica_view") or VIEWS[0]
    if shown == "Build" or path is None:
        if path is None and shown != "Build":
            st.info(
                "No templates yet: build some here (the demo builds its own in the background)."
            )
        if source is not None:
            view.build_panel(source)
        return
    templates, arrays = view.opened(path)
    view.headline(templates)
    if shown == "Overlap":
        view.overlap_panel(templates)
    elif source is None:
        st.info("Pick a model in the sidebar.")
    elif shown == "Components":
        view.components_panel(templates, arrays, source)
    elif shown == "Live toggles":
        view.toggles_panel(templates, arrays, source)
    else:
        view.sft_panel(templates, source)


try:
    main()
except SubnetScopeError as exc:
    st.error(str(exc))
