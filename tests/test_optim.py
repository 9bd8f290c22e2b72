"""Optimizers as memories (PAPER.md §1.3, §7): equalities with torch, M3 closed forms, NS properties."""

import copy

import numpy as np
import pytest
import torch

from nested.optim import (
    CUBIC,
    M3,
    OPTIMIZERS,
    SURFACES,
    AdamMemory,
    DeepMomentum,
    DeltaMomentum,
    MomentumSGD,
    Muon,
    PreconditionedMomentum,
    gradient_stream_probe,
    memory_half_life,
    memory_view,
    newton_schulz,
    run_on_surface,
)


def _model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))


def _data(seed=1):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(64, 6, generator=g)
    return X, X @ torch.randn(6, 3, generator=g) + 0.1 * torch.randn(64, 3, generator=g)


def _train(model, opt, steps, X, Y):
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = ((model(X) - Y) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def _same_params(a, b, atol=0.0):
    return all(torch.allclose(p, q, rtol=0, atol=atol) for p, q in zip(a.parameters(), b.parameters(), strict=True))


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_momentum_memory_equals_torch_sgd(nesterov, wd):
    X, Y = _data()
    a, b = _model(), _model()
    _train(a, MomentumSGD(a.parameters(), lr=0.05, momentum=0.9, weight_decay=wd, nesterov=nesterov), 25, X, Y)
    _train(b, torch.optim.SGD(b.parameters(), lr=0.05, momentum=0.9, weight_decay=wd, nesterov=nesterov,
                              foreach=False), 25, X, Y)  # fmt: skip
    assert _same_params(a, b)


@pytest.mark.parametrize(("decoupled", "torch_cls"), [(False, torch.optim.Adam), (True, torch.optim.AdamW)])
def test_adam_memory_equals_torch_adam(decoupled, torch_cls):
    X, Y = _data()
    a, b = _model(), _model()
    _train(a, AdamMemory(a.parameters(), lr=0.01, weight_decay=0.05, decoupled=decoupled), 25, X, Y)
    _train(b, torch_cls(b.parameters(), lr=0.01, weight_decay=0.05, foreach=False), 25, X, Y)
    assert _same_params(a, b, atol=1e-7)


@pytest.mark.parametrize("nesterov", [False, True])
def test_muon_equals_torch_muon_on_matrices(nesterov):
    torch.manual_seed(0)
    W1, W2 = torch.randn(12, 5, requires_grad=True), torch.randn(5, 9, requires_grad=True)
    V1, V2 = (t.detach().clone().requires_grad_(True) for t in (W1, W2))
    ours = Muon([W1, W2], lr=0.02, weight_decay=0.1, momentum=0.9, nesterov=nesterov, ns_dtype=torch.bfloat16)
    ref = torch.optim.Muon([V1, V2], lr=0.02, weight_decay=0.1, momentum=0.9, nesterov=nesterov)
    x = torch.randn(7, 12)
    for _ in range(10):
        for ws, opt in (((W1, W2), ours), ((V1, V2), ref)):
            opt.zero_grad()
            (torch.tanh(x @ ws[0]) @ ws[1]).pow(2).mean().backward()
            opt.step()
    assert torch.equal(W1, V1) and torch.equal(W2, V2)


def test_muon_sends_vectors_to_adamw_and_lists_both_memories():
    model = _model()
    opt = Muon(model.parameters(), lr=0.02)
    assert [g["use_ns"] for g in opt.param_groups] == [True, False]
    X, Y = _data()
    _train(model, opt, 3, X, Y)
    names = {m.name: m for m in memory_view(opt)}
    assert len(names["momentum_buffer"].tensors) == 2 and len(names["adam_exp_avg"].tensors) == 2


def _with_spectrum(m, n, cond, seed=0):
    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(m, m, generator=g))
    V, _ = torch.linalg.qr(torch.randn(n, n, generator=g))
    k = min(m, n)
    s = torch.logspace(0, -torch.log10(torch.tensor(float(cond))).item(), k)
    return U[:, :k] @ torch.diag(s) @ V[:, :k].T


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_newton_schulz_orthogonalises_and_is_scale_invariant(dtype):
    """Singular values land in [0.68, 1.21] for matrices with condition number <= 100. The quintic's
    5-step attractor is the cycle 0.70 <-> 1.11 of x -> 3.4445x - 4.775x^3 + 2.0315x^5, and values still
    on their way reach 0.682: the [0.7, 1.2] band asked for is missed by 0.02 at the bottom (a finding,
    see docs/FIDELITY.md)."""
    for shape in [(16, 16), (32, 8), (8, 40), (64, 64)]:
        G = _with_spectrum(*shape, cond=100)
        O = newton_schulz(G, dtype=dtype).float()
        s = torch.linalg.svdvals(O)
        assert s.min() > 0.68 and s.max() < 1.21, (shape, s.min(), s.max())
        assert s.median() > 0.7 and s.median() < 1.2
        tol = 1e-5 if dtype is None else 0.1  # bfloat16 rounds the scaled input differently (seen: <= 6%)
        for c in (37.0, 1e-3):
            assert (newton_schulz(c * G, dtype=dtype).float() - O).norm() / O.norm() < tol


