"""What optimizers race on (nested.race): a real network and a real dataset, both offline and small.

- "digits": the 1,797 8x8 handwritten digits of the UCI set (Alpaydin & Kaynak 1998, CC BY 4.0; the copy
  scikit-learn ships, in assets/data/digits.csv.gz), a fixed 1,497 / 300 train / test split, classified by an
  MLP 64 -> 128 -> 128 -> 10. Its layers are named `embed` (pixels in), `hidden` and `head` (classes out) so
  that Muon's and M3's "hidden" scope (nested.optim.scope) takes the one hidden matrix, as Muon is used.
- "bytes": next-byte prediction on Python's offline docs (pydoc_data, nested.tasks.TextTask) with a small
  Transformer of the registry (d_model 64, 2 layers, context 64).

A problem builds its network from a seed, draws the training batch of a step from (seed, step), and scores a
network on a fixed held-out set: the same numbers for every optimizer in a race.
"""

from __future__ import annotations

import gzip
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import nested
from nested.tasks import TextTask

DIGITS = Path(__file__).resolve().parent.parent / "assets" / "data" / "digits.csv.gz"
N_TEST = 300


@lru_cache(maxsize=1)
def load_digits() -> tuple[Tensor, Tensor]:
    """(1797, 64) pixels scaled to [0, 1] and (1797,) labels, in the file's order."""
    rows = [line.split(",") for line in gzip.decompress(DIGITS.read_bytes()).decode().split()]
    data = torch.tensor([[float(v) for v in r] for r in rows])
    return data[:, :64] / 16.0, data[:, 64].long()


class DigitsMLP(nn.Module):
    def __init__(self, hidden: int = 128):
        super().__init__()
        self.embed = nn.Linear(64, hidden)
        self.hidden = nn.Linear(hidden, hidden)
        self.head = nn.Linear(hidden, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(F.gelu(self.hidden(F.gelu(self.embed(x)))))


class Digits:
    name = "digits"
    label = "handwritten digits (8x8), MLP"
    metric = "test accuracy"
    chance = 0.1

    def __init__(self, batch_size: int = 64):
        x, y = load_digits()
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))  # the split never changes
        test, train = order[:N_TEST], order[N_TEST:]
        self.x_train, self.y_train, self.x_test, self.y_test = x[train], y[train], x[test], y[test]
        self.batch_size = batch_size

    def build(self, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return DigitsMLP()

    def batch(self, seed: int, step: int) -> tuple[Tensor, Tensor]:
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        idx = torch.randint(0, len(self.y_train), (self.batch_size,), generator=g)
        return self.x_train[idx], self.y_train[idx]

    def loss(self, model: nn.Module, batch) -> Tensor:
        x, y = batch
        return F.cross_entropy(model(x), y)

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict:
        logits = model(self.x_test)
        return {"loss": float(F.cross_entropy(logits, self.y_test)),
                "accuracy": float((logits.argmax(-1) == self.y_test).float().mean())}  # fmt: skip


class Bytes:
    name = "bytes"
    label = "next byte of Python's docs, Transformer"
    metric = "held-out next-byte accuracy"
    chance = 1 / 256

    def __init__(self, batch_size: int = 16, seq_len: int = 64, d_model: int = 64, n_layers: int = 2):
        self.train, self.val = TextTask(seq_len=seq_len), TextTask(seq_len=seq_len, split="val")
        self.batch_size, self.d_model, self.n_layers = batch_size, d_model, n_layers
        self.held_out = self.val.sample(64, seed=123)  # one fixed held-out set: 64 x seq_len bytes

    def build(self, seed: int) -> nn.Module:
        return nested.build_model("transformer", d_model=self.d_model, n_layers=self.n_layers, seed=seed, device="cpu")

    def batch(self, seed: int, step: int):
        return self.train.sample(self.batch_size, seed * 1_000_003 + step)

    def loss(self, model: nn.Module, batch) -> Tensor:
        logits = model(batch.inputs)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch.targets.reshape(-1), ignore_index=-100)

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict:
        b = self.held_out
        logits = model(b.inputs)
        scored = b.targets != -100
        return {"loss": float(F.cross_entropy(logits[scored], b.targets[scored])),
                "accuracy": float((logits.argmax(-1)[scored] == b.targets[scored]).float().mean())}  # fmt: skip


PROBLEMS = {"digits": Digits, "bytes": Bytes}


def make_problem(name: str):
    if name not in PROBLEMS:
        raise ValueError(f"unknown race task {name!r}; choose one of {sorted(PROBLEMS)}")
    return PROBLEMS[name]()
