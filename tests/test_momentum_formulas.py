"""Preconditioned (Eqs. 46-47) and deep momentum (Eq. 50) against their formulas, written out here
independently of nested.optim.momentum (float64, a matrix parameter, gradients set by hand)."""

import pytest
import torch
import torch.nn.functional as F

from nested.optim import DeepMomentum, PreconditionedMomentum


def _grads(n: int, shape=(5, 3), seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=g, dtype=torch.float64) * (1 + i) for i in range(n)]


def _run(opt_cls, grads, **kw) -> tuple[torch.Tensor, dict]:
    p = torch.nn.Parameter(torch.linspace(-1, 1, grads[0].numel(), dtype=torch.float64).view(grads[0].shape))
    opt = opt_cls([p], **kw)
    for g in grads:
        p.grad = g.clone()
        opt.step()
    return p.detach(), opt.state[p]


def test_heavy_ball_is_the_closed_form_sum_of_decayed_gradients():
    """m_t = alpha m_{t-1} - lr g_t, W_t = W_{t-1} + m_t  =>  m_t = -lr sum_s alpha^(t-s) g_s."""
    grads, lr, alpha = _grads(4), 0.05, 0.7
    p, st = _run(PreconditionedMomentum, grads, lr=lr, alpha=alpha)
    w = torch.linspace(-1, 1, 15, dtype=torch.float64).view(5, 3)
    ms = [-lr * sum(alpha ** (t - s) * grads[s] for s in range(t + 1)) for t in range(len(grads))]
    torch.testing.assert_close(st["m"], ms[-1], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(p, w + sum(ms), rtol=1e-12, atol=1e-14)


def test_rms_preconditioned_momentum_divides_by_the_gradient_ema():
    """P(g) = g / (sqrt(v) + eps), v = beta2 v + (1 - beta2) g^2 (a diagonal preconditioner memory)."""
    grads, lr, alpha, beta2, eps = _grads(3, seed=1), 0.01, 0.9, 0.99, 1e-8
    p, st = _run(PreconditionedMomentum, grads, lr=lr, alpha=alpha, preconditioner="rms", beta2=beta2, eps=eps)
    w = torch.linspace(-1, 1, 15, dtype=torch.float64).view(5, 3)
    m, v = torch.zeros_like(w), torch.zeros_like(w)
    for g in grads:
        v = beta2 * v + (1 - beta2) * g * g
        m = alpha * m - lr * g / (v.sqrt() + eps)
        w = w + m
    torch.testing.assert_close(st["v"], v, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(p, w, rtol=1e-12, atol=1e-14)


def _deep_momentum_reference(w, grads, lr, alpha, inner_lr, W2):
    """Eq. 50 as read in the module docstring, with the inner gradients taken by autograd of the
    dot-product objective <m_phi(u), u> / n (the gradient normalised by lr * scale^2), not by hand."""
    h = W2.numel()
    b, W1 = torch.zeros_like(w), torch.zeros(h, dtype=w.dtype)
    for g in grads:
        scale = g.abs().mean()
        u = g / scale
        W1_, W2_ = W1.clone().requires_grad_(True), W2.clone().requires_grad_(True)
        objective = (u * (F.silu(u[..., None] * W2_) * W1_).sum(-1)).sum() / u.numel()
        gW1, gW2 = torch.autograd.grad(objective, (W1_, W2_))
        b = alpha * b - lr * g
        W1 = alpha * W1 - inner_lr * gW1
        W2 = W2 - inner_lr * gW2
        m = b + lr * scale * (F.silu(u[..., None] * W2) * W1).sum(-1)
        w = w + m
    return w, W1, W2


@pytest.mark.parametrize("inner_lr", [0.0, 0.05, 0.5])
def test_deep_momentum_matches_eq50_with_autograd_inner_gradients(inner_lr):
    grads, lr, alpha, hidden = _grads(4, seed=2), 0.02, 0.8, 6
    p, st = _run(DeepMomentum, grads, lr=lr, alpha=alpha, hidden=hidden, inner_lr=inner_lr, seed=3)
    W2_init = torch.randn(hidden, generator=torch.Generator().manual_seed(3)).to(torch.float64)
    w0 = torch.linspace(-1, 1, 15, dtype=torch.float64).view(5, 3)
    w, W1, W2 = _deep_momentum_reference(w0, grads, lr, alpha, inner_lr, W2_init)
    torch.testing.assert_close(st["W1"], W1, rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(st["W2"], W2, rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(p, w, rtol=1e-10, atol=1e-13)
    if inner_lr == 0.0:  # W1 stays 0: exactly heavy-ball momentum
        heavy, _ = _run(PreconditionedMomentum, grads, lr=lr, alpha=alpha)
        torch.testing.assert_close(p, heavy, rtol=1e-12, atol=1e-14)
    else:  # the MLP term really moved the weights away from heavy ball
        heavy, _ = _run(PreconditionedMomentum, grads, lr=lr, alpha=alpha)
        assert (p - heavy).abs().max() > 1e-6
