"""The token stepper: its run-state (pure) and its page wiring (AppTest)."""

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app.models import build_frozen
from app.registry import ROOT
from app.runstate import StepperRun, downsample, frozen_options
from app.textinput import TextInputError, clean_text, decode_bytes

MAIN = str(ROOT / "app" / "main.py")
STEPPER = str(ROOT / "pages" / "stepper.py")


def _at():
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.run()
    at.switch_page(STEPPER)
    return at.run()


def test_step_back_and_scrub_move_the_index_and_the_plots():
    at = _at()
    assert not at.exception
    assert at.slider(key="stepper_index").value == 0
    strip0 = [c.proto.spec for c in at.get("plotly_chart")]
    for _ in range(5):
        at.button(key="stepper_step").click().run()
    assert at.slider(key="stepper_index").value == 5
    strip5 = [c.proto.spec for c in at.get("plotly_chart")]
    assert strip0[0] != strip5[0] and strip0[1] != strip5[1]  # the strip and the heatmap changed
    at.button(key="stepper_back").click().run()
    assert at.slider(key="stepper_index").value == 4
    at.slider(key="stepper_index").set_value(20).run()
    assert at.slider(key="stepper_index").value == 20 and not at.exception
    assert "Token 20" in " ".join(m.value for m in at.markdown)


def test_bad_text_gets_a_message_and_keeps_the_run():
    at = _at()
    at.button(key="stepper_step").click().run()
    at.radio(key="stepper_source").set_value("Type or paste").run()
    at.text_area(key="stepper_typed").set_value("\x00\x01\x02").run()
    assert not at.exception
    assert any("empty" in e.value for e in at.error)
    at.text_area(key="stepper_typed").set_value("héllo 👋 wörld\x07").run()
    assert not at.exception and any("control" in i.value for i in at.info)


def test_freezing_every_level_makes_eta_zero():
    model = build_frozen("hope", 0)
    opts = frozen_options(model)
    assert "layer 0 memories" in opts and "layer 1 cms[1]" in opts
    run = StepperRun(("hope", 0, "x", tuple(opts)), list(b"hello hello hello"), tuple(opts))
    run.ensure(model, 17)
    assert (run.trace.array("eta") == 0).all()
    assert not [e for e in run.trace.updates if e.component.startswith("cms") and e.norm > 0]


def test_run_state_streams_lazily_and_matches_one_stream():
    model = build_frozen("hope", 0)
    text = list(b"The sky is blue. The sky is blue.")
    lazy = StepperRun(("hope", 0, "t", ()), text)
    for upto in (1, 5, 18, len(text)):
        lazy.ensure(model, upto)
    whole = StepperRun(("hope", 0, "t", ()), text)
    whole.ensure(model, len(text))
    assert np.allclose(lazy.trace.array("surprise"), whole.trace.array("surprise"), atol=1e-5)
    now, before = lazy.matrices(0, 3)
    assert now["M_memory"].shape == before["M_memory"].shape and not np.allclose(now["M_memory"], before["M_memory"])


def test_text_input_rules():
    assert decode_bytes("héllo".encode("utf-16")) == "héllo"
    assert decode_bytes("héllo".encode("cp1252")) == "héllo"
    with pytest.raises(TextInputError, match="binary"):
        decode_bytes(b"\x89PNG\x00\x00\x00")
    with pytest.raises(TextInputError, match="limit"):
        decode_bytes(b"a" * 2_000_001)
    text, notes = clean_text("a" * 10_000_000)
    assert len(text.encode()) == 2000 and notes
    with pytest.raises(TextInputError, match="empty"):
        clean_text("  \n ")
    cut, _ = clean_text("é" * 1500)  # never cut inside a character
    assert cut == "é" * 1000


def test_downsample_keeps_large_matrices_under_256():
    m = np.arange(600 * 300, dtype=float).reshape(600, 300)
    d = downsample(m)
    assert max(d.shape) <= 256 and abs(d.mean() - m.mean()) / m.mean() < 0.01
    assert downsample(np.ones((32, 32))).shape == (32, 32)
