"""Streamlit entry point: the router (pages from app.registry), presets and lessons named in the URL,
and the global sidebar."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run app/main.py` puts app/ on the path, not the repo root
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from app.threads import use_app_threads  # noqa: E402

use_app_threads()  # one torch thread per process by default (app/threads.py)

from app.lessons import lessons  # noqa: E402
from app.presets import preset_params  # noqa: E402
from app.registry import PAGES  # noqa: E402
from app.release import trim_when_session_ends  # noqa: E402
from app.sidebar import global_sidebar  # noqa: E402
from app.urlstate import LESSON_PARAM, apply_preset, keep_instructor_mode  # noqa: E402

# a local image: a material-icon favicon is fetched from a font CDN, which an offline room cannot reach
st.set_page_config(page_title="Nested Learning Lab", page_icon=str(ROOT / "assets" / "favicon.png"), layout="wide")
pages = {p.url_path: st.Page(p.path, title=p.title, icon=p.icon, url_path=p.url_path, default=i == 0)
         for i, p in enumerate(PAGES)}  # fmt: skip
nav = st.navigation(list(pages.values()))
keep_instructor_mode()
apply_preset(preset_params())
trim_when_session_ends()  # a closed session's memory goes back to the OS (app/release.py)
st.session_state["settings"] = global_sidebar()
lesson = lessons().get(st.query_params.get(LESSON_PARAM, ""))
if lesson is not None:
    with st.expander(f"Lesson: {lesson.title}", expanded=True, icon=":material/school:"):
        st.markdown(lesson.body)
        st.page_link(pages["workshop"], label="All lessons", icon=":material/list:")
nav.run()
