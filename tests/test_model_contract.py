"""The public contract of DESIGN.md §2: one function, two schedules, explicit per-item state."""

import math
from dataclasses import fields

import pytest
import torch

import nested

SMALL = {"d_model": 32, "n_layers": 2, "dtype": torch.float64}
# (model, overrides): several chunk settings per model family
CASES = [
    ("hope", {"cms_periods": (2, 4), "chunk_size": 4}),
    ("hope", {"cms_periods": (3,), "chunk_size": 5, "proj_chunk_size": 2, "momentum": 0.8}),
    ("hope", {"cms_periods": (4, 8), "chunk_size": 1, "adaptive_q": True, "n_heads": 2, "cms_variant": "nested"}),
    ("hope", {"cms_periods": (2, 6), "chunk_size": 7, "inner_objective": "dot", "cms_variant": "independent"}),
    ("hope", {"cms_periods": (5,), "chunk_size": 3, "precondition": False, "read_after_write": True}),
    ("hope", {"cms_periods": (2, 4), "chunk_size": 3, "adaptive_k": False, "adaptive_v": False, "adaptive_q": True}),
    ("hope", {"cms_periods": (4,), "chunk_size": 2, "proj_chunk_size": 4, "adaptive_v": False}),
    ("hope-attention", {"cms_periods": (2, 4)}),
    ("titans", {"chunk_size": 4}),
    ("titans", {"chunk_size": 3, "inner_steps": 2}),
    ("hope", {"cms_periods": (2, 4), "chunk_size": 4, "inner_update": "normalized", "inner_clip": 0.7}),
    ("titans", {"chunk_size": 4, "inner_update": "normalized"}),
    ("hope", {"cms_periods": (2, 4), "chunk_size": 4, "inner_steps": 3, "momentum": 0.5}),
    ("deltanet", {"chunk_size": 3, "inner_steps": 2}),
    ("titans", {"chunk_size": 1, "read_after_write": True}),
    ("transformer", {}),
    ("transformer-swa", {"window": 5}),
    ("deltanet", {"chunk_size": 4}),
    ("gated-deltanet", {"chunk_size": 3}),
    ("linear-attention", {"chunk_size": 8}),
]
IDS = [f"{m}-{i}" for i, (m, _) in enumerate(CASES)]


def _build(name, **kw):
    return nested.build_model(name, seed=0, **SMALL, **kw)


def _tokens(B=2, T=13, seed=0):
    return torch.randint(0, 256, (B, T), generator=torch.Generator().manual_seed(seed))


def test_registry_has_the_required_models():
    assert {"hope", "hope-attention", "titans", "transformer", "deltanet"} <= set(nested.MODELS)


@pytest.mark.parametrize(("name", "kw"), CASES, ids=IDS)
def test_stream_equals_parallel_equals_pieces(name, kw):
    model = _build(name, **kw)
    tok = _tokens()
    with torch.no_grad():
        parallel = model(tok)
        streamed = model.stream(tok, trace=False).logits
        a = model.run(tok[:, :6])
        b = model.stream(tok[:, 6:9], state=a.state, trace=False)
        c = model.run(tok[:, 9:], state=b.state)
    pieces = torch.cat([a.logits, b.logits, c.logits], 1)
    assert parallel.shape == (2, 13, 256)
    assert torch.allclose(parallel, streamed, atol=1e-9), (parallel - streamed).abs().max()
    assert torch.allclose(parallel, pieces, atol=1e-9), (parallel - pieces).abs().max()


@pytest.mark.parametrize(("name", "kw"), CASES, ids=IDS)
def test_causality(name, kw):
    model = _build(name, **kw)
    tok = _tokens(T=12)
    t = 6
    other = tok.clone()
    other[:, t + 1 :] = (other[:, t + 1 :] + 17) % 256
    with torch.no_grad():
        a, b = model(tok), model(other)
    assert torch.allclose(a[:, : t + 1], b[:, : t + 1], atol=1e-10)
    assert not torch.allclose(a[:, t + 1 :], b[:, t + 1 :])


