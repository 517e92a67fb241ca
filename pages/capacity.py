"""Capacity: how many bits a GPT-2 of each size memorizes on random data, per parameter."""

from __future__ import annotations

import streamlit as st

from dashboard.stamps import follow_workspace
from dashboard.views import capacity as view
from engine.errors import SubnetScopeError


def main() -> None:
    st.title("Capacity")
    follow_workspace()
    st.caption(
        "Morris et al. (arXiv 2505.24832 §3): GPT-2 models trained from scratch on uniformly "
        "random token sequences, whose entropy H(X) = N·S·log₂V is known exactly. What a model "
        "memorized is H(X) minus its code length of the data; as N grows it plateaus at the "
        "model's capacity. The paper finds about 3.6 bits per parameter (3.51 bf16, 3.83 fp32)."
    )
    view.results_panel()
    view.launch_panel()


try:
    main()
except SubnetScopeError as exc:
    st.error(str(exc))
