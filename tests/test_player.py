"""The stepper's browser-side player: what the server sends it (app/player.py), checked against the run it
shows. (The page wiring is in tests/test_stepper.py; the browser's playback in tests/test_browser.py.)"""

import json

import numpy as np
import pytest

from app import player
from app.figures import symlog
from app.models import build_frozen
from app.runstate import StepperRun, downsample

TEXT = list(b"Memory is a neural update caused by an input. " * 2)


@pytest.fixture(scope="module")
def hope():
    model = build_frozen("hope", 0)
    run = StepperRun(("hope", 0, "x", ()), TEXT)
    run.ensure(model, 40)
    return model, run


def test_quantize_keeps_the_symlog_scale_to_one_step_of_254():
    rng = np.random.default_rng(0)
    m = rng.standard_normal((7, 5)) * 10.0 ** rng.uniform(-7, 0, (7, 5))
    for zmax in (1.0, 0.1):
        back = player.dequantize(player.quantize(m, zmax), m.shape, zmax)
        step = 2 * float(symlog(zmax)) / 254
        assert np.all(np.abs(symlog(back) - symlog(np.clip(m, -zmax, zmax))) <= step / 2 + 1e-9)
    assert player.dequantize(player.quantize(np.zeros((2, 2)), 1.0), (2, 2), 1.0).tolist() == [[0, 0], [0, 0]]
    assert player.dequantize(player.quantize(np.array([[5.0, -5.0]]), 1.0), (1, 2), 1.0)[0] == pytest.approx([1, -1])


def test_frames_are_the_runs_matrices_and_their_change(hope):
    model, run = hope
    frames = player.frames(run, model, 3, 9, 1, "M_memory")
    for i, f in zip(range(3, 9), frames, strict=True):
        now = downsample(run.snapshot(1, i, model)["M_memory"], player.HEAT_SIDE)
        before = downsample(run.snapshot(1, i - 1, model)["M_memory"], player.HEAT_SIDE)
        assert f["shape"] == list(now.shape)
        assert f["max"] == pytest.approx(
            np.abs(run.snapshot(1, i, model)["M_memory"]).max(), rel=1e-2
        )  # said on screen
        assert f["m"] == player.quantize(now, player.HEAT_ZMAX) and f["d"] == player.quantize(
            now - before, player.CHANGE_ZMAX
        )
    assert player.frames(run, model, 0, 2, 0, "no such memory") == [None, None]


def test_scalars_follow_the_trace_and_the_colour(hope):
    model, run = hope
    tr = run.trace
    rows = player.scalars(run, None, 0, 35, 0, "eta")
    eta = tr.array("eta")[:35, 0].mean(-1)
    assert [r["v"] for r in rows] == pytest.approx(eta, abs=1e-5) and [r["eta"] for r in rows] == [r["v"] for r in rows]
    assert [r["loss"] for r in rows] == pytest.approx(tr.array("loss")[:35], abs=1e-5)
    assert [i for i, r in enumerate(rows) if r["cms"]] == tr.ticks(0, "cms", upto=34)  # the dotted CMS lines
    assert rows[0]["top"][0][0] and len(rows[0]["top"]) == tr.top_k
    by_loss = player.scalars(run, None, 0, 5, 0, "loss")
    assert [r["v"] for r in by_loss] == [r["loss"] for r in by_loss]


def test_the_last_token_has_no_loss_and_the_payload_is_json(hope):
    model = hope[0]
    run = StepperRun(("hope", 0, "short", ()), list(b"abcdef"))
    run.ensure(model, 6)
    data = player.payload(run, None, model, 4, layer=0, memory="M_memory", colour="surprise", cmd={"seq": 0}, names={})
    assert data["frames_from"] == 4 and len(data["frames"]) == 2 and len(data["scalars"]) == 6  # clipped to the stream
    assert data["scalars"][-1]["loss"] is None  # the next byte is unknown: null, never NaN
    json.loads(json.dumps(data, allow_nan=False))  # strict JSON: the browser parses it


def test_a_new_view_has_a_new_signature(hope):
    _, run = hope
    sig = player.view_signature(run, None, 0, "M_memory", "surprise")
    assert sig == player.view_signature(run, None, 0, "M_memory", "surprise")
    changed = [player.view_signature(run, None, 1, "M_memory", "surprise"),
               player.view_signature(run, None, 0, "M_k", "surprise"),
               player.view_signature(run, None, 0, "M_memory", "eta"),
               player.view_signature(StepperRun(("hope", 0, "x", ("layer 0 memories",)), TEXT, ("layer 0 memories",)),
                                     None, 0, "M_memory", "surprise")]  # fmt: skip
    assert sig not in changed and len(set(changed)) == 4


def test_the_window_around_a_position_holds_sixteen_tokens_before_it():
    assert player.window_around(0) == 0 and player.window_around(20) == 5 and player.window_around(400) == 385
    assert 400 - player.window_around(400) < player.WINDOW


def test_samples_are_prose_without_rst_furniture():
    from app.samples import prose, sample_texts

    rst = 'Title\n*****\n\nIt is *used* to do it:\n\n   grammar ::= "x"\n\nThen  **more**\ntext.\n'
    assert prose(rst) == "It is used to do it. Then more text."
    for title, text in sample_texts().items():
        assert len(text) > 1000 and "::=" not in text and "***" not in text and " *" not in text, title
        assert "  " not in text and text[0].isupper(), title
