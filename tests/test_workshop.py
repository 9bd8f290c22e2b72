"""Workshop mechanics: URLs restore views, presets and their shipped runs, lessons, instructor mode,
exports and trace replay."""

import io
import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app.exports import figures_html, per_token_rows, trace_csv, trace_json, trace_npz
from app.figures import token_strip
from app.lessons import lessons, parse_lesson
from app.models import build_frozen
from app.presets import PRESETS, build, preset_path, shipped_run
from app.registry import PAGES, ROOT
from app.runstate import StepperRun
from app.samples import sample_texts
from app.textinput import clean_text
from nested.trace import Trace
from tests.apptest import player_data, report, step

MAIN = str(ROOT / "app" / "main.py")
PAGE_FILE = {p.url_path: str(p.path) for p in PAGES}


def open_page(page: str, **params) -> AppTest:
    """A fresh session opened on `page` with a URL query string (lists become repeated parameters)."""
    at = AppTest.from_file(MAIN, default_timeout=120)
    for key, value in params.items():
        at.query_params[key] = value
    at.switch_page(PAGE_FILE[page])
    return at.run()


def chart_specs(at: AppTest) -> list[str]:
    return [c.proto.spec for c in at.get("plotly_chart")]


def test_a_url_restores_the_view_reached_by_clicking():
    clicked = open_page("stepper")
    clicked.selectbox(key="stepper_sample").set_value("Booleans").run()
    clicked.selectbox(key="stepper_layer").set_value(1).run()
    clicked.radio(key="stepper_colour").set_value("eta").run()
    step(clicked, 6)
    restored = open_page(
        "stepper", stepper_sample="Booleans", stepper_layer="1", stepper_colour="eta", stepper_index="6"
    )
    assert not clicked.exception and not restored.exception
    assert restored.session_state["stepper_index"] == 6 and player_data(restored)["cmd"]["index"] == 6
    for at in (clicked, restored):
        at.toggle(key="stepper_figures").set_value(True).run()
    assert restored.selectbox(key="stepper_layer").value == 1 and restored.radio(key="stepper_colour").value == "eta"
    assert chart_specs(restored) == chart_specs(clicked)  # the same strip, heatmaps and curves


def test_model_seed_and_frozen_levels_come_from_the_url():
    at = open_page("stepper", model="titans", seed="3", stepper_index="4")
    assert at.sidebar.selectbox(key="model").value == "titans" and at.sidebar.number_input(key="seed").value == 3
    at = open_page("stepper", stepper_frozen=["layer 0 memories", "layer 1 cms[0]"])
    assert at.multiselect(key="stepper_frozen").value == ["layer 0 memories", "layer 1 cms[0]"]
    run = at.session_state["stepper_run"]
    assert np.all(run.trace.array("eta")[:, 0] == 0) and np.any(run.trace.array("eta")[:, 1] != 0)


@pytest.mark.parametrize("params", [
    {"stepper_index": "abc", "stepper_layer": "9", "stepper_memory": "nope", "stepper_colour": "red"},
    {"preset": "no-such-preset", "lesson": "no-such-lesson", "hide": "everything,,model<script>"},
    {"stepper_frozen": ["layer 9 cms[4]"], "stepper_source": "Floppy", "stepper_compare": "gpt-5"},
    {"stepper_index": "999999", "opt_lr": "-1", "opt_surface": "moon"},
])  # fmt: skip
def test_garbage_in_new_url_parameters_is_dropped(params):
    at = open_page("stepper", **params)
    assert not at.exception, [e.value for e in at.exception]
    assert 0 <= at.session_state["stepper_index"] < len(at.session_state["stepper_run"].tokens)


