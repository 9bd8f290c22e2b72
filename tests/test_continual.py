"""The continual-learning lab's library: successor languages, schedules, probes that change nothing,
the forgetting matrix against a direct computation, frozen and reset levels."""

import pytest
import torch

import nested
from nested.continual import MAX_TOKENS, ContinualLab, Learner, Schedule
from nested.level_state import reset_level
from nested.state import map_tensors, probe_view, repeat_state
from nested.tasks import SuccessorLanguages

MODELS = ["hope", "titans", "transformer-swa", "deltanet", "hope-attention"]


def small(name: str, **kw):
    extra = {"cms_periods": [4, 8]} if name.startswith("hope") else {}
    extra |= {"window": 8} if name == "transformer-swa" else {}
    return nested.build_model(name, d_model=32, n_layers=2, **extra, **kw).eval()


def leaves(state) -> list[torch.Tensor]:
    out = []
    map_tensors(lambda t: out.append(t.clone()) or t, state)
    return out


# -- the task --------------------------------------------------------------------------------------
def test_languages_follow_their_rule_and_alphabets():
    task = SuccessorLanguages(n_tasks=3, alphabet=5, follow=1.0)
    g = torch.Generator().manual_seed(0)
    rules = task.rules(g)
    for t in task.task_names:
        rule = rules[t]
        assert sorted(rule) == sorted(task.symbols(t)) == sorted(rule.values())
        seen, s = [], next(iter(rule))  # one cycle through the whole alphabet, no fixed point
        for _ in range(5):
            seen.append(s)
            s = rule[s]
        assert s == seen[0] and len(set(seen)) == 5
        text = task.segment(t, rules, 40, g)
        assert set(text) <= set(task.symbols(t))
        assert all(rule[a] == b for a, b in zip(text, text[1:], strict=False))  # follow=1: always the successor
    assert not set(task.symbols("A")) & set(task.symbols("B"))
    frags, answers = task.queries("A", rules)
    assert frags.shape == (5, 2) and task.probe_chance() == pytest.approx(1 / 3)  # fragments of half the alphabet
    for frag, ans in zip(frags.tolist(), answers.tolist(), strict=True):
        chain = [chr(c) for c in frag] + [chr(ans)]
        assert all(rules["A"][a] == b for a, b in zip(chain, chain[1:], strict=False))
    assert SuccessorLanguages(alphabet=8).probe_chance() == 0.25
    assert set(SuccessorLanguages(n_tasks=3, shared=True).symbols("C")) == set("abcdefgh")


def test_solver_reads_the_rule_from_the_stream():
    task = SuccessorLanguages(n_tasks=2, alphabet=6, follow=1.0, segment_len=60, n_segments=1)
    b = task.sample(4, seed=3)
    pred = task.solve(b.inputs)
    known = pred != -100
    assert known.float().mean() > 0.8  # after one lap of each cycle the rule is known
    assert bool((pred[known] == b.targets[known]).all())
    assert task.probe(task.oracle(), n=8)["accuracy"] > 0.8


@pytest.mark.parametrize("bad", [dict(n_tasks=0), dict(n_tasks=7), dict(alphabet=1), dict(n_tasks=6, alphabet=9),
                                 dict(follow=1.5), dict(segment_len=1)])  # fmt: skip
def test_languages_reject_bad_options(bad):
    with pytest.raises(ValueError):
        SuccessorLanguages(**bad)


# -- schedules -------------------------------------------------------------------------------------
def test_schedule_puts_segments_where_it_says():
    s = Schedule.parse("ABAC", ["A", "B", "C"], segment_len=100)
    assert s.bounds() == [("A", 0, 100), ("B", 100, 200), ("A", 200, 300), ("C", 300, 400)]
    s2 = Schedule.parse("A128 b64, A5", ["A", "B"])
    assert s2.bounds() == [("A", 0, 128), ("B", 128, 192), ("A", 192, 197)]
    assert Schedule.parse(str(s2), ["A", "B"]) == s2