@pytest.mark.parametrize("name", ["hope", "titans", "transformer", "deltanet", "hope-attention"])
def test_batch_items_do_not_interact(name):
    model = _build(name, cms_periods=(2, 4)) if "hope" in name else _build(name)
    tok = _tokens(B=3, T=10)
    other = tok.clone()
    other[1:] = (other[1:] * 7 + 3) % 256
    with torch.no_grad():
        full = model(tok)
        alone = model(tok[:1])
        perturbed = model(other)
    assert torch.allclose(full[:1], alone, atol=1e-10)
    assert torch.allclose(full[:1], perturbed[:1], atol=1e-10)


def test_state_is_never_mutated_in_place():
    model = _build("hope", cms_periods=(2, 4), chunk_size=4)
    tok = _tokens(T=9)
    with torch.no_grad():
        first = model.stream(tok[:, :5], trace=False)
        mixer = first.state.mixers[0]
        snapshot = {
            f.name: getattr(mixer, f.name).clone() for f in fields(mixer) if torch.is_tensor(getattr(mixer, f.name))
        }
        x = model.stream(tok[:, 5:], state=first.state, trace=False).logits
        y = model.stream(tok[:, 5:], state=first.state, trace=False).logits  # reuse the same state
    assert torch.equal(x, y)
    for k, v in snapshot.items():
        assert torch.equal(getattr(first.state.mixers[0], k), v), k


def test_gradients_reach_every_meta_learned_initial_state():
    model = nested.build_model("hope", seed=0, d_model=32, n_layers=2, cms_periods=(2, 4), chunk_size=4)
    tok = _tokens(T=12)
    logits = model(tok)
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 256), tok[:, 1:].reshape(-1))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or float(p.grad.abs().sum()) == 0]
    assert not missing, missing
    for blk in model.blocks:  # every memory's own initial state, not just the stacked tensor
        for m, name in enumerate(blk.mixer.names):
            assert float(blk.mixer.W1_0.grad[:, m].abs().sum()) > 0, name
            assert float(blk.mixer.W2_0.grad[:, m].abs().sum()) > 0, name
        for lv in range(2):
            assert float(blk.ffn.up0[lv].grad.abs().sum()) > 0


@pytest.mark.parametrize("lr", [0.05, 0.0])
def test_cms_cadence_periods_2_4_over_9_tokens(lr):
    """DESIGN.md §5: exactly 4 and 2 updates, after tokens 1,3,5,7 and 3,7 (per layer), and the weights
    move exactly there; with a learning rate of 0 nothing moves and no update is recorded."""
    model = _build("hope", cms_periods=(2, 4), chunk_size=4, cms_lr=lr)
    tok = _tokens(B=1, T=9)
    with torch.no_grad():
        tr = model.stream(tok, trace=True).trace
        states = [model.stream(tok[:, : t + 1], trace=False).state for t in range(9)]
    expected = {0: [1, 3, 5, 7], 1: [3, 7]} if lr else {0: [], 1: []}
    for layer in range(2):
        for lv in (0, 1):
            assert [e.token for e in tr.updates_for(f"cms[{lv}]", layer)] == expected[lv]
            # the step after token t is taken when token t + 1 arrives: compare the states before and after
            moved = [t - 1 for t in range(1, 9)
                     if not torch.equal(states[t].cms[layer].weights[lv][0], states[t - 1].cms[layer].weights[lv][0])]  # fmt: skip
            assert moved == expected[lv], (layer, lv, moved)
        assert {e.period for e in tr.updates_for("cms[1]", layer)} <= {4}


def _with_leaf(state, level):
    """The state with one level's weights replaced by leaves (in every layer): the oracle's variable."""
    from dataclasses import replace

    leaves, cms = [], []
    for c in state.cms:
        pair = tuple(w.detach().clone().requires_grad_(True) for w in c.weights[level])
        leaves.append(pair)
        cms.append(replace(c, weights=tuple(pair if lv == level else p for lv, p in enumerate(c.weights))))
    return replace(state, cms=tuple(cms), window=()), leaves


def _expected_step(leaves, loss, lr):
    grads = torch.autograd.grad(loss, [t for pair in leaves for t in pair])
    return [(u.detach() - lr * grads[2 * i], w.detach() - lr * grads[2 * i + 1]) for i, (u, w) in enumerate(leaves)]


