"""Optimizers write an associative memory (PAPER.md §1.3, §3.1): the smallest case that makes the claim
visible. A linear memory W (d_val x d_key) learns key -> value pairs from a stream in which key i arrives
with Zipf frequency p_i ~ 1 / i^s; each optimizer writes W by its rule on L = 1/2 ||W k - v||^2, one pair
a step. Rare pairs are where the rules differ (arXiv 2603.26554 analyses Muon's storage there).

Closed form (tested): with orthonormal keys and plain SGD from W = 0, a pair presented n times has
W k_i = (1 - (1 - lr)^n) v_i, so its recall error is (1 - lr)^n ||v_i||: the other pairs' steps do not
touch it. Momentum, Adam, Muon and M3 break that independence: their state mixes the pairs' gradients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from nested.optim import OPTIMIZERS


@dataclass
class AssocStream:
    keys: torch.Tensor  # (n_pairs, d_key), float64, unit norm
    values: torch.Tensor  # (n_pairs, d_val), float64, unit norm
    order: torch.Tensor  # (steps,) pair index presented at each step

    @property
    def counts(self) -> np.ndarray:
        return np.bincount(self.order.numpy(), minlength=self.keys.shape[0])


def zipf_stream(n_pairs: int = 32, d_key: int = 32, d_val: int = 16, steps: int = 2000, exponent: float = 1.0,
                orthogonal: bool = True, seed: int = 0) -> AssocStream:  # fmt: skip
    """Unit-norm keys (orthonormal when `orthogonal` and n_pairs <= d_key), unit-norm values, and a
    stream of pair indices drawn with probability proportional to 1 / (i + 1)^exponent."""
    if not 1 <= n_pairs <= 1024 or not 1 <= steps <= 100_000:
        raise ValueError("n_pairs must be 1..1024 and steps 1..100000")
    if orthogonal and n_pairs > d_key:
        raise ValueError(f"{n_pairs} orthogonal keys need d_key >= {n_pairs}")
    g = torch.Generator().manual_seed(seed)
    if orthogonal:
        q, _ = torch.linalg.qr(torch.randn(d_key, d_key, generator=g, dtype=torch.float64))
        keys = q[:, :n_pairs].T.contiguous()
    else:
        keys = torch.nn.functional.normalize(torch.randn(n_pairs, d_key, generator=g, dtype=torch.float64), dim=1)
    values = torch.nn.functional.normalize(torch.randn(n_pairs, d_val, generator=g, dtype=torch.float64), dim=1)
    p = 1.0 / torch.arange(1, n_pairs + 1, dtype=torch.float64) ** exponent
    order = torch.multinomial(p / p.sum(), steps, replacement=True, generator=g)
    return AssocStream(keys, values, order)


@dataclass
class AssocRun:
    optimizer: str
    lr: float
    errors: np.ndarray  # (n_pairs,) final recall error ||W k_i - v_i||
    counts: np.ndarray  # (n_pairs,) presentations of each pair
    memory_norms: dict[str, list[float]]  # optimizer memory -> norm per step
    diverged: bool = False
    # the gradient stream the first memory is compressing, over the last `window` steps: (window, n_pairs)
    # c_i = <M, v_i k_i^T> / ||M||, the signed share of the memory that is about pair i (None: no memory)
    contents: np.ndarray | None = None
    presented: np.ndarray | None = None  # (window,) the pair each of those steps wrote
    memory: str | None = None  # which memory `contents` reads (momentum_buffer, exp_avg, M1, m)


def write_memory(stream: AssocStream, optimizer: str = "sgd", lr: float = 0.1, record_every: int = 10,
                 window: int = 64) -> AssocRun:  # fmt: skip
    """Write W from zero with `optimizer`, one pair per step; the recall error of every pair at the end, and
    what the optimizer's first memory holds about each pair over the last `window` steps. With orthonormal
    keys the directions v_i k_i^T are orthonormal, so the squared shares of a memory add up to at most 1, and
    a gradient of pair i's loss, (W k_i - v_i) k_i^T, has no share on any other pair."""
    from nested.optim import memory_view

    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    if not (math.isfinite(lr) and 0 < lr <= 10):
        raise ValueError("the learning rate must be in (0, 10]")
    W = torch.zeros(stream.values.shape[1], stream.keys.shape[1], dtype=torch.float64, requires_grad=True)
    opt = OPTIMIZERS[optimizer]([W], lr=lr)
    keys, values = stream.keys.double(), stream.values.double()
    norms: dict[str, list[float]] = {}
    diverged = False
    directions = torch.einsum("pv,pk->pvk", values, keys).reshape(len(keys), -1)  # v_i k_i^T, flattened
    contents, memory, start = [], None, len(stream.order) - window
    for t, i in enumerate(stream.order.tolist()):
        loss = 0.5 * (W @ keys[i] - values[i]).pow(2).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if not torch.isfinite(W).all():
            diverged = True
            break
        if t >= start:
            mem = next((m for m in memory_view(opt) if m.tensors and m.tensors[0].shape == W.shape), None)
            if mem is not None:
                flat = mem.tensors[0].double().reshape(-1)
                memory = mem.name
                contents.append((directions @ flat / flat.norm().clamp_min(1e-30)).numpy())
        if t % record_every == 0:
            for mem in memory_view(opt):
                if mem.tensors:
                    norms.setdefault(mem.name, []).append(
                        math.sqrt(sum(float(x.double().pow(2).sum()) for x in mem.tensors))
                    )
    with torch.no_grad():
        errors = (keys @ W.T - values).norm(dim=1).numpy() if not diverged else np.full(len(keys), np.inf)
    shown = stream.order[max(start, 0) :].numpy()
    if contents and len(contents) == len(shown):
        return AssocRun(optimizer, lr, errors, stream.counts, norms, diverged, np.stack(contents), shown, memory)
    return AssocRun(optimizer, lr, errors, stream.counts, norms, diverged)


def best_lr(stream: AssocStream, optimizer: str, grid=(0.003, 0.01, 0.03, 0.1, 0.3, 1.0)) -> float:
    """The rate of `grid` with the lowest mean recall error over the pairs."""
    scores = {lr: float(np.mean(write_memory(stream, optimizer, lr, record_every=10**9).errors)) for lr in grid}
    return min(scores, key=lambda lr: scores[lr] if math.isfinite(scores[lr]) else math.inf)
