"""AppTest of the continual-learning page: every control, the URL, bad input."""

import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app.continual_figures import forgetting_curves, forgetting_matrix, level_changes, level_resets, summary_rows
from app.continual_train_ui import LEARNING_RATES
from app.continual_ui import PRESET_FILE, shipped_summary
from app.registry import ROOT, page_for

MAIN = str(ROOT / "app" / "main.py")
TIMEOUT = 300


def open_page(**params) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    for k, v in params.items():
        at.query_params[k] = v
    at.run()
    at.switch_page(str(page_for("continual").path))
    return at.run()


def lab(at):
    return at.session_state["cl_lab"] if "cl_lab" in at.session_state else None  # noqa: SIM401 (no .get)


def test_first_paint_is_the_shipped_run_and_feeding_goes_live():
    at = open_page()
    assert not at.exception, [e.value for e in at.exception]
    shipped = shipped_summary()
    assert shipped is not None, f"{PRESET_FILE} is missing: python -m app.presets"
    assert any("precomputed run" in c.value for c in at.caption)
    assert lab(at) is None  # nothing computed for the first paint
    at.button(key="cl_feed_B").click().run()
    assert not at.exception
    live = lab(at)
    assert live.segments[: len(shipped["segments"])] == [tuple(s) for s in shipped["segments"]]  # continues it
    assert live.segments[-1][0] == "B" and live.pos == shipped["pos"] + 32
    run = at.query_params["cl_run"]
    assert (run if isinstance(run, str) else run[0]) == shipped["schedule"] + " B32"  # the shipped run, then B


def test_switching_mid_stream_changes_the_next_segment_and_curves_extend():
    at = open_page(cl_models=["Titans"])
    at.button(key="cl_feed_A").click().run()
    n0 = len(lab(at).positions)
    spec0 = at.get("plotly_chart")[0].proto.spec
    at.select_slider(key="cl_step").set_value(16).run()
    at.button(key="cl_feed_C").click().run()
    assert not at.exception
    assert [s[0] for s in lab(at).segments] == ["A", "C"] and lab(at).segments[1] == ("C", 32, 48)
    assert len(lab(at).positions) == n0 + 1 and at.get("plotly_chart")[0].proto.spec != spec0
    at.button(key="cl_feed_C").click().run()  # the same task again continues its segment
    assert lab(at).segments[-1] == ("C", 32, 64)


def test_the_url_restores_the_run():
    at = open_page(cl_models=["Titans", "Transformer, window 64"], cl_run="A32 B16", cl_seed="3")
    assert not at.exception
    run = lab(at)
    assert run.segments == [("A", 0, 32), ("B", 32, 48)] and run.seed == 3
    assert [lr.name for lr in run.learners] == ["Titans", "Transformer, window 64"]


def test_a_typed_schedule_runs_and_a_bad_one_keeps_the_run():
    at = open_page(cl_models=["Titans"])
    at.text_input(key="cl_schedule").set_value("A32 B32 A16").run()
    at.button(key="cl_run_schedule").click().run()
    assert not at.exception and lab(at).segments == [("A", 0, 32), ("B", 32, 64), ("A", 64, 80)]
    for bad in ["AXQ", "A99999", "T"]:  # unknown letter, absurd length, your text without text
        at.text_input(key="cl_schedule").set_value(bad).run()
        at.button(key="cl_run_schedule").click().run()
        assert not at.exception and at.error, bad
        assert lab(at).segments == [("A", 0, 32), ("B", 32, 64), ("A", 64, 80)]


def test_your_text_is_a_task_and_a_megabyte_is_cut_with_a_note():
    at = open_page(cl_models=["Titans"])
    at.text_area(key="cl_text").set_value("the cat sat on the mat. " * 40).run()
    at.button(key="cl_feed_T").click().run()
    assert not at.exception and lab(at).segments[-1][0] == "T"
    assert bytes(lab(at).tokens[:24]).decode() == "the cat sat on the mat. "
    at.text_area(key="cl_text").set_value("x" * 1_000_000)
    at.run()
    assert not at.exception and any("streams the first" in c.value for c in at.caption)


@pytest.mark.parametrize("params", [{"cl_run": "<script>"}, {"cl_run": "A99999"}, {"cl_seed": "-5"},
                                    {"cl_models": ["nope"]}, {"cl_regime": "??"}, {"cl_step": "7"}])  # fmt: skip
def test_garbage_url_values_never_raise(params):
    at = open_page(**params)
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Continual learning, live"