def test_every_cms_level_update_is_autograd_of_its_chunk_loss():
    """PAPER Eq. 71, exact reading: each update of a period-C level equals autograd of the summed
    next-token loss over its chunk with that level's weights held constant, whatever the other levels'
    periods (2 layers; periods 2 and 4; level 0 after tokens 1 and 3, level 1 after token 3)."""
    lr = 0.05
    model = _build("hope", cms_periods=(2, 4), chunk_size=4, cms_lr=lr, cms_clip=1e9)
    tok = _tokens(B=1, T=5)
    ce = lambda logits, targets: torch.nn.functional.cross_entropy(logits[0], targets[0], reduction="sum")  # noqa: E731
    with torch.no_grad():
        streamed = {t: model.stream(tok[:, :t], trace=False).state for t in (3, 5)}
    # level 0, first chunk [0, 2) and level 1, chunk [0, 4): from the initial state
    for level, span in ((0, 2), (1, 4)):
        st, leaves = _with_leaf(model.init_state(1), level)
        expected = _expected_step(leaves, ce(model.run(tok[:, :span], state=st).logits, tok[:, 1 : span + 1]), lr)
        after = streamed[3 if span == 2 else 5]
        for layer in range(2):
            for got, want in zip(after.cms[layer].weights[level], expected[layer], strict=True):
                assert torch.allclose(got, want, atol=1e-10), (level, span, layer)
    # level 0, second chunk [2, 4): from the stream's state at token 2, after its first step
    with torch.no_grad():
        at2 = model.run(tok[:, :2]).state
    from dataclasses import replace

    st, leaves = _with_leaf(replace(at2, cms=streamed[3].cms), 0)
    expected = _expected_step(leaves, ce(model.run(tok[:, 2:4], state=st).logits, tok[:, 3:5]), lr)
    for layer in range(2):
        for got, want in zip(streamed[5].cms[layer].weights[0], expected[layer], strict=True):
            assert torch.allclose(got, want, atol=1e-10), layer
    # The per-segment reading drops the paths from the level's earlier uses through the next layer's
    # memories: a real difference in layer 0, none in the last layer (no later layer carries them).
    segment = _build("hope", cms_periods=(2, 4), chunk_size=4, cms_lr=lr, cms_clip=1e9, cms_grad="segment")
    with torch.no_grad():
        seg = segment.stream(tok, trace=False).state.cms
    init = model.init_state(1).cms
    exact = streamed[5].cms
    step = float((exact[0].weights[1][0] - init[0].weights[1][0]).norm())
    assert float((seg[0].weights[1][0] - exact[0].weights[1][0]).norm()) > 1e-3 * step
    assert torch.allclose(seg[1].weights[1][0], exact[1].weights[1][0], atol=1e-12)


def test_cms_partial_chunk_carries_over_between_calls():
    model = _build("hope", cms_periods=(3,), chunk_size=4)
    tok = _tokens(B=1, T=10)
    with torch.no_grad():
        whole = model.stream(tok, trace=True).trace
        a = model.stream(tok[:, :4], trace=True)
        b = model.stream(tok[:, 4:], state=a.state, trace=True)
    ticks = [e.token for e in whole.updates_for("cms[0]", 0)]
    assert ticks == [2, 5, 8]
    assert [e.token for e in a.trace.updates_for("cms[0]", 0) + b.trace.updates_for("cms[0]", 0)] == ticks


@pytest.mark.parametrize("variant", ["sequential", "independent", "nested"])
def test_frozen_cms_level_never_moves(variant):
    """A frozen level stays bit-for-bit fixed in every variant (the nested one would otherwise reset it
    at its parent's period); the other level still learns."""
    model = _build("hope", cms_periods=(2, 4), chunk_size=4, cms_variant=variant, cms_lr=0.05)
    spec = nested.Freeze.parse("layer 0 cms[0], layer 1 cms[0]")
    with torch.no_grad():
        out = model.stream(_tokens(B=1, T=10), state=model.init_state(1, freeze=spec), trace=False).state
    for layer, blk in enumerate(model.blocks):
        assert torch.equal(out.cms[layer].weights[0][0], blk.ffn.up0[0][None])
        assert torch.equal(out.cms[layer].weights[0][1], blk.ffn.down0[0][None])
        assert not torch.equal(out.cms[layer].weights[1][0], blk.ffn.up0[1][None])


