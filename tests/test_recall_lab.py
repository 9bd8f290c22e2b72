"""The recall lab's library (nested.recall_lab): curves are direct counts, the switches do what they say."""

import math

import numpy as np
import pytest
import torch

import nested
from nested.recall_lab import FAMILIES, SWITCHES, example, inner_spec, make, predictor, recall_curve, write_ratio
from nested.tasks.recall import NEEDLE


def _leaves(x):
    if torch.is_tensor(x):
        return [x]
    if isinstance(x, dict):
        x = list(x.values())
    return [t for item in x for t in _leaves(item)] if isinstance(x, list | tuple) else []


def _model(name="hope", **kw):
    args = {"d_model": 32, "n_layers": 2, **({"cms_periods": (8, 16)} if name == "hope" else {}), **kw}
    return nested.build_model(name, seed=0, device="cpu", **args).eval()


def test_accuracy_is_a_direct_count_of_right_answers():
    model = _model("titans")
    curve = recall_curve(model, "mqar", sizes=[4, 8], n=8, seed=5)
    predict = predictor(model)
    for row in curve:
        task = make("mqar", row["size"])
        b = task.sample(8, 5 + 1000 * row["size"])
        logits = predict(b.inputs)
        answers = torch.tensor(task.answers)
        pred = answers[logits[..., answers].argmax(-1)]
        mask = b.targets != -100
        assert row["scored"] == int(mask.sum()) == 8 * min(8, row["size"])
        assert row["accuracy"] == pytest.approx(float((pred == b.targets)[mask].float().mean()))


@pytest.mark.parametrize("name", ["hope", "titans"])
def test_switching_test_time_learning_off_leaves_only_the_decay(name):
    model = _model(name)
    spec = inner_spec(model, "off")
    assert dict(spec.gains) == {n: 0.0 for n in model.freeze_options()}  # every inner level, nothing else
    tokens = torch.tensor([list(b"ab3cd4ef5|cd4ab3")])
    res = model.stream(tokens, model.init_state(1, freeze=spec))
    on = model.stream(tokens, model.init_state(1))
    for layer in range(model.cfg.n_layers):
        snaps = [m for _, m in res.trace.snapshots[layer]]
        for key in snaps[0]:
            norms = [float(np.linalg.norm(s[key])) for s in snaps]
            assert all(b <= a * (1 + 1e-6) for a, b in zip(norms, norms[1:], strict=False)), (
                layer,
                key,
            )  # M <- alpha M
        last_on, last_off = on.trace.snapshots[layer][-1][1], res.trace.snapshots[layer][-1][1]
        assert any(not np.allclose(last_on[k], last_off[k], atol=1e-6) for k in last_on)  # learning on: it wrote
    if res.state.cms is not None:
        init = model.init_state(1).cms
        for got, start in zip(res.state.cms, init, strict=True):
            assert all(torch.equal(a, b) for a, b in zip(_leaves(got.weights), _leaves(start.weights), strict=True))


@pytest.mark.parametrize("name", ["hope", "titans"])
def test_ascent_flips_the_sign_of_the_first_write(name):
    """One token: descent gives alpha M0 - eta grad, ascent alpha M0 + eta grad, off alpha M0."""
    model = _model(name)
    tokens = torch.tensor([[7]])
    snap = {s: model.stream(tokens, model.init_state(1, freeze=inner_spec(model, s))).trace.snapshots
            for s in SWITCHES}  # fmt: skip
    for layer in range(model.cfg.n_layers):
        on, off, asc = (snap[s][layer][-1][1] for s in ("on", "off", "ascent"))
        for key in on:
            np.testing.assert_allclose(on[key] + asc[key], 2 * off[key], atol=1e-5)
        assert any(not np.allclose(on[k], off[k]) for k in on)


