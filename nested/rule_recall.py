"""Inner rules writing one memory (PAPER.md §9 E3): Hebbian vs delta vs DGD-style rules on a stream of pairs.

A memory sees N pairs (k_i, v_i) once, in order (d_k = d_v = d; unit keys with pairwise correlation about rho:
k_i ∝ sqrt(rho) c + sqrt(1 - rho) z_i with one shared unit c; values unit Gaussian directions), then is read at
every key. Measured: the mean cosine between the read M(k_i) and v_i (recall), and |M(k_i)| / |v_i|. Overwrite
conditions stream N = d/2 pairs, then a quarter of the same keys again with new values, and read those keys for
the new values; "fixed point" presents N = d/4 pairs (rho 0) REPEATS times (Eq. 93's predicted M k = v / 2).

Rules on a linear memory W (y = W k), the library's one-step rules (nested.rules): Hebbian / linear attention
(Eq. 64), the delta rule (Eq. 92 with the sign corrected, alpha 1), the gated delta rule (alpha 0.98), Eq. 93 as
printed (DGD decay and the L2 gradient, both at W_{t-1}) and DGD (Eq. 57). A 2-layer MLP memory
M(x) = W1 silu(W2 x) (hidden d; no residual, which would start every read at the key) stepped by GD on the
dot-product loss, by GD on the L2 loss, and by Eq. 88 (the DGD preconditioner on W2, whose input is k, then the
L2 gradient on both; alpha 1). Each rule's step size is the best of ETAS on seed 0 (mean recall over every
condition); every seed reports at that size. `bench/inner_rules.py` prints the tables; the optimizers page draws
them.
"""

from __future__ import annotations

import functools
import statistics
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from nested.rules import delta_update, dgd_update, gated_delta_update, hebbian_update

ETAS = (0.1, 0.3, 1.0, 3.0, 10.0)
REPEATS = 30  # presentations of the same pairs for the fixed-point check
N_OVER_D = (0.25, 0.5, 1.0, 2.0)
RHOS = (0.0, 0.3, 0.6)


def eq93_printed(W: Tensor, k: Tensor, v: Tensor, eta: float) -> Tensor:
    """Eq. 93 as printed, linear memory, alpha 1: W (I - eta k k^T) - eta (W k - v) k^T (PAPER.md §4.2)."""
    return W - eta * torch.outer(W @ k, k) - eta * torch.outer(W @ k - v, k)


LINEAR: dict[str, Callable[[Tensor, Tensor, Tensor, float], Tensor]] = {
    "Hebbian (linear attention, Eq. 64)": lambda W, k, v, eta: hebbian_update(W, k, v, eta),
    "delta (Eq. 92 corrected, single delta)": delta_update,
    "gated delta (alpha 0.98)": lambda W, k, v, eta: gated_delta_update(W, k, v, eta, 0.98),
    "Eq. 93 as printed (double k k^T)": eq93_printed,
    "DGD (Eq. 57)": lambda W, k, v, eta: dgd_update(W, k, W @ k - v, eta),
}
MLP_RULES = ("MLP, GD on dot product", "MLP, GD on L2", "MLP, Eq. 88 (DGD + L2)")
RULES = (*LINEAR, *MLP_RULES)


class MLPMemory:
    """M(x) = W1 silu(W2 x), W2 random (1/sqrt(d)), W1 zero: reads zero at the start, as the linear memories."""

    def __init__(self, d: int, g: torch.Generator):
        self.W2 = torch.randn(d, d, generator=g, dtype=torch.float64) / d**0.5
        self.W1 = torch.zeros(d, d, dtype=torch.float64)

    def read(self, k: Tensor) -> Tensor:
        return F.silu(k @ self.W2.T) @ self.W1.T

    def grads(self, k: Tensor, v: Tensor, rule: str) -> tuple[Tensor, Tensor]:
        """The loss's gradients (dW1, dW2) at one pair, in closed form: with z = W2 k, h = silu(z), y = W1 h
        and e = dL/dy (-v for the dot product, y - v for L2), dW1 = e h^T and dW2 = (W1^T e . silu'(z)) k^T."""
        z = self.W2 @ k
        s = torch.sigmoid(z)
        h = z * s
        e = -v if rule == MLP_RULES[0] else self.W1 @ h - v
        return torch.outer(e, h), torch.outer((self.W1.T @ e) * (s * (1 + z * (1 - s))), k)

    def write(self, k: Tensor, v: Tensor, eta: float, rule: str) -> None:
        g1, g2 = self.grads(k, v, rule)
        if rule == MLP_RULES[2]:  # Eq. 88: W2 (I - eta k k^T) - eta grad; W1 plain GD (alpha 1)
            self.W2 = self.W2 - eta * torch.outer(self.W2 @ k, k)
        self.W1, self.W2 = self.W1 - eta * g1, self.W2 - eta * g2


