"""What every task is: a seeded generator of byte sequences with per-position targets, and a probe.

A Batch holds inputs (B, T) and targets (B, T): targets[t] is the token the model should predict after
reading inputs[:t+1], or IGNORE where nothing is scored (prompts, filler). Every task is over the byte
vocabulary (256), so any model trains on any task. A probe scores a predictor (tokens -> logits) on fresh
samples; `answers` restricts the argmax to the task's answer alphabet so chance is 1/len(answers).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

IGNORE = -100
VOCAB = 256

Predictor = Callable[[Tensor], Tensor]  # (B, T) int64 -> (B, T, V) logits


def rng(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) % (2**63))


def encode(s: str) -> list[int]:
    return list(s.encode("utf-8"))


@dataclass
class Batch:
    inputs: Tensor  # (B, T) int64
    targets: Tensor  # (B, T) int64, IGNORE where not scored

    def __post_init__(self):
        if self.inputs.shape != self.targets.shape:
            raise ValueError("inputs and targets must have the same shape")

    @property
    def scored(self) -> Tensor:
        return self.targets != IGNORE


def lm_batch(seqs: list[list[int]], score_from: list[int] | None = None) -> Batch:
    """Next-token batch from equal-length sequences: inputs = s[:-1], targets = s[1:], positions before
    score_from[i] (in target indexing) ignored."""
    x = torch.tensor(seqs, dtype=torch.long)
    inputs, targets = x[:, :-1].clone(), x[:, 1:].clone()
    if score_from is not None:
        for i, s in enumerate(score_from):
            targets[i, :s] = IGNORE
    return Batch(inputs, targets)


class Task:
    """Subclasses set `name`, `answers` (allowed answer tokens, or None for free text) and implement
    `sample(batch_size, seed) -> Batch` and `solve(inputs) -> predicted target ids` (an exact algorithmic
    solver that reads only the inputs: the oracle of the tests)."""

    name = "task"
    answers: list[int] | None = None

    def sample(self, batch_size: int, seed: int) -> Batch:  # pragma: no cover - abstract
        raise NotImplementedError

    def solve(self, inputs: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def chance(self) -> float:
        return 1.0 / len(self.answers) if self.answers else 1.0 / VOCAB

    def oracle(self) -> Predictor:
        """A predictor that answers with `solve`: one-hot logits."""

        def predict(inputs: Tensor) -> Tensor:
            ids = self.solve(inputs).clamp_min(0)
            return torch.nn.functional.one_hot(ids, VOCAB).float() * 10.0

        return predict

    def probe(self, predict: Predictor, n: int = 64, seed: int = 12345, batch_size: int = 32) -> dict:
        """Accuracy on scored positions (argmax over `answers`), exact-match rate per sequence, mean loss
        (nats) and bits per token of the scored positions, chance level."""
        correct = total = seq_ok = seqs = 0
        nll = 0.0
        for i in range(math.ceil(n / batch_size)):
            b = self.sample(min(batch_size, n - i * batch_size), seed + i)
            with torch.no_grad():
                logits = predict(b.inputs).float()
            mask = b.scored
            logp = torch.log_softmax(logits, -1)
            tgt = b.targets.clamp_min(0)
            nll += float(-(logp.gather(-1, tgt[..., None])[..., 0] * mask).sum())
            if self.answers is not None:
                restricted = torch.full_like(logits, -torch.inf)
                idx = torch.tensor(self.answers)
                restricted[..., idx] = logits[..., idx]
                pred = restricted.argmax(-1)
            else:
                pred = logits.argmax(-1)
            hit = (pred == b.targets) & mask
            correct += int(hit.sum())
            total += int(mask.sum())
            seq_ok += int(((hit | ~mask).all(-1)).sum())
            seqs += b.inputs.shape[0]
        loss = nll / max(total, 1)
        return {"accuracy": correct / max(total, 1), "exact_match": seq_ok / max(seqs, 1), "loss": loss,
                "bits_per_token": loss / math.log(2), "chance": self.chance, "scored": total}  # fmt: skip
