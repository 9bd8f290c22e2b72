"""E5's learners (PAPER.md §9 E5; nested.continual_learners): each rule against an independent
transcription of its equation, with plain SGD so the step is the formula."""

from __future__ import annotations

import math

import pytest
import torch

from nested.continual_learners import FAST_DECAY, SLOW_SCALE, LearnerSpec, OuterLearner
from nested.continual_train import SequenceRun, train_sequence
from nested.optim import OPTIMIZERS

SGD = OPTIMIZERS["sgd"]


def batches(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 32, generator=g), torch.randn(8, 8, generator=g)) for _ in range(n)]


def loss_fn(net, x, y):
    return ((net(x) - y) ** 2).mean()


@pytest.mark.parametrize("text", ["mlp", "fast-slow", "cms-sequential:1,32,512", "cms-independent:2,8",
                                  "cms-nested:1,4,16,64"])  # fmt: skip
def test_spec_round_trips_through_its_string(text):
    assert str(LearnerSpec.parse(text)) == text


@pytest.mark.parametrize("text", ["", "lstm", "cms-sequential:32,1", "cms-sequential:1,1", "cms-nested:0,4",
                                  "cms-sequential:a,b", "cms-sequential:1,2,4,8,16"])  # fmt: skip
def test_bad_specs_are_refused_with_a_message(text):
    with pytest.raises(ValueError, match=r"\w"):
        LearnerSpec.parse(text)


@pytest.mark.parametrize("text", ["cms-sequential", "cms-independent", "fast-slow"])
def test_learners_store_about_the_mlps_number_of_values(text):
    mlp = OuterLearner(LearnerSpec("mlp"), 32, 8).n_values
    assert mlp == 32 * 64 + 64 + 64 * 8 + 8
    assert abs(OuterLearner(LearnerSpec.parse(text), 32, 8).n_values / mlp - 1) < 0.05


def test_cms_sequential_level_steps_every_C_with_the_summed_gradient():
    """Eq. 71: level l moves only at the end of its period, by -lr/sqrt(C) times the sum of the gradients
    of the C steps (each taken at the weights of that step); the readout and level 0 move every step."""
    lr, spec = 0.05, LearnerSpec("cms-sequential", (1, 4))
    learner, oracle = OuterLearner(spec, 32, 8, seed=3), OuterLearner(spec, 32, 8, seed=3)
    opts = learner.optimizers(SGD, lr)
    params = [p for g in oracle.groups for p in g.params]
    slow = oracle.groups[2].params
    acc = [torch.zeros_like(p) for p in slow]
    for step, (x, y) in enumerate(batches(8)):
        before = [p.detach().clone() for p in learner.groups[2].params]
        loss_fn(learner.net, x, y).backward()
        learner.step(opts, step)
        grads = torch.autograd.grad(loss_fn(oracle.net, x, y), params)
        with torch.no_grad():
            for p, g in zip(params, grads, strict=True):
                if any(p is q for q in slow):
                    acc[[i for i, q in enumerate(slow) if q is p][0]] += g
                else:
                    p -= lr * g
            if (step + 1) % 4 == 0:
                for p, a in zip(slow, acc, strict=True):
                    p -= lr / math.sqrt(4) * a
                    a.zero_()
        moved = any(not torch.equal(b, p) for b, p in zip(before, learner.groups[2].params, strict=True))
        assert moved == ((step + 1) % 4 == 0)
        for p, q in zip([p for g in learner.groups for p in g.params], params, strict=True):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-6)


def test_cms_independent_mixes_the_levels_by_a_softmax():
    """Eq. 74: readout(x + sum_l softmax(a)_l MLP_l(x))."""
    learner = OuterLearner(LearnerSpec("cms-independent", (1, 8, 64)), 32, 8, seed=1)
    net = learner.net
    with torch.no_grad():
        net.mix.copy_(torch.tensor([0.3, -1.0, 2.0]))
    x = torch.randn(5, 32)
    w = torch.exp(net.mix) / torch.exp(net.mix).sum()
    mlps = [lv.down(torch.tanh(lv.up(x))) for lv in net.levels]
    torch.testing.assert_close(net(x), net.readout(x + sum(w[i] * m for i, m in enumerate(mlps))))
    assert any(p is net.mix for p in learner.groups[0].params)  # the mixing weights learn every step, with the readout