def test_freeze_spec_round_trips_and_refuses_unknown_levels():
    model = _build("hope", cms_periods=(2, 4))
    spec = nested.Freeze.parse(["layer 0 memories", "layer 1 cms[1]=0.5"], model)
    assert str(spec) == "layer 0 memories, layer 1 cms[1]=0.5" and nested.Freeze.parse(str(spec)) == spec
    assert spec.memory_gain(0) == 0.0 and spec.memory_gain(1) == 1.0 and spec.cms_gains(1, 2) == (1.0, 0.5)
    assert model.freeze_options() == ["layer 0 memories", "layer 0 cms[0]", "layer 0 cms[1]",
                                      "layer 1 memories", "layer 1 cms[0]", "layer 1 cms[1]"]  # fmt: skip
    for bad in ("layer 9 cms[0]", "layer 0 cms[7]", "layer 0 memories=-1", "layer 0 memories=nan", "everything"):
        with pytest.raises(ValueError):
            nested.Freeze.parse(bad, model)
    with pytest.raises(ValueError, match="no level"):
        _build("transformer").init_state(1, freeze="layer 0 memories")


def test_non_finite_memory_raises_a_typed_error_naming_layer_and_memory():
    model = _build("hope", cms_periods=(2,), chunk_size=4)
    with torch.no_grad():
        model.blocks[1].mixer.W1_0[0, -1, 0, 0] = float("nan")
    with pytest.raises(nested.NonFiniteMemoryError) as err, torch.no_grad():
        model(_tokens(T=6))
    assert err.value.layer == 1 and "selfmod" in err.value.memory
    assert "layer 1" in str(err.value)


def test_trace_records_rates_surprise_snapshots_predictions_and_round_trips(tmp_path):
    model = _build("hope", cms_periods=(2, 4), chunk_size=4)
    tok = _tokens(B=1, T=9)
    with torch.no_grad():
        tr = model.stream(tok, trace=True).trace
    assert tr.tokens == tok[0].tolist()
    eta, alpha, sur = tr.array("eta"), tr.array("alpha"), tr.array("surprise")
    assert eta.shape == (9, 2, 1) and ((eta > 0) & (eta < 1)).all() and ((alpha > 0) & (alpha < 1)).all()
    assert (sur >= 0).all()
    assert len(tr.snapshots[0]) == 9 and tr.snapshots[0][0][1]["M_memory"].shape == (32, 32)
    assert set(tr.snapshots[0][0][1]) == {"M_k", "M_v", "M_eta", "M_alpha", "M_memory"}
    assert not (tr.snapshot_at(0, 0)["M_memory"] == tr.snapshot_at(0, 8)["M_memory"]).all()  # the memory moved
    loss = tr.array("loss")
    assert math.isnan(loss[-1]) and not any(math.isnan(x) for x in loss[:-1])
    with torch.no_grad():
        logits = model(tok)
    ce = torch.nn.functional.cross_entropy(logits[0, :-1], tok[0, 1:], reduction="none")
    assert torch.allclose(torch.tensor(loss[:-1], dtype=torch.float64), ce, atol=1e-4)
    assert tr.topk_ids[0][0] == int(logits[0, 0].argmax())
    path = tr.save(tmp_path / "t.npz")
    back = nested.Trace.load(path)
    assert back.tokens == tr.tokens and len(back.updates) == len(tr.updates)
    cms_events = [i for i, e in enumerate(tr.updates) if e.component.startswith("cms")]
    assert back.updates[cms_events[-1]] == tr.updates[cms_events[-1]]
    assert back.updates[3].component == tr.updates[3].component
    assert (back.array("eta") == eta).all()
    assert (back.snapshots[1][-1][1]["M_k"] == tr.snapshots[1][-1][1]["M_k"]).all()


