"""PAPER.md §9 E3: Hebbian vs delta vs DGD-style inner rules on a stream of key-value pairs, 3 seeds.

    python bench/inner_rules.py [--seeds 3] [--d 64]

A memory sees N pairs (k_i, v_i) once, in order (d_k = d_v = d; keys unit-norm with pairwise correlation
about rho: k_i ∝ sqrt(rho) c + sqrt(1 - rho) z_i with one shared unit c; values unit Gaussian directions),
then is queried with every key. Reported: the mean cosine between the read M(k_i) and v_i (recall), and
the mean norm ratio |M(k_i)| / |v_i| after the same N = d/4 pairs (rho 0) are presented REPEATS times (Eq. 93's
predicted fixed point M k = v / 2). The overwrite test streams N = d/2 pairs, then a quarter of the same keys
again with new values, and queries those keys for the new values.

Rules on a linear memory W (y = W k), the library's one-step rules (nested.rules) where it has them:
Hebbian / linear attention (Eq. 64), the delta rule (= Eq. 92 with the sign corrected, the "single delta"
rule, at alpha 1), the gated delta rule (alpha 0.98), Eq. 93 as printed (DGD decay and the L2 gradient:
W (I - eta k k^T) - eta (W k - v) k^T, both terms at W_{t-1}) and DGD (Eq. 57, eta' = eta / (1 + eta |k|^2)).
And a 2-layer MLP memory M(x) = W1 silu(W2 x) (hidden d, so twice the linear memory's parameters; without the
selfmod memories' residual x + ..., which would start every read at the key) stepped by GD on the dot-product
loss, by GD on the L2 loss, and by Eq. 88 (the DGD preconditioner on W2, whose input is k, plus the L2 gradient
on both; alpha 1). Each rule's step size is the best of ETAS on seed 0
(mean recall over every condition); seeds 0.. report at that size.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stats import mean_sd  # noqa: E402
from nested.rules import delta_update, dgd_update, gated_delta_update, hebbian_update  # noqa: E402

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


class MLPMemory:
    """M(x) = W1 silu(W2 x), W2 random (1/sqrt(d)), W1 zero: reads zero at the start, as the linear memories."""

    def __init__(self, d: int, g: torch.Generator):
        self.W2 = torch.randn(d, d, generator=g, dtype=torch.float64) / d**0.5
        self.W1 = torch.zeros(d, d, dtype=torch.float64)

    def read(self, k: Tensor) -> Tensor:
        return F.silu(k @ self.W2.T) @ self.W1.T

    def write(self, k: Tensor, v: Tensor, eta: float, rule: str) -> None:
        W1, W2 = self.W1.clone().requires_grad_(), self.W2.clone().requires_grad_()
        y = W1 @ F.silu(W2 @ k)
        loss = -(y @ v) if rule == MLP_RULES[0] else 0.5 * (y - v).square().sum()
        g1, g2 = torch.autograd.grad(loss, (W1, W2))
        if rule == MLP_RULES[2]:  # Eq. 88: W2 (I - eta k k^T) - eta grad; W1 plain GD (alpha 1)
            self.W2 = self.W2 - eta * torch.outer(self.W2 @ k, k)
        self.W1, self.W2 = self.W1 - eta * g1, self.W2 - eta * g2


def pairs(n: int, d: int, rho: float, g: torch.Generator) -> tuple[Tensor, Tensor]:
    shared = F.normalize(torch.randn(d, generator=g, dtype=torch.float64), dim=0)
    z = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1)
    keys = F.normalize(rho**0.5 * shared + (1 - rho) ** 0.5 * z, dim=-1)
    return keys, F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1)


def run(rule: str, eta: float, keys: Tensor, values: Tensor, queries: Tensor, targets: Tensor, seed: int):
    """Stream (keys, values), read at queries; (mean cosine to targets, mean norm ratio)."""
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


def conditions(d: int, seed: int) -> dict[str, tuple]:
    """name -> (keys, values, queries, targets) for every recall condition and the overwrite tests."""
    out = {}
    for rho in RHOS:
        for ratio in N_OVER_D:
            g = torch.Generator().manual_seed(1000 * seed + int(100 * rho) + int(10 * ratio))
            k, v = pairs(int(ratio * d), d, rho, g)
            out[f"recall rho {rho:g} N/d {ratio:g}"] = (k, v, k, v)
        g = torch.Generator().manual_seed(1000 * seed + 500 + int(100 * rho))
        n = d // 2
        k, v = pairs(n, d, rho, g)
        again = torch.randperm(n, generator=g)[: n // 4]
        new_v = F.normalize(torch.randn(len(again), d, generator=g, dtype=torch.float64), dim=-1)
        out[f"overwrite rho {rho:g}"] = (torch.cat([k, k[again]]), torch.cat([v, new_v]), k[again], new_v)
    g = torch.Generator().manual_seed(1000 * seed + 900)
    k, v = pairs(d // 4, d, 0.0, g)
    out["fixed point"] = (k.repeat(REPEATS, 1), v.repeat(REPEATS, 1), k, v)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--d", type=int, default=64)
    a = ap.parse_args()
    torch.set_num_threads(1)
    rules = [*LINEAR, *MLP_RULES]
    seed0 = conditions(a.d, 0)
    results: dict[str, dict[str, list[tuple[float, float]]]] = {}
    chosen = {}
    for rule in rules:
        score = {eta: statistics.mean(run(rule, eta, *c, 0)[0] for c in seed0.values()) for eta in ETAS}
        chosen[rule] = max((e for e in ETAS if score[e] == score[e]), key=lambda e: score[e], default=ETAS[0])
        per: dict[str, list] = {}
        for seed in range(a.seeds):
            for name, c in (seed0 if seed == 0 else conditions(a.d, seed)).items():
                per.setdefault(name, []).append(run(rule, chosen[rule], *c, seed))
        results[rule] = per
        print(f"{rule}: eta {chosen[rule]:g} (seed-0 mean recall by eta: "
              f"{', '.join(f'{e:g} {s:.3f}' for e, s in score.items())})", flush=True)  # fmt: skip

    def cell(xs: list[tuple[float, float]], i: int) -> str:
        m, sd = mean_sd([x[i] for x in xs])
        return f"{m:.2f} ± {sd:.2f}" if abs(m) < 100 else f"{m:.1e} ± {sd:.1e}"

    print(f"\n### E3: recall cosine after one pass (d {a.d}, {a.seeds} seeds, mean ± sd)\n")
    for rho in RHOS:
        cols = [f"recall rho {rho:g} N/d {r:g}" for r in N_OVER_D] + [f"overwrite rho {rho:g}"]
        print(f"rho = {rho:g}\n\n| rule | eta | " + " | ".join(f"N/d {r:g}" for r in N_OVER_D) + " | overwrite |")
        print("|---|---|" + "---|" * len(cols))
        for rule in rules:
            print(f"| {rule} | {chosen[rule]:g} | " + " | ".join(cell(results[rule][c], 0) for c in cols) + " |")
        print()
    print(
        f"### E3: recalled norm / stored norm, N/d {N_OVER_D[0]:g}, rho 0: one pass and {REPEATS} passes "
        "(Eq. 93's fixed point 1/2)\n"
    )
    print("| rule | eta | one pass | recall after repeats | norm ratio after repeats |\n|---|---|---|---|---|")
    for rule in rules:
        once, fixed = results[rule][f"recall rho 0 N/d {N_OVER_D[0]:g}"], results[rule]["fixed point"]
        print(f"| {rule} | {chosen[rule]:g} | {cell(once, 1)} | {cell(fixed, 0)} | {cell(fixed, 1)} |")


if __name__ == "__main__":
    main()
