"""AppTest: every page in the registry renders without an exception, through the real router."""

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from app.registry import PAGES, ROOT
from tests.apptest import front_door

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
    at = front_door(model="<script>", seed="not-a-number")
    assert not at.exception
    assert at.sidebar.selectbox(key="model").value == "hope"
    notice = " ".join(w.value for w in at.sidebar.warning)
    assert "model='<script>' (no such model)" in notice and "seed='not-a-number'" in notice


def test_an_unknown_preset_or_lesson_in_a_link_is_named_not_dropped_silently():
    at = front_door(preset="nope", lesson="nope-either")
    assert not at.exception
    notice = " ".join(w.value for w in at.sidebar.warning)
    assert "preset='nope' (no such preset)" in notice and "lesson='nope-either'" in notice
    assert "preset" not in at.query_params
    clean = AppTest.from_file(MAIN, default_timeout=TIMEOUT).run()
    assert not clean.sidebar.warning  # a plain visit: nothing to say


def test_a_session_opened_on_a_link_says_once_what_the_link_restored():
    """A tab that reconnects after a server restart is a new session on the same URL: it says what came
    back and what did not (uploads, trained models), once; a plain visit says nothing."""
    at = front_door(model="titans", seed="7", hide="seed")
    toast = " ".join(t.value for t in at.toast)
    assert "restored from its link (model, seed)" in toast and "trained in an earlier session" in toast
    assert at.sidebar.selectbox(key="model").value == "titans"
    at.run()
    assert not at.toast  # once per session, not on every rerun
    assert not AppTest.from_file(MAIN, default_timeout=TIMEOUT).run().toast


def test_home_raster_covers_the_chosen_number_of_tokens():
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT).run()
    short = at.get("plotly_chart")[0].proto.spec
    at.select_slider(key="nest_tokens").set_value(512).run()
    assert not at.exception
    spec = at.get("plotly_chart")[0].proto.spec
    assert spec != short and "[-0.5,511.5]" in spec.replace(" ", "")  # the x range spans 512 tokens


def test_raster_has_a_legend_per_kind_and_keeps_the_rows_that_never_tick():
    import nested
    from app.figures import KIND_NAMES, nest_raster

    model = nested.build_model("titans", d_model=32, n_layers=1, seed=0)
    with torch.no_grad():
        trace = model.stream(torch.randint(0, 256, (1, 8)), trace=True).trace
    fig = nest_raster(nested.levels(model), trace)
    rows = {t.y[0] for t in fig.data}
    assert {"optimizer (AdamW)", "weights"} <= rows  # drawn, though nothing ticks in inference
    legend = [t for t in fig.data if t.showlegend is not False]
    assert sorted(t.name for t in legend) == sorted({KIND_NAMES[lv.kind] for lv in nested.levels(model)})
    assert all(t.marker.opacity is None for t in legend)  # every legend mark visible
    empty = [t for t in fig.data if t.y[0] == "weights"][0]
    assert empty.marker.opacity == 0 and "no update" in empty.hovertemplate
    assert "never tick while streaming" in fig.layout.xaxis.title.text
    ticking = nest_raster(nested.levels(model), trace, steps_every=4)
    assert list([t for t in ticking.data if t.y[0] == "weights"][0].x) == [3, 7]


def test_rate_curves_title_the_token_axis_and_draw_the_first_token():
    from app.figures import rate_curves

    one = np.array([0.5])
    fig = rate_curves(
        one, one, one, 0, [], {"eta": ("inner learning rate θ_t", "θ"), "alpha": ("retention 1 − α_t", "1−α")}
    )
    assert fig.layout.xaxis.title.text == "token index"
    assert fig.layout.xaxis.range[0] < 0 < fig.layout.xaxis.range[1]
    assert all(t.mode == "markers" for t in fig.data)  # one point: a line would draw nothing
    assert [a.text for a in fig.layout.annotations][:2] == ["inner learning rate θ_t", "retention 1 − α_t"]


def test_the_front_door_has_a_tour_whose_stops_open_their_views():
    from app.presets import PRESETS, TOUR

    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT).run()
    assert any("2512.24695" in m.value for m in at.markdown)  # the paper, referenced
    assert len(at.get("page_link")) >= len(TOUR)
    for page, preset, _ in TOUR:
        assert page in {p.url_path for p in PAGES} and (preset is None or PRESETS[preset].page == page)


def test_the_nest_streams_its_sample_in_pieces_with_progress_and_equals_one_stream():
    import numpy as np
    import torch

    from app.models import build_frozen, encode_text
    from app.nest_run import PIECE, nest_trace
    from app.presets import FIRST_SAMPLE
    from app.samples import sample_texts

    model = build_frozen("deltanet", 7)  # untrained: nothing shipped, so it is streamed
    seen = []
    trace = nest_trace("deltanet", 7, 2 * PIECE + 10, lambda: model, lambda done, total: seen.append((done, total)))
    assert seen == [(PIECE, 2 * PIECE + 10), (2 * PIECE, 2 * PIECE + 10), (2 * PIECE + 10, 2 * PIECE + 10)]
    with torch.no_grad():
        whole = model.stream(encode_text(sample_texts()[FIRST_SAMPLE], limit=2 * PIECE + 10)).trace
    assert len(trace) == len(whole) and np.allclose(trace.array("eta"), whole.array("eta"), atol=1e-5)
    assert trace.snapshots == {}  # the raster needs none
    assert nest_trace("deltanet", 7, 2 * PIECE + 10, lambda: 1 / 0) is trace  # cached: not streamed again
