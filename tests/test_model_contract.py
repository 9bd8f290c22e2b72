"""The public contract of DESIGN.md §2: one function, two schedules, explicit per-item state."""

import math

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
    ("hope-attention", {"cms_periods": (2, 4)}),
    ("titans", {"chunk_size": 4}),
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
        snapshot = {k: v.clone() for k, v in first.state["mixer"][0].items() if torch.is_tensor(v)}
        x = model.stream(tok[:, 5:], state=first.state, trace=False).logits
        y = model.stream(tok[:, 5:], state=first.state, trace=False).logits  # reuse the same state
    assert torch.equal(x, y)
    for k, v in snapshot.items():
        assert torch.equal(first.state["mixer"][0][k], v), k


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


def test_cms_cadence_periods_2_4_over_9_tokens():
    """DESIGN.md §5: exactly 4 and 2 updates, after tokens 1,3,5,7 and 3,7 (per layer)."""
    model = _build("hope", cms_periods=(2, 4), chunk_size=4)
    with torch.no_grad():
        tr = model.stream(_tokens(B=1, T=9), trace=True).trace
    for layer in range(2):
        assert [e.token for e in tr.updates_for("cms[0]", layer)] == [1, 3, 5, 7]
        assert [e.token for e in tr.updates_for("cms[1]", layer)] == [3, 7]
        assert {e.period for e in tr.updates_for("cms[1]", layer)} == {4}


def test_cms_update_is_the_summed_next_token_gradient_over_its_chunk():
    """Level 0 (period 2) after tokens 0,1: theta_0 - lr * grad[CE(logit_0, x_1) + CE(logit_1, x_2)]."""
    lr = 0.05
    model = _build("hope", cms_periods=(2, 4), chunk_size=4, cms_lr=lr, cms_clip=1e9)
    tok = _tokens(B=1, T=3)
    st = model.init_state(1)
    theta = [c["up"][0].detach().clone().requires_grad_(True) for c in st["cms"]]
    for c, t in zip(st["cms"], theta, strict=True):
        c["up"][0] = t
    logits = model.run(tok[:, :2], state=st).logits
    loss = torch.nn.functional.cross_entropy(logits[0], tok[0, 1:3], reduction="sum")
    grads = torch.autograd.grad(loss, theta)
    with torch.no_grad():
        after = model.stream(tok, trace=False).state
    for layer in range(2):
        expected = theta[layer].detach() - lr * grads[layer]
        assert torch.allclose(after["cms"][layer]["up"][0], expected, atol=1e-9)
        # the period-4 level has not moved yet
        assert torch.equal(after["cms"][layer]["up"][1], model.blocks[layer].ffn.up0[1][None])


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


def test_frozen_cms_level_never_moves():
    model = _build("hope", cms_periods=(2,), chunk_size=4)
    st = model.init_state(1)
    for c in st["cms"]:
        c["lr_scale"] = [0.0]
    with torch.no_grad():
        out = model.stream(_tokens(B=1, T=9), state=st, trace=False).state
    assert torch.equal(out["cms"][0]["up"][0], model.blocks[0].ffn.up0[0][None])


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
    st = model.init_state(1)
    for m in st["mixer"]:
        m["eta_gain"] = 0.0
    with torch.no_grad():
        out = model.stream(_tokens(B=1, T=6), state=st, trace=True)
    eta = out.trace.array("eta")
    assert (eta == 0).all()
    W0 = model.init_state(1)["mixer"][0]["W1"]
    alpha = torch.tensor(out.trace.array("alpha")[:, 0, 0], dtype=torch.float64)
    # with eta = 0 each token only multiplies the memory by alpha_t (Eq. 88)
    assert torch.allclose(out.state["mixer"][0]["W1"], W0 * alpha.prod(), atol=1e-10)


@pytest.mark.slow
def test_compiled_streaming_equals_eager():
    model = nested.build_model("hope", d_model=64, n_layers=2, seed=0, cms_periods=(4, 8))
    tokens = torch.randint(0, 256, (1, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        eager = model.stream(tokens, trace=False)
        model.compile_streaming()
        compiled = model.stream(tokens, trace=False)
    assert torch.allclose(eager.logits, compiled.logits, atol=1e-4, rtol=1e-4)
    for a, b in zip(eager.state["mixer"], compiled.state["mixer"], strict=True):
        assert torch.allclose(a["W1"], b["W1"], atol=1e-5) and torch.allclose(a["W2"], b["W2"], atol=1e-5)
    assert model._token_compiled is not None  # Hope: the whole token step is one compiled graph
    with torch.no_grad():  # the compiled step still names the layer whose memory went non-finite
        model.blocks[1].mixer.W1_0[0, -1, 0, 0] = float("nan")
    with pytest.raises(nested.NonFiniteMemoryError) as err, torch.no_grad():
        model.stream(tokens[:, :3], trace=False)
    assert err.value.layer == 1 and "selfmod" in err.value.memory


@pytest.mark.slow
def test_compiled_chunks_equal_eager_logits_and_every_gradient():
    """model.compile_chunks(): the same function forward and backward, CMS segment gradients included."""
    model = nested.build_model("hope", d_model=32, n_layers=2, seed=0, chunk_size=8, cms_periods=(8, 16))
    tokens = torch.randint(0, 256, (2, 40), generator=torch.Generator().manual_seed(0))

    def logits_and_grads():
        logits = model(tokens)
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 256), tokens[:, 1:].reshape(-1))
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        model.zero_grad(set_to_none=True)
        return logits.detach(), grads

    eager_logits, eager_grads = logits_and_grads()
    model.compile_chunks()
    calls = []
    for blk in model.blocks:  # count calls: the compiled path must really be the one taken
        compiled = blk.mixer._chunk_compiled
        blk.mixer._chunk_compiled = lambda *a, f=compiled: calls.append(1) or f(*a)
    logits, grads = logits_and_grads()
    assert len(calls) == 2 * 5  # 2 layers x 5 chunks of 8
    assert torch.allclose(logits, eager_logits, atol=1e-5)
    for name, g in eager_grads.items():
        assert torch.allclose(grads[name], g, rtol=1e-3, atol=1e-5 * float(g.abs().max())), name


def test_first_order_cms_base_gradient_equals_autograd_through_the_update_chain(monkeypatch):
    """ItemLinear sends each use's gradient straight to the meta-learned base. Reference: the weights
    carry their graph through every update (the second-order code path) with the update itself held
    constant (detached) — plain autograd of the first-order definition."""
    import nested.model as model_module

    tokens = _tokens(B=2, T=24)

    def base_grads(**overrides):
        model = _build("hope", cms_periods=(4, 8), chunk_size=4, cms_lr=0.5, **overrides)
        logits = model(tokens)
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 256), tokens[:, 1:].reshape(-1))
        loss.backward()
        return logits.detach(), [p.grad.clone() for blk in model.blocks for p in [*blk.ffn.up0, *blk.ffn.down0]]

    fast_logits, fast = base_grads()
    detached = model_module.weight_grads
    monkeypatch.setattr(model_module, "weight_grads", lambda *a: tuple(g.detach() for g in detached(*a)))
    ref_logits, ref = base_grads(cms_second_order=True)
    assert torch.allclose(fast_logits, ref_logits, atol=1e-10)
    for a, b in zip(fast, ref, strict=True):
        assert float(b.abs().max()) > 0 and torch.allclose(a, b, atol=1e-10)