def test_cubic_ns_step_is_one_gd_step_on_the_orthogonality_objective():
    """Eq. 44 with zeta = 1/4 and O_0 = g: O_1 = O - 1/4 (O - g + 2 O (O^T O - I)) = 1.5 O - 0.5 O O^T O."""
    torch.manual_seed(0)
    G = torch.randn(6, 9, dtype=torch.float64)
    X = G / G.norm()
    gd = X - 0.25 * (X - X + 2 * X @ (X.T @ X - torch.eye(9, dtype=torch.float64)))
    assert torch.allclose(newton_schulz(G, steps=1, coefficients=CUBIC, dtype=None), gd, atol=1e-12)


def test_ns_passes_vectors_through():
    v = torch.randn(7)
    assert torch.equal(newton_schulz(v), v)


def test_m3_paper_first_two_steps_closed_form():
    """ns_steps=0 on a 1-D parameter: NS is the identity, so the update is (M1 + alpha O2)/(sqrt(V)+eps)."""
    b1, b2, b3, lr, eps = 0.9, 0.5, 0.7, 0.1, 1e-8
    p = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64, requires_grad=True)
    opt = M3([p], lr=lr, betas=(b1, b2, b3), alpha=1.0, slow_every=5, ns_steps=0, eps=eps, variant="paper")
    g1, g2 = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64), torch.tensor([-0.5, 0.2, 1.0], dtype=torch.float64)
    p0 = p.detach().clone()
    p.grad = g1.clone()
    opt.step()
    p1 = p0 - lr * (b1 * g1) / ((b2 * g1 * g1).sqrt() + eps)
    assert torch.allclose(p.detach(), p1)
    p.grad = g2.clone()
    opt.step()
    M1, V = b1 * (g1 + g2), b2 * (g1 * g1 + g2 * g2)
    assert torch.allclose(p.detach(), p1 - lr * M1 / (V.sqrt() + eps))


