"""AppTest of the recall lab (pages/recall.py): shipped curves first and reproducible, switches, live runs."""

import pytest

from app import recall_figures as rf
from app import recall_ui as ru
from app.models import build_frozen, is_trained
from nested.recall_lab import FAMILIES, SWITCHES, example, recall_curve
from tests.apptest import chart, open_page


def test_the_shipped_curves_cover_every_model_family_and_switch_and_reproduce():
    data = ru.shipped_curves()
    assert data is not None, f"{ru.PRESET_FILE} is missing: python -m app.recall_ui"
    for family, fam in FAMILIES.items():
        for label in ru.RECALL_MODELS:
            for switch in SWITCHES:
                rows = data["curves"][family][label][switch]
                assert [r["size"] for r in rows] == list(fam.sizes)
    # one cell recomputed from the shipped weights: the same number
    model = build_frozen(ru.RECALL_MODELS["Transformer"], 0, device="cpu")
    again = recall_curve(model, "mqar", sizes=[8], n=ru.SAMPLES, seed=0)
    assert again[0]["accuracy"] == data["curves"]["mqar"]["Transformer"]["on"][1]["accuracy"]
    ex = example(model, "mqar", ru.EXAMPLE_DEFAULT["mqar"], seed=0)
    shipped = data["examples"][f"transformer-recall|mqar|{ru.EXAMPLE_DEFAULT['mqar']}|0|on"]
    assert ex.keys() == shipped.keys()
    for key, value in ex.items():  # the same example; probabilities to float32 rounding (it was built on another CPU)
        assert value == (pytest.approx(shipped[key], rel=1e-4, abs=1e-6) if key == "p_answer" else shipped[key]), key


def test_the_shipped_memory_models_learned_recall_and_their_memories_matter():
    """The lab shows a model that learned: above chance with its memories on, and worse with them off."""
    curves = ru.shipped_curves()["curves"]["mqar"]
    for label in ru.RECALL_MODELS:
        assert is_trained(ru.RECALL_MODELS[label]), f"{label} has no shipped recall checkpoint"
        on = [r["accuracy"] for r in curves[label]["on"]]
        assert on[0] > 3 * curves[label]["on"][0]["chance"], label
    for label in ("Hope", "Titans"):  # memory models: writes off = chance, far below on
        on, off = ([r["accuracy"] for r in curves[label][sw]] for sw in ("on", "off"))
        assert on[0] > 0.7 and max(off) < 0.2, (label, on, off)


def test_first_paint_is_precomputed_with_the_switch_state_on_screen():
    at = open_page("recall")
    assert not at.exception, [e.value for e in at.exception]
    assert not [b for b in at.button if b.key == "recall_run"]  # seed 0, default models: nothing to compute
    captions = " ".join(c.value for c in at.caption)
    assert "Test-time learning is **ON**" in captions and "Test-time learning is **OFF**" in captions
    spec = chart(at, "recall_curves")
    assert len(spec["data"]) == 2 * len(ru.RECALL_MODELS)  # on and off per model
    assert {d["line"]["dash"] for d in spec["data"]} == {"solid", "dash"}
    assert len(at.dataframe) == 2 and len(at.dataframe[0].value) == 2 * len(ru.RECALL_MODELS)
    untrained = [lb for lb in ru.RECALL_MODELS if not is_trained(ru.RECALL_MODELS[lb])]
    assert sum("no shipped recall checkpoint" in w.value for w in at.warning) == len(untrained)


def test_ascent_switch_is_explained_and_drawn_dotted():
    at = open_page("recall", recall_models=["Titans"])
    at.multiselect(key="recall_switches").set_value(["on", "ascent"]).run()
    assert not at.exception
    assert any("sign is flipped" in c.value for c in at.caption)
    assert {d["line"]["dash"] for d in chart(at, "recall_curves")["data"]} == {"solid", "dot"}


def test_another_seed_runs_live_and_keeps_what_it_computed():
    at = open_page("recall", recall_models=["Transformer"], recall_family="mqar")
    at.number_input(key="recall_seed").set_value(3).run()
    assert any("Not precomputed" in c.value for c in at.caption)
    at.button(key="recall_run").click().run()
    assert not at.exception
    live = at.session_state["recall_live"]
    assert set(live) == {("mqar", "Transformer", "on", 3), ("mqar", "Transformer", "off", 3)}
    assert all(len(rows) == len(FAMILIES["mqar"].sizes) for rows in live.values())
    assert not [b for b in at.button if b.key == "recall_run"] and len(chart(at, "recall_curves")["data"]) == 2


def test_the_example_controls_redraw_the_strip_and_the_writes():
    at = open_page("recall", recall_models=["Hope", "Transformer"])
    strip = chart(at, "recall_strip")
    at.number_input(key="recall_example").set_value(1).run()
    assert not at.exception and chart(at, "recall_strip") != strip
    at.radio(key="recall_what").set_value("eta").run()
    assert "η" in chart(at, "recall_writes")["layout"]["yaxis"]["title"]["text"]
    answers = at.dataframe[-1].value
    assert (
        list(answers["model"]) == ["Hope", "Transformer"] and answers["write ratio (needle / rest)"][1] == "no memory"
    )


def test_empty_choices_get_a_message():
    at = open_page("recall")
    at.multiselect(key="recall_models").set_value([]).run()
    assert not at.exception and any("at least one model" in m.value for m in at.info)


def test_the_strip_marks_needles_and_answers():
    ex = {"text": "ab3cd4|ab", "needles": [(0, 3)], "scored": [8], "answer": ["3"], "predicted": ["3"],
          "correct": [True]}  # fmt: skip
    z = rf.strip_figure(ex).data[0].z
    assert list(z[0][:3]) == [1, 1, 1] and z[0][9] == 3 and z[0][4] == 0  # needle, the right answer, context
    ex["correct"] = [False]
    assert rf.strip_figure(ex).data[0].z[0][9] == 2


def test_the_default_example_has_a_haystack_so_the_write_ratio_is_a_number():
    import math

    from nested.recall_lab import write_ratio

    at = open_page("recall")
    assert at.select_slider(key="recall_size").value == ru.EXAMPLE_DEFAULT["mqar"] == 16
    ex = ru.cached_example("hope-recall", "mqar", 16, 0, "on")
    assert len(ex["needles"]) == 8 and math.isfinite(write_ratio(ex))  # 8 of 16 pairs asked: 8 are haystack
    table = at.dataframe[-1].value
    assert table["write ratio (needle / rest)"][0] == ru.ratio_text(write_ratio(ex))
    assert ru.ratio_text(float("nan")).startswith("n/a")
