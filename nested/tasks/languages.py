"""Successor languages: continual learning in context, for the forgetting curves (PAPER.md §8.2, §9 E5/E6).

A "language" is a successor rule over its own small alphabet: a random cyclic order of the symbols
(f(s) is the next symbol in the cycle; one cycle through all of them, so no symbol is its own successor
and the stream visits every symbol equally often), and
a stream in that language follows x_{t+1} = f(x_t) with probability `follow`, or jumps to a uniformly
random symbol of the alphabet otherwise. The rules are drawn fresh for every stream (seeded), so nothing
about them is in the outer weights: a model knows a language only by having learned its rule from the
stream - in context, at test time, in its memories and CMS levels. A stream shows segments of one
language at a time in a schedule such as "ABAC"; whether the model still knows A while (and after) it
reads B is the forgetting curve.

Two regimes, named plainly: `shared=False` gives every language its own alphabet (A: a-h, B: i-p, ...),
so learning B never contradicts A and losing A is pure forgetting (capacity, decay, a window that has
moved on); `shared=True` gives all of them one alphabet, so B's rule overwrites A's answers - interference.

The probe shows, for every symbol s of a language, a fragment of it that ends in s (the PROBE_CONTEXT
symbols that lead to s under the rule) and asks what comes next, read from the current stream state
(nested.continual): the answer is f(s). Accuracy is the argmax over the language's alphabet; a guess that
avoids the fragment's own symbols (the answer is never one of them) scores 1/(alphabet - PROBE_CONTEXT),
the probe's chance. The fragment alone does not reveal f(s): only a state that learned the rule does. An
exact solver that has seen the rule answers every query (100%); the best possible next-symbol accuracy on
the stream itself is follow + (1 - follow)/alphabet. A single query token would probe a memory keyed on a
short convolution of the last tokens (Hope, Titans) with a context it never stores: measured on Titans
mid-training, 0.16 with one token against 0.31 with four.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from nested.tasks.base import IGNORE, Batch, Task, rng

SYMBOLS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
PROBE_CONTEXT = 4  # symbols of a probe's fragment (at most half the alphabet): a conv-keyed memory sees a whole window
MAX_TASKS = 6


@dataclass
class LanguageStream:
    """One stream and its schedule: segments[i] = (language letter, first token, end token); rules[L]
    maps each symbol of L's alphabet to its successor."""

    batch: Batch
    segments: list[tuple[str, int, int]]
    rules: dict[str, dict[str, str]]


