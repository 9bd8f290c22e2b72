"""Every shipped checkpoint loads, is small, and reproduces the evaluation written on its card."""

import json

import pytest

import nested
from nested.cards import CHECKPOINTS, SHIPPED, card_eval


@pytest.mark.parametrize("name", list(SHIPPED))
def test_shipped_checkpoint_matches_its_card(name):
    path = CHECKPOINTS / name
    assert (path / "model.safetensors").stat().st_size < 20 * 2**20
    model = nested.load(path).eval()
    meta = model.checkpoint_meta
    assert meta["command"] == f"python -m nested ship {name}"
    recorded = meta["card_eval"]
    again = card_eval(model, meta["train"], n=recorded["n"], seed=recorded["seed"])
    assert abs(again["loss"] - recorded["loss"]) < 1e-3 * max(1.0, recorded["loss"])
    assert abs(again["accuracy"] - recorded["accuracy"]) < 0.01
    card = (path / "README.md").read_text()
    assert meta["command"] in card and f"{recorded['loss']:.4f}" in card


def test_text_models_beat_a_uniform_guess_and_are_matched_in_size():
    sizes, losses = {}, {}
    for name in ("hope-text", "titans-text", "transformer-text"):
        model = nested.load(CHECKPOINTS / name)
        sizes[name] = sum(p.numel() for p in model.parameters())
        losses[name] = model.checkpoint_meta["card_eval"]["loss"]
    assert max(sizes.values()) < 1.25 * min(sizes.values()), sizes
    assert all(v < 3.0 for v in losses.values()), losses  # uniform over 256 bytes is 5.55 nats
    json.dumps(losses)


@pytest.mark.parametrize("name", [n for n, s in SHIPPED.items() if s["preset"].startswith("languages-")])
def test_continual_page_models_learn_every_language_in_context(name):
    """The continual page's models must have learned the task: each language alone, the probe from the
    state after one segment gets at least half the answers (an exact solver gets all; chance is 1/4), as
    printed on the card, recomputed here."""
    from nested.cards import continual_eval

    model = nested.load(CHECKPOINTS / name).eval()
    recorded = model.checkpoint_meta["continual_eval"]
    again = continual_eval(model, model.checkpoint_meta["train"])
    assert again["probe"] == pytest.approx(recorded["probe"], abs=1e-6)
    if SHIPPED[name].get("partly"):  # shipped as partly learned (the page warns): still well above chance
        assert again["probe_mean"] >= 1.5 * again["chance"], again["probe"]
        assert "only partly" in (CHECKPOINTS / name / "README.md").read_text()
    else:
        assert min(again["probe"].values()) >= max(0.5, 2 * again["chance"]), again["probe"]
    assert f"mean {recorded['probe_mean']:.3f}" in (CHECKPOINTS / name / "README.md").read_text()


@pytest.mark.parametrize("name", [n for n, s in SHIPPED.items() if s["preset"].startswith("recall-mixed-")])
def test_recall_models_learned_recall_and_needles_as_their_cards_say(name):
    """The recall lab's models must have learned what its views show: MQAR at 4 pairs and one needle in 64
    bytes well above chance (3x), recomputed here at the card's seed and equal to the card."""
    from nested.recall_lab import recall_curve

    model = nested.load(CHECKPOINTS / name).eval()
    card = model.checkpoint_meta["recall_eval"]
    for family, size in (("mqar", 4), ("niah-single", 64)):
        (again,) = recall_curve(model, family, (size,), n=card["n"], seed=card["seed"])
        assert again["accuracy"] == pytest.approx(card[family][str(size)], abs=0.01)
        assert again["accuracy"] >= 3 * again["chance"], (family, again)
    assert (
        f"one needle by bytes of haystack 64 {card['niah-single']['64']:.2f}"
        in (CHECKPOINTS / name / "README.md").read_text()
    )
