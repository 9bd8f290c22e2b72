"""Independent oracles: causality at every cut, the MLP memory's inner gradient against autograd, one
token of Eq. 88 written out by hand, and Muon / M3 on matrices against an SVD closed form."""

import pytest
import torch
import torch.nn.functional as F

import nested
from nested.layers import bank_inner_grads, bank_self_grads, inner_scale
from nested.optim import M3, Muon
from nested.optim.newton_schulz import QUINTIC

SMALL = {"d_model": 32, "n_layers": 2, "seed": 0, "dtype": torch.float64}
CAUSAL = [
    ("hope", {"cms_periods": (2, 4), "chunk_size": 4}),
    ("hope", {"cms_periods": (3,), "chunk_size": 2, "momentum": 0.5, "cms_variant": "nested"}),
    ("hope-attention", {"cms_periods": (2, 4)}),
    ("titans", {"chunk_size": 4}),
    ("transformer-swa", {"window": 3}),
    ("deltanet", {"chunk_size": 4}),
]


@pytest.mark.parametrize("mode", ["no-grad", "grad", "stream"])
@pytest.mark.parametrize(("name", "kw"), CAUSAL, ids=[f"{m}-{i}" for i, (m, _) in enumerate(CAUSAL)])
def test_causality_at_every_cut(name, kw, mode):
    """Changing every token from position c on leaves the logits before c unchanged, for every c."""
    model = nested.build_model(name, **SMALL, **kw)
    T = 9
    tok = torch.randint(0, 256, (1, T), generator=torch.Generator().manual_seed(1))

    def logits(x):
        if mode == "stream":
            with torch.no_grad():
                return model.stream(x, trace=False).logits
        with torch.no_grad() if mode == "no-grad" else torch.enable_grad():
            return model(x).detach()

    base = logits(tok)
    for cut in range(1, T):
        other = tok.clone()
        other[:, cut:] = (other[:, cut:] + 97) % 256
        out = logits(other)
        assert torch.allclose(out[:, :cut], base[:, :cut], atol=1e-12), cut
        assert not torch.allclose(out[:, cut:], base[:, cut:], atol=1e-6), cut  # the change is seen after


def _memory(W1, W2, x):
    """The 2-layer residual MLP memory of Eqs. 89/91, M(x) = x + W1 silu(W2 x), written out."""
    return x + F.silu(x @ W2.transpose(-1, -2)) @ W1.transpose(-1, -2)


def test_mlp_memory_inner_gradient_equals_autograd():
    """bank_inner_grads / bank_self_grads against autograd of 1/2 ||M(k) - v_hat||^2, and inner_scale's
    norm against the Frobenius norm of the autograd gradient (both rules: gd clips, normalized divides)."""
    g = torch.Generator().manual_seed(0)
    N, M, T, d, h = 2, 3, 4, 5, 6
    W1 = torch.randn(N, M, d, h, generator=g, dtype=torch.float64)
    W2 = torch.randn(N, M, h, d, generator=g, dtype=torch.float64)
    k = torch.randn(N, T, d, generator=g, dtype=torch.float64)
    v = torch.randn(N, T, d, generator=g, dtype=torch.float64)
    for target in ("given", "self"):
        if target == "given":
            v_hat = torch.randn(N, M, T, d, generator=g, dtype=torch.float64)
            e, hidden, g2, loss = bank_inner_grads(W1, W2, k, v_hat, "l2", "corrected")
        else:
            v_hat = _memory(W1, W2, v[:, None])  # Eq. 87: each memory's own value of v
            e, hidden, g2, loss = bank_self_grads(W1, W2, k, v, "l2", "corrected", stopgrad=True)
        for n in range(N):
            for m in range(M):
                for t in range(T):
                    w1, w2 = W1[n, m].clone().requires_grad_(), W2[n, m].clone().requires_grad_()
                    ref = 0.5 * (_memory(w1, w2, k[n, t]) - v_hat[n, m, t].detach()).pow(2).sum()
                    gw1, gw2 = torch.autograd.grad(ref, [w1, w2])
                    assert torch.allclose(loss[n, m, t], ref.detach(), atol=1e-12)
                    assert torch.allclose(torch.outer(e[n, m, t], hidden[n, m, t]), gw1, atol=1e-12)
                    assert torch.allclose(torch.outer(g2[n, m, t], k[n, t]), gw2, atol=1e-12)
                    norm = torch.sqrt(gw1.pow(2).sum() + gw2.pow(2).sum())
                    cap = float(norm) / 2  # a cap below the norm: the scale brings it exactly to the cap
                    scale, clipped = inner_scale(e, hidden, g2, k, "gd", cap)
                    assert torch.allclose(scale[n, m, t, 0] * norm, torch.tensor(cap, dtype=torch.float64), atol=1e-12)
                    assert bool(clipped[n, m, t])
                    scale, clipped = inner_scale(e, hidden, g2, k, "gd", 2 * float(norm))
                    assert float(scale[n, m, t, 0]) == 1.0 and not bool(clipped[n, m, t])
                    scale, clipped = inner_scale(e, hidden, g2, k, "normalized", 10.0)  # every write has norm 1
                    assert torch.allclose(scale[n, m, t, 0] * norm, torch.tensor(1.0, dtype=torch.float64), atol=1e-12)
                    assert not bool(clipped[n, m, t])


