"""The optimizers-as-memories page: its figures (pure) and its wiring (AppTest)."""

import numpy as np
from streamlit.testing.v1 import AppTest

from app.opt_figures import COLOURS, PROBE_SWITCH, probe, race, race_figure
from app.registry import ROOT

MAIN = str(ROOT / "app" / "main.py")
PAGE = str(ROOT / "pages" / "optimizers.py")


def _at(**params):
    at = AppTest.from_file(MAIN, default_timeout=120)
    for k, v in params.items():
        at.query_params[k] = v
    at.switch_page(PAGE)
    return at.run()


def test_race_paths_start_together_and_momentum_remembers_longer():
    sgd, mom = race("quadratic", "sgd", 0.01, 100), race("quadratic", "momentum", 0.01, 100)
    assert np.allclose(sgd.points[0], mom.points[0]) and not np.allclose(sgd.points[5], mom.points[5])
    assert "momentum_buffer" in mom.memories and not sgd.memories
    _, h_sgd = probe("sgd", 0.01)
    cos_mom, h_mom = probe("momentum", 0.01)
    assert h_sgd == 1 and h_mom is not None and h_mom > 1 and cos_mom[PROBE_SWITCH - 1] > 0.99


def test_m3_shows_its_slow_memory():
    m3 = race("fig4", "m3", 0.05, 60)
    assert {"M1", "M2"} <= set(m3.memories)
    slow = np.linalg.norm(m3.memories["M2"], axis=-1)
    assert len(np.unique(np.round(slow, 12))) < len(slow) / 2  # the slow level changes once per period


def test_race_figure_draws_paths_up_to_the_step():
    paths = {"sgd": race("quadratic", "sgd", 0.05, 50)}
    fig = race_figure("quadratic", paths, 10)
    line = next(t for t in fig.data if t.name == "sgd")
    assert len(line.x) == 11
    contour = fig.data[0]  # the shades are explained: a colour bar in loss above the minimum, log ticks
    assert contour.showscale and contour.colorbar.title.text == "loss − min"
    ticks = [float(t) for t in contour.colorbar.ticktext]
    assert ticks == sorted(ticks) and len(ticks) >= 3


def test_page_controls_change_the_race_and_divergence_is_reported():
    at = _at()
    assert not at.exception and at.multiselect(key="opt_optimizers").value == ["sgd", "momentum", "adam"]
    first = at.get("plotly_chart")[0].proto.spec
    at.slider(key="opt_step").set_value(20).run()
    assert at.get("plotly_chart")[0].proto.spec != first
    at.multiselect(key="opt_optimizers").set_value(["m3", "muon"]).run()
    assert set(at.dataframe[0].value["optimizer"]) == {"m3", "muon"}
    at.select_slider(key="opt_lr").set_value(0.3).run()
    at.multiselect(key="opt_optimizers").set_value(["sgd"]).run()
    assert not at.exception and any("diverged" in w.value for w in at.warning)
    at.multiselect(key="opt_optimizers").set_value([]).run()
    assert not at.exception and any("at least one" in i.value for i in at.info)


def test_the_url_restores_the_race():
    at = _at(opt_surface="rosenbrock", opt_optimizers=["adam", "m3"], opt_lr="0.01", opt_step="30")
    assert not at.exception
    assert at.selectbox(key="opt_surface").value == "rosenbrock" and at.slider(key="opt_step").value == 30
    assert at.multiselect(key="opt_optimizers").value == ["adam", "m3"] and at.select_slider(key="opt_lr").value == 0.01