def test_a_transformer_has_nothing_to_switch():
    model = _model("transformer")
    x = make("mqar", 8).sample(2, 0).inputs
    outs = [predictor(model, s)(x) for s in SWITCHES]
    assert all(torch.equal(outs[0], o) for o in outs[1:]) and inner_spec(model, "off").gains == ()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_an_example_marks_its_needles_and_scores_its_answers(family):
    model = _model("hope")
    size = 6 if family == "mqar" else FAMILIES[family].sizes[0]
    ex = example(model, family, size, seed=2)
    assert ex["needles"] and all(0 <= a < b <= len(ex["text"]) for a, b in ex["needles"])
    if family == "mqar":
        pairs = ex["text"].partition("|")[0]
        assert all(b - a == 3 and ex["text"][a : a + 2] in ex["text"].partition("|")[2] for a, b in ex["needles"])
        assert len(ex["needles"]) == size and all(b <= len(pairs) for _, b in ex["needles"])  # every pair is asked
    else:
        assert all(NEEDLE.fullmatch(ex["text"][a:b]) for a, b in ex["needles"])
        assert len(ex["needles"]) == FAMILIES[family].args(size).get("n_needles", 1)  # 2, 4 or 8 keys, one asked
    assert all(b <= ex["question"] < min(ex["scored"]) for _, b in ex["needles"])
    assert len(ex["scored"]) == len(ex["answer"]) == len(ex["predicted"]) == len(ex["correct"]) > 0
    assert all(c == (a == p) for a, p, c in zip(ex["answer"], ex["predicted"], ex["correct"], strict=True))
    assert len(ex["p_answer"]) == len(ex["scored"]) and all(0 < p < 1 for p in ex["p_answer"])
    assert all(p >= 0.1 for p, c in zip(ex["p_answer"], ex["correct"], strict=True) if c)  # a right argmax of 10
    assert len(ex["memory_change"]) == 2 and len(ex["memory_change"][0]) == len(ex["text"])
    assert all(math.isfinite(v) for v in ex["memory_change"][0][1:])


def test_write_ratio_is_needle_mean_over_haystack_mean():
    ex = {"needles": [(2, 4)], "question": 6, "memory_change": [[1.0, 1.0, 4.0, 6.0, 1.0, 3.0, 100.0]]}
    assert write_ratio(ex) == pytest.approx(5.0 / 1.5)  # needle (4, 6) over the haystack before the question


def test_bad_requests_get_clear_messages():
    with pytest.raises(ValueError, match="unknown recall task"):
        make("haystack", 8)
    with pytest.raises(ValueError, match="key-value pairs must be an integer"):
        make("mqar", 500)
    with pytest.raises(ValueError, match="context"):
        make("niah-single", 10**6)
    with pytest.raises(ValueError, match="switch"):
        inner_spec(_model("titans"), "sideways")


def test_a_diverging_inner_loop_is_a_recorded_result_not_a_crash(monkeypatch):
    import nested.recall_lab as lab

    def blows_up(model, switch="on"):
        def predict(tokens):
            raise nested.NonFiniteMemoryError(layer=0, memory="cms.level0.up")

        return predict

    monkeypatch.setattr(lab, "predictor", blows_up)
    rows = lab.recall_curve(_model("titans"), "mqar", sizes=[4, 8], n=4, switch="ascent")
    assert [r["accuracy"] for r in rows] == [None, None] and all("diverged" in r["diverged"] for r in rows)


def test_memories_keep_writing_under_eval_and_inference_mode():
    """A known pitfall elsewhere: inner updates that silently stop under model.eval() or inference_mode."""
    model = _model("titans").eval()
    tokens = torch.tensor([list(b"ab3cd4|ab")])
    with torch.inference_mode():
        res = model.stream(tokens, model.init_state(1))
    first, last = res.trace.snapshots[0][0][1], res.trace.snapshots[0][-1][1]
    assert any(not np.allclose(first[k], last[k]) for k in first)  # the memory moved while reading
    off = predictor(model, "off")(tokens)
    assert not torch.allclose(predictor(model, "on")(tokens), off)  # and its writes change the prediction


def test_more_inner_steps_run_a_copy_with_the_same_weights():
    """ "steps x4": a cached copy whose memories take 4 inner steps per token; the shared model is untouched;
    a memory model's predictions change, and one token's read is still from the state before it (Hope)."""
    from nested.recall_lab import MORE_STEPS, switched_model

    model = _model("hope")
    more = switched_model(model, "steps x4")
    assert more is switched_model(model, "steps x4") and more is not model
    assert more.cfg.inner_steps == MORE_STEPS and model.cfg.inner_steps == 1
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), more.state_dict().values(), strict=True))
    x = torch.randint(0, 256, (2, 24), generator=torch.Generator().manual_seed(0))
    on, four = predictor(model, "on")(x), predictor(model, "steps x4")(x)
    assert torch.equal(on[:, 0], four[:, 0]) and not torch.allclose(on[:, 1:], four[:, 1:])