@pytest.mark.parametrize("variant", ["paper", "ema"])
def test_m3_slow_term_takes_effect_exactly_at_the_chunk_boundary(variant):
    f = 3
    grads = [torch.randn(4, dtype=torch.float64, generator=torch.Generator().manual_seed(i)) for i in range(8)]
    runs = {}
    for alpha in (0.0, 0.8):
        p = torch.zeros(4, dtype=torch.float64, requires_grad=True)
        opt = M3([p], lr=0.1, alpha=alpha, slow_every=f, ns_steps=0, variant=variant)
        traj = []
        for g in grads:
            p.grad = g.clone()
            opt.step()
            traj.append(p.detach().clone())
        runs[alpha] = traj
    for t in range(f):  # steps 1..f: no slow memory yet
        assert torch.equal(runs[0.0][t], runs[0.8][t])
    assert not torch.allclose(runs[0.0][f], runs[0.8][f])  # step f+1 sees O2
    if variant == "paper":  # and O2 is exactly b3 * (g1 + g2 + g3) for a 1-D parameter
        p = torch.zeros(4, dtype=torch.float64, requires_grad=True)
        opt = M3([p], lr=0.1, alpha=0.8, slow_every=f, ns_steps=0, variant="paper")
        for g in grads[: f + 1]:
            p.grad = g.clone()
            opt.step()
        assert torch.allclose(opt.state[p]["O2"], 0.99 * sum(grads[:f]))


def _all_optimizers():
    return {
        "momentum-sgd": lambda ps: MomentumSGD(ps, lr=0.05),
        "adam": lambda ps: AdamMemory(ps, lr=0.01),
        "muon": lambda ps: Muon(ps, lr=0.01, weight_decay=0.0, adamw_lr=0.01),
        "m3-paper": lambda ps: M3(ps, lr=0.01, variant="paper", slow_every=4),
        "m3-ema": lambda ps: M3(ps, lr=0.05, variant="ema", slow_every=4),  # RMS-matched: steps of 0.2 lr
        "delta": lambda ps: DeltaMomentum(ps, lr=0.02),
        "delta-row": lambda ps: DeltaMomentum(ps, lr=0.02, key="row"),
        "precond": lambda ps: PreconditionedMomentum(ps, lr=0.002, preconditioner="rms"),
        "deep": lambda ps: DeepMomentum(ps, lr=0.02),
    }


@pytest.mark.parametrize("name", list(_all_optimizers()))
def test_state_dict_round_trip_mid_run(name):
    make = _all_optimizers()[name]
    X, Y = _data()
    a = _model()
    opt_a = make(a.parameters())
    _train(a, opt_a, 10, X, Y)
    b = copy.deepcopy(a)
    opt_b = make(b.parameters())
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))
    _train(a, opt_a, 10, X, Y)
    _train(b, opt_b, 10, X, Y)
    assert _same_params(a, b)


@pytest.mark.parametrize("name", list(_all_optimizers()))
def test_each_optimizer_lowers_a_tiny_regression_loss_and_lists_memories(name):
    X, Y = _data()
    model = _model()
    opt = _all_optimizers()[name](model.parameters())
    losses = _train(model, opt, 80, X, Y)
    assert losses[-1] < 0.5 * losses[0], (losses[0], losses[-1])
    mems = memory_view(opt)
    assert mems and all(m.name and m.compresses and m.objective and m.period >= 1 for m in mems)
    assert any(m.tensors for m in mems)


def test_memory_view_of_torch_optimizers():
    model = _model()
    X, Y = _data()
    opt = torch.optim.Adam(model.parameters())
    _train(model, opt, 2, X, Y)
    names = [m.name for m in memory_view(opt)]
    assert names == ["exp_avg", "exp_avg_sq"]
    m3 = M3(model.parameters(), slow_every=7)
    assert {m.name: m.period for m in memory_view(m3)}["M2"] == 7


def test_delta_momentum_erases_the_current_direction_faster():
    """With eta_d > 0 the momentum component along the current gradient decays by alpha - eta_d."""
    p = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    opt = DeltaMomentum([p], lr=1.0, alpha=0.9, eta_d=0.5)
    g = torch.tensor([1.0, 0, 0, 0, 0], dtype=torch.float64)
    p.grad = g.clone()
    opt.step()
    m1 = opt.state[p]["m"].clone()
    p.grad = g.clone()
    opt.step()
    assert torch.allclose(opt.state[p]["m"], (0.9 - 0.5) * m1 - g)