@pytest.mark.parametrize("text", ["", "   ", "AXA", "A0", "A99999", "A12x", "A1000 " * 5, None])
def test_schedule_errors_are_sentences(text):
    with pytest.raises(ValueError) as e:
        Schedule.parse(text, ["A", "B"])
    assert len(str(e.value)) > 15


def test_lab_streams_the_schedule_and_replays_it():
    task = SuccessorLanguages(n_tasks=3)
    lab = ContinualLab(task, [Learner("m", small("titans"))], seed=5, probe_every=8)
    lab.replay(Schedule.parse("A20 B12 A9", task.task_names))
    assert lab.segments == [("A", 0, 20), ("B", 20, 32), ("A", 32, 41)]
    for t, a, b in lab.segments:
        assert set(bytes(lab.tokens[a:b]).decode()) <= set(task.symbols(t))
    assert lab.positions == [0, 8, 16, 20, 24, 32, 40, 41]  # every probe_every tokens and at each segment end
    # a segment continued in steps is the segment fed at once; the same seed gives the same stream
    other = ContinualLab(task, [Learner("m", small("titans"))], seed=5, probe_every=8)
    other.feed("A", 7)
    other.feed("A", 13)
    other.feed("B", 12)
    other.feed("A", 9)
    assert other.tokens == lab.tokens and other.segments == lab.segments
    with pytest.raises(ValueError):
        lab.feed("A", MAX_TOKENS)
    with pytest.raises(ValueError):
        lab.feed("Z", 4)
    assert lab.pos == 41  # a refused feed keeps the run


# -- probes ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_batched_probe_equals_one_probe_per_query(name):
    model = small(name)
    st = model.run(torch.randint(97, 105, (1, 21))).state
    q = torch.randint(97, 105, (6, 1))
    one = torch.cat([model.run(q[i : i + 1], st).logits for i in range(6)])
    many = model.probe(q, repeat_state(probe_view(st), 6))
    torch.testing.assert_close(many, one, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["hope", "titans", "transformer-swa"])
def test_probes_leave_the_state_bit_for_bit_unchanged(name):
    task = SuccessorLanguages(n_tasks=2, alphabet=4)
    lab = ContinualLab(task, [Learner("m", small(name), resets=name == "hope")], probe_every=8)
    lab.feed("A", 24)
    before = leaves(lab.learners[0].state)
    lab._measure()
    lab._measure()
    after = leaves(lab.learners[0].state)
    assert len(before) == len(after) and all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert lab.curves["m"][-1] == lab.curves["m"][-2]


def test_a_probe_never_applies_the_pending_cms_update():
    model = small("hope")
    st = model.run(torch.randint(97, 105, (1, 8))).state  # pos 8: a level update waits for token 9
    q = torch.randint(97, 105, (1, 1))
    no_learning = model.run(q, _with_gains(st, 0.0)).logits
    learning = model.run(q, st).logits
    assert not torch.allclose(learning, no_learning)  # the update does change the next prediction
    torch.testing.assert_close(model.probe(q, st), no_learning, atol=1e-6, rtol=0)


def _with_gains(state, g):
    from dataclasses import replace

    return replace(state, cms=tuple(replace(c, gain=tuple(g for _ in c.gain)) for c in state.cms))


def test_forgetting_matrix_equals_a_direct_computation():
    task = SuccessorLanguages(n_tasks=3, alphabet=4)
    model = small("hope")
    lab = ContinualLab(task, [Learner("m", model)], seed=2, probe_every=8)
    lab.replay(Schedule.parse("A16 B16 A16", task.task_names))
    matrix = lab.forgetting_matrix("m")
    tokens = torch.tensor([lab.tokens])
    for j, (_, _, end) in enumerate(lab.segments):
        state = model.run(tokens[:, :end]).state  # one call from a fresh state, not the lab's pieces
        for i, t in enumerate(task.task_names):
            rule, hits = lab.rules[t], 0
            before = {v: k for k, v in rule.items()}
            for s in task.symbols(t):
                frag = [before[s], s]  # alphabet 4: fragments of 2 symbols ending in s
                logits = model.probe(torch.tensor([[ord(c) for c in frag]]), state)[0, -1]
                allowed = task.restrict(t)
                pred = allowed[int(logits[allowed].argmax())]
                hits += pred == ord(rule[s])
            assert matrix[j, i] == pytest.approx(hits / len(task.symbols(t)))


