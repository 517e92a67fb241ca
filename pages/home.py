"""Home: what SubnetScope is, what the demo holds, and where each view leads."""

from __future__ import annotations

import streamlit as st

from dashboard.demo_panel import part_states
from dashboard.views import home as view


def main() -> None:
    st.title("SubnetScope")
    st.markdown(
        "Find, measure and switch the sparse subnetworks inside language models: which weights "
        "fine-tuning moved, which MLP neurons form functional networks, which neurons carry an "
        "unwanted behaviour, what LoRA adapters add, and what an edge-compiled model is made "
        "of. Every view runs on the same engine, which scripts, the CLI "
        "(`python -m engine …`) and SLURM jobs use too; long work runs as jobs."
    )
    st.markdown(
        "**Start here:** open *Neuron pruning*, click the top candidate, and its passport shows "
        "whether it belongs to an ICA network, whether RL moved it and whether an adapter "
        "writes into it."
    )
    parts = part_states()
    left, right = st.columns([3, 2], gap="large")
    with left:
        view.views_section(parts)
    with right:
        view.demo_section(parts)


main()