def test_the_frozen_hope_learner_freezes_the_chosen_level():
    at = open_page(cl_models=["Hope", "Hope, level frozen"], cl_frozen="layer 0 cms[0]")
    at.button(key="cl_feed_A").click().run()
    assert not at.exception
    names = [lr.name for lr in lab(at).learners]
    assert names == ["Hope", "Hope, layer 0 cms[0] frozen"]
    changes = lab(at).segment_changes(names[1])[-1]
    assert changes["layer 0 cms[0]"] == 0.0


def test_freeze_now_stops_the_level_where_the_stream_is_and_the_curves_mark_it():
    """Feed A, press "Freeze now": the run replays with the level learning until that token only (its
    weights then equal those at the press), the URL keeps the token, the curves mark it; Hope beside it
    learns on."""
    at = open_page(cl_models=["Hope", "Hope, level frozen"], cl_frozen="layer 1 cms[1]", cl_step="64")
    at.button(key="cl_feed_A").click().run()
    before = lab(at).learners[1].state.cms[1].weights[1]
    at.button(key="cl_freeze_now").click().run()
    assert not at.exception
    assert at.session_state["cl_frozen_at"] == 64 and at.query_params["cl_frozen_at"] == "64"
    replayed = lab(at).learners[1]
    assert replayed.name == "Hope, layer 1 cms[1] frozen from token 64" and replayed.freeze_at == 64
    assert all(a.equal(b) for a, b in zip(before, replayed.state.cms[1].weights[1], strict=True))
    at.button(key="cl_feed_B").click().run()
    after = lab(at).learners
    assert all(a.equal(b) for a, b in zip(before, after[1].state.cms[1].weights[1], strict=True))
    assert not after[0].state.cms[1].weights[1][0].equal(before[0])  # the free Hope's level learned on
    fig = at.get("plotly_chart")[0].proto.spec
    assert "frozen from here" in fig and "from token 64" in fig


def test_figures_draw_every_model_task_and_segment():
    s = shipped_summary()
    fig = forgetting_curves(s)
    lines = [tr for tr in fig.data if tr.type == "scatter" and tr.name != "chance"]
    assert len(lines) == len(s["models"]) * len(s["tasks"])
    assert all(len(tr.x) == len(s["positions"]) for tr in lines)
    assert {a.text for a in fig.layout.annotations} >= {f"<b>{t}</b>" for t, _, _ in s["segments"]}
    m = next(iter(s["models"]))
    assert forgetting_matrix(s, m).data[0].z.shape == (len(s["segments"]), len(s["tasks"]))
    hope = s["models"]["Hope"]
    assert level_resets(s, "Hope").data[0].z.shape == (1 + len(hope["resets"]), len(s["tasks"]))
    assert level_changes(s, "Hope").data[0].z.shape[1] == len(s["segments"])
    rows = summary_rows(s)
    assert len(rows) == len(s["models"]) * len(s["segments"])
    json.dumps(rows)


def test_across_training_tab_draws_every_optimizer_task_and_memory():
    at = open_page(cl_models=["Titans"])
    assert not at.exception
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    curves = next(s for s in specs if any("held-out MSE" in str(ax) for ax in s["layout"].values()))
    names = {(d["name"], d["legendgroup"]) for d in curves["data"]}
    assert {n for n, _ in names} == {"task A", "task B", "task C"}  # the default ABAC never trains D
    assert len(curves["data"]) == 3 * 3  # three optimizers
    memories = next(s for s in specs if s["layout"].get("title", {}).get("text") == "The optimizers' own memories")
    assert {"m3: M1", "m3: M2", "adam: exp_avg", "momentum: momentum_buffer"} <= {d["name"] for d in memories["data"]}
    at.text_input(key="ct_schedule").set_value("AZ").run()
    assert not at.exception and any("not a task here" in e.value for e in at.error)
    at.text_input(key="ct_schedule").set_value("AB").run()
    at.multiselect(key="ct_optimizers").set_value(["momentum"]).run()
    kept = [c.proto.spec for c in at.get("plotly_chart")]
    at.toggle(key="ct_reset").set_value(True).run()
    assert not at.exception and [c.proto.spec for c in at.get("plotly_chart")] != kept  # momentum remembers


def test_the_shipped_run_equals_a_live_run():
    from app.continual_ui import DEFAULT_SETUP, new_lab
    from app.models import build_frozen
    from nested.continual import Schedule

    shipped = shipped_summary()
    live = new_lab(DEFAULT_SETUP, lambda name: build_frozen(name, 0, device="cpu"))
    live.replay(Schedule.parse(shipped["schedule"], live.tasks))
    now = live.summary()
    assert now["segments"] == shipped["segments"] and now["positions"] == shipped["positions"]
    for name, info in shipped["models"].items():
        np.testing.assert_allclose(now["models"][name]["curves"], info["curves"], atol=1e-6, err_msg=name)
        assert now["models"][name]["resets"].keys() == info["resets"].keys()