def test_a_frozen_level_stays_fixed_while_the_curve_is_computed():
    task = SuccessorLanguages(n_tasks=2, alphabet=4)
    model = small("hope")
    lab = ContinualLab(task, [Learner("free", model), Learner("frozen", model, freeze="layer 1 cms[1]")], probe_every=8)
    w0 = [w.clone() for w in lab.learners[1].state.cms[1].weights[1]]
    lab.feed("A", 40)
    assert all(torch.equal(a, b) for a, b in zip(w0, lab.learners[1].state.cms[1].weights[1], strict=True))
    moved = lab.segment_changes("free")[0]
    held = lab.segment_changes("frozen")[0]
    assert held["layer 1 cms[1]"] == 0.0 and moved["layer 1 cms[1]"] > 0.0
    assert held["layer 0 cms[1]"] > 0.0  # only the named level is frozen


@pytest.mark.parametrize("level", ["layer 1 cms[1]", "layer 0 memories"])
def test_a_level_frozen_mid_stream_learns_until_then_and_never_after(level):
    """Freezing at token 20 (inside layer 1 cms[1]'s period of 8 and a probe interval): until then the
    learner is the free one bit for bit (curves equal); from then on the level stays exactly where it was
    at token 20 (a CMS level skips the step its period would have taken) while the others go on; the
    lab equals streaming by hand with `model.with_freeze` at that token."""
    task = SuccessorLanguages(n_tasks=2, alphabet=4)
    model = small("hope")
    lab = ContinualLab(task, [Learner("free", model), Learner("late", model, freeze=level, freeze_at=20)],
                       probe_every=8)  # fmt: skip
    lab.feed("A", 20)
    at_freeze = lab.learners[1].state
    assert lab.curves["late"] == lab.curves["free"]
    assert all(torch.equal(a, b) for a, b in zip(leaves(at_freeze), leaves(lab.learners[0].state), strict=True))
    lab.feed("B", 28)
    late = lab.learners[1].state
    if level.endswith("memories"):
        W_then, W_now = at_freeze.mixers[0].W1, late.mixers[0].W1
        assert late.mixers[0].eta_gain == 0.0 and not torch.equal(W_then, W_now)  # decay goes on, writes stop
        assert not torch.equal(late.mixers[1].W1, at_freeze.mixers[1].W1)
    else:
        assert all(torch.equal(a, b) for a, b in zip(at_freeze.cms[1].weights[1], late.cms[1].weights[1], strict=True))
        assert not torch.equal(at_freeze.cms[1].weights[0][0], late.cms[1].weights[0][0])  # the others learn on
        assert not torch.equal(lab.learners[0].state.cms[1].weights[1][0], at_freeze.cms[1].weights[1][0])
    assert lab.summary(resets=False)["models"]["late"]["freeze_at"] == 20

    tokens = torch.tensor([lab.tokens])
    with torch.no_grad():
        st = model.run(tokens[:, :20], model.init_state(1)).state
        st = model.run(tokens[:, 20:], model.with_freeze(st, level)).state
    assert all(torch.equal(a, b) for a, b in zip(leaves(st), leaves(late), strict=True))


