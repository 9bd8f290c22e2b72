"""AppTest of the attribution page (pages/attribution.py): every control, the URL, bad input."""

import torch

import nested
from app import attribution_ui as au
from nested.checkpoint import CHECKPOINTS
from tests.apptest import chart, open_page


def strip(at) -> dict:
    return chart(at, "attr_strip")


def test_first_paint_attributes_the_next_byte_with_saliency_and_levels():
    at = open_page("attribution")
    assert not at.exception, [e.value for e in at.exception]
    spec = strip(at)
    scores = [v for row in spec["data"][0]["z"] for v in row if v is not None]
    assert len(scores) == au.DEFAULT_POSITION + 1 and min(scores) >= 0  # saliency: one size per byte, none negative
    assert f"after byte {au.DEFAULT_POSITION}" in spec["layout"]["title"]["text"]
    levels = chart(at, "attr_levels")
    assert len(levels["data"][0]["y"]) == 6  # hope, 2 layers: memories + 2 CMS levels each


def test_the_url_restores_position_and_method_and_moving_redraws():
    at = open_page("attribution", attr_position="40", attr_method="input_x_gradient")
    assert not at.exception and at.slider(key="attr_slider").value == 40
    spec = strip(at)
    scores = [v for row in spec["data"][0]["z"] for v in row if v is not None]
    assert len(scores) == 41 and min(scores) < 0 < max(scores)  # signed
    bar = spec["data"][0]["colorbar"]  # a one-row strip: the bar lies under it, not squashed beside it
    assert len(spec["data"][0]["z"]) == 1 and bar["orientation"] == "h" and spec["layout"]["height"] >= 160
    at.slider(key="attr_slider").set_value(60).run()
    assert len([v for row in strip(at)["data"][0]["z"] for v in row if v is not None]) == 61
    assert at.query_params["attr_position"] == ["60"] or at.query_params["attr_position"] == "60"


def test_the_top_guess_target_is_the_models_argmax():
    from app.models import decode_token
    from app.samples import sample_texts

    at = open_page("attribution", attr_position="30")
    at.radio(key="attr_target").set_value("the model's top guess").run()
    assert not at.exception
    text = next(iter(sample_texts().values()))
    guess = au.top_guess("hope", 0, text, 30)
    assert f"log p({decode_token(guess)!r})" in strip(at)["layout"]["title"]["text"]


def test_integrated_gradients_run_on_demand_and_show_their_completeness_gap():
    at = open_page("attribution", attr_position="20", attr_method="integrated_gradients")
    assert any("on demand" in i.value for i in at.info)
    assert not [c for c in at.get("plotly_chart") if "attr_strip" in c.proto.id]  # nothing computed yet
    at.toggle(key="attr_run_ig").set_value(True).run()
    assert not at.exception and len(at.metric) == 1 and "nats" in at.metric[0].value


def test_occlusion_equals_the_drop_of_log_p_when_a_byte_is_replaced():
    from app.samples import sample_texts
    from app.session import frozen_model

    at = open_page("attribution", attr_position="12", attr_method="occlusion")
    assert not at.exception
    spec = strip(at)
    scores = [v for row in spec["data"][0]["z"] for v in row if v is not None]
    model = frozen_model("hope", 0)
    text = next(iter(sample_texts().values()))
    toks = torch.tensor([list(text.encode())[:13]])
    target = list(text.encode())[13]
    with torch.no_grad():
        full = float(model(toks)[0, -1].log_softmax(-1)[target])
        emb = model.embed(toks)
        emb[0, 5] = model.embed.weight.mean(0)
        masked = float(model.from_embeddings(emb, toks, exact_cms=False)[0, -1].log_softmax(-1)[target])
    assert abs(scores[5] - (full - masked)) < 1e-4


def test_your_text_is_validated_and_a_transformer_has_no_levels():
    at = open_page("attribution", attr_source="your text")
    at.text_area(key="attr_text").input("").run()
    assert not at.exception and (at.warning or at.info)
    at.text_area(key="attr_text").input("The cat sat on the mat. The cat sat on the").run()
    assert not at.exception and strip(at)
    at.sidebar.selectbox(key="model").set_value("transformer").run()
    assert not at.exception and any("no inner levels" in c.value for c in at.caption)


def test_the_attributions_download_as_csv_and_json():
    import csv
    import io

    at = open_page("attribution", attr_position="20")
    buttons = {b.proto.label: b for b in at.get("download_button")}
    assert {"Attributions (.csv)", "Attributions (.json)"} <= set(buttons)
    from app.exports import rows_csv

    rows = list(csv.DictReader(io.StringIO(rows_csv([{"byte": 0, "char": "T", "attribution": 0.5}]))))
    assert rows == [{"byte": "0", "char": "T", "attribution": "0.5"}]


def test_a_diverging_model_gets_a_message_not_a_traceback(monkeypatch):
    import nested

    def diverges(*args, **kwargs):
        raise nested.NonFiniteMemoryError(layer=1, memory="M_memory")

    monkeypatch.setattr(au, "cached_levels", diverges)
    at = open_page("attribution", attr_position="20")
    assert not at.exception and any("cannot be computed here" in c.value for c in at.caption)
    monkeypatch.setattr(au, "cached_attribution", diverges)
    at.slider(key="attr_slider").set_value(21).run()
    assert not at.exception and any("cannot be computed" in e.value for e in at.error)


def test_lesson_09s_example_reads_the_needle_where_the_lesson_says():
    """Lesson 09 (preset attribution-recall): Titans answers `|ab` with the `3` of `ab3`; occlusion's largest
    byte is that `3`, and freezing layer 0's memory lowers log p(`3`) by nats (measured: 9.7 and 4.3)."""
    from app.presets import PRESETS
    from nested.attribution import attribute, level_contributions

    params = PRESETS["attribution-recall"].params
    text, position = params["attr_text"], params["attr_position"]
    model = nested.load(CHECKPOINTS / params["model"]).eval()
    tokens = torch.tensor([list(text.encode())])
    occ = attribute(model, tokens, position, target=ord("3"), method="occlusion")
    assert text[position + 1] == "3" and int(torch.as_tensor(occ.scores).argmax()) == text.index("ab3") + 2
    assert level_contributions(model, tokens, position, target=ord("3"))["layer 0 memories"] > 2.0