class SuccessorLanguages(Task):
    name = "languages"

    def __init__(self, n_tasks: int = 3, alphabet: int = 8, shared: bool = False, follow: float = 0.8,
                 segment_len: int = 128, n_segments: int = 4, probe_context: int | None = None):  # fmt: skip
        if not 1 <= n_tasks <= MAX_TASKS:
            raise ValueError(f"n_tasks must be 1..{MAX_TASKS}")
        if not 2 <= alphabet <= (len(SYMBOLS) if shared else len(SYMBOLS) // n_tasks):
            raise ValueError(f"an alphabet of {alphabet} symbols does not fit {n_tasks} languages")
        if not 0.0 <= follow <= 1.0:
            raise ValueError("follow must be a probability")
        if segment_len < 2 or n_segments < 1:
            raise ValueError("segments need at least 2 tokens, and a stream at least one segment")
        self.n_tasks, self.alphabet, self.shared, self.follow = n_tasks, alphabet, shared, follow
        self.segment_len, self.n_segments = segment_len, n_segments
        self.probe_context = min(PROBE_CONTEXT, alphabet // 2) if probe_context is None else int(probe_context)
        if not 1 <= self.probe_context < alphabet:
            raise ValueError(f"a probe fragment has 1 to {alphabet - 1} symbols")
        self.answers = sorted({ord(c) for t in self.task_names for c in self.symbols(t)})

    @property
    def task_names(self) -> list[str]:
        return [chr(65 + i) for i in range(self.n_tasks)]

    @property
    def chance(self) -> float:
        return 1.0 / self.alphabet

    def symbols(self, task: str) -> str:
        i = 0 if self.shared else ord(task) - 65
        return SYMBOLS[i * self.alphabet : (i + 1) * self.alphabet]

    # -- rules and streams -----------------------------------------------------------------------
    def rules(self, g: torch.Generator, tasks: str | None = None) -> dict[str, dict[str, str]]:
        out = {}
        for t in tasks or self.task_names:
            sym = self.symbols(t)
            order = [sym[i] for i in torch.randperm(len(sym), generator=g).tolist()]
            out[t] = {s: order[(i + 1) % len(order)] for i, s in enumerate(order)}
        return out

    def segment(self, task: str, rules: dict, n: int, g: torch.Generator, after: str | None = None) -> str:
        """n symbols of `task`: each the successor of the one before with probability `follow`, else a
        uniform jump. The first follows `after` (the stream's last symbol) when it is in this alphabet."""
        sym, rule = self.symbols(task), rules[task]
        draws = torch.rand(n, generator=g).tolist()
        jumps = torch.randint(0, len(sym), (n,), generator=g).tolist()
        cur, out = (after if after is not None and after in rule else None), []
        for i in range(n):
            cur = rule[cur] if cur is not None and draws[i] < self.follow else sym[jumps[i]]
            out.append(cur)
        return "".join(out)

    def build(self, schedule: str, g: torch.Generator, rules: dict, segment_len: int | None = None) -> tuple:
        """The stream's text and its segments [(task, start, end)] for `schedule` (one letter a segment)."""
        n = segment_len or self.segment_len
        text, segments = "", []
        for task in schedule:
            if task not in rules:
                raise ValueError(f"schedule {schedule!r} names language {task!r}; this family has {self.task_names}")
            start = len(text)
            text += self.segment(task, rules, n, g)
            segments.append((task, start, len(text)))
        return text, segments

    @staticmethod
    def _batch(texts: list[str]) -> Batch:
        x = torch.tensor([list(t.encode()) for t in texts], dtype=torch.long)
        inputs, targets = x[:, :-1].clone(), x[:, 1:].clone()
        return Batch(inputs, targets)

    # -- the Task interface ----------------------------------------------------------------------
    def sample(self, batch_size: int, seed: int) -> Batch:
        """Training streams: a random schedule of `n_segments` segments, fresh rules per stream. Every next
        symbol is scored: what can be predicted is the successor of a symbol whose rule the stream showed."""
        g = rng(seed)
        texts = []
        for _ in range(batch_size):
            picks = torch.randint(0, self.n_tasks, (self.n_segments,), generator=g).tolist()
            text, _ = self.build("".join(self.task_names[i] for i in picks), g, self.rules(g))
            texts.append(text)
        return self._batch(texts)

    def stream(self, seed: int, schedule: str = "ABAC", segment_len: int | None = None) -> LanguageStream:
        g = rng(seed)
        rules = self.rules(g)
        text, segments = self.build(schedule, g, rules, segment_len)
        return LanguageStream(self._batch([text]), segments, rules)

    def queries(self, task: str, rules: dict, context: int | None = None) -> tuple[Tensor, Tensor]:
        """The probe of `task`: for every symbol s, the fragment of the language that ends in s
        (f^-(context-1)(s) ... f^-1(s), s), shape (n, context), and the successor f(s) each should get."""
        context = self.probe_context if context is None else context
        if not 1 <= context < self.alphabet:
            raise ValueError(f"a probe fragment has 1 to {self.alphabet - 1} symbols")
        rule = rules[task]
        before = {v: k for k, v in rule.items()}
        frags = []
        for s in self.symbols(task):
            frag = [s]
            while len(frag) < context:
                frag.insert(0, before[frag[0]])
            frags.append([ord(c) for c in frag])
        answers = torch.tensor([ord(rule[s]) for s in self.symbols(task)], dtype=torch.long)
        return torch.tensor(frags, dtype=torch.long), answers

    def probe_chance(self, context: int | None = None) -> float:
        """What a probe scores without knowing the rule: the answer is none of the fragment's symbols (a
        single cycle through the alphabet), so a guess among the others is right 1/(alphabet - context)."""
        return 1.0 / (self.alphabet - (self.probe_context if context is None else context))

    def restrict(self, task: str) -> list[int]:
        """The answer alphabet of `task`'s probe (argmax over these: chance 1/alphabet)."""
        return [ord(c) for c in self.symbols(task)]

    def solve(self, inputs: Tensor) -> Tensor:
        """The rule-reading solver: the successor of x_t is the symbol that most recently followed x_t in
        the stream (an unseen symbol: IGNORE, scored wrong). Exact whenever the stream follows its rule."""
        out = torch.full_like(inputs, IGNORE)
        for i, row in enumerate(inputs.tolist()):
            last: dict[int, int] = {}
            for t, tok in enumerate(row):
                if t > 0:
                    last[row[t - 1]] = tok
                if tok in last:
                    out[i, t] = last[tok]
        return out
