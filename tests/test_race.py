"""Optimizers racing on real networks (nested.race): fair starts, scoped rules, memories, divergence, learning."""

import math

import pytest
import torch

import nested.race as race_mod
from nested.race import BEST_LR, LABELS, Race, RaceConfig, Runner
from nested.race_tasks import N_TEST, Digits, load_digits, make_problem


def test_digits_data_and_split_are_fixed_and_disjoint():
    x, y = load_digits()
    assert x.shape == (1797, 64) and float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert sorted(set(y.tolist())) == list(range(10))
    a, b = Digits(), Digits()
    assert torch.equal(a.x_test, b.x_test) and len(a.y_test) == N_TEST and len(a.y_train) == 1797 - N_TEST
    train_rows = {tuple(r.tolist()) for r in a.x_train}
    # a test image may repeat a train image's pixels only by coincidence: the split is by row, so few do
    assert sum(tuple(r.tolist()) in train_rows for r in a.x_test) < 5


def test_every_runner_starts_from_the_same_weights_and_sees_the_same_batches():
    race = Race(RaceConfig(task="digits", optimizers=("adamw", "sgd", "m3")))
    weights = [{k: v.clone() for k, v in r.model.state_dict().items()} for r in race.runners.values()]
    for w in weights[1:]:
        assert all(torch.equal(w[k], weights[0][k]) for k in w)
    problem = race.problem
    assert torch.equal(problem.batch(0, 7)[0], problem.batch(0, 7)[0])
    assert not torch.equal(problem.batch(0, 7)[0], problem.batch(0, 8)[0])
    # same optimizer, same seed: the same curve to the last bit; the optimizer is the only difference
    twin = Race(RaceConfig(task="digits", optimizers=("adamw", "sgd", "m3")))
    race.advance(12)
    twin.advance(12)
    for name in race.runners:
        assert [h["loss"] for h in race.runners[name].history] == [h["loss"] for h in twin.runners[name].history]
    assert race.runners["adamw"].history[-1]["loss"] != race.runners["m3"].history[-1]["loss"]


def test_m3_and_muon_keep_their_rule_for_the_hidden_matrix_and_adamw_for_the_rest():
    race = Race(RaceConfig(task="digits", optimizers=("m3", "muon")))
    race.advance(2)
    m3 = race.runners["m3"]
    assert list(m3.layers()["M1"]) == ["hidden.weight"]  # embed, head and the biases go through AdamW
    st = m3.opt.state
    assert "adam_exp_avg" in st[m3.model.embed.weight] and "M1" not in st[m3.model.embed.weight]
    assert "adam_exp_avg" in st[m3.model.hidden.bias]
    assert list(race.runners["muon"].layers()["momentum_buffer"]) == ["hidden.weight"]


def test_m3_slow_memory_changes_exactly_once_every_f_steps():
    race = Race(RaceConfig(task="digits", optimizers=("m3",)))
    race.advance(35)
    f = race.runners["m3"].opt.param_groups[0]["slow_every"]
    assert race.runners["m3"].slow_updates() == list(range(f + 1, 36, f))  # absorbed at the start of each chunk


def test_newton_schulz_makes_every_direction_of_muons_update_equal():
    race = Race(RaceConfig(task="digits", optimizers=("muon", "adamw")))
    race.advance(40)
    sp = race.runners["muon"].spectrum()
    # the leading directions: 5 quintic steps lift a direction by at most 3.4445^5 ~ 485, so those far
    # below the largest stay small (the momentum's spectrum falls fast: the gradient's rank is <= the batch)
    top = 8
    spread = lambda s: min(s[:top]) / max(s[:top])  # noqa: E731
    assert spread(sp["after Newton-Schulz"]) > 0.8 > 0.3 > spread(sp["momentum"])
    assert spread(sp["update"]) > 0.8  # the step Muon took is the orthogonalised one
    assert spread(race.runners["adamw"].spectrum()["update"]) < 0.3  # AdamW's is not
    assert "momentum" not in race.runners["adamw"].spectrum()


def test_a_diverging_optimizer_is_stopped_and_reported_while_the_others_go_on():
    race = Race(RaceConfig(task="digits", optimizers=("sgd", "adamw"), lrs={"sgd": 100.0}))
    race.advance(30)
    sgd, adamw = race.runners["sgd"], race.runners["adamw"]
    assert sgd.diverged and "diverged at step" in sgd.diverged and "100" in sgd.diverged
    assert sgd.steps < 30 and adamw.steps == 30 and adamw.diverged is None and not race.done
    assert all(math.isfinite(h["loss"]) for h in sgd.history)  # the record stops before the bad step


@pytest.mark.parametrize("bad", [float("nan"), -0.1, 0.0, 1e9, "fast"])
def test_bad_learning_rates_are_refused_with_a_clear_message(bad):
    with pytest.raises(ValueError, match="learning rate of SGD"):
        RaceConfig(optimizers=("sgd",), lrs={"sgd": bad})


def test_bad_races_are_refused():
    with pytest.raises(ValueError, match="unknown optimizer"):
        RaceConfig(optimizers=("rmsprop",))
    with pytest.raises(ValueError, match="once"):
        RaceConfig(optimizers=("m3", "m3"))
    with pytest.raises(ValueError, match="at least one"):
        RaceConfig(optimizers=())
    with pytest.raises(ValueError, match="unknown race task"):
        make_problem("imagenet")


def test_a_race_is_bounded(monkeypatch):
    monkeypatch.setattr(race_mod, "MAX_STEPS", 6)
    race = Race(RaceConfig(optimizers=("adamw",), eval_every=3))
    race.advance(10)
    assert race.steps == 6 and race.done
    assert [h["step"] for h in race.runners["adamw"].history if "test_loss" in h] == [3, 6]


@pytest.mark.parametrize("name", ["adamw", "muon", "m3"])
def test_at_its_best_rate_each_optimizer_learns_the_digits(name):
    race = Race(RaceConfig(task="digits", optimizers=(name,), eval_every=150))
    race.advance(150)
    assert race.runners[name].score()["accuracy"] > 0.85  # chance 0.1


def test_every_raced_optimizer_has_a_label_memories_and_a_best_rate_on_each_task():
    for task in BEST_LR:
        assert set(BEST_LR[task]) == set(LABELS)
    problem = make_problem("digits")
    for name in LABELS:
        r = Runner(name, problem, RaceConfig(optimizers=(name,)))
        r.step(1)
        assert set(r.layers()) == set(race_mod.MEMORY_KEYS[name]) and all(r.layers().values())


def test_the_byte_lm_race_lowers_the_loss_and_records_plain_data():
    race = Race(RaceConfig(task="bytes", optimizers=("adamw",), eval_every=20))
    race.advance(20)
    rec = race.record()
    h = rec["runners"]["adamw"]["history"]
    assert h[-1]["loss"] < h[0]["loss"] - 0.5 and h[-1]["test_accuracy"] > 5 / 256
    import json

    assert json.loads(json.dumps(rec)) == rec  # a precomputed race is this record, saved as JSON