def test_a_new_setup_streams_the_same_schedule():
    at = open_page(cl_models=["Titans"])
    at.button(key="cl_feed_A").click().run()
    at.button(key="cl_feed_B").click().run()
    at.multiselect(key="cl_models").set_value(["Titans", "Transformer, window 64"]).run()
    assert not at.exception
    assert lab(at).segments == [("A", 0, 32), ("B", 32, 64)]
    assert [lr.name for lr in lab(at).learners] == ["Titans", "Transformer, window 64"]
    assert len(lab(at).curves["Transformer, window 64"]) == len(lab(at).positions)


def test_a_model_that_did_not_learn_the_languages_is_said_so():
    import nested
    from app.continual_ui import LAB_MODELS, LEARNED_BAR
    from nested.checkpoint import CHECKPOINTS

    at = open_page(cl_models=list(LAB_MODELS))
    expected = set()
    for label, name in LAB_MODELS.items():
        path = CHECKPOINTS / name
        score = nested.load(path).checkpoint_meta["continual_eval"]["probe_mean"] if path.is_dir() else None
        if score is None or score < LEARNED_BAR:
            expected.add(label)
    warned = {w.value.split("**")[1] for w in at.warning if w.value.startswith("**")}
    assert warned == expected


def test_the_forgetting_lesson_opens_on_its_effect():
    """Lesson 04 opens on the shipped run (A B A C, 128 symbols each): the window Transformer knows A at the
    end of A, still at 32 tokens into B (A is in its 64-token window), and is at chance 64 tokens into B."""
    shipped = shipped_summary()
    at = {p: i for i, p in enumerate(shipped["positions"])}
    window = np.array(shipped["models"]["Transformer, window 64"]["curves"])[:, shipped["tasks"].index("A")]
    assert window[at[128]] >= 0.9 and window[at[160]] >= 0.9
    assert window[at[192]] <= shipped["chance"] + 0.05 and window[at[256]] <= shipped["chance"] + 0.05
    assert window[at[384]] >= 0.9  # and relearns A when A streams again


def test_across_training_tab_trains_e5_learners_and_reports_their_recovery():
    at = open_page(cl_models=["Titans"])
    at.multiselect(key="ct_optimizers").set_value(["adam"]).run()
    at.text_input(key="ct_schedule").set_value("ABA").run()
    at.select_slider(key="ct_steps").set_value(100).run()
    at.multiselect(key="ct_learners").set_value(["MLP", "CMS nested C=(1, 32, 512)", "fast/slow weights"]).run()
    assert not at.exception
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    curves = next(s for s in specs if any("held-out MSE" in str(ax) for ax in s["layout"].values()))
    titles = {a["text"] for a in curves["layout"]["annotations"]}
    assert {"<b>adam · MLP (lr 0.01)</b>", "<b>adam · CMS nested C=(1, 32, 512) (lr 0.01)</b>",
            "<b>adam · fast/slow weights (lr 0.01)</b>"} <= titles  # fmt: skip
    returns = next(d.value for d in at.dataframe if "online loss" in d.value.columns)
    assert list(returns["run"]) == ["adam · MLP", "adam · CMS nested C=(1, 32, 512)", "adam · fast/slow weights"]
    assert list(returns["values stored"]) == [2632, 4324, 2640]
    assert (returns["lost: A at its return 1"] > 1.0).all()  # every learner forgets A while it learns B
    assert at.query_params["ct_learners"] == ["MLP", "CMS nested C=(1, 32, 512)", "fast/slow weights"]
    at.multiselect(key="ct_optimizers").set_value(list(LEARNING_RATES)).run()  # 6 x 3 trainings: refused, kept
    assert not at.exception and any("at most 8" in e.value for e in at.error)
    at.multiselect(key="ct_optimizers").set_value(["adam"]).run()
    at.text_input(key="ct_schedule").set_value("ABACABACABAC").run()
    at.select_slider(key="ct_steps").set_value(2000).run()
    assert not at.exception and any("over 20,000 steps" in e.value for e in at.error)


def test_the_e5_claims_link_opens_the_across_training_tab_on_its_learners():
    from app.claims import CLAIMS

    claim = next(c for c in CLAIMS if c.key == "cms-forgets-slower")
    at = open_page(**claim.params)
    assert not at.exception
    assert at.multiselect(key="ct_learners").value == claim.params["ct_learners"]
    assert at.select_slider(key="ct_steps").value == 2000 and at.text_input(key="ct_schedule").value == "ABA"
    returns = next(d.value for d in at.dataframe if "online loss" in d.value.columns)
    assert list(returns["run"]) == [f"adam · {learner}" for learner in claim.params["ct_learners"]]
