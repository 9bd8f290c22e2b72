"""The whole-segment training step (nested.compile, mode "train"): the same function as the eager
schedule — logits, every parameter gradient, and the state a stream continues from. It serves the
per-segment CMS gradient (`cms_grad="segment"`) and single-period models, where it equals "exact"."""

import pytest
import torch
from torch._dynamo.utils import counters

import nested

# Segments of gcd(periods) tokens; chunk 8 with segments of 4 leaves the frozen state un-refreshed in
# every other segment (the frozen and current memories differ there).
CASES = [
    {"cms_periods": (4, 8), "chunk_size": 4, "cms_grad": "segment"},
    {"cms_periods": (4, 12), "chunk_size": 8, "momentum": 0.8, "cms_variant": "nested", "cms_grad": "segment"},
    {
        "cms_grad": "segment",
        "cms_periods": (2, 4),
        "chunk_size": 4,
        "proj_chunk_size": 2,
        "adaptive_q": True,
        "n_heads": 2,
        "cms_variant": "independent",
    },
    {"cms_periods": (4,), "chunk_size": 4, "precondition": False, "read_after_write": True, "inner_objective": "dot"},
    {"cms_periods": (4, 8), "chunk_size": 4, "cms_grad": "segment", "inner_update": "normalized"},
]


def _build(dtype=torch.float64, **kw):
    return nested.build_model("hope", d_model=32, n_layers=2, seed=0, dtype=dtype, **kw)


def _tokens(B=2, T=19):
    return torch.randint(0, 256, (B, T), generator=torch.Generator().manual_seed(0))


def _count_segment_calls(fast, step) -> list:
    """Route the wrapper's segment step through `step`, counting calls."""
    calls = []
    fast.segment_graph = lambda *a: calls.append(1) or step(*a)
    return calls


def _train_in_two_calls(model, tokens, cut=13):
    """Two calls with the state carried (the last segment of the first call resolves in the second),
    then the outer backward. Returns logits, every parameter gradient, and the final state."""
    first = model.run(tokens[:, :cut])
    second = model.run(tokens[:, cut:], state=first.state)
    logits = torch.cat([first.logits, second.logits], 1)
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 256), tokens[:, 1:].reshape(-1))
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return logits.detach(), grads, second.state


def _assert_same_state(a, b, atol: float) -> None:
    assert a.pos == b.pos
    for ma, mb in zip(a.mixers, b.mixers, strict=True):
        for key in ("W1", "W2", "F1", "F2", "conv") + (("S1", "S2") if ma.S1 is not None else ()):
            assert torch.allclose(getattr(ma, key), getattr(mb, key), atol=atol), key
    for ca, cb in zip(a.cms, b.cms, strict=True):
        for key in ("weights", "acc"):  # the weights and the partial level chunks
            for pa, pb in zip(getattr(ca, key), getattr(cb, key), strict=True):
                assert (pa is None) == (pb is None), key
                for wa, wb in zip(pa or (), pb or (), strict=True):
                    assert torch.allclose(wa, wb, atol=atol), key


@pytest.mark.parametrize("kw", CASES, ids=[str(i) for i in range(len(CASES))])
def test_segment_step_equals_the_eager_schedule(kw):
    """segment_core (uncompiled: torch.func.vjp in eager) against the eager pieces + segment backward."""
    tokens = _tokens()
    ref_logits, ref_grads, ref_state = _train_in_two_calls(_build(**kw), tokens)
    model = _build(**kw)
    fast = nested.compile_model(model, "train")
    fast.cores = [None] * len(model.blocks)  # eager chunks: only the segment step is under test
    calls = _count_segment_calls(fast, fast._segment_core)
    logits, grads, state = _train_in_two_calls(fast, tokens)
    assert calls, "the segment step was never taken"
    assert torch.allclose(logits, ref_logits, atol=1e-10)
    for name, g in ref_grads.items():
        assert float(g.abs().max()) > 0, name
        assert torch.allclose(grads[name], g, atol=1e-10), name
    _assert_same_state(state, ref_state, atol=1e-10)


def test_segment_step_guards_non_finite_memories():
    model = _build(cms_periods=(4, 8), chunk_size=4, cms_grad="segment")
    fast = nested.compile_model(model, "train")
    fast.cores = [None] * len(model.blocks)
    calls = _count_segment_calls(fast, fast._segment_core)
    with torch.no_grad():
        model.blocks[1].mixer.W1_0[0, -1, 0, 0] = float("nan")
    with pytest.raises(nested.NonFiniteMemoryError) as err:
        fast(_tokens())
    assert calls
    assert err.value.layer == 1 and err.value.memory.startswith("selfmod.")


def test_compile_segments_only_where_it_applies():
    def graph(model):
        return nested.compile_model(model, "train").segment_graph

    assert graph(_build(cms_periods=(4, 8), cms_grad="segment")) is not None
    assert graph(_build(cms_periods=(4,))) is not None  # one period: exact == segment
    assert graph(_build(cms_periods=(4, 8))) is None  # exact across segments: the eager rule
    assert graph(_build(cms_periods=(4, 8), cms_grad="segment", cms_second_order=True)) is None
    assert graph(nested.build_model("hope-attention", d_model=32, n_layers=2, seed=0)) is None


@pytest.mark.slow
def test_compiled_segments_equal_eager():
    """compile_segments(): the compiled graph (forward, torch.func segment gradient, outer backward)."""
    kw = {"cms_periods": (4, 8), "chunk_size": 4, "cms_grad": "segment"}
    tokens = _tokens(T=20)
    ref_logits, ref_grads, ref_state = _train_in_two_calls(_build(**kw), tokens, cut=12)
    nested.memory._MASKS.clear()  # as in a fresh process: the first graph compiles before any eager chunk
    model = nested.compile_model(_build(**kw), "train")
    model.cores = [None] * len(model.blocks)  # the last segment of each call runs eager (not under test)
    calls = _count_segment_calls(model, model.segment_graph)
    graphs = counters["stats"]["unique_graphs"]
    logits, grads, state = _train_in_two_calls(model, tokens, cut=12)
    # one graph for every segment (a recompile costs minutes): nothing the eager pieces do between
    # segments, such as filling a cache, may invalidate it
    assert counters["stats"]["unique_graphs"] == graphs + 1
    assert len(calls) == 2 + 1  # segments 0, 4 in the first call (8-11 has no next token), then 12
    assert torch.allclose(logits, ref_logits, atol=1e-9)
    for name, g in ref_grads.items():
        assert torch.allclose(grads[name], g, atol=1e-9), name
    _assert_same_state(state, ref_state, atol=1e-9)
    again, _, _ = _train_in_two_calls(model, tokens, cut=12)
    assert counters["stats"]["unique_graphs"] == graphs + 1 and torch.equal(again, logits)
