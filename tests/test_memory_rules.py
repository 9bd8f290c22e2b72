"""Inner rules against closed forms and oracles (PAPER.md §1.3e, §2, §4.2)."""

import pytest
import torch
import torch.nn.functional as F

from nested.attention import softmax_read, weighted_regression_minimiser
from nested.memory import RecurrenceInputs, recurrence_chunk, recurrence_step, run_recurrence
from nested.rules import delta_update, dgd_proximal_minimiser, dgd_update, gated_delta_update, hebbian_update


def _autograd_step(W, loss_fn, eta):
    W = W.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(loss_fn(W), W)
    return (W - eta * g).detach()


def test_hebbian_is_one_gd_step_on_the_dot_product_objective(f64):
    W, k, v = torch.randn(5, 4), torch.randn(4), torch.randn(5)
    expected = _autograd_step(W, lambda M: -(M @ k) @ v, eta=0.3)
    assert torch.allclose(hebbian_update(W, k, v, eta=0.3), expected)
    # state independent: the increment does not depend on W
    assert torch.allclose(hebbian_update(W, k, v, 0.3) - W, hebbian_update(2 * W, k, v, 0.3) - 2 * W)


def test_delta_rule_is_one_gd_step_on_l2_and_memorises_with_unit_step(f64):
    W, k, v = torch.randn(5, 4), F.normalize(torch.randn(4), dim=0), torch.randn(5)
    expected = _autograd_step(W, lambda M: 0.5 * ((M @ k - v) ** 2).sum(), eta=0.7)
    assert torch.allclose(delta_update(W, k, v, 0.7), expected)
    # with ||k|| = 1 and eta = 1 the new memory retrieves v exactly
    assert torch.allclose(delta_update(W, k, v, 1.0) @ k, v)
    # and leaves directions orthogonal to k untouched
    u = torch.randn(4)
    u = u - (u @ k) * k
    assert torch.allclose(delta_update(W, k, v, 0.7) @ u, W @ u)


def test_gated_delta_reduces_to_delta_and_decays(f64):
    W, k, v = torch.randn(5, 4), F.normalize(torch.randn(4), dim=0), torch.randn(5)
    assert torch.allclose(gated_delta_update(W, k, v, 0.4, 1.0), delta_update(W, k, v, 0.4))
    u = torch.randn(4)
    u = u - (u @ k) * k
    assert torch.allclose(gated_delta_update(W, k, v, 0.4, 0.9) @ u, 0.9 * (W @ u))


@pytest.mark.parametrize("eta", [0.05, 0.5, 3.0])
@pytest.mark.parametrize("scale", [0.3, 1.0, 2.5])
def test_dgd_equals_exact_proximal_minimiser(f64, eta, scale):
    W, x, g = torch.randn(6, 4), scale * F.normalize(torch.randn(4), dim=0), torch.randn(6)
    assert torch.allclose(dgd_update(W, x, g, eta), dgd_proximal_minimiser(W, x, g, eta), atol=1e-10)


def test_dgd_is_gd_plus_output_norm_decay_when_step_is_normalised(f64):
    """PAPER.md §2 identity: Eq. 57 = W - eta'(W x + grad_y) x^T."""
    W, x, g, eta = torch.randn(6, 4), torch.randn(4), torch.randn(6), 0.8
    ep = eta / (1 + eta * (x @ x))
    assert torch.allclose(dgd_update(W, x, g, eta), W - ep * torch.outer(W @ x + g, x))


def test_softmax_attention_is_the_weighted_regression_minimiser(f64):
    K, V, q = torch.randn(9, 4), torch.randn(9, 3), torch.randn(4)
    allowed = torch.ones(1, 9, dtype=torch.bool)
    out = softmax_read(q[None], K, V, allowed)[0]
    assert torch.allclose(out, weighted_regression_minimiser(K, V, q), atol=1e-10)
    # a window (Eq. 63) is the minimiser over the window's pairs only
    allowed[:, :5] = False
    assert torch.allclose(softmax_read(q[None], K, V, allowed)[0], weighted_regression_minimiser(K[5:], V[5:], q))


