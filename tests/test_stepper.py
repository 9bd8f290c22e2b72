"""The token stepper: its run-state (pure) and its page wiring (AppTest)."""

import json

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

import nested
from app.models import build_frozen
from app.registry import ROOT
from app.runstate import StepperRun, downsample, frozen_options
from app.textinput import TextInputError, clean_text, decode_bytes, decode_upload

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
    assert at.slider(key="stepper_slider").value == 0
    strip0 = [c.proto.spec for c in at.get("plotly_chart")]
    for _ in range(5):
        at.button(key="stepper_step").click().run()
    assert at.slider(key="stepper_slider").value == 5
    strip5 = [c.proto.spec for c in at.get("plotly_chart")]
    assert strip0[0] != strip5[0] and strip0[1] != strip5[1]  # the strip and the heatmap changed
    at.button(key="stepper_back").click().run()
    assert at.slider(key="stepper_slider").value == 4
    at.slider(key="stepper_slider").set_value(20).run()
    assert at.slider(key="stepper_slider").value == 20 and not at.exception
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
    # legacy encodings are detected and named, not read as cp1252 mojibake
    for text, codec in [("日本語のテキストです。メモリは入力によって更新されます。", "shift_jis"),
                        ("记忆是由输入引起的神经更新。这是一个中文的例子。", "gbk"),
                        ("Café crème, naïve façade — résumé déjà vu.", "cp1252")]:  # fmt: skip
        got, encoding = decode_upload(text.encode(codec))
        assert got == text, (codec, encoding)
        assert encoding != "UTF-8"
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


def _specs(at):
    return [c.proto.spec for c in at.get("plotly_chart")]


def test_every_view_control_changes_what_is_drawn():
    at = _at()
    for _ in range(3):
        at.button(key="stepper_step").click().run()
    base = _specs(at)
    at.radio(key="stepper_colour").set_value("eta").run()
    coloured = _specs(at)
    assert coloured[0] != base[0] and coloured[1:] == base[1:]  # only the strip changed
    at.selectbox(key="stepper_memory").set_value("M_k").run()
    memory = _specs(at)
    assert memory[1] != coloured[1] and "M_k after token 3" in memory[1] and memory[0] == coloured[0]
    at.selectbox(key="stepper_layer").set_value(1).run()
    layer = _specs(at)
    assert layer[1] != memory[1] and layer[3] != memory[3]  # heatmap and curves follow the layer
    at.select_slider(key="stepper_speed").set_value(10).run()
    assert not at.exception and at.select_slider(key="stepper_speed").value == 10
    at.selectbox(key="stepper_sample").set_value("Booleans").run()
    assert at.slider(key="stepper_slider").value == 0 and _specs(at)[0] != layer[0]  # a new text restarts


def test_play_is_a_timed_fragment_and_a_full_rerun_does_not_skip_a_token():
    at = _at()
    at.button(key="stepper_step").click().run()
    at.button(key="stepper_play").click().run()  # the page's own run draws; only timed reruns advance
    assert not at.exception and at.slider(key="stepper_slider").value == 1 and at.session_state["stepper_playing"]
    assert at.button(key="stepper_play").label.endswith("Pause")
    at.button(key="stepper_play").click().run()
    assert at.slider(key="stepper_slider").value == 1 and not at.session_state["stepper_playing"]


def test_two_models_side_by_side_on_the_same_stream():
    at = _at()
    at.multiselect(key="stepper_frozen").set_value(["layer 0 cms[0]", "layer 1 cms[0]"]).run()
    at.selectbox(key="stepper_compare").set_value("titans").run()
    for _ in range(4):
        at.button(key="stepper_step").click().run()
    assert not at.exception
    run, other = at.session_state["stepper_run"], at.session_state["stepper_compare_run"]
    assert other.key[0] == "titans" and other.tokens == run.tokens and other.frozen == ()
    labels = [m.value for m in at.markdown if m.value.startswith("**")]
    assert labels[:2] == ["**hope** (frozen: layer 0 cms[0], layer 1 cms[0])", "**titans**"]
    specs = _specs(at)
    assert len(specs) == 6  # two strips, the loss comparison, two heatmaps, the curves
    assert '"name":"hope (frozen)"' in specs[2] and '"name":"titans"' in specs[2]
    colours = [t["line"]["color"] for t in json.loads(specs[2])["data"]]
    assert len(set(colours)) == 2  # two hues, one per model
    assert any("the left model" in c.value and "hope" in c.value for c in at.caption)  # whose memory is shown
    assert json.loads(specs[3])["layout"]["title"]["text"].startswith("hope: ")
    assert abs(other.view(4, snapshots=False).loss[4] - run.view(4).loss[4]) > 1e-6  # two different models


