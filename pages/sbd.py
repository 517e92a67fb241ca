"""Set block decoding: how many tokens one forward pass produces, and at what cost in quality."""

from __future__ import annotations

import streamlit as st

from dashboard.sources import precision_picker
from dashboard.stamps import follow_workspace
from dashboard.views import sbd as view
from engine.errors import SubnetScopeError

VIEWS = ["Decode", "Trade-off", "Train"]


def main() -> None:
    st.title("Set block decoding")
    follow_workspace()
    st.caption(
        "Gat, Ben-Hamu et al. (arXiv 2509.04185): a model fine-tuned for next-token and masked "
        "prediction of a block of k future tokens fills several slots per forward pass; the "
        "entropy-bounded rule reveals the most confident slots while their summed entropy stays "
        "under γ. The paper reports 3–5× fewer forward passes at the same quality on 8B models; "
        "the Trade-off view gives what the chosen run measured."
    )
    run = view.run_picker(st.sidebar)
    precision_picker(st.sidebar)
    if run is None:
        st.info("No SBD-trained run yet: train one below (or build the demo).")
        view.train_panel()
        return
    shown = st.segmented_control("View", VIEWS, default=VIEWS[0], key="sbd_view") or VIEWS[0]
    if shown == "Decode":
        view.decode_panel(run)
    elif shown == "Trade-off":
        view.tradeoff_panel(run)
    else:
        view.train_panel()


try:
    main()
except SubnetScopeError as exc:
    st.error(str(exc))
