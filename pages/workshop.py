"""Workshop: guided lessons, links that restore a view, an instructor mode that hides controls, traces."""

import streamlit as st

from app.lessons import lessons
from app.presets import PRESETS
from app.registry import PAGES
from app.urlstate import HIDE_PARAM, HIDEABLE, LESSON_PARAM, PRESET_PARAM, share_query

st.title("Workshop")
st.markdown(
    "Every page keeps its whole view in the URL (model, seed, preset, frozen levels, layer, memory, token "
    "index, …): copy the address bar to share exactly what you see. Lessons open the right page in the "
    "right state; an instructor can hide controls so a class looks at the same thing."
)
page_by_path = {p.url_path: p for p in PAGES}

st.header("Lessons")
for i, lesson in enumerate(lessons().values(), start=1):
    with st.container(border=True):
        st.markdown(f"**{i}. {lesson.title}** · opens *{page_by_path[lesson.preset.page].title}*")
        st.markdown(lesson.body.split("\n\n")[0])
        st.page_link(str(page_by_path[lesson.preset.page].path), label=f"Start: {lesson.title}",
                     icon=":material/play_arrow:", query_params=lesson.query())  # fmt: skip

st.header("Instructor: make a link")
c1, c2 = st.columns(2)
preset = c1.selectbox("Preset", list(PRESETS), format_func=lambda n: f"{PRESETS[n].title} ({n})", key="ws_preset")
lesson_names = ["(no lesson)"] + [n for n, ls in lessons().items() if ls.preset.page == PRESETS[preset].page]
lesson = c2.selectbox("Show the lesson box", lesson_names, key="ws_lesson")
hide = st.multiselect("Hide these controls from learners", list(HIDEABLE), format_func=HIDEABLE.get, key="ws_hide",
                      help="Their values still come from the link; learners just cannot change them.")  # fmt: skip
params = {PRESET_PARAM: preset, LESSON_PARAM: None if lesson.startswith("(") else lesson,
          HIDE_PARAM: ",".join(hide) or None}  # fmt: skip
page = page_by_path[PRESETS[preset].page]
base = st.context.url.split("?")[0].rsplit("/", 1)[0] if st.context.url else ""
link = f"{base}/{page.url}?{share_query(params)}"
st.code(link, language=None)
st.page_link(str(page.path), label="Open it", icon=":material/open_in_new:",
             query_params={k: v for k, v in params.items() if v})  # fmt: skip

st.header("Saved traces")
st.markdown(
    "The token stepper's **Export** panel saves the whole trace (.npz: every token's η, α, surprise, "
    "predictions, losses, update events and memory snapshots). Load it under **Text → Saved trace** to "
    "replay it without a model — for a class without a fast machine, or to keep a run."
)
st.page_link(
    str(page_by_path["stepper"].path),
    label="Replay a saved trace",
    icon=":material/replay:",
    query_params={"stepper_source": "Saved trace"},
)
