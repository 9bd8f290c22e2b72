"""Task generators: deterministic per seed; an exact oracle scores 100%, a random guesser about chance."""

import pytest
import torch

from nested.tasks import (
    AssociativeRecall,
    FormalLanguage,
    NeedleInHaystack,
    NewLanguageTask,
    TaskSwitching,
    TextTask,
    make_task,
)

TASKS = {
    "recall": lambda: AssociativeRecall(n_pairs=12, n_queries=6),
    "niah-single": lambda: NeedleInHaystack(context_len=200),
    "niah-multikey": lambda: NeedleInHaystack(context_len=300, n_needles=4, variant="multikey"),
    "niah-passkey": lambda: NeedleInHaystack(context_len=150, variant="passkey"),
    "switch-map": lambda: TaskSwitching(family="map", examples_per_segment=12),
    "switch-cipher": lambda: TaskSwitching(family="cipher", examples_per_segment=8),
    "switch-linear": lambda: TaskSwitching(family="linear", examples_per_segment=12),
    "new-language": lambda: NewLanguageTask(n_examples=5),
    "parity": lambda: FormalLanguage("parity", 1, 12),
    "aa": lambda: FormalLanguage("aa", 1, 12),
    "anbn": lambda: FormalLanguage("anbn", 2, 12),
}


@pytest.mark.parametrize("name", list(TASKS))
def test_deterministic_per_seed(name):
    t = TASKS[name]()
    a, b, c = t.sample(4, 7), t.sample(4, 7), t.sample(4, 8)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.inputs, c.inputs) if a.inputs.shape == c.inputs.shape else True
    assert int(a.scored.sum()) > 0
    # inputs and targets are the same sequence shifted: every scored target is the next input
    assert torch.equal(a.targets[:, :-1][a.scored[:, :-1]], a.inputs[:, 1:][a.scored[:, :-1]])


@pytest.mark.parametrize("name", list(TASKS))
def test_oracle_is_perfect_and_random_is_chance(name):
    t = TASKS[name]()
    assert t.probe(t.oracle(), n=32)["accuracy"] == 1.0
    rnd = t.probe(lambda x: torch.randn(*x.shape, 256, generator=torch.Generator().manual_seed(0)), n=200)
    assert abs(rnd["accuracy"] - t.chance) < max(0.05, 0.5 * t.chance), (rnd["accuracy"], t.chance)


def test_text_oracle_and_user_text():
    t = TextTask(seq_len=48)
    # a window may recur in the docs with a different continuation; the lookup oracle is then ambiguous
    assert t.probe(t.oracle(), n=32)["accuracy"] > 0.99
    user = TextTask(seq_len=16, text="hello, nested world! " * 4)
    b = user.sample(2, 0)
    assert bytes(b.inputs[0].tolist()) in ("hello, nested world! " * 5).encode()


def test_recall_context_grows_with_pairs():
    assert (
        AssociativeRecall(n_pairs=32, n_queries=8).sample(1, 0).inputs.shape[1]
        > AssociativeRecall(n_pairs=8, n_queries=8).sample(1, 0).inputs.shape[1]
    )


def test_niah_context_length_and_needles():
    t = NeedleInHaystack(context_len=256, n_needles=5, variant="multikey")
    b = t.sample(2, 0)
    text = bytes(b.inputs[0].tolist()).decode()
    assert b.inputs.shape[1] == 256 - 1 and text.count("#") == 6  # five needles and the question


def test_switching_stream_and_probes_follow_the_rules():
    t = TaskSwitching(family="map", schedule="ABAC", examples_per_segment=10)
    s = t.stream(seed=3)
    assert [seg[0] for seg in s.segments] == list("ABAC")
    pb = t.probe_batch("B", s.rules, 8, seed=0)
    for i in range(8):
        row = bytes(pb.inputs[i].tolist()).decode()
        x = row[2]
        tgt = pb.targets[i][pb.targets[i] != -100]
        assert chr(int(tgt[0])) == s.rules["B"][x]
    assert s.rules["A"] != s.rules["B"]  # conflicting rules over shared inputs


def test_unknown_task_and_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown task"):
        make_task("sudoku")
    with pytest.raises(ValueError):
        AssociativeRecall(n_pairs=2, n_queries=5)
    with pytest.raises(ValueError, match="too short"):
        TextTask(seq_len=64, text="tiny")


def test_recall_with_min_pairs_draws_a_context_length_per_batch_and_stays_solvable():
    from nested.tasks import make_task

    task = make_task("recall", n_pairs=32, min_pairs=4, n_queries=8)
    lengths = {task.sample(2, seed).inputs.shape[1] for seed in range(12)}
    assert len(lengths) > 3 and min(lengths) >= 3 * (4 + 4) and max(lengths) < task.context_len  # inputs: seq[:-1]
    for seed in range(4):
        b = task.sample(3, seed)
        assert torch.equal(task.solve(b.inputs), b.targets)  # every scored digit is recoverable from the pairs
    with pytest.raises(ValueError, match="min_pairs"):
        make_task("recall", n_pairs=8, min_pairs=9, n_queries=4)


def test_recall_mix_draws_mqar_and_every_needle_variant_and_its_solver_is_exact():
    from nested.tasks import IGNORE, make_task

    task, kinds = make_task("recall-mix"), set()
    for seed in range(40):
        b = task.sample(4, seed)
        text = bytes(b.inputs[0].tolist()).decode()
        kinds.add("mqar" if "|" in text else "passkey" if "#PK=" in text else f"niah-{text.count('#') - 1}")
        scored = b.targets != IGNORE
        assert scored.any() and torch.equal(task.solve(b.inputs)[scored], b.targets[scored])
        if "#" in text:
            assert 56 <= b.inputs.shape[1] + 1 <= 128
    assert kinds == {"mqar", "passkey", "niah-1", "niah-4"}
    with pytest.raises(ValueError):
        make_task("recall-mix", niah_len=(40, 128))
    with pytest.raises(ValueError):
        make_task("recall-mix", niah_share=1.5)