def test_surfaces_runner_records_path_and_memories():
    surf = SURFACES["fig4"]()
    path = run_on_surface(surf, lambda ps: MomentumSGD(ps, lr=1e-3, momentum=0.9), steps=300)
    assert path.points.shape == (301, 2) and path.losses.shape == (301,)
    assert path.memories["momentum_buffer"].shape == (300, 2)
    assert path.losses[-1] < 1e-2 * path.losses[0]
    assert np.allclose(path.points[0], surf.start)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_every_registered_optimizer_runs_the_race(name):
    path = run_on_surface(SURFACES["quadratic"](), lambda ps: OPTIMIZERS[name](ps, lr=0.02), steps=150)
    assert not path.diverged and path.losses[-1] < path.losses[0]


def test_probe_shows_ema_horizon_and_literal_m3_never_forgetting():
    T1 = 40
    sgd = gradient_stream_probe(lambda ps: MomentumSGD(ps, lr=0.1, momentum=0.9), T1=T1, T2=80)[0]
    # heavy ball: after the switch the u1 share of the step decays geometrically; half within ~7 steps
    hl = memory_half_life(sgd, T1)
    assert hl is not None and 3 <= hl <= 10
    literal = gradient_stream_probe(
        lambda ps: M3(ps, lr=0.1, variant="paper", alpha=0.0, ns_steps=5, ns_dtype=None), T1=T1, T2=80
    )[0]
    # the literal sum keeps u1 with weight T1 against t for u2: still above 0.2 after 80 steps
    assert literal[-1] > 0.2 and sgd[-1] < 0.01
    # the default M3's step is nearly orthogonal to a constant gradient (NS(M1) / sqrt(V)), yet its slow memory
    # keeps u1 afterwards: measured against its own level before the switch, it never forgets within the probe
    m3 = gradient_stream_probe(lambda ps: M3(ps, lr=0.1), T1=T1, T2=80)[0]
    assert m3[T1 - 1] < 0.2 and (m3[T1:] > m3[T1 - 1]).all() and memory_half_life(m3, T1) is None


# -- the parameter scope of Muon and M3 (PAPER.md §7.2 note 4) ---------------------------------------
def test_hidden_scope_sends_embedding_head_and_gains_to_adamw():
    import nested
    from nested.optim.scope import scoped_groups

    model = nested.build_model("hope", d_model=32, n_layers=1, cms_periods=[4])
    named = dict(model.named_parameters())
    rule, rest = scoped_groups(model.named_parameters(), "hidden")
    ids = {id(p): n for n, p in named.items()}
    rule_names, rest_names = {ids[id(p)] for p in rule["params"]}, {ids[id(p)] for p in rest["params"]}
    assert rule["use_ns"] and not rest["use_ns"]
    assert rule_names | rest_names == set(named) and not rule_names & rest_names
    assert {"embed.weight", "head.weight"} <= rest_names
    assert all(named[n].dim() >= 2 for n in rule_names) and all(
        named[n].dim() < 2 for n in rest_names - {"embed.weight", "head.weight"}
    )
    assert any(n.startswith("blocks.0.mixer") for n in rule_names) and any("ffn" in n for n in rule_names)
    everything = scoped_groups(model.named_parameters(), "all")
    assert len(everything) == 1 and len(everything[0]["params"]) == len(named)
    with pytest.raises(ValueError):
        scoped_groups(model.named_parameters(), "some")