def _random_inputs(N, C, o, i, precond, mom, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = F.normalize(torch.randn(N, C, i, generator=g), dim=-1)
    return RecurrenceInputs(
        decay=0.5 + 0.5 * torch.rand(N, C, generator=g),
        lr=torch.rand(N, C, generator=g),
        grads=torch.randn(N, C, o, generator=g),
        gkeys=torch.randn(N, C, i, generator=g),
        precond=torch.rand(N, C, generator=g) if precond else None,
        pkeys=k if precond else None,
        mom=torch.rand(N, C, generator=g) if mom else None,
        queries=torch.randn(N, C, i, generator=g),
    )


@pytest.mark.parametrize("precond", [False, True])
@pytest.mark.parametrize("mom", [False, True])
@pytest.mark.parametrize("read_after_write", [False, True])
@pytest.mark.parametrize("C", [1, 5, 16])
def test_chunk_parallel_recurrence_equals_the_literal_loop(f64, precond, mom, read_after_write, C):
    N, o, i = 3, 6, 4
    W = torch.randn(N, o, i)
    S = torch.randn(N, o, i) if mom else None
    inp = _random_inputs(N, C, o, i, precond, mom)
    r1, W1, S1 = recurrence_step(W, S, inp, read_after_write)
    r2, W2, S2 = recurrence_chunk(W, S, inp, read_after_write)
    assert torch.allclose(r1, r2, atol=1e-10) and torch.allclose(W1, W2, atol=1e-10)
    if mom:
        assert torch.allclose(S1, S2, atol=1e-10)


def test_recurrence_matches_eq93_literally_for_a_linear_memory(f64):
    """One token of the recurrence with decay alpha, preconditioner eta k k^T and the L2 gradient is
    M (alpha I - eta k k^T) - eta (M k - v_hat) k^T (Eq. 93)."""
    M, k, vh = torch.randn(1, 5, 4), F.normalize(torch.randn(1, 1, 4), dim=-1), torch.randn(1, 1, 5)
    alpha, eta = 0.9, 0.3
    grad = torch.einsum("noi,nti->nto", M, k) - vh
    inp = RecurrenceInputs(decay=torch.full((1, 1), alpha), lr=torch.full((1, 1), eta), grads=grad, gkeys=k,
                           precond=torch.full((1, 1), eta), pkeys=k)  # fmt: skip
    _, M1, _ = recurrence_step(M, None, inp)
    kk = torch.outer(k[0, 0], k[0, 0])
    expected = M[0] @ (alpha * torch.eye(4) - eta * kk) - eta * torch.outer(M[0] @ k[0, 0] - vh[0, 0], k[0, 0])
    assert torch.allclose(M1[0], expected)


@pytest.mark.parametrize(("objective", "fixed_point"), [("l2", 0.5), ("dot", 1.0)])
def test_eq93_double_kk_halves_the_fixed_point_and_single_delta_does_not(f64, objective, fixed_point):
    """PAPER.md §4.2: with alpha = 1, Eq. 93 (l2) converges to M k = v_hat / 2; decay + dot-product
    gradient (the "single delta" reading) converges to M k = v_hat."""
    M, k, vh = torch.zeros(1, 3, 3), F.normalize(torch.randn(1, 1, 3), dim=-1), torch.randn(1, 1, 3)
    for _ in range(200):
        grad = (torch.einsum("noi,nti->nto", M, k) - vh) if objective == "l2" else -vh
        inp = RecurrenceInputs(decay=torch.ones(1, 1), lr=torch.full((1, 1), 0.3), grads=grad, gkeys=k,
                               precond=torch.full((1, 1), 0.3), pkeys=k)  # fmt: skip
        _, M, _ = recurrence_step(M, None, inp)
    assert torch.allclose(torch.einsum("noi,nti->nto", M, k), fixed_point * vh, atol=1e-8)


@pytest.mark.parametrize("read_after_write", [False, True])
@pytest.mark.parametrize("stepwise", [False, True])
def test_k_inner_steps_per_token_are_k_delta_rule_steps(f64, read_after_write, stepwise):
    """`steps=3`: each token's delta-rule step (decay a, preconditioner beta k k^T, gradient -v k^T) taken 3
    times in a row, in both schedules; the read of a token is before its first step or after its last."""
    N, C, d = 2, 4, 5
    g = torch.Generator().manual_seed(1)
    k = F.normalize(torch.randn(N, C, d, generator=g), dim=-1)
    v, q = torch.randn(N, C, d, generator=g), torch.randn(N, C, d, generator=g)
    beta, a = torch.rand(N, C, generator=g), 0.8 + 0.2 * torch.rand(N, C, generator=g)
    W0 = torch.randn(N, d, d, generator=g)
    inp = RecurrenceInputs(decay=a, lr=beta, grads=-v, gkeys=k, precond=beta, pkeys=k, queries=q)
    reads, W, _ = run_recurrence(W0, None, inp, stepwise, read_after_write, steps=3)
    for n in range(N):
        M = W0[n]
        for t in range(C):
            if not read_after_write:
                assert torch.allclose(reads[n, t], M @ q[n, t], atol=1e-10)
            for _ in range(3):
                M = (
                    a[n, t] * M
                    - beta[n, t] * torch.outer(M @ k[n, t], k[n, t])
                    + beta[n, t] * torch.outer(v[n, t], k[n, t])
                )
            if read_after_write:
                assert torch.allclose(reads[n, t], M @ q[n, t], atol=1e-10)
        assert torch.allclose(W[n], M, atol=1e-10)
    one, _, _ = run_recurrence(W0, None, inp, stepwise, read_after_write, steps=1)
    assert not torch.allclose(one[:, 1:], reads[:, 1:])  # the switch changes what later tokens read