def test_corrupt_trace_is_refused(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a valid trace"):
        nested.Trace.load(bad)


def test_levels_fastest_to_slowest_with_outer_loop():
    model = _build("hope", cms_periods=(16, 4))
    lv = nested.levels(model)
    periods = [x.period for x in lv]
    finite = [p for p in periods if p is not None]
    assert finite == sorted(finite)
    assert periods[-2:] == [None, None] and lv[-2].kind == "optimizer" and lv[-1].kind == "weights"
    assert [x.period for x in lv if x.kind == "cms"] == [4, 4, 16, 16]
    names = {x.name for x in lv}
    assert {"M_k", "M_v", "M_eta", "M_alpha", "M_memory"} <= names


def test_bad_input_is_refused_clearly():
    model = _build("transformer")
    with pytest.raises(ValueError, match="token ids"):
        model(torch.tensor([[0, 300]]))
    with pytest.raises(ValueError, match="integer"):
        model(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="unknown model"):
        nested.build_model("gpt5")
    with pytest.raises(ValueError, match="unknown option"):
        nested.build_model("hope", cms_period=(2,))


def test_freezing_the_memories_stops_their_writes_but_not_their_decay():
    model = _build("hope", cms_periods=(4,), chunk_size=4)
    st = model.init_state(1, freeze="layer 0 memories, layer 1 memories")
    with torch.no_grad():
        out = model.stream(_tokens(B=1, T=6), state=st, trace=True)
    eta = out.trace.array("eta")
    assert (eta == 0).all()
    W0 = model.init_state(1).mixers[0].W1
    alpha = torch.tensor(out.trace.array("alpha")[:, 0, 0], dtype=torch.float64)
    # with eta = 0 each token only multiplies the memory by alpha_t (Eq. 88)
    assert torch.allclose(out.state.mixers[0].W1, W0 * alpha.prod(), atol=1e-10)


@pytest.mark.parametrize("name, symbols", [("hope", ("η", "α")), ("titans", ("θ", "1−α"))])
def test_the_retention_row_is_the_factor_the_memory_is_multiplied_by_and_the_trace_names_it(name, symbols):
    """Titans' trace rows hold theta_t and 1 - alpha_t (M_t = (1 - alpha_t) M_{t-1} + S_t): with the writes
    off, S stays 0 and the memory is the product of the "alpha" row; the trace says what each row holds."""
    model = _build(name)
    with torch.no_grad():
        out = model.stream(_tokens(B=1, T=6), state=model.init_state(1, freeze="layer 0 memories"), trace=True)
    assert (out.trace.gate_labels(0)["eta"][1], out.trace.gate_labels(0)["alpha"][1]) == symbols
    W0 = model.init_state(1).mixers[0].W1[0]
    kept = torch.tensor(out.trace.array("alpha")[:, 0, 0], dtype=torch.float64)
    assert torch.allclose(out.state.mixers[0].W1[0], W0 * kept.prod(), atol=1e-10)
    assert not torch.allclose(kept, torch.ones_like(kept))  # the row is not a constant 1


@pytest.mark.slow
def test_compiled_streaming_equals_eager():
    model = nested.build_model("hope", d_model=64, n_layers=2, seed=0, cms_periods=(4, 8))
    tokens = torch.randint(0, 256, (1, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        eager = model.stream(tokens, trace=False)
        fast = nested.compile_model(model, "stream")
        compiled = fast.stream(tokens, trace=False)
    assert torch.allclose(eager.logits, compiled.logits, atol=1e-4, rtol=1e-4)
    for a, b in zip(eager.state.mixers, compiled.state.mixers, strict=True):
        assert torch.allclose(a.W1, b.W1, atol=1e-5) and torch.allclose(a.W2, b.W2, atol=1e-5)
    for a, b in zip(eager.state.cms, compiled.state.cms, strict=True):  # the CMS levels learned the same
        assert torch.allclose(a.weights[1][0], b.weights[1][0], atol=1e-5)
    assert fast.whole_token is not None and not hasattr(model, "whole_token")  # graphs live in the wrapper
    with torch.no_grad():  # the compiled step still names the layer whose memory went non-finite
        model.blocks[1].mixer.W1_0[0, -1, 0, 0] = float("nan")
    with pytest.raises(nested.NonFiniteMemoryError) as err, torch.no_grad():
        fast.stream(tokens[:, :3], trace=False)
    assert err.value.layer == 1 and "selfmod" in err.value.memory


@pytest.mark.slow
def test_compiled_chunks_equal_eager_logits_and_every_gradient():
    """compile_model(model, "chunks"): the same function forward and backward, CMS gradients included."""
    model = nested.build_model("hope", d_model=32, n_layers=2, seed=0, chunk_size=8, cms_periods=(8, 16))
    tokens = torch.randint(0, 256, (2, 40), generator=torch.Generator().manual_seed(0))

    def logits_and_grads(forward):
        logits = forward(tokens)
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 256), tokens[:, 1:].reshape(-1))
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        model.zero_grad(set_to_none=True)
        return logits.detach(), grads

    eager_logits, eager_grads = logits_and_grads(model)
    fast = nested.compile_model(model, "chunks")
    calls = []
    for core in fast.cores:  # count calls: the compiled path must really be the one taken
        core["chunk"] = lambda *a, f=core["chunk"]: calls.append(1) or f(*a)
    logits, grads = logits_and_grads(fast)
    assert len(calls) == 2 * 5  # 2 layers x 5 chunks of 8
    assert torch.allclose(logits, eager_logits, atol=1e-5)
    for name, g in eager_grads.items():
        assert torch.allclose(grads[name], g, rtol=1e-3, atol=1e-5 * float(g.abs().max())), name


def test_first_order_cms_base_gradient_equals_autograd_through_the_update_chain(monkeypatch):
    """First order: each chunk's weights are anchored to the meta-learned base, so every use sends its
    gradient to the base. Reference: the weights carry their graph through every update (the
    second-order code path) with the update itself held constant (its gradient not differentiated) —
    plain autograd of the first-order definition."""
    import nested.model as model_module

    tokens = _tokens(B=2, T=24)

    def base_grads(**overrides):
        model = _build("hope", cms_periods=(4, 8), chunk_size=4, cms_lr=0.5, **overrides)
        logits = model(tokens)
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 256), tokens[:, 1:].reshape(-1))
        loss.backward()
        return logits.detach(), [p.grad.clone() for blk in model.blocks for p in [*blk.ffn.up0, *blk.ffn.down0]]

    fast_logits, fast = base_grads()
    grads = model_module.level_grads
    monkeypatch.setattr(model_module, "level_grads", lambda loss, t, retain, create: grads(loss, t, retain, False))
    ref_logits, ref = base_grads(cms_second_order=True)
    assert torch.allclose(fast_logits, ref_logits, atol=1e-10)
    for a, b in zip(fast, ref, strict=True):
        assert float(b.abs().max()) > 0 and torch.allclose(a, b, atol=1e-10)


