"""Inner rules writing one memory (nested.rule_recall, PAPER.md §9 E3): the MLP memory's closed-form gradients
against autograd, and the fixed points the rules must reach on pairs presented again and again."""

import pytest
import torch
import torch.nn.functional as F

from nested.rule_recall import MLP_RULES, MLPMemory, overwrite_key, recall_key, study


@pytest.mark.parametrize("rule", MLP_RULES[:2])
def test_the_mlp_memorys_gradients_are_autograd_of_its_loss(rule):
    g = torch.Generator().manual_seed(0)
    mem = MLPMemory(8, g)
    mem.W1 = torch.randn(8, 8, generator=g, dtype=torch.float64)
    k, v = torch.randn(8, generator=g, dtype=torch.float64), torch.randn(8, generator=g, dtype=torch.float64)
    W1, W2 = mem.W1.clone().requires_grad_(), mem.W2.clone().requires_grad_()
    y = W1 @ F.silu(W2 @ k)
    loss = -(y @ v) if rule == MLP_RULES[0] else 0.5 * (y - v).square().sum()
    want = torch.autograd.grad(loss, (W1, W2))
    for got, ref in zip(mem.grads(k, v, rule), want, strict=True):
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


def test_pairs_presented_again_reach_each_rules_fixed_point():
    """The delta rule and GD on L2 store v (W k = v: norm ratio 1, recall 1); Eq. 93 as printed and DGD store
    v / 2 (their decay term and L2 gradient both act at W_{t-1}); Hebbian keeps adding v k^T (grows)."""
    _, _, results = study(16, 1)
    fixed = {rule: per["fixed point"][0] for rule, per in results.items()}
    for rule in ("delta (Eq. 92 corrected, single delta)", "MLP, GD on L2"):
        assert fixed[rule][0] > 0.99 and abs(fixed[rule][1] - 1) < 0.01, rule
    for rule in ("Eq. 93 as printed (double k k^T)", "DGD (Eq. 57)"):
        assert fixed[rule][0] > 0.99 and abs(fixed[rule][1] - 0.5) < 0.01, rule
    assert fixed["Hebbian (linear attention, Eq. 64)"][1] > 3


def test_rules_that_subtract_the_current_read_overwrite_where_hebbian_cannot():
    _, _, results = study(16, 1)
    hebbian = results["Hebbian (linear attention, Eq. 64)"]
    for rule in ("delta (Eq. 92 corrected, single delta)", "DGD (Eq. 57)", "Eq. 93 as printed (double k k^T)"):
        assert results[rule][overwrite_key(0.0)][0][0] > hebbian[overwrite_key(0.0)][0][0] + 0.1, rule
        assert results[rule][recall_key(0.6, 1.0)][0][0] > hebbian[recall_key(0.6, 1.0)][0][0], rule
