"""Task switching with conflicting rules, for forgetting curves (PAPER.md §8.2, §9 E5).

A family of tasks shares its inputs and disagrees on the outputs. Each example is "A:k>v;" - a task
marker, an input, ">" and the output under that task's rule (scored). A stream shows segments of one task
at a time in a schedule such as "ABAC": whether the model still answers task A correctly while (and after)
it sees B is the forgetting curve. Rules are drawn fresh per sequence (seeded), so they must be learned in
context; the marker says which rule applies. Only outputs whose (task, input) pair already appeared in the
sequence are scored, so every scored answer is determined by the context (the oracle scores 100%).

Families: "map" (a random letter -> letter map per task), "cipher" (a random substitution "language"
applied to 3-letter words), "linear" (a regression teacher y = a x + b mod 10 over digits).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from nested.tasks.base import IGNORE, Batch, Task, encode, rng

KEYS = "abcdefgh"
VALUES = "abcdefghijklmnopqrstuvwxyz"


@dataclass
class Stream:
    """One long sequence with its schedule: segments[i] = (task letter, first token, end token)."""

    batch: Batch
    segments: list[tuple[str, int, int]]
    rules: dict[str, dict[str, str]]


class TaskSwitching(Task):
    name = "switching"

    def __init__(self, family: str = "map", n_tasks: int = 3, schedule: str = "ABAC", examples_per_segment: int = 24):
        if family not in ("map", "cipher", "linear"):
            raise ValueError("family must be map, cipher or linear")
        if not 1 <= n_tasks <= 6 or any(ord(c) - 65 >= n_tasks for c in schedule):
            raise ValueError(f"schedule {schedule!r} uses tasks beyond the {n_tasks} in the family")
        self.family, self.n_tasks, self.schedule, self.per_segment = family, n_tasks, schedule, examples_per_segment
        self.answers = [ord(c) for c in (VALUES if family != "linear" else "0123456789")]

    @property
    def task_names(self) -> list[str]:
        return [chr(65 + i) for i in range(self.n_tasks)]

    # -- rules and examples ----------------------------------------------------------------------
    def rules(self, g: torch.Generator) -> dict[str, dict[str, str]]:
        out = {}
        for name in self.task_names:
            if self.family == "map":
                vals = torch.randperm(len(VALUES), generator=g)[: len(KEYS)].tolist()
                out[name] = {k: VALUES[v] for k, v in zip(KEYS, vals, strict=True)}
            elif self.family == "cipher":
                perm = torch.randperm(len(KEYS), generator=g).tolist()
                out[name] = {k: KEYS[p] for k, p in zip(KEYS, perm, strict=True)}
            else:
                a, b = int(torch.randint(1, 10, (1,), generator=g)), int(torch.randint(0, 10, (1,), generator=g))
                out[name] = {str(x): str((a * x + b) % 10) for x in range(10)}
        return out

    def _inputs(self) -> list[str]:
        return list(KEYS) if self.family == "map" else ([str(x) for x in range(10)] if self.family == "linear" else [])

    def example(self, task: str, rules: dict, g: torch.Generator) -> tuple[str, list[int]]:
        """One example and the character offsets (within it) whose next character is scored."""
        rule = rules[task]
        if self.family == "cipher":
            word = "".join(KEYS[int(i)] for i in torch.randint(0, len(KEYS), (3,), generator=g))
            out = "".join(rule[c] for c in word)
            text = f"{task}:{word}>{out};"
            first = len(task) + 1 + len(word)  # index of ">"
            return text, list(range(first, first + len(out)))
        inputs = self._inputs()
        x = inputs[int(torch.randint(0, len(inputs), (1,), generator=g))]
        text = f"{task}:{x}>{rule[x]};"
        return text, [len(task) + 1 + len(x)]

    def _build(self, schedule: str, per_segment: int, g: torch.Generator, rules) -> tuple[list[int], list[int], list]:
        """Scored: outputs whose (task, input symbol) already appeared in this sequence - recall of a rule
        learned in context, so the answer is always determined by what came before."""
        text, scored, segments, seen = "", [], [], set()
        for task in schedule:
            start = len(text)
            for _ in range(per_segment):
                ex, offs = self.example(task, rules, g)
                src = ex[len(task) + 1 : ex.index(">")]
                symbols = list(src) if self.family == "cipher" else [src]
                for o, sym in zip(offs, symbols, strict=True):
                    if (task, sym) in seen:
                        scored.append(len(text) + o)
                    seen.add((task, sym))
                text += ex
            segments.append((task, start, len(text)))
        return encode(text), scored, segments

    def _batch(self, seqs: list[list[int]], scored: list[list[int]]) -> Batch:
        x = torch.tensor(seqs, dtype=torch.long)
        inputs, targets = x[:, :-1].clone(), torch.full_like(x[:, 1:], IGNORE)
        for i, pos in enumerate(scored):
            idx = torch.tensor([p for p in pos if p < inputs.shape[1]])
            targets[i, idx] = x[i, idx + 1]
        return Batch(inputs, targets)

    # -- the Task interface ----------------------------------------------------------------------
    def sample(self, batch_size: int, seed: int) -> Batch:
        """Training sequences: a random schedule of `len(self.schedule)` segments, fresh rules each."""
        g = rng(seed)
        seqs, scored = [], []
        for _ in range(batch_size):
            sched = "".join(
                self.task_names[int(i)] for i in torch.randint(0, self.n_tasks, (len(self.schedule),), generator=g)
            )
            s, sc, _ = self._build(sched, self.per_segment, g, self.rules(g))
            seqs.append(s)
            scored.append(sc)
        L = min(len(s) for s in seqs)  # examples have equal length per family, so all are equal
        return self._batch([s[:L] for s in seqs], scored)

    def stream(self, seed: int, schedule: str | None = None) -> Stream:
        g = rng(seed)
        rules = self.rules(g)
        seq, sc, segments = self._build(schedule or self.schedule, self.per_segment, g, rules)
        return Stream(self._batch([seq], [sc]), segments, rules)

    def probe_batch(self, task: str, rules: dict, n: int, seed: int) -> Batch:
        """n single examples of `task` under `rules`, to score a model from a given stream state."""
        g = rng(seed)
        seqs, scored = [], []
        for _ in range(n):
            ex, offs = self.example(task, rules, g)
            seqs.append(encode(ex))
            scored.append(offs)
        return self._batch(seqs, scored)

    def solve(self, inputs: Tensor) -> Tensor:
        """Reads the examples seen so far; answers a scored position by the latest example of the same
        task with the same input (unknown yet: IGNORE, which scores as wrong)."""
        out = torch.full_like(inputs, IGNORE)
        for i, row in enumerate(inputs.tolist()):
            text = bytes(row).decode()
            known: dict[tuple[str, str], str] = {}
            pos = 0
            for ex in text.split(";"):
                if ":" in ex and ">" in ex:
                    task, rest = ex.split(":", 1)
                    src, dst = rest.split(">", 1)
                    arrow = pos + len(task) + 1 + len(src)
                    srcs = list(src) if self.family == "cipher" else [src]
                    for j, s in enumerate(srcs):  # outputs before j are already read when predicting j
                        if (task, s) in known and arrow + j < len(row):
                            out[i, arrow + j] = ord(known[(task, s)])
                        if j < len(dst):
                            known[(task, s)] = dst[j]
                pos += len(ex) + 1
        return out
