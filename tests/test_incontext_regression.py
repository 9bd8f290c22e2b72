"""E4's task, its model switches (static Titans gates, no forgetting) and its measures."""

import numpy as np
import pytest
import torch

from nested.incontext_regression import VARIANTS, RegressionNet, RegressionTask, _spearman, measure, variant_config


def _batch(**kw):
    task = RegressionTask(**kw)
    return task, task.sample(64, torch.Generator().manual_seed(0))


def test_queries_ask_for_the_map_in_force_and_carry_no_value():
    """With no noise, least squares on the examples before a switch recovers the first map, which answers
    every query before the switch and not those after it; query tokens hide their value."""
    task, b = _batch(d_key=4, seq_len=64, sigma_min=1e-9, sigma_max=1e-9, switch_prob=1.0)
    d = task.d_key
    q = b["is_query"][0]
    assert torch.equal(b["inputs"][0, q, d : 2 * d], torch.zeros(int(q.sum()), d))
    assert bool((b["inputs"][0, :, -1] == q.float()).all())
    s = int(b["switch_at"][0])
    assert task.seq_len // 4 <= s < 3 * task.seq_len // 4
    pos = torch.arange(task.seq_len)
    before, after = ~q & (pos < s), q & (pos >= s)
    keys, vals = b["inputs"][0, :, :d].double(), b["inputs"][0, :, d : 2 * d].double()
    A = torch.linalg.lstsq(keys[before], vals[before]).solution  # v = k A
    early = q & (pos < s)
    assert torch.allclose(keys[early] @ A, b["targets"][0, early].double(), atol=1e-5)
    assert not torch.allclose(keys[after] @ A, b["targets"][0, after].double(), atol=1e-2)


def test_noise_scale_follows_sigma():
    task, b = _batch(d_key=8, seq_len=256, switch_prob=0.0)
    noise = (b["inputs"][..., 8:16] - b["targets"])[~b["is_query"]].view(64, -1, 8)
    measured = noise.pow(2).sum(-1).mean(-1).sqrt()  # |noise| ~ sigma
    assert torch.allclose(measured, b["sigma"], rtol=0.15)
    assert bool((b["switch_at"] == -1).all())


def _records(variant: str, **overrides):
    cfg = variant_config(variant, d_model=16, **overrides)
    net = RegressionNet(cfg, 9, 4)
    x = torch.randn(2, 24, 9)
    return net, net(x)


@pytest.mark.parametrize("variant", ["2 Titans, data-dependent gates", "4 self-modifying Titans"])
def test_without_the_forget_gate_retention_is_one(variant):
    _, (_, records) = _records(variant, forget_gate=False)
    assert torch.equal(records[0]["alpha"], torch.ones_like(records[0]["alpha"]))
    _, (_, records) = _records(variant)
    assert float(records[0]["alpha"].detach().max()) < 1.0


def test_without_writes_or_forgetting_a_memory_stays_fixed():
    """eta_scale 0 and no forget gate: the self-modifying memories end the sequence as they began; with
    the forget gate on they decay."""
    for forget, same in ((False, True), (True, False)):
        cfg = variant_config("4 self-modifying Titans", d_model=16, eta_scale=0.0, forget_gate=forget)
        mixer = RegressionNet(cfg, 9, 4).blocks[0].mixer
        state = mixer.init_state(2, "cpu", torch.float32)
        _, end, _ = mixer(torch.randn(2, 24, 16), state, False)
        assert torch.equal(end.W1, state.W1) == same and torch.equal(end.W2, state.W2) == same


def test_static_titans_gates_are_the_same_at_every_token_and_ignore_the_input():
    net, (pred, records) = _records("1 Titans, static gates")
    eta = records[0]["eta"]
    assert torch.allclose(eta, eta[:, :1].expand_as(eta))
    pred.sum().backward()
    gates = net.blocks[0].mixer.gates
    assert gates.weight.grad is None and gates.bias.grad is not None and float(gates.bias.grad.abs().sum()) > 0
    _, (_, records) = _records("2 Titans, data-dependent gates")
    assert float(records[0]["eta"].detach().std(1).max()) > 0


def test_every_variant_is_one_switch_from_the_full_model():
    assert VARIANTS["4 self-modifying Titans"] == {}
    for name, change in VARIANTS.items():
        cfg = variant_config(name)
        assert all(getattr(cfg, k) == v for k, v in change.items()), name


def test_spearman_and_the_measures():
    a = np.array([0.1, 0.5, 0.2, 0.9])
    assert _spearman(a, np.exp(a)) == pytest.approx(1.0)
    assert _spearman(a, -a) == pytest.approx(-1.0)
    assert _spearman(np.full(4, 0.3), a) == 0.0  # a constant rate says nothing about sigma
    task = RegressionTask(d_key=4, seq_len=64)
    net = RegressionNet(variant_config("2 Titans, data-dependent gates", d_model=16), task.d_in, task.d_key)
    torch.nn.init.zeros_(net.read_out.weight)
    torch.nn.init.zeros_(net.read_out.bias)
    m = measure(net, task, n=256)  # predicting 0: the MSE is the targets' mean square (1 by construction)
    assert m.mse == pytest.approx(1.0, abs=0.1)
    assert [start for start, _ in m.mse_after_switch] == [0, 8, 16, 32]  # no 64-token window fits in 64 tokens