@pytest.mark.parametrize("traced", [False, True])
def test_anchored_weights_are_used_as_they_are_and_send_the_base_the_batch_summed_gradient(traced):
    """nested.cms.Anchored (first-order CMS): the forward is the per-item value itself, bit for bit; the
    outer gradient reaches the base as the sum over the batch of the per-item weight gradients, as if the
    weights were base.expand(B, ...), without forming those; x gets its gradient through the value. The
    value's own gradient is formed only where it is wanted (autograd) or always when `traced`
    (torch.func.vjp, as the compiled segment step takes it)."""
    from nested.cms import Anchored, item_matmul

    g = torch.Generator().manual_seed(0)
    value = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)
    base = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    x = torch.randn(3, 4, 6, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 5, 6, generator=g, dtype=torch.float64)
    out = item_matmul(Anchored(value, base, traced), x)
    assert torch.equal(out, torch.bmm(value, x))
    g_base, g_x = torch.autograd.grad((out * w).sum(), (base, x))
    leaf = value.clone().requires_grad_(True)  # reference: per-item weights whose gradient is summed
    ref_value, ref_x = torch.autograd.grad((torch.bmm(leaf, x) * w).sum(), (leaf, x))
    assert torch.allclose(g_base, ref_value.sum(0), atol=1e-12) and torch.allclose(g_x, ref_x, atol=1e-12)
    _, vjp = torch.func.vjp(lambda v: (item_matmul(Anchored(v, base, traced), x) * w).sum(), value)
    (g_value,) = vjp(torch.ones((), dtype=torch.float64))
    assert torch.allclose(g_value, ref_value, atol=1e-12)