def test_with_freeze_changes_only_the_levels_it_names():
    model = small("hope")
    st = model.with_freeze(model.init_state(1, freeze="layer 0 cms[0]"), "layer 1 cms[1]=0.5, layer 1 memories")
    assert st.cms[0].gain == (0.0, 1.0) and st.cms[1].gain == (1.0, 0.5)
    assert st.mixers[0].eta_gain == 1.0 and st.mixers[1].eta_gain == 0.0
    assert model.with_freeze(st, None) is st
    with pytest.raises(ValueError, match="no level"):
        model.with_freeze(st, "layer 7 memories")


def test_reset_level_restores_that_level_only():
    model = small("hope")
    fresh = model.init_state(1)
    st = model.run(torch.randint(97, 105, (1, 17)), fresh).state
    r = reset_level(model, st, fresh, "layer 1 cms[0]")
    assert all(torch.equal(a, b) for a, b in zip(r.cms[1].weights[0], fresh.cms[1].weights[0], strict=True))
    assert all(torch.equal(a, b) for a, b in zip(r.cms[1].weights[1], st.cms[1].weights[1], strict=True))
    assert r.window[-1].weights[1][0] is fresh.cms[1].weights[0]
    m = reset_level(model, st, fresh, "layer 0 memories")
    assert torch.equal(m.mixers[0].W1, fresh.mixers[0].W1) and torch.equal(m.mixers[0].conv, st.mixers[0].conv)
    assert not torch.equal(st.mixers[0].W1, fresh.mixers[0].W1)
    lab = ContinualLab(SuccessorLanguages(n_tasks=2, alphabet=4), [Learner("m", model, resets=True)])
    assert set(lab.reset_probe("m")) == set(model.freeze_options())
    assert lab.reset_probe("m")["layer 0 memories"] == lab.curves["m"][0]  # nothing learned yet: a no-op
    lab.feed("A", 24)
    assert set(lab.summary()["models"]["m"]["resets"]) == set(model.freeze_options())


# -- across training (the outer loop) --------------------------------------------------------------
def test_outer_loop_learns_each_task_and_forgets_it_under_interference():
    from nested.continual_train import train_sequence

    run = train_sequence("AB", "adam", 0.003, 300, eval_every=50)
    a0 = run.loss("A")[0]
    m = run.forgetting_matrix()
    assert m.shape == (2, 4)
    assert m[0, 0] < 0.2 * a0  # A learned
    assert m[1, 1] < 0.2 * run.loss("B")[0]  # then B learned
    assert m[1, 0] > 3 * m[0, 0]  # and A forgotten: the teachers share the inputs
    assert run.steps[-1] == 600 and set(run.memories) == {"exp_avg", "exp_avg_sq"}


def test_outer_forgetting_matrix_reads_the_segment_ends_and_runs_are_deterministic():
    from nested.continual_train import train_sequence

    a = train_sequence("ABA", "momentum", 0.01, 40, eval_every=7)
    b = train_sequence("ABA", "momentum", 0.01, 40, eval_every=7)
    assert a.losses == b.losses
    assert [list(r) for r in a.forgetting_matrix()] == [a.losses[a.steps.index(e)] for e in (40, 80, 120)]


def test_clearing_the_optimizer_state_matters_only_when_it_has_memory():
    from nested.continual_train import train_sequence

    sgd = [train_sequence("AB", "sgd", 0.05, 30, reset_state=r).losses for r in (False, True)]
    assert sgd[0] == sgd[1]  # plain SGD keeps nothing between steps
    mom = [train_sequence("AB", "momentum", 0.01, 30, reset_state=r).losses for r in (False, True)]
    assert mom[0][:4] == mom[1][:4] and mom[0] != mom[1]  # identical until the switch, then not


@pytest.mark.parametrize("kw", [dict(schedule=""), dict(schedule="AZ"), dict(optimizer="nope"), dict(lr=-1.0),
                                dict(lr=float("nan")), dict(steps_per_segment=10**6)])  # fmt: skip
def test_outer_loop_rejects_bad_settings(kw):
    from nested.continual_train import train_sequence

    with pytest.raises(ValueError):
        train_sequence(**kw)