@pytest.mark.parametrize("rule,clip", [("gd", 1e9), ("gd", 0.05), ("normalized", 10.0), ("normalized", 0.5)])
def test_one_token_of_eq88_written_out(rule, clip):
    """The first token of a self-modifying Titans layer (one head, no momentum) against a transcription
    of PAPER §4 (Eqs. 86-88, 94) with autograd inner gradients: every memory's new W1, W2 and the read.
    Normalised writes divide the gradient by its norm before the clip."""
    cfg = nested.make_config("hope", d_model=32, n_layers=1, inner_clip=clip, eta_init_bias=0.0, inner_update=rule)
    model = nested.model_from_config(cfg, dtype=torch.float64)
    mix = model.blocks[0].mixer
    x = torch.randn(1, 1, 32, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    state = mix.init_state(1, "cpu", torch.float64)
    with torch.no_grad():
        y, new, _ = mix(x, state, stepwise=True)
    with torch.no_grad():
        W1, W2 = mix.W1_0[0], mix.W2_0[0]  # (M, d, h), (M, h, d): head 0
        xv = x[0, 0]
        proj = {n: _memory(W1[m], W2[m], xv) for m, n in enumerate(mix.names)}
        conv_w = mix.conv_qkv.weight[:, -1]  # the causal conv on a zero history: the last tap only
        raw = torch.cat([mix.q_proj.weight @ xv, proj["M_k"], proj["M_v"]]) * conv_w
        cq, ck, v = F.silu(raw).split(32)
        q, k = F.normalize(cq, dim=0), F.normalize(ck, dim=0)
        eta = torch.sigmoid(mix.gate_w[0, 0] @ proj["M_eta"] + mix.gate_b[0, 0])
        alpha = torch.sigmoid(mix.gate_w[0, 1] @ proj["M_alpha"] + mix.gate_b[0, 1])
    for m, name in enumerate(mix.names):
        w1, w2 = W1[m].clone().requires_grad_(), W2[m].clone().requires_grad_()
        v_hat = _memory(W1[m], W2[m], v)  # Eq. 87, a constant of the inner step
        g1, g2 = torch.autograd.grad(0.5 * (_memory(w1, w2, k) - v_hat).pow(2).sum(), [w1, w2])
        norm = torch.sqrt(g1.pow(2).sum() + g2.pow(2).sum())
        s = 1.0 / float(norm) if rule == "normalized" else 1.0
        s *= min(1.0, clip / (s * float(norm)))
        # Eq. 88 with the DGD preconditioner on the first layer (the one whose input is k)
        want2 = alpha * W2[m] - eta * torch.outer(W2[m] @ k, k) - eta * s * g2
        want1 = alpha * W1[m] - eta * s * g1
        assert torch.allclose(new.W2[0, m], want2, atol=1e-12), name
        assert torch.allclose(new.W1[0, m], want1, atol=1e-12), name
    o = _memory(W1[-1], W2[-1], q)  # Eq. 94: read before write, from M_memory,t-1
    with torch.no_grad():
        assert torch.allclose(y[0, 0], mix.out_proj(mix.out_norm(o[None]))[0], atol=1e-12)


def _ns_by_svd(X: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Newton-Schulz in closed form: it keeps X's singular vectors and maps each singular value of
    X / ||X||_F through the quintic `steps` times."""
    U, S, Vh = torch.linalg.svd(X, full_matrices=False)
    s = S / X.norm()
    a, b, c = QUINTIC
    for _ in range(steps):
        s = a * s + b * s**3 + c * s**5
    return U @ torch.diag(s) @ Vh


def test_muon_and_m3_on_matrices_against_closed_forms():
    g = torch.Generator().manual_seed(0)
    W0 = torch.randn(6, 4, generator=g, dtype=torch.float64)
    grads = [torch.randn(6, 4, generator=g, dtype=torch.float64) for _ in range(3)]

    def run(opt_cls, steps, **kw):
        p = torch.nn.Parameter(W0.clone())
        opt = opt_cls([p], **kw)
        for gr in grads[:steps]:
            p.grad = gr.clone()
            opt.step()
        return p.detach()

    # Muon, Nesterov: buf = (1-mu) g after one step, update = NS(g lerp buf by mu), lr scaled by
    # torch's "original" rule sqrt(max(1, rows / cols))
    lr, mu = 0.1, 0.9
    got = run(Muon, 1, lr=lr, momentum=mu, weight_decay=0.0, ns_dtype=None)
    buf = (1 - mu) * grads[0]
    step = lr * (6 / 4) ** 0.5 * _ns_by_svd(grads[0] + mu * (buf - grads[0]))
    assert torch.allclose(got, W0 - step, atol=1e-10)
    # M3 as Algorithm 1: M1 = b1 g1, V = b2 g1^2, O2 = 0 before the first slow update
    b1, b2, b3, alpha, eps = 0.9, 0.999, 0.99, 0.5, 1e-8
    kw = dict(lr=lr, betas=(b1, b2, b3), alpha=alpha, slow_every=2, eps=eps, variant="paper", ns_dtype=None)
    W1 = W0 - lr * _ns_by_svd(b1 * grads[0]) / ((b2 * grads[0] ** 2).sqrt() + eps)
    assert torch.allclose(run(M3, 1, **kw), W1, atol=1e-10)
    # step 3 opens the second chunk: M2 = b3 (g1 + g2), O2 = NS(M2) joins the fast term
    W2 = W1 - lr * _ns_by_svd(b1 * (grads[0] + grads[1])) / ((b2 * (grads[0] ** 2 + grads[1] ** 2)).sqrt() + eps)
    m1 = b1 * sum(grads)
    v = b2 * sum(gr**2 for gr in grads)
    W3 = W2 - lr * (_ns_by_svd(m1) + alpha * _ns_by_svd(b3 * (grads[0] + grads[1]))) / (v.sqrt() + eps)
    assert torch.allclose(run(M3, 3, **kw), W3, atol=1e-10)