def test_a_training_forward_takes_the_same_cms_steps_as_a_stream_and_keeps_them_constant():
    """The level gradients of a training forward (from the uses it records, nested.cms.level_grads) equal
    the stream's (replayed with the weights as leaves), every step of every level; and the steps are
    constants of the outer graph (first order): the updated weights carry no graph."""
    model = _build("hope", cms_periods=(2, 4), chunk_size=2, cms_lr=0.5)
    tokens = _tokens(B=2, T=13)
    trained = model.run(tokens).state
    with torch.no_grad():
        streamed = model.stream(tokens, trace=False).state
    initial = model.init_state(2).cms
    for a, b, c in zip(trained.cms, streamed.cms, initial, strict=True):
        for pair_a, pair_b, pair_c in zip(a.weights, b.weights, c.weights, strict=True):
            for u, v, w in zip(pair_a, pair_b, pair_c, strict=True):
                assert not u.requires_grad and torch.allclose(u, v, atol=1e-10)
                assert float((u - w).abs().max()) > 1e-4  # every level did learn


@pytest.mark.parametrize("fixed", ["k", "v"])
def test_a_fixed_k_or_v_is_a_projection_not_a_memory(fixed):
    """Table 6's "k / v projection moved to the lowest level": the memory is gone from the layer (names,
    weights) and the layer's raw k / v is x W_k / x W_v (heads folded), before the same conv as a memory's."""
    model = _build("hope", cms_periods=(4,), chunk_size=4, **{f"adaptive_{fixed}": False})
    mixer = model.blocks[0].mixer
    assert f"M_{fixed}" not in mixer.names and mixer.W1_0.shape[1] == len(mixer.names) == 4
    assert getattr(mixer, f"{fixed}_proj") is not None and f"blocks.0.mixer.{fixed}_proj.weight" in model.state_dict()
    adaptive = _build("hope", cms_periods=(4,), chunk_size=4)
    assert "M_k" in adaptive.blocks[0].mixer.names and adaptive.blocks[0].mixer.k_proj is None
    x = torch.randn(1, 3, model.cfg.d_model, dtype=torch.float64)
    q, k, v = mixer.fixed_projections(x)
    assert q is not None and (k is None) == (fixed != "k") and (v is None) == (fixed != "v")
    got = k if fixed == "k" else v
    want = (
        getattr(mixer, f"{fixed}_proj")(x)
        .view(1, 3, mixer.cfg.n_heads, -1)
        .transpose(1, 2)
        .reshape(-1, 3, mixer.cfg.head_dim)
    )
    assert torch.equal(got, want)


def test_the_outer_graph_follows_requires_grad_after_the_first_call_and_in_a_copy():
    """The model lists its parameters once (a compiled stream step walked the module tree every token):
    toggling requires_grad later, or on a deep copy, still decides whether a call builds an outer graph."""
    import copy

    model = nested.build_model("hope", d_model=16, n_layers=1, cms_periods=[2, 4], seed=0)
    x = torch.randint(0, 256, (1, 6))
    assert model(x).requires_grad
    model.requires_grad_(False)
    assert not model(x).requires_grad
    twin = copy.deepcopy(model)
    twin.requires_grad_(True)
    assert twin(x).requires_grad and not model(x).requires_grad
    model.head.weight.requires_grad_(True)  # one weight is enough
    assert model(x).requires_grad


@pytest.mark.parametrize(
    "rule,clip,cms_clip,want_inner,want_cms",
    [("gd", 1e-9, 1e-9, 1.0, 1.0), ("gd", 1e9, 1e9, 0.0, 0.0), ("normalized", 10.0, 1e9, 0.0, 0.0),
     ("normalized", 0.5, 1e9, 1.0, 0.0)],
)  # fmt: skip
def test_trace_clip_rates_say_when_each_guard_fired(rule, clip, cms_clip, want_inner, want_cms):
    """Trace.clip_rates: per memory the fraction of (token, head) inner gradients the guard clipped, per CMS
    level the fraction of updates. Normalised writes have norm 1, so a guard at 10 never fires and one at 0.5
    always does."""
    model = nested.build_model("hope", d_model=32, n_layers=2, cms_periods=(2, 4), inner_update=rule,
                               inner_clip=clip, cms_clip=cms_clip, seed=0)  # fmt: skip
    tokens = torch.randint(0, 256, (1, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        rates = model.stream(tokens, trace=True).trace.clip_rates()
    inner = {k: v for k, v in rates.items() if "memory" in k}
    cms = {k: v for k, v in rates.items() if "cms" in k}
    assert len(inner) == 2 * len(model.blocks[0].mixer.names) and len(cms) == 4
    assert all(v == want_inner for v in inner.values()), inner
    assert all(v == want_cms for v in cms.values()), cms
