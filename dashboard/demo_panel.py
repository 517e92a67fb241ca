"""The sidebar's view of the offline demo: which parts are ready and how far the rest have got."""

from __future__ import annotations

import streamlit as st

from engine.demo import demo_status
from engine.paths import cache_root

_BADGES = {"ready": "✅", "building": "⏳", "failed": "❌", "missing": "▫️"}


@st.cache_data(ttl=2.0, show_spinner=False)
def _states(root: str) -> list[dict]:
    return [s.summary() for s in demo_status()]


def part_states() -> list[dict]:
    """The demo parts' summaries for the current cache, read from the job folders at most every
    2 s, however many pages rerun (the sidebar and Home share them)."""
    return _states(str(cache_root()))


def demo_sidebar() -> None:
    """Refreshes itself while parts are being built; quiet once everything is ready."""
    building = any(s["state"] == "building" for s in part_states())

    @st.fragment(run_every=2.0 if building else None)
    def panel() -> None:
        current = part_states()
        ready = sum(s["state"] == "ready" for s in current)
        with st.expander(f"Demo workspace · {ready}/{len(current)} ready", expanded=False):
            for s in current:
                line = f"{_BADGES[s['state']]} **{s['title']}** — {s['state']}"
                if s["state"] == "building" and s["message"].startswith("waiting for a slot"):
                    line += f" ({s['message'].removeprefix('waiting for a slot: ')})"
                elif s["state"] == "building" and s["fraction"] is not None:
                    line += f" ({s['fraction']:.0%})"
                st.markdown(line)
                if s["state"] == "failed":
                    st.caption(s["message"])
            st.caption("Built by jobs: see Runs. CLI: `python -m engine demo status`.")

    with st.sidebar:
        panel()