def test_cms_nested_level_restarts_from_a_state_its_parent_learns():
    """Eq. 72, first order: at the end of level 1's period (4) level 0 restarts from its initial state,
    which took level 1's step (-lr/sqrt(4)) with the sum of the gradients level 0 stepped with."""
    lr = 0.05
    learner = OuterLearner(LearnerSpec("cms-nested", (1, 4)), 32, 8, seed=2)
    opts = learner.optimizers(SGD, lr)
    init = [p.detach().clone() for p in learner.groups[3].params]
    assert all(torch.equal(a, b) for a, b in zip(init, learner.groups[1].params, strict=True))
    summed = [torch.zeros_like(p) for p in init]
    for step, (x, y) in enumerate(batches(4)):
        loss_fn(learner.net, x, y).backward()
        for s, p in zip(summed, learner.groups[1].params, strict=True):
            s += p.grad
        learner.step(opts, step)
        if step < 3:  # level 0 learns between restarts; its initial state waits
            assert all(torch.equal(a, b) for a, b in zip(init, learner.groups[3].params, strict=True))
    expected = [a - lr / 2 * s for a, s in zip(init, summed, strict=True)]
    for e, state, live in zip(expected, learner.groups[3].params, learner.groups[1].params, strict=True):
        torch.testing.assert_close(state, e, rtol=0, atol=1e-6)
        assert torch.equal(live, state)  # restarted


def test_fast_weights_learn_fast_and_decay_slow_weights_learn_slowly():
    """Hinton & Plaut: one step of SGD with gradient g on W = W_slow + W_fast: W_slow -= 0.1 lr g;
    W_fast = decay * (0 - lr g); then with no gradient the fast part keeps decaying."""
    lr = 0.1
    learner = OuterLearner(LearnerSpec("fast-slow"), 32, 8, seed=0)
    opts = learner.optimizers(SGD, lr)
    layer = learner.net[0]
    slow0 = layer.slow.weight.detach().clone()
    x, y = batches(1)[0]
    loss_fn(learner.net, x, y).backward()
    g = layer.slow.weight.grad.clone()
    torch.testing.assert_close(layer.fast_w.grad, g)  # both parts see the gradient of their sum
    learner.step(opts, 0)
    torch.testing.assert_close(layer.slow.weight, slow0 - SLOW_SCALE * lr * g)
    torch.testing.assert_close(layer.fast_w, -FAST_DECAY * lr * g)
    learner.step(opts, 1)  # no gradient: the slow part stays, the fast part decays
    torch.testing.assert_close(layer.slow.weight, slow0 - SLOW_SCALE * lr * g)
    torch.testing.assert_close(layer.fast_w, -(FAST_DECAY**2) * lr * g)


@pytest.mark.parametrize(
    "learner", ["cms-sequential:1,32,512", "cms-independent:1,32", "cms-nested:1,8,32", "fast-slow"]
)
def test_every_learner_learns_each_task_and_names_its_memories(learner):
    run = train_sequence("AB", "adam", 0.01, 300, eval_every=50, learner=learner)
    m = run.forgetting_matrix()
    assert m[0, 0] < 0.35 * run.loss("A")[0] and m[1, 1] < 0.35 * run.loss("B")[0]
    assert run.learner == learner and run.n_values > 0 and len(run.online) == len(run.steps) - 1
    assert all(":" in name for name in run.memories)  # "<group>: exp_avg": one optimizer per group


def test_recovery_reads_forgetting_and_time_to_recover_off_the_curve():
    run = SequenceRun("sgd", 0.1, ["A", "B"], [("A", 0, 20), ("B", 20, 40), ("A", 40, 60)],
                      steps=[0, 10, 20, 30, 40, 50, 60],
                      losses=[[1.0, 1], [0.5, 1], [0.2, 1], [0.9, 0.3], [1.5, 0.1], [0.25, 1], [0.21, 1]])  # fmt: skip
    (r,) = run.recovery()
    assert (r["task"], r["segment"], r["best_before"]) == ("A", 2, 0.2)
    assert r["forgot"] == pytest.approx(1.3) and r["steps"] == 20  # 0.25 > 0.22 at step 10, 0.21 <= 0.22 at 20
    never = SequenceRun(
        "sgd", 0.1, ["A", "B"], run.segments, steps=run.steps, losses=[r[:1] + [1] for r in run.losses[:6]] + [[0.3, 1]]
    )
    assert never.recovery()[0]["steps"] is None