def test_instructor_hides_controls_but_keeps_their_url_values():
    at = open_page("nest", model="transformer", hide="model,seed")
    assert not at.exception
    assert not at.sidebar.selectbox and not at.sidebar.number_input  # no model picker, no seed box
    assert "attention_cache" in set(at.dataframe[0].value["level"])  # ... but the URL's model is the one shown
    at = open_page("stepper", hide="stepper_frozen,stepper_source,exports", stepper_frozen="layer 0 memories")
    keys = {w.key for w in at.multiselect} | {w.key for w in at.radio}
    assert "stepper_frozen" not in keys and "stepper_source" not in keys
    assert np.all(at.session_state["stepper_run"].trace.array("eta")[:, 0] == 0)  # the hidden freeze still applies
    assert not at.get("download_button") and not [e for e in at.expander if e.label == "Export"]


def test_every_lesson_opens_its_page_in_its_state():
    assert set(lessons()) >= {"levels-and-frequencies", "memory-as-optimisation", "self-generated-learning-rates",
                              "cms-and-forgetting", "optimizers-as-memories", "m3", "m3-live", "recall-memory-off",
                              "attribution-recall"}  # fmt: skip
    for lesson in lessons().values():
        at = open_page(lesson.preset.page, **lesson.query())
        assert not at.exception, (lesson.name, [e.value for e in at.exception])
        assert any(e.label == f"Lesson: {lesson.title}" for e in at.expander), lesson.name
        for key, value in lesson.preset.params.items():
            if key in POSITIONS:  # a position is plain session state, shown by its slider or the player
                shown = at.slider(key=POSITIONS[key]).value if POSITIONS[key] else player_data(at)["cmd"]["index"]
                assert at.session_state[key] == value == shown
                continue
            if key in ("model", "seed"):
                widget = at.sidebar.selectbox(key=key) if key == "model" else at.sidebar.number_input(key=key)
            else:
                widget = next(w for w in at.get(_kind_of(at, key)) if getattr(w, "key", None) == key)
            assert widget.value == value, (lesson.name, key, widget.value, value)
        for what in ("What to do", "What to look for", "Why"):
            assert f"**{what}.**" in lesson.body, (lesson.name, what)


POSITIONS = {"stepper_index": None, "attr_position": "attr_slider"}  # None: the stepper's player


def _kind_of(at: AppTest, key: str) -> str:
    for kind in ("slider", "select_slider", "selectbox", "radio", "multiselect", "text_area"):
        if any(getattr(w, "key", None) == key for w in at.get(kind)):
            return kind
    raise AssertionError(f"no widget with key {key}")


def test_a_url_preset_never_overrides_what_the_url_says():
    at = open_page("stepper", preset="stepper-first-look", stepper_index="5")
    assert at.session_state["stepper_index"] == 5 and player_data(at)["cmd"]["index"] == 5
    assert at.selectbox(key="stepper_memory").value == "M_memory"


def test_a_lesson_file_without_a_known_preset_is_refused(tmp_path):
    bad = tmp_path / "07-bad.md"
    bad.write_text("---\ntitle: x\npreset: nope\n---\nbody")
    with pytest.raises(ValueError, match="unknown preset"):
        parse_lesson(bad)
    bad.write_text("no header")
    with pytest.raises(ValueError, match="header"):
        parse_lesson(bad)


@pytest.mark.parametrize("name", sorted({p.name for p in PRESETS.values() if p.precomputed}))
def test_shipped_preset_runs_equal_a_live_run(name, tmp_path):
    preset = PRESETS[name]
    shipped = shipped_run(preset.run_key)  # presets of the same run share the first one's file
    assert shipped is not None and any(
        preset_path(p.name).is_file() for p in PRESETS.values() if p.run_key == preset.run_key
    )
    model_name, seed, _, sample, frozen = preset.run_key
    text, _ = clean_text(sample_texts()[sample])
    assert shipped.tokens == list(text.encode("utf-8"))
    live = StepperRun(preset.run_key, shipped.tokens, frozen)
    upto = preset.params["stepper_index"] + 2
    live.ensure(build_frozen(model_name, seed), upto)
    for name_ in ("eta", "alpha", "surprise"):
        assert np.allclose(shipped.array(name_)[:upto], live.trace.array(name_)[:upto], atol=1e-4, equal_nan=True)
    assert np.allclose(shipped.array("loss")[: upto - 1], live.trace.array("loss")[: upto - 1], atol=1e-4)
    i = preset.params["stepper_index"]
    for layer in range(shipped.n_layers):
        a, b = shipped.snapshot_at(layer, i), live.trace.snapshot_at(layer, i)
        # float32 rounding differs between CPUs (the shipped run was built on another machine) and the
        # memory recursion carries it: equal to 1e-4 of each matrix's scale, not bit for bit
        assert set(a) == set(b) and all(np.allclose(a[k], b[k], atol=1e-4 * np.abs(a[k]).max()) for k in a)


