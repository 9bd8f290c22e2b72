"""Formal languages for length generalisation (PAPER.md §8.5, §9 E8): parity, (aa)*, a^n b^n.

A sequence is a string, "=", then the label "Y"/"N" (scored). Strings are left-padded with spaces to the
batch's longest. Train on lengths in [min_len, max_len]; test longer with a second instance."""

from __future__ import annotations

import torch
from torch import Tensor

from nested.tasks.base import IGNORE, Batch, Task, encode, lm_batch, rng

YES, NO = ord("Y"), ord("N")


class FormalLanguage(Task):
    answers = [YES, NO]

    def __init__(self, language: str = "parity", min_len: int = 1, max_len: int = 16):
        if language not in ("parity", "aa", "anbn"):
            raise ValueError("language must be parity, aa or anbn")
        self.language, self.min_len, self.max_len = language, min_len, max_len
        self.name = f"formal-{language}"

    def label(self, s: str) -> bool:
        if self.language == "parity":
            return s.count("1") % 2 == 0
        if self.language == "aa":
            return len(s) % 2 == 0
        n = len(s) // 2
        return len(s) % 2 == 0 and s == "a" * n + "b" * n

    def _string(self, g: torch.Generator) -> str:
        n = int(torch.randint(self.min_len, self.max_len + 1, (1,), generator=g))
        if self.language == "parity":
            return "".join("01"[int(b)] for b in torch.randint(0, 2, (n,), generator=g))
        if self.language == "aa":
            return "a" * n
        # a^n b^n: half the time a member, else a near miss (one symbol moved or the counts off by one)
        k = max(1, n // 2)
        s = "a" * k + "b" * k
        if int(torch.randint(0, 2, (1,), generator=g)):
            if int(torch.randint(0, 2, (1,), generator=g)) and k > 1:
                i = int(torch.randint(0, len(s) - 1, (1,), generator=g))
                s = s[:i] + s[i + 1] + s[i] + s[i + 2 :]
            else:
                s = s + ("a" if int(torch.randint(0, 2, (1,), generator=g)) else "b")
        return s

    def sample(self, batch_size: int, seed: int) -> Batch:
        g = rng(seed)
        strs = [self._string(g) for _ in range(batch_size)]
        seqs = [encode(s + "=" + ("Y" if self.label(s) else "N")) for s in strs]
        L = max(len(s) for s in seqs)
        padded = [[32] * (L - len(s)) + s for s in seqs]
        batch = lm_batch(padded)
        batch.targets[:, :-1] = IGNORE  # only the label
        return batch

    def solve(self, inputs: Tensor) -> Tensor:
        out = torch.full_like(inputs, IGNORE)
        for i, row in enumerate(inputs.tolist()):
            s = bytes(row).decode().strip().rstrip("=")
            out[i, -1] = YES if self.label(s) else NO
        return out
