"""AppTest of the M3-live page (pages/race.py): the precomputed race, every control, divergence, isolation."""

import pytest

from app import race_ui
from app.race_figures import (
    accuracy_figure,
    layer_figure,
    loss_figure,
    memory_figure,
    spectrum_figure,
    step_time_figure,
)
from nested.race import BEST_LR, Race, RaceConfig
from tests.apptest import chart, open_page


@pytest.fixture(autouse=True)
def unhurried(monkeypatch):
    """A Step press trains its steps unless they take STEP_SECONDS: on a loaded test machine that bound
    would make the counts below depend on timing (the bound itself: test_a_tick_is_bounded_in_time)."""
    monkeypatch.setattr(race_ui, "STEP_SECONDS", 120.0)


def live(at):
    return at.session_state["race_live"] if "race_live" in at.session_state else None  # noqa: SIM401


@pytest.mark.parametrize("task", list(race_ui.TASKS))
def test_the_shipped_race_is_the_default_race_and_it_learned(task):
    rec = race_ui.shipped(task)
    assert rec is not None, f"{race_ui.preset_file(task)} is missing: python -m app.race_ui"
    setup = race_ui.default_setup(task)
    assert rec["config"]["optimizers"] == list(setup.optimizers) and rec["config"]["lrs"] == dict(setup.lrs)
    assert rec["config"]["lrs"] == {n: BEST_LR[task][n] for n in setup.optimizers}  # presets follow the grid
    assert set(BEST_LR[task].values()) <= set(race_ui.LR_CHOICES)  # every best rate can be picked
    chance = {"digits": 0.1, "bytes": 1 / 256}[task]
    for name, r in rec["runners"].items():
        assert len(r["history"]) == race_ui.PRESET_STEPS and r["diverged"] is None
        final = [h for h in r["history"] if "test_accuracy" in h][-1]["test_accuracy"]
        assert final > {"digits": 0.9, "bytes": 0.3}[task] > chance * 5, name  # a race shows learning


def test_first_paint_is_precomputed_and_step_goes_live_from_step_zero():
    at = open_page("race")
    assert not at.exception, [e.value for e in at.exception]
    assert any("precomputed race" in c.value for c in at.caption) and live(at) is None
    assert len(at.get("plotly_chart")) == 6
    at.button(key="race_step").click().run()
    assert not at.exception
    race = live(at)
    assert race is not None and race.steps == 5  # the default steps per tick, from step 0
    shipped = race_ui.shipped("digits")
    for name, r in race.runners.items():  # the live race retraces the shipped one (to float32 rounding: the
        # shipped race was run on another CPU, whose kernels may round differently)
        want = [h["loss"] for h in shipped["runners"][name]["history"][:5]]
        assert [h["loss"] for h in r.history] == pytest.approx(want, rel=1e-5, abs=1e-6)
    assert any(c.value.startswith("Step 5") for c in at.caption)
    at.select_slider(key="race_per_tick").set_value(2).run()
    at.button(key="race_step").click().run()
    assert live(at).steps == 7
    at.button(key="race_reset").click().run()
    assert live(at) is None


def test_play_advances_only_on_its_timed_ticks_and_step_still_works():
    at = open_page("race", race_optimizers=["sgd", "m3"])
    assert any("Press **Step**" in m.value for m in at.info)  # not the default race: nothing precomputed
    at.toggle(key="race_play").set_value(True).run()
    # a full rerun (any control) never trains: only the fragment's timed reruns do (tests/test_browser.py)
    assert not at.exception and live(at) is None
    at.button(key="race_step").click().run()
    race = live(at)
    assert race is not None and race.steps == 5 and set(race.runners) == {"sgd", "m3"}


def test_an_absurd_learning_rate_diverges_is_reported_and_the_rest_goes_on():
    at = open_page("race", race_optimizers=["sgd", "adamw"])
    at.select_slider(key="race_lr_digits_sgd").set_value(100.0).run()
    for _ in range(3):
        at.button(key="race_step").click().run()
    assert not at.exception
    assert any("SGD + momentum diverged at step" in w.value for w in at.warning)
    race = live(at)
    assert race.runners["adamw"].steps == 15 and race.runners["sgd"].steps < 15


def test_controls_change_the_race():
    at = open_page("race")
    at.radio(key="race_task").set_value("bytes").run()
    assert not at.exception and any("precomputed race" in c.value for c in at.caption)
    at.number_input(key="race_seed").set_value(3).run()
    assert any("Press **Step**" in m.value for m in at.info)  # another seed: no precomputed race
    at.button(key="race_step").click().run()
    assert live(at).cfg.seed == 3 and live(at).cfg.task == "bytes"
    at.multiselect(key="race_optimizers").set_value([]).run()
    assert any("at least one optimizer" in m.value for m in at.info)


def test_the_detail_picker_draws_that_optimizers_layers():
    at = open_page("race")
    at.selectbox(key="race_detail").set_value("muon").run()
    assert not at.exception
    spec = chart(at, "race_layers")
    assert "Muon" in spec["layout"]["title"]["text"] and spec["data"][0]["y"] == ["hidden.weight"]


def test_two_sessions_never_share_a_race():
    a, b = open_page("race"), open_page("race")
    a.button(key="race_step").click().run()
    assert live(a).steps == 5 and live(b) is None
    b.button(key="race_step").click().run()
    assert live(a) is not live(b) and live(a).runners["m3"].model is not live(b).runners["m3"].model


def test_a_tick_is_bounded_in_time():
    race = Race(RaceConfig(task="bytes", optimizers=("adamw",)))
    done = race_ui.advance(race, 1000, budget=0.0)  # no budget: at most the step already begun
    assert done <= 1 and race.steps == done


def test_figures_draw_every_runner_and_mark_m3s_slow_updates():
    race = Race(RaceConfig(task="digits", optimizers=("adamw", "m3"), eval_every=5))
    race.advance(25)
    rec = race.record()
    assert {t["name"] for t in loss_figure(rec).data} >= {"AdamW", "M3"}
    assert len(accuracy_figure(rec, 0.1).data[0].x) == 5
    slow = [t for t in memory_figure(rec).data if "slow memory updates" in t.name]
    assert len(slow) == 1 and list(slow[0].x) == [11, 21]
    assert [t.name for t in step_time_figure(rec).data] == ["whole step (forward, backward, update)",
                                                           "the optimizer's update"]  # fmt: skip
    names = {t.name for t in spectrum_figure(rec).data}
    assert "M3: momentum after NS" in names and "AdamW: momentum after NS" not in names
    assert layer_figure(rec, "m3").data[0].y == ("hidden.weight",)