def test_export_merges_live_snapshots_into_a_shipped_run():
    from app.presets import FIRST_SAMPLE, PRESETS, shipped_run

    key = PRESETS["stepper-first-look"].run_key
    assert key[3] == FIRST_SAMPLE
    preset = shipped_run(key)
    run = StepperRun(key, list(preset.tokens), preset=preset)
    model = build_frozen("hope", 0)
    run.ensure(model, 21)  # covered by the shipped run: nothing computed
    assert run.computed == 0 and run.view(20) is preset
    run.ensure(model, 3)  # token 2 is outside the shipped window: computed live
    assert run.computed == 4 and run.view(2) is run.trace
    merged = run.export_trace()
    assert len(merged) == len(preset) and merged.snapshot_at(0, 2) is not None and merged.snapshot_at(0, 20) is not None
    assert np.allclose(merged.snapshot_at(0, 2)["M_memory"], run.trace.snapshot_at(0, 2)["M_memory"])


def test_a_transformer_is_stepped_with_its_loss_strip():
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.query_params["model"] = "transformer"
    at.switch_page(STEPPER)
    at.run()
    assert not at.exception and at.radio(key="stepper_colour").options == ["loss"]
    for _ in range(3):
        at.button(key="stepper_step").click().run()
    strip = at.get("plotly_chart")[0].proto.spec
    assert '"text":"loss"' in strip and not at.exception
    assert not [c for c in at.get("plotly_chart") if "after token" in c.proto.spec]  # no memory to draw


def test_reset_returns_to_the_first_token_with_fresh_memories():
    at = _at()
    for _ in range(4):
        at.button(key="stepper_step").click().run()
    old = at.session_state["stepper_run"]
    at.button(key="stepper_reset").click().run()
    new = at.session_state["stepper_run"]
    assert not at.exception and at.slider(key="stepper_slider").value == 0
    assert new is not old and new.key == old.key and new.computed <= 2


def test_a_long_run_keeps_a_bounded_window_of_matrices_and_recomputes_any_other_exactly():
    from app.runstate import CHECKPOINT_EVERY, LIVE_SNAPSHOTS, RECOMPUTE_KEEP

    model = nested.build_model("hope", d_model=32, n_layers=2, seed=0, cms_periods=(4, 16))
    tokens = list(torch.randint(0, 256, (600,), generator=torch.Generator().manual_seed(0)))
    run = StepperRun(("x",), [int(t) for t in tokens], ("layer 1 cms[0]",))
    run.ensure(model, len(tokens))
    assert all(len(s) <= LIVE_SNAPSHOTS for s in run.trace.snapshots.values())
    assert sorted(run.checkpoints) == list(range(0, 600, CHECKPOINT_EVERY))
    full_snaps, state = {0: {}, 1: {}}, model.init_state(1, freeze="layer 1 cms[0]")
    with torch.no_grad():  # the same stream in pieces of 200 (each call keeps 256 snapshots): every one kept
        for a in range(0, 600, 200):
            out = model.stream(torch.tensor([run.tokens[a : a + 200]]), state=state, trace=True)
            state = out.state
            for i, snaps in out.trace.snapshots.items():
                full_snaps[i].update(dict(snaps))
    for t in (0, 5, 255, 256, 300, 599 - LIVE_SNAPSHOTS):
        for layer in range(2):
            got = run.snapshot(layer, t, model)
            assert got is not None and set(got) == set(full_snaps[layer][t])
            assert all(np.array_equal(got[k], full_snaps[layer][t][k]) for k in got), (t, layer)
    before0 = run.snapshot(0, -1, model)  # the initial memories, long dropped from the live ring
    assert before0 is not None and np.array_equal(before0["M_k"], model.blocks[0].mixer.snapshot(
        model.init_state(1).mixers[0])["M_k"])  # fmt: skip
    kept = sum(len(v) for v in run.recomputed.values())
    assert kept <= 2 * (4 * RECOMPUTE_KEEP + 2)  # windows near the last token asked, per layer: bounded
