"""The sidebar's view of the offline demo: which parts are ready and how far the rest have got."""

from __future__ import annotations

import streamlit as st

from engine.demo import demo_status

_BADGES = {"ready": "✅", "building": "⏳", "failed": "❌", "missing": "▫️"}


def demo_sidebar() -> None:
    """Refreshes itself while parts are being built; quiet once everything is ready."""
    states = demo_status()
    building = any(s.state == "building" for s in states)

    @st.fragment(run_every=2.0 if building else None)
    def panel() -> None:
        current = demo_status()
        ready = sum(s.state == "ready" for s in current)
        with st.expander(f"Demo workspace · {ready}/{len(current)} ready", expanded=False):
            for s in current:
                line = f"{_BADGES[s.state]} **{s.part.title}** — {s.state}"
                if s.state == "building" and s.job is not None:
                    line += f" ({s.job.status.fraction:.0%})"
                st.markdown(line)
                if s.state == "failed" and s.job is not None:
                    st.caption(s.job.status.message)
            st.caption("Built by jobs: see Runs. CLI: `python -m engine demo status`.")

    with st.sidebar:
        panel()
