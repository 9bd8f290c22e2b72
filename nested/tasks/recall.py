"""Recall tasks (PAPER.md §8.4-8.5): multi-query associative recall and needle-in-a-haystack.

Associative recall (MQAR): "ab3 kq7 ... |ab3 kq7" - pairs of a 2-letter key and a digit, then queries of
keys seen before, the digit after each query key scored. Context length grows with `n_pairs`.

Needle in a haystack: filler prose (Python's docs, or the classic repeated sentences for the passkey
variant) with needles "#KEY=1234." hidden at random depths, then a question "#KEY=" whose 4 digits are
scored. Variants: "single" (one needle), "multikey" (n needles, one asked), "passkey" (a 5-digit pass
key in repeated filler)."""

from __future__ import annotations

import re

import torch
from torch import Tensor

from nested.tasks.base import IGNORE, Batch, Task, encode, lm_batch, rng
from nested.tasks.text import pydoc_corpus

DIGITS = [ord(c) for c in "0123456789"]
LETTERS = "abcdefghijklmnopqrstuvwxyz"


class AssociativeRecall(Task):
    name = "recall"
    answers = DIGITS

    def __init__(self, n_pairs: int = 16, n_queries: int = 8, key_len: int = 2, min_pairs: int | None = None):
        """`min_pairs`: each batch draws its number of pairs from [min_pairs, n_pairs] (its queries capped at
        that number), so one model trains over a range of context lengths; None: always n_pairs."""
        if n_queries > n_pairs:
            raise ValueError("n_queries must be <= n_pairs")
        if n_pairs > 26**key_len:
            raise ValueError(f"at most {26**key_len} distinct keys of length {key_len}")
        if min_pairs is not None and not 1 <= min_pairs <= n_pairs:
            raise ValueError("min_pairs must be in [1, n_pairs]")
        self.n_pairs, self.n_queries, self.key_len, self.min_pairs = n_pairs, n_queries, key_len, min_pairs

    @property
    def context_len(self) -> int:
        return (self.key_len + 1) * (self.n_pairs + self.n_queries) + 1

    def _key(self, i: int) -> str:
        return "".join(LETTERS[(i // 26**j) % 26] for j in range(self.key_len))

    def sample(self, batch_size: int, seed: int) -> Batch:
        g = rng(seed)
        n_pairs = self.n_pairs
        if self.min_pairs is not None:
            n_pairs = int(torch.randint(self.min_pairs, self.n_pairs + 1, (1,), generator=g))
        n_queries = min(self.n_queries, n_pairs)
        seqs, starts = [], []
        for _ in range(batch_size):
            keys = torch.randperm(26**self.key_len, generator=g)[:n_pairs].tolist()
            vals = torch.randint(0, 10, (n_pairs,), generator=g).tolist()
            pairs = "".join(f"{self._key(k)}{v}" for k, v in zip(keys, vals, strict=True))
            qs = torch.randperm(n_pairs, generator=g)[:n_queries].tolist()
            queries = "".join(f"{self._key(keys[q])}{vals[q]}" for q in qs)
            seq = encode(pairs + "|" + queries)
            seqs.append(seq)
            starts.append(len(pairs) + 1)
        batch = lm_batch(seqs)
        # score only the digits of the query part: the target after each query key
        for i, st in enumerate(starts):
            t = batch.targets[i]
            keep = torch.zeros_like(t, dtype=torch.bool)
            for q in range(n_queries):
                keep[st + q * (self.key_len + 1) + self.key_len - 1] = True
            t[~keep] = IGNORE
        return batch

    def solve(self, inputs: Tensor) -> Tensor:
        out = torch.full_like(inputs, IGNORE)
        kl = self.key_len
        for i, row in enumerate(inputs.tolist()):
            text = bytes(row).decode()
            pairs, _, queries = text.partition("|")
            table = {pairs[j : j + kl]: pairs[j + kl] for j in range(0, len(pairs), kl + 1)}
            base = len(pairs) + 1
            for j in range(0, len(queries), kl + 1):
                key = queries[j : j + kl]
                if len(key) == kl and key in table:
                    out[i, base + j + kl - 1] = ord(table[key])
        return out


FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
NEEDLE = re.compile(r"#([A-Z]{2})=(\d+)\.")


class NeedleInHaystack(Task):
    name = "niah"
    answers = DIGITS

    def __init__(self, context_len: int = 256, n_needles: int = 1, variant: str = "single"):
        if variant not in ("single", "multikey", "passkey"):
            raise ValueError("variant must be single, multikey or passkey")
        if variant != "multikey":
            n_needles = 1
        self.context_len, self.n_needles, self.variant = context_len, n_needles, variant
        self.digits = 5 if variant == "passkey" else 4

    def _haystack(self, n: int, g: torch.Generator) -> str:
        if self.variant == "passkey":
            return (FILLER * (n // len(FILLER) + 1))[:n]
        corpus = pydoc_corpus()
        start = int(torch.randint(0, len(corpus) - n - 1, (1,), generator=g))
        return "".join(chr(b) if 32 <= b < 127 and b != 35 else " " for b in corpus[start : start + n])

    def _sequence(self, g: torch.Generator) -> tuple[str, str]:
        value = lambda: "".join(str(int(d)) for d in torch.randint(0, 10, (self.digits,), generator=g))  # noqa: E731
        if self.variant == "passkey":
            key, val = "PK", value()
            needles = [f"#{key}={val}."]
        else:
            keys = torch.randperm(26 * 26, generator=g)[: self.n_needles].tolist()
            names = [chr(65 + k // 26) + chr(65 + k % 26) for k in keys]
            vals = [value() for _ in names]
            needles = [f"#{n}={v}." for n, v in zip(names, vals, strict=True)]
            pick = int(torch.randint(0, len(names), (1,), generator=g))
            key, val = names[pick], vals[pick]
        question = f" #{key}="
        room = self.context_len - len(question) - self.digits - sum(len(n) for n in needles)
        if room < 0:
            raise ValueError(f"context_len {self.context_len} is too short for {len(needles)} needles")
        hay = self._haystack(room, g)
        cuts = sorted(torch.randint(0, room + 1, (len(needles),), generator=g).tolist())
        pieces, prev = [], 0
        for c, nd in zip(cuts, needles, strict=True):
            pieces += [hay[prev:c], nd]
            prev = c
        pieces.append(hay[prev:])
        return "".join(pieces) + question, val

    def sample(self, batch_size: int, seed: int) -> Batch:
        g = rng(seed)
        seqs, starts = [], []
        for _ in range(batch_size):
            prompt, val = self._sequence(g)
            s = encode(prompt + val)
            seqs.append(s)
            starts.append(len(encode(prompt)) - 1)
        return lm_batch(seqs, score_from=starts)

    def solve(self, inputs: Tensor) -> Tensor:
        out = torch.full_like(inputs, IGNORE)
        for i, row in enumerate(inputs.tolist()):
            text = bytes(row).decode("ascii", "replace")
            q = text.rindex(" #")
            key = text[q + 2 : q + 4]
            found = {k: v for k, v in NEEDLE.findall(text[:q])}
            if key in found:
                start = q + 4  # the "=" after the key: its target is the first digit
                for j, ch in enumerate(found[key]):
                    if start + j < len(row):
                        out[i, start + j] = ord(ch)
        return out


class RecallMix(Task):
    """The recall lab's training mix: each batch is MQAR (4..`n_pairs` pairs) with probability
    1 - `niah_share`, else a needle in a haystack (single, multikey or passkey, drawn evenly) of a
    context length drawn from `niah_len`. Scored like its source task."""

    name = "recall-mix"
    answers = DIGITS

    def __init__(self, n_pairs: int = 32, min_pairs: int = 4, n_queries: int = 8, niah_share: float = 0.5,
                 niah_len: tuple[int, int] = (56, 128)):  # fmt: skip
        if not 0.0 <= niah_share <= 1.0:
            raise ValueError("niah_share must be in [0, 1]")
        if not 56 <= niah_len[0] <= niah_len[1]:
            raise ValueError("niah_len must be (lo, hi) with 56 <= lo <= hi (room for 4 needles and the question)")
        self.mqar = AssociativeRecall(n_pairs, n_queries, min_pairs=min_pairs)
        self.niah_share, self.niah_len = niah_share, tuple(niah_len)

    def sample(self, batch_size: int, seed: int) -> Batch:
        g = rng(seed)
        if float(torch.rand(1, generator=g)) >= self.niah_share:
            return self.mqar.sample(batch_size, seed)
        variant = ("single", "multikey", "passkey")[int(torch.randint(0, 3, (1,), generator=g))]
        length = int(torch.randint(self.niah_len[0], self.niah_len[1] + 1, (1,), generator=g))
        return NeedleInHaystack(length, n_needles=4, variant=variant).sample(batch_size, seed)

    def solve(self, inputs: Tensor) -> Tensor:
        out = torch.full_like(inputs, IGNORE)
        for i, row in enumerate(inputs):
            text = bytes(row.tolist()).decode("ascii", "replace")
            task = self.mqar if "|" in text and "#" not in text else NeedleInHaystack(len(text))
            out[i] = task.solve(row[None])[0]
        return out