def test_a_preset_draws_without_streaming_and_then_runs_live():
    at = open_page("stepper", preset="stepper-first-look")
    run = at.session_state["stepper_run"]
    assert run.preset is not None and run.computed == 0  # the first view came from the shipped run
    report(at, 17)  # three steps back
    assert (
        at.session_state["stepper_index"] == 17 and not at.exception and at.session_state["stepper_run"].computed == 0
    )
    report(at, 2, need={"start": 0, "nonce": "a"})  # outside the shipped window: the browser asks, it is computed live
    assert at.session_state["stepper_run"].computed >= 3


def test_preset_build_writes_loadable_files(tmp_path, monkeypatch):
    monkeypatch.setattr("app.presets.PRESET_DIR", tmp_path)
    names = build(["stepper-first-look"])
    assert names == ["stepper-first-look"]
    tr = Trace.load(tmp_path / "stepper-first-look.npz")
    assert tr.meta["model"] == "hope" and tr.snapshot_at(0, -1) is not None and tr.snapshot_at(0, 60) is None


# -- exports ---------------------------------------------------------------------------------------
def _run(n=40):
    run = StepperRun(("hope", 0, "text", "x", ()), list(b"The cat sat on the mat. The cat sat on the mat!"))
    run.ensure(build_frozen("hope", 0), n)
    return run


def test_csv_and_json_exports_hold_every_token_and_update():
    run = _run()
    tr = run.trace
    rows = per_token_rows(tr)
    assert len(rows) == len(tr) and rows[3]["byte"] == tr.tokens[3]
    assert abs(rows[3]["loss"] - tr.loss[3]) < 1e-6 and abs(rows[3]["L1_eta"] - float(np.mean(tr.eta[3][1]))) < 1e-6
    csv_lines = trace_csv(tr).strip().splitlines()
    assert len(csv_lines) == len(tr) + 1 and csv_lines[0].startswith("token,byte,char,loss")
    data = json.loads(trace_json(tr))  # strict JSON: NaN losses are written as null
    assert len(data["tokens"]) == len(tr) and len(data["updates"]) == len(tr.updates)
    assert data["tokens"][-1]["loss"] is None
    cms = [r for r in rows if "cms[0]" in r["cms_updates"]]
    assert [r["token"] for r in cms] == [e.token for e in tr.updates if e.layer == 0 and e.component == "cms[0]"]


def test_html_export_is_self_contained():
    run = _run(10)
    fig = token_strip(run.tokens, run.trace.array("surprise")[:, 0].mean(-1), 3, "surprise")
    html = figures_html({"strip": fig, "again": fig}, "t<est>")
    assert html.count("<h2>") == 2 and "<script src=" not in html  # nothing to fetch: it opens offline
    assert html.count("Plotly.newPlot") == 2 and len(html) > 1_000_000  # plotly.js inlined once
    assert "t<est>" not in html and "t&lt;est&gt;" in html