def test_the_associative_memory_section_draws_one_dot_per_pair_and_follows_its_controls():
    import json

    def chart(key):
        return json.loads(next(c for c in at.get("plotly_chart") if key in c.proto.id).proto.spec)

    at = _at()
    spec = chart("opt_assoc")
    assert spec["layout"]["title"]["text"].startswith("Each optimizer writes W")
    # drawn last to first (the first selected on top), each in its colour of the race
    assert [d["name"].split(" ")[0] for d in spec["data"]][::-1] == ["sgd", "momentum", "adam"]
    assert [d["marker"]["color"] for d in spec["data"]][::-1] == COLOURS[:3]
    assert all(len(d["x"]) == 32 and sum(d["x"]) == 600 for d in spec["data"])  # every pair, every step counted
    # the gradient stream: plain SGD keeps no memory, so only momentum and adam are offered
    assert at.selectbox(key="opt_assoc_stream").options == ["momentum", "adam"]
    stream = chart("opt_stream")
    assert "momentum_buffer" in stream["layout"]["title"]["text"] and stream["data"][0]["z"]["shape"] == "32, 64"
    at.selectbox(key="opt_assoc_stream").set_value("adam").run()
    assert "exp_avg" in chart("opt_stream")["layout"]["title"]["text"]
    at.radio(key="opt_assoc_keys").set_value("overcomplete (64 keys in 32 dims)").run()
    assert not at.exception
    spec = chart("opt_assoc")
    assert all(len(d["x"]) == 64 for d in spec["data"])


def test_the_associative_memory_rates_are_the_grid_optimum():
    from app.opt_figures import ASSOC_LR, assoc_stream
    from nested.optim.assoc import best_lr

    for orthogonal, name in ((True, "momentum"), (False, "sgd")):
        assert (
            best_lr(assoc_stream(orthogonal, 1.0), name, grid=(0.01, 0.03, 0.1, 0.3, 1.0)) == ASSOC_LR[orthogonal][name]
        )


def _lesson_race(preset_name: str) -> dict:
    from app.presets import PRESETS

    params = PRESETS[preset_name].params
    return {n: race(params["opt_surface"], n, params["opt_lr"], 200) for n in params["opt_optimizers"]}


def test_the_momentum_lesson_opens_on_an_overshoot_that_still_wins():
    """Lesson 05's claims, at its preset: no path diverges; momentum swings past the minimum (x > 1) with its
    loss rising on the way, yet is the first below 0.001, well before SGD."""
    paths = _lesson_race("optimizers-momentum")
    assert not any(p.diverged for p in paths.values())
    mom, sgd = paths["momentum"], paths["sgd"]
    assert np.array(mom.points)[:, 0].max() > 1.0 and (np.diff(mom.losses) > 0).sum() >= 10

    def first_below(p, level=1e-3) -> int:
        return int(np.argmax(np.array(p.losses) < level)) if min(p.losses) < level else 10**9

    assert first_below(mom) + 40 < first_below(sgd) < 200


def test_the_m3_lesson_opens_where_m3_ends_lowest():
    """Lesson 06's claim at its preset: M3 ends below half of Muon's loss and Muon below Adam's."""
    paths = _lesson_race("optimizers-m3")
    assert not any(p.diverged for p in paths.values())
    final = {n: float(p.losses[-1]) for n, p in paths.items()}
    assert final["m3"] < 0.5 * final["muon"] and final["muon"] < final["adam"], final
    assert len(paths["m3"].memories) >= 2  # its fast and its slow momentum, drawn in the memory panel


def test_the_inner_rules_section_draws_every_rule_and_follows_its_correlation():
    import json

    from nested.rule_recall import RULES

    def chart():
        return json.loads(next(c for c in at.get("plotly_chart") if "opt_rules" in c.proto.id).proto.spec)

    at = _at(opt_rules_rho="0.6")
    assert not at.exception and at.select_slider(key="opt_rules_rho").value == 0.6
    spec = chart()
    assert "ρ = 0.6" in spec["layout"]["title"]["text"]
    lines = [d for d in spec["data"] if d.get("showlegend", True)]  # each rule's recall line; its overwrite a dot
    assert [d["name"].split(", step")[0] for d in lines] == list(RULES) and len(spec["data"]) == 2 * len(RULES)
    assert all(len(d["y"]) == 4 and all(0 <= y <= 1.0001 for y in d["y"]) for d in lines)
    at.select_slider(key="opt_rules_rho").set_value(0.0).run()
    assert "ρ = 0 (" in chart()["layout"]["title"]["text"]
