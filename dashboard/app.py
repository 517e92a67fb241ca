"""SubnetScope's entry point: it only sets up the process and routes between pages."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent.parent
if (
    str(ROOT) not in sys.path
):  # `streamlit run dashboard/app.py` puts dashboard/ first, not the root
    sys.path.insert(0, str(ROOT))

from dashboard.demo_panel import demo_sidebar  # noqa: E402
from dashboard.navigation import SECTIONS  # noqa: E402
from dashboard.setup import configure_process  # noqa: E402


def run() -> None:
    configure_process()
    st.set_page_config(page_title="SubnetScope", page_icon=":material/hub:", layout="wide")
    navigation = st.navigation(
        {
            section: [
                st.Page(p.path, title=p.title, icon=p.icon, url_path=p.url_path, default=p.default)
                for p in pages
            ]
            for section, pages in SECTIONS.items()
        }
    )
    demo_sidebar()
    navigation.run()


run()
