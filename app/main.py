"""Streamlit entry point: the router (pages from app.registry) and the global sidebar."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run app/main.py` puts app/ on the path, not the repo root
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from app.registry import PAGES  # noqa: E402
from app.sidebar import global_sidebar  # noqa: E402

st.set_page_config(page_title="Nested Learning Lab", page_icon=":material/account_tree:", layout="wide")
nav = st.navigation(
    [st.Page(p.path, title=p.title, icon=p.icon, url_path=p.url_path, default=i == 0) for i, p in enumerate(PAGES)]
)
st.session_state["settings"] = global_sidebar()
nav.run()
