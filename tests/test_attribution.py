"""Attribution (nested.attribution) and the library entry point it needs (NestedLM.from_embeddings)."""

import pytest
import torch

import nested
from nested.attribution import attribute, level_contributions

MODELS = ["hope", "titans", "transformer", "transformer-swa", "deltanet", "hope-attention"]


def frozen(name: str, **kw):
    extra = {"cms_periods": [4, 8]} if name.startswith("hope") else {}
    extra |= {"window": 8} if name == "transformer-swa" else {}
    model = nested.build_model(name, d_model=32, n_layers=2, **extra, **kw).eval()
    for p in model.parameters():
        p.requires_grad_(False)  # as the app builds them
    return model


@pytest.mark.parametrize("name", MODELS)
def test_from_embeddings_is_the_forward_and_has_a_graph_on_a_read_only_model(name):
    model = frozen(name)
    x = torch.randint(0, 256, (2, 21))
    emb = model.embed(x).requires_grad_(True)
    for exact in (False, True) if model.exact_input_grad else (False,):
        out = model.from_embeddings(emb, x, exact_cms=exact)
        torch.testing.assert_close(out, model(x), atol=2e-5, rtol=1e-5)
        assert out.requires_grad
    (g,) = torch.autograd.grad(out[0, -1, 7], emb)
    assert g[1].abs().sum() == 0 and g[0].abs().sum() > 0  # batch items are independent
    with pytest.raises(ValueError):
        model.from_embeddings(emb[:, :5], x)
    assert model.exact_input_grad == (name != "hope-attention")


def test_saliency_and_input_x_gradient_are_the_gradient():
    model = frozen("hope")
    x = torch.randint(97, 110, (1, 12))
    sal = attribute(model, x, 10, target=100, method="saliency")
    ixg = attribute(model, x, 10, target=100, method="input_x_gradient")
    emb = model.embed(x[:, :11]).requires_grad_(True)
    F = model.from_embeddings(emb, x[:, :11])[0, -1].log_softmax(-1)[100]
    (g,) = torch.autograd.grad(F, emb)
    torch.testing.assert_close(torch.tensor(sal.scores), g[0].norm(dim=-1), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(torch.tensor(ixg.scores), (g[0] * emb[0]).sum(-1).detach(), atol=1e-5, rtol=1e-4)
    assert sal.value == pytest.approx(float(F.detach()), abs=1e-5) and len(sal.scores) == 11


def test_occlusion_equals_replacing_one_token_by_the_baseline():
    model = frozen("titans")
    x = torch.randint(97, 110, (1, 9))
    occ = attribute(model, x, 8, target=99, method="occlusion")
    emb = model.embed(x)
    emb[0, 3] = model.embed.weight.mean(0)
    with torch.no_grad():
        F3 = float(model.from_embeddings(emb, x)[0, -1].log_softmax(-1)[99])
    assert occ.scores[3] == pytest.approx(occ.value - F3, abs=1e-5)


def test_integrated_gradients_is_complete_on_a_smooth_model():
    model = frozen("transformer")
    x = torch.randint(97, 110, (1, 10))
    ig = attribute(model, x, 9, target=101, method="integrated_gradients", n_steps=64)
    base = model.embed.weight.mean(0).expand(1, 10, -1)
    with torch.no_grad():
        gap = ig.value - float(model.from_embeddings(base.clone(), x)[0, -1].log_softmax(-1)[101])
    assert sum(ig.scores) == pytest.approx(gap, abs=0.02 * max(1.0, abs(gap)))
    assert abs(ig.delta) < 0.02 * max(1.0, abs(gap))


def test_level_contributions_are_differences_of_frozen_runs():
    model = frozen("hope")
    x = torch.randint(97, 110, (1, 20))
    contrib = level_contributions(model, x, 18, target=104)
    assert set(contrib) == set(model.freeze_options())
    with torch.no_grad():
        full = float(model.run(x[:, :19]).logits[0, -1].log_softmax(-1)[104])
        off = float(
            model.run(x[:, :19], model.init_state(1, freeze="layer 1 memories")).logits[0, -1].log_softmax(-1)[104]
        )
    assert contrib["layer 1 memories"] == pytest.approx(full - off, abs=1e-6)
    assert level_contributions(frozen("transformer"), x, 18) == {}  # attention has no level to freeze


@pytest.mark.parametrize("bad", [dict(position=99), dict(position=-1), dict(method="shap"), dict(target=999)])
def test_attribution_rejects_bad_requests(bad):
    args = dict(position=5, target=None, method="saliency") | bad
    with pytest.raises(ValueError):
        attribute(frozen("titans"), torch.randint(0, 256, (1, 8)), **args)


def test_the_exact_gradient_is_finite_where_a_decay_gate_underflows():
    """A memory's retention gate alpha = sigmoid(z) that rounds to 0 made the second-order graph NaN
    (the second derivative of log(alpha) is -1/alpha^2, which overflows; exact IG on hope-text hit it at 2/7
    of the path). The decay tables take log alpha = logsigmoid(z): the exact gradient (through two CMS
    steps here) is finite, and differs from the first-order one by the paths through those steps."""
    model = frozen("hope", alpha_init_bias=-120.0)  # alpha = sigmoid(-120): 0 in float32 (periods 4, 8)
    x = torch.randint(0, 256, (1, 10), generator=torch.Generator().manual_seed(0))
    assert float(torch.sigmoid(model.blocks[0].mixer.gate_b[0, 1])) == 0.0
    grads = []
    for exact in (True, False):
        emb = model.embed(x).detach().requires_grad_(True)
        out = model.from_embeddings(emb, x, exact_cms=exact)[0, -1].log_softmax(-1)[3]
        (g,) = torch.autograd.grad(out, emb)
        grads.append(g)
    assert torch.isfinite(grads[0]).all() and torch.isfinite(grads[1]).all()
    assert not torch.allclose(grads[0], grads[1])


@pytest.mark.parametrize("mixer", ["titans", "deltanet"])
def test_the_exact_gradient_is_finite_where_a_titans_or_gated_delta_decay_underflows(mixer):
    """The same hazard for Titans' decay 1 - alpha and momentum gate and gated DeltaNet's decay: each gate's
    log reaches the decay tables in closed form (logsigmoid of its logit), so a mixer whose decay gate is at
    1e-26 or rounds to 0 in float32, under a CMS (second order through two CMS steps), has a finite exact
    gradient. (With log(clamp(decay)), gated DeltaNet at sigmoid(-60) made the CMS step itself NaN.)"""
    extra = {"rule": "gated_delta"} if mixer == "deltanet" else {}
    model = frozen("hope", mixer=mixer, extra=extra)
    for blk in model.blocks:  # the decay gate: 1 - sigmoid(60) rounds to 0 (Titans), sigmoid(-60) = 9e-27 (DeltaNet)
        H = model.cfg.n_heads
        bias = blk.mixer.gates.bias
        bias[-H:] = 60.0 if mixer == "titans" else -60.0
        if mixer == "titans":
            bias[H : 2 * H] = -60.0  # and the momentum gate sigmoid(-60)
    x = torch.randint(0, 256, (1, 10), generator=torch.Generator().manual_seed(0))
    emb = model.embed(x).detach().requires_grad_(True)
    out = model.from_embeddings(emb, x, exact_cms=True)[0, -1].log_softmax(-1)[3]
    (g,) = torch.autograd.grad(out, emb)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