@pytest.mark.parametrize("name", ["m3", "muon"])
def test_scoped_groups_get_the_right_rule(name):
    from nested.train import make_optimizer

    torch.manual_seed(0)
    net = torch.nn.ModuleDict({"embed": torch.nn.Embedding(10, 6), "hidden": torch.nn.Linear(6, 6),
                               "head": torch.nn.Linear(6, 10, bias=False)})  # fmt: skip
    ref = copy.deepcopy(net)
    opt = make_optimizer(name, net.named_parameters(), lr=0.01)
    outside = [ref["embed"].weight, ref["hidden"].bias, ref["head"].weight]
    lr_out = 0.01 if name == "m3" else 0.001  # make_optimizer gives Muon's AdamW lr / 10
    adamw = torch.optim.AdamW(outside, lr=lr_out, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
    inside = (M3 if name == "m3" else Muon)(
        [ref["hidden"].weight], lr=0.01, **({} if name == "m3" else {"weight_decay": 0.0})
    )
    for step in range(3):
        g = torch.Generator().manual_seed(step)
        for m in (net, ref):
            for p in m.parameters():
                p.grad = torch.randn(p.shape, generator=g)
            g = torch.Generator().manual_seed(step)
        opt.step()
        adamw.step()
        inside.step()
    for (n, p), q in zip(net.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5, msg=n)


# -- optimizers write an associative memory (nested.optim.assoc) --------------------------------------
@pytest.mark.parametrize("lr", [0.05, 0.3])
def test_sgd_on_orthogonal_keys_matches_its_closed_form(lr):
    from nested.optim.assoc import write_memory, zipf_stream

    s = zipf_stream(n_pairs=12, d_key=16, d_val=8, steps=300, seed=1)
    run = write_memory(s, "sgd", lr)
    np.testing.assert_allclose(run.errors, (1 - lr) ** s.counts, rtol=1e-9, atol=1e-12)  # (1 - lr)^n ||v||
    assert s.counts[0] > 5 * s.counts[-1]  # Zipf: the first key is far more frequent than the last


def test_momentum_mixes_the_pairs_and_rare_pairs_are_recalled_worse():
    from nested.optim.assoc import write_memory, zipf_stream

    s = zipf_stream(n_pairs=24, d_key=32, d_val=8, steps=400, seed=0)
    sgd, mom = write_memory(s, "sgd", 0.05), write_memory(s, "momentum", 0.05)
    assert not np.allclose(sgd.errors, mom.errors)  # the buffer carries other pairs' gradients into each step
    rare, common = s.counts <= np.percentile(s.counts, 25), s.counts >= np.percentile(s.counts, 75)
    for run in (sgd, mom):
        assert run.errors[rare].mean() > run.errors[common].mean()
    assert "momentum_buffer" in mom.memory_norms and not sgd.memory_norms


def test_assoc_rejects_bad_settings():
    from nested.optim.assoc import write_memory, zipf_stream

    with pytest.raises(ValueError):
        zipf_stream(n_pairs=40, d_key=32)  # 40 orthogonal keys do not fit in 32 dims
    with pytest.raises(ValueError):
        write_memory(zipf_stream(steps=10), "sgd", float("inf"))


def test_momentum_holds_the_gradient_stream_in_closed_form():
    """Orthonormal keys, pairs 0, 1, 2 written once each from W = 0: every gradient is -v_i k_i^T, so the
    momentum is -(v2 k2^T + mu v1 k1^T + mu^2 v0 k0^T) and its shares are -(mu^2, mu, 1) / norm."""
    from nested.optim.assoc import AssocStream, write_memory, zipf_stream

    base = zipf_stream(n_pairs=8, steps=3)
    run = write_memory(AssocStream(base.keys, base.values, torch.tensor([0, 1, 2])), "momentum", 0.1, window=3)
    mu = 0.9
    expected = -np.array([mu**2, mu, 1.0]) / np.sqrt(1 + mu**2 + mu**4)
    assert run.memory == "momentum_buffer" and run.presented.tolist() == [0, 1, 2]
    np.testing.assert_allclose(run.contents[-1][:3], expected, atol=1e-12)
    np.testing.assert_allclose(run.contents[-1][3:], 0.0, atol=1e-12)
    long = write_memory(zipf_stream(), "adam", 0.01)
    assert long.contents.shape == (64, 32) and ((long.contents**2).sum(1) <= 1 + 1e-9).all()
    assert write_memory(zipf_stream(), "sgd", 0.1).contents is None  # plain SGD keeps no memory