def test_an_exported_trace_loads_back_to_the_same_view():
    at = step(open_page("stepper"), 7)
    original = chart_specs(at.toggle(key="stepper_figures").set_value(True).run())
    data = trace_npz(at.session_state["stepper_run"].export_trace())  # what the Export panel's button gives
    assert Trace.load(io.BytesIO(data)).tokens == at.session_state["stepper_run"].tokens
    at.radio(key="stepper_source").set_value("Saved trace").run()
    at.get("file_uploader")[0].set_value(("run.npz", data, "application/octet-stream")).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["stepper_run"].replay
    assert at.session_state["stepper_index"] == 0  # a new stream starts at its first token
    report(at, 7)
    assert chart_specs(at) == original
    assert player_data(at)["names"]["main"] == "hope (saved trace)"  # named for its model
    assert at.multiselect(key="stepper_frozen").disabled  # freezing cannot change a recorded run
    assert any("do not apply" in i.value for i in at.info)
    at.get("file_uploader")[0].set_value(("bad.npz", b"PK\x03\x04 not a zip", "application/octet-stream")).run()
    assert not at.exception and any("cannot be replayed" in e.value for e in at.error)
    assert at.session_state["stepper_run"].replay  # the loaded replay is kept


def test_home_raster_from_the_shipped_run_equals_a_live_stream():
    import torch

    from app.models import encode_text

    shipped = shipped_run(PRESETS["stepper-first-look"].run_key).head(96)
    with torch.no_grad():
        live = build_frozen("hope", 0).stream(encode_text(sample_texts()["The for statement"], limit=96)).trace
    assert len(shipped) == len(live) == 96
    assert np.allclose(shipped.array("loss"), live.array("loss"), atol=1e-4, equal_nan=True)
    assert [(e.token, e.layer, e.component) for e in shipped.updates] == [
        (e.token, e.layer, e.component) for e in live.updates
    ]


def test_the_instructor_link_builder_writes_a_link_that_opens_that_view():
    from urllib.parse import parse_qs, urlsplit

    at = open_page("workshop")
    assert not at.exception and len([c for c in at.get("page_link") if c.proto.label.startswith("Start:")]) == len(
        lessons()
    )
    at.selectbox(key="ws_preset").set_value("continual-forgetting").run()
    at.selectbox(key="ws_lesson").set_value("cms-and-forgetting").run()
    at.multiselect(key="ws_hide").set_value(["model", "cl_models"]).run()
    link = at.code[0].value
    parts = urlsplit(link)
    assert parts.path.endswith("/continual")
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query == {"preset": "continual-forgetting", "lesson": "cms-and-forgetting", "hide": "model,cl_models"}
    view = open_page("continual", **query)
    assert not view.exception and not view.sidebar.selectbox
    assert "cl_models" not in {w.key for w in view.multiselect}
    shown = {
        a["text"].strip("</b>") for a in json.loads(view.get("plotly_chart")[0].proto.spec)["layout"]["annotations"]
    }
    assert set(PRESETS["continual-forgetting"].params["cl_models"]) <= shown
    assert any(e.label == "Lesson: CMS and forgetting" for e in view.expander)


def test_uploads_any_encoding_refuse_binaries_and_keep_the_run():
    at = open_page("stepper")
    at.radio(key="stepper_source").set_value("Upload").run()
    up = at.get("file_uploader")[0]
    up.set_value(("notes.txt", "Café crème, naïve façade.".encode("cp1252"), "text/plain")).run()
    assert not at.exception
    run = at.session_state["stepper_run"]
    assert bytes(run.tokens).decode("utf-8") == "Café crème, naïve façade."
    assert any("Read as Windows-1252" in c.value for c in at.caption)  # the page says how it read the file
    jp = "日本語のテキストです。メモリは入力によって更新されます。"
    at.get("file_uploader")[0].set_value(("jp.txt", jp.encode("shift_jis"), "text/plain")).run()
    assert bytes(at.session_state["stepper_run"].tokens).decode("utf-8") == jp
    run = at.session_state["stepper_run"]
    at.get("file_uploader")[0].set_value(("image.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00", "text/plain")).run()
    assert not at.exception and any("binary" in e.value for e in at.error)
    assert at.session_state["stepper_run"] is run  # the earlier stream is kept


def test_the_export_panel_offers_every_format():
    at = open_page("stepper")
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Trace (.npz)", "Data (.csv)", "Data (.json)", "Figures (.html)"]


