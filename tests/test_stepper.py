"""The token stepper: its run-state (pure) and its page wiring (AppTest)."""

import json

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

import nested
from app import player
from app.models import build_frozen, decode_token
from app.player import WINDOW
from app.registry import ROOT
from app.runstate import StepperRun, downsample, frozen_options
from app.textinput import TextInputError, clean_text, decode_bytes, decode_upload
from tests.apptest import player_data, report, step

MAIN = str(ROOT / "app" / "main.py")
STEPPER = str(ROOT / "pages" / "stepper.py")


def _at():
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.run()
    at.switch_page(STEPPER)
    return at.run()


def test_the_player_gets_a_window_ahead_and_its_reports_move_the_index():
    at = _at()
    assert not at.exception
    first = player_data(at)
    assert first["frames_from"] == 0 and len(first["frames"]) == WINDOW and first["scalars_from"] == 0
    assert len(first["scalars"]) == WINDOW and first["cmd"]["index"] == 0 and first["cmd"]["playing"] is False
    run = at.session_state["stepper_run"]
    assert [s["c"] for s in first["scalars"][:3]] == [decode_token(t) for t in run.tokens[:3]]
    report(at, 5)  # the browser stepped to 5 and rests there: nothing to compute or send
    assert at.session_state["stepper_index"] == 5 and at.query_params["stepper_index"] == "5"
    light = player_data(at)
    assert light["frames"] == [] and light["scalars"] == [] and light["sig"] == first["sig"]
    ahead = report(at, 20, playing=True, need={"start": 32, "nonce": 1})  # playing, it asks for the next window
    data = player_data(ahead)
    assert data["frames_from"] == 32 and len(data["frames"]) == WINDOW and data["scalars_from"] == 0
    assert len(data["scalars"]) == 64 and at.session_state["stepper_playing"]
    assert player_data(report(at, 21, playing=True, need={"start": 32, "nonce": 1}))["frames"] == []  # served once
    at.toggle(key="stepper_figures").set_value(True).run()  # the figures of the token it rests on
    assert not at.exception and "Figures of token 21" in " ".join(m.value for m in at.markdown)


def test_bad_text_gets_a_message_and_keeps_the_run():
    at = step(_at())
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
    at = step(_at(), 3)
    base = player_data(at)  # a light payload: the browser holds the frames of this view
    at.radio(key="stepper_colour").set_value("eta").run()
    coloured = player_data(at)
    assert coloured["sig"] != base["sig"] and coloured["names"]["colour"] == "eta" and coloured["frames_from"] == 0
    strip = [s["v"] for s in coloured["scalars"]]
    assert strip == [s["eta"] for s in coloured["scalars"]]  # the strip's value is now the learning rate
    at.selectbox(key="stepper_memory").set_value("M_k").run()
    memory = player_data(at)
    assert memory["names"]["memory"] == "M_k" and memory["frames"][3]["m"] != coloured["frames"][3]["m"]
    assert [s["v"] for s in memory["scalars"]] == strip
    at.selectbox(key="stepper_layer").set_value(1).run()
    layer = player_data(at)
    assert layer["frames"][3]["m"] != memory["frames"][3]["m"] and layer["scalars"][3]["eta"] != strip[3]
    at.select_slider(key="stepper_speed").set_value(10).run()
    assert not at.exception and player_data(at)["cmd"]["speed"] == 10 and "index" not in player_data(at)["cmd"]
    at.selectbox(key="stepper_sample").set_value("Booleans").run()
    restarted = player_data(at)
    assert at.session_state["stepper_index"] == 0 and restarted["cmd"]["index"] == 0  # a new text restarts
    assert restarted["scalars"][0]["c"] != layer["scalars"][0]["c"] or restarted["n"] != layer["n"]


def test_a_report_sent_before_the_servers_last_move_is_ignored():
    at = step(_at(), 6)
    old_seq = at.session_state["_player_cmd"]["seq"]
    at.button(key="stepper_reset").click().run()  # the server moves the player back to 0
    cmd = player_data(at)["cmd"]
    assert cmd["seq"] == old_seq + 1 and cmd["index"] == 0 and cmd["playing"] is False
    report(at, 9, seq=old_seq)  # in flight before the browser applied the reset: stale
    assert at.session_state["stepper_index"] == 0
    report(at, 2)
    assert at.session_state["stepper_index"] == 2 and not at.exception