def pairs(n: int, d: int, rho: float, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """n unit keys with pairwise correlation about rho, and n unit random values."""
    shared = F.normalize(torch.randn(d, generator=g, dtype=torch.float64), dim=0)
    z = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1)
    keys = F.normalize(rho**0.5 * shared + (1 - rho) ** 0.5 * z, dim=-1)
    return keys, F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1)


def run(rule: str, eta: float, keys: Tensor, values: Tensor, queries: Tensor, targets: Tensor, seed: int):
    """Stream (keys, values) once through the rule's memory, read at queries: (mean cosine to targets, mean
    norm ratio); NaN when the memory diverged."""
    d = keys.shape[-1]
    if rule in LINEAR:
        W = torch.zeros(d, d, dtype=torch.float64)
        for k, v in zip(keys, values, strict=True):
            W = LINEAR[rule](W, k, v, eta)
        reads = queries @ W.T
    else:
        mem = MLPMemory(d, torch.Generator().manual_seed(seed + 7))
        for k, v in zip(keys, values, strict=True):
            mem.write(k, v, eta, rule)
        reads = mem.read(queries)
    if not torch.isfinite(reads).all():
        return float("nan"), float("nan")
    cos = F.cosine_similarity(reads, targets, dim=-1).mean()
    ratio = (reads.norm(dim=-1) / targets.norm(dim=-1)).mean()
    return float(cos), float(ratio)


def recall_key(rho: float, n_over_d: float) -> str:
    return f"recall rho {rho:g} N/d {n_over_d:g}"


def overwrite_key(rho: float) -> str:
    return f"overwrite rho {rho:g}"


def conditions(d: int, seed: int) -> dict[str, tuple]:
    """name -> (keys, values, queries, targets) for every recall condition, the overwrites and the fixed point."""
    out = {}
    for rho in RHOS:
        for ratio in N_OVER_D:
            g = torch.Generator().manual_seed(1000 * seed + int(100 * rho) + int(10 * ratio))
            k, v = pairs(int(ratio * d), d, rho, g)
            out[recall_key(rho, ratio)] = (k, v, k, v)
        g = torch.Generator().manual_seed(1000 * seed + 500 + int(100 * rho))
        n = d // 2
        k, v = pairs(n, d, rho, g)
        again = torch.randperm(n, generator=g)[: n // 4]
        new_v = F.normalize(torch.randn(len(again), d, generator=g, dtype=torch.float64), dim=-1)
        out[overwrite_key(rho)] = (torch.cat([k, k[again]]), torch.cat([v, new_v]), k[again], new_v)
    g = torch.Generator().manual_seed(1000 * seed + 900)
    k, v = pairs(d // 4, d, 0.0, g)
    out["fixed point"] = (k.repeat(REPEATS, 1), v.repeat(REPEATS, 1), k, v)
    return out


class RuleStudy(NamedTuple):
    chosen: dict[str, float]  # each rule's step: the best of ETAS on seed 0
    scores: dict[str, dict[float, float]]  # seed 0's mean recall over every condition, per rule and step
    results: dict[str, dict[str, list[tuple[float, float]]]]  # rule -> condition -> (cosine, norm ratio) per seed


@functools.lru_cache(maxsize=4)
def study(d: int = 64, seeds: int = 3) -> RuleStudy:
    """Every rule on every condition over `seeds` seeds at its chosen step; a pure function of its arguments,
    cached (the optimizers page and bench/inner_rules.py read the same numbers)."""
    seed0 = conditions(d, 0)
    chosen, scores, results = {}, {}, {}
    for rule in RULES:
        score = {eta: statistics.mean(run(rule, eta, *c, 0)[0] for c in seed0.values()) for eta in ETAS}
        chosen[rule] = max((e for e in ETAS if score[e] == score[e]), key=lambda e: score[e], default=ETAS[0])
        scores[rule] = score
        per: dict[str, list] = {}
        for seed in range(seeds):
            for name, c in (seed0 if seed == 0 else conditions(d, seed)).items():
                per.setdefault(name, []).append(run(rule, chosen[rule], *c, seed))
        results[rule] = per
    return RuleStudy(chosen, scores, results)