def test_a_crafted_trace_with_wrong_shapes_is_refused_not_replayed():
    run = _run(6)
    good = trace_npz(run.trace)
    with np.load(io.BytesIO(good)) as z:
        arrays = dict(z)
    arrays["topk_ids"] = arrays["topk_ids"][:, 0]  # 1-D: the page would index it
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with pytest.raises(ValueError, match="wrong shapes"):
        Trace.load(io.BytesIO(buf.getvalue()))
    header = json.loads(str(arrays["header"]))
    header["meta"]["frozen"] = 5
    arrays["topk_ids"] = dict(np.load(io.BytesIO(good)))["topk_ids"]
    arrays["header"] = np.array(json.dumps(header))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    assert StepperRun.from_trace(("t",), Trace.load(io.BytesIO(buf.getvalue()))).frozen == ()
    assert len(Trace.load(io.BytesIO(good)).head(0).loss) == 0


def test_instructor_mode_holds_across_navigation():
    """Navigating to another page drops the query string: the hidden controls stay hidden, their values stay."""
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.query_params["hide"] = "model,seed"
    at.query_params["model"] = "deltanet"  # untrained: its weights come from the seed, so the seed is kept
    at.query_params["seed"] = "3"
    at.run()
    assert not at.exception and not [s for s in at.sidebar.selectbox if s.key == "model"]
    assert at.session_state["settings"]["model"] == "deltanet" and at.session_state["settings"]["seed"] == 3
    for key in list(at.query_params):  # what a click in the sidebar's page list does to the URL
        del at.query_params[key]
    at.switch_page(PAGE_FILE["stepper"])
    at.run()
    assert not at.exception
    assert not [s for s in at.sidebar.selectbox if s.key == "model"] and not at.sidebar.number_input
    assert at.session_state["settings"]["model"] == "deltanet" and at.session_state["settings"]["seed"] == 3
    hide = at.query_params["hide"]
    assert (hide if isinstance(hide, str) else ",".join(hide)) == "model,seed"


def test_a_released_session_gives_free_heap_back_to_the_os(monkeypatch):
    """app.release: on glibc, freed heap pages go back to the OS (malloc_trim returns 1); a session's
    release runs the trim a moment later; switched off, no trim."""
    import platform
    import threading

    from app import release

    chunks = [bytearray(4096) for _ in range(20_000)]  # 80 MB of small blocks: heap pages, not mmap
    del chunks  # freed, but glibc keeps them until a trim
    if platform.libc_ver()[0] == "glibc":
        assert release.trim_memory() is True  # pages went back to the OS
    monkeypatch.setenv("NESTED_MALLOC_TRIM", "0")
    assert release.trim_memory() is False
    monkeypatch.delenv("NESTED_MALLOC_TRIM")
    ran = threading.Event()
    monkeypatch.setattr(release, "TRIM_DELAY_S", 0.0)
    monkeypatch.setattr(release, "trim_memory", lambda: ran.set())
    release._released(object())
    assert ran.wait(5.0)


def test_the_memory_lesson_opens_where_the_learning_rate_drives_the_change():
    """Lesson 02's claim on its preset: hope-text writes by normalised GD, so the size of each token's change
    to layer 0's M_memory follows its self-generated learning rate eta_t (correlation 0.41 on the shipped run;
    asserted above 0.3) far more than the surprise alone (0.13), and eta_t spans more than tenfold."""
    shipped = shipped_run(PRESETS["stepper-first-look"].run_key)
    snaps = dict(shipped.snapshots[0])
    tokens = sorted(t for t in snaps if t >= 0 and t - 1 in snaps)
    change = [np.linalg.norm(snaps[t]["M_memory"] - snaps[t - 1]["M_memory"]) for t in tokens]
    surprise = shipped.array("surprise")[tokens, 0].mean(-1)  # (tokens,): mean over heads
    eta = shipped.array("eta")[tokens, 0]  # (tokens, heads)
    by_eta, by_surprise = np.corrcoef(eta.mean(-1), change)[0, 1], np.corrcoef(surprise, change)[0, 1]
    assert len(tokens) >= 40 and by_eta > 0.3 and by_eta > by_surprise + 0.15
    assert eta.max() > 10 * eta.min()
