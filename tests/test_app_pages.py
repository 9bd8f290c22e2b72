"""AppTest: every page in the registry renders without an exception, through the real router."""

import pytest
from streamlit.testing.v1 import AppTest

from app.registry import PAGES, ROOT

MAIN = str(ROOT / "app" / "main.py")
TIMEOUT = 120


@pytest.mark.parametrize("page", PAGES, ids=[p.url_path for p in PAGES])
def test_page_renders(page):
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    at.run()
    at.switch_page(str(page.path))
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title, "page has no title"


def test_sidebar_has_model_seed_and_device():
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT).run()
    assert at.sidebar.selectbox(key="model").value == "hope"
    assert at.sidebar.number_input(key="seed").value == 0
    assert any("Device:" in c.value for c in at.sidebar.caption)


def test_home_lists_levels_of_selected_model():
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT).run()
    df = at.dataframe[0].value
    assert "cms[0]" in set(df["level"]) and "M_memory" in set(df["level"])
    at.sidebar.selectbox(key="model").set_value("transformer").run()
    assert not at.exception
    df = at.dataframe[0].value
    assert "attention_cache" in set(df["level"]) and not any(df["level"].str.startswith("cms"))


def test_garbage_query_params_do_not_break_the_app():
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    at.query_params["model"] = "<script>"
    at.query_params["seed"] = "not-a-number"
    at.run()
    assert not at.exception
    assert at.sidebar.selectbox(key="model").value == "hope"
    notice = " ".join(w.value for w in at.sidebar.warning)
    assert "model='<script>' (no such model)" in notice and "seed='not-a-number'" in notice


def test_an_unknown_preset_or_lesson_in_a_link_is_named_not_dropped_silently():
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    at.query_params["preset"] = "nope"
    at.query_params["lesson"] = "nope-either"
    at.run()
    assert not at.exception
    notice = " ".join(w.value for w in at.sidebar.warning)
    assert "preset='nope' (no such preset)" in notice and "lesson='nope-either'" in notice
    assert "preset" not in at.query_params
    clean = AppTest.from_file(MAIN, default_timeout=TIMEOUT).run()
    assert not clean.sidebar.warning  # a plain visit: nothing to say


def test_home_raster_covers_the_chosen_number_of_tokens():
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT).run()
    short = at.get("plotly_chart")[0].proto.spec
    at.select_slider(key="nest_tokens").set_value(512).run()
    assert not at.exception
    spec = at.get("plotly_chart")[0].proto.spec
    assert spec != short and "[-0.5,511.5]" in spec.replace(" ", "")  # the x range spans 512 tokens
