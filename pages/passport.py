"""Neuron passport: one neuron seen from every view, and the overlaps between their neuron sets."""

from __future__ import annotations

import streamlit as st

from dashboard.sources import model_picker
from dashboard.stamps import follow_workspace
from dashboard.views import passport as view
from engine.errors import SubnetScopeError

VIEWS = ["Passport", "Overlaps"]


def main() -> None:
    st.title("Neuron passport")
    follow_workspace()
    st.caption(
        "One MLP neuron from every view — its ICA networks, its pruning scores, how far SFT and "
        "RL moved it, what adapters write into it, what makes it fire — and how the neuron sets "
        "of the views overlap. Every table of neurons elsewhere links here."
    )
    view.preselect_from_url()
    source = model_picker(st.sidebar)
    if source is None:
        st.info("Pick a model in the sidebar.")
        return
    space = view.neuron_space(source)
    shown = st.segmented_control("View", VIEWS, default="Passport", key="passport_view")
    if (shown or "Passport") == "Passport":
        view.passport_panel(source, space)
    else:
        view.overlap_panel(source, space)


try:
    main()
except SubnetScopeError as exc:
    st.error(str(exc))