def test_two_models_side_by_side_on_the_same_stream():
    at = _at()
    at.multiselect(key="stepper_frozen").set_value(["layer 0 cms[0]", "layer 1 cms[0]"]).run()
    data = player_data(at.selectbox(key="stepper_compare").set_value("titans").run())  # a new view: a new window
    step(at, 4)
    assert not at.exception
    run, other = at.session_state["stepper_run"], at.session_state["stepper_compare_run"]
    assert other.key[0] == "titans" and other.tokens == run.tokens and other.frozen == ()
    assert data["names"]["main"] == "hope" and data["names"]["other"] == "titans"
    row = data["scalars"][4]
    assert abs(row["cmp_loss"] - row["loss"]) > 1e-6 and row["cmp_loss"] == pytest.approx(
        other.view(4, False).loss[4], abs=1e-4
    )
    at.toggle(key="stepper_figures").set_value(True).run()
    specs = _specs(at)
    assert len(specs) == 6  # two strips, the loss comparison, two heatmaps, the curves
    assert '"name":"hope (frozen)"' in specs[2] and '"name":"titans"' in specs[2]
    colours = [t["line"]["color"] for t in json.loads(specs[2])["data"]]
    assert len(set(colours)) == 2  # two hues, one per model


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
    data = player_data(at)
    assert data["names"]["memory"] is None and data["names"]["rates"] == []  # no memory, no rates to draw
    assert data["frames"] == [None] * len(data["frames"]) and "eta" not in data["scalars"][0]
    assert [s["v"] for s in data["scalars"][:3]] == [s["loss"] for s in data["scalars"][:3]]
    at.toggle(key="stepper_figures").set_value(True).run()
    strip = at.get("plotly_chart")[0].proto.spec
    assert '"text":"loss"' in strip and not at.exception
    assert not [c for c in at.get("plotly_chart") if "after token" in c.proto.spec]  # no memory to draw


def test_reset_returns_to_the_first_token_with_fresh_memories():
    at = step(_at(), 4)
    old = at.session_state["stepper_run"]
    at.button(key="stepper_reset").click().run()
    new = at.session_state["stepper_run"]
    assert not at.exception and at.session_state["stepper_index"] == 0 and player_data(at)["cmd"]["index"] == 0
    # a new run: only what the window around token 0 lacks from the shipped run (tokens 0-3's matrices) is computed
    assert new is not old and new.key == old.key and new.computed <= 5


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


def test_a_far_jump_streams_in_bounded_pieces_with_progress():
    from app.stepper_view import STREAM_BUDGET

    at = _at()
    at.radio(key="stepper_source").set_value("Type or paste").run()
    at.text_area(key="stepper_typed").set_value("a long typed text, streamed live. " * 40).run()  # 1,360 bytes
    n = len(at.session_state["stepper_run"].tokens)
    assert at.session_state["stepper_run"].computed <= 2 * player.WINDOW  # the page streams nothing ahead
    done = []
    for k in range(8):  # the browser asks for the window at the end until it comes (it asks again on progress)
        data = player_data(report(at, n - 1, need={"start": (n - 1) // 32 * 32, "nonce": f"far{k}"}))
        if "progress" not in data:
            break
        assert data["frames"] == [] and data["progress"]["target"] == n
        done.append(data["progress"]["done"])
    assert done and all(b - a == STREAM_BUDGET for a, b in zip(done, done[1:], strict=False))  # bounded pieces
    assert data["frames_from"] == (n - 1) // 32 * 32 and data["frames"][-1] is not None  # then the window
    assert at.session_state["stepper_run"].computed == n and not at.exception


def test_a_seed_cannot_change_a_trained_model_so_nothing_is_recomputed():
    at = step(_at(), 3)  # the shipped hope
    run = at.session_state["stepper_run"]
    at.sidebar.number_input(key="seed").set_value(5).run()
    assert at.session_state["stepper_run"] is run and at.session_state["stepper_index"] == 3  # the same run
    assert any("does not change its weights" in c.value for c in at.sidebar.caption)
    at.sidebar.selectbox(key="model").set_value("deltanet").run()  # untrained: the seed makes its weights
    assert at.session_state["stepper_run"].key[:2] == ("deltanet", 5)
    assert not any("does not change its weights" in c.value for c in at.sidebar.caption)
