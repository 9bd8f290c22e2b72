"""PAPER.md §9 E2: delta momentum against standard momenta on the Eq. 53 surface, over its unstated constants.

    python bench/toy_surface.py [--max-steps 20000]

psi(r, theta) = r^2 + k (r - theta + a sin(omega r))^2 from (-3.5, 2) (nested.optim.surfaces.fig4_surface)
for k in {5, 20, 100}, a in {0.5, 1}, omega in {2, 5, 10}. Each method's rate is the best of LRS on each
surface: the fewest iterations until |grad psi| < 1e-4; a run that leaves the box |x| < 1e3 or does not
converge within --max-steps counts as not converged. Methods: GD, heavy-ball and Nesterov (momentum 0.9, as
torch.optim.SGD), Adam (torch defaults) and delta momentum (nested.optim.DeltaMomentum: alpha 0.9, eta_d 0.5,
Eqs. 48-49). Deterministic: the start and the surfaces are fixed, so there are no seeds. (DMGD, the MLP
momentum, is left out: a Python-loop optimizer, too slow for 20,000 steps x 162 runs here.)

Every surface and rate runs at once as one tensor, with each rule written out below; before the sweep the
script checks that 200 steps of every written-out rule equal the optimizer it stands for (torch's, or the
library's DeltaMomentum) to 1e-8, so the sweep measures those optimizers.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from itertools import product
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nested.optim import DeltaMomentum  # noqa: E402
from nested.optim.surfaces import fig4_surface  # noqa: E402

LRS = tuple(10 ** (e / 2) for e in range(-10, -1))  # 1e-5 .. 1e-1
SURFACES = list(product((5.0, 20.0, 100.0), (0.5, 1.0), (2.0, 5.0, 10.0)))
METHODS = ("GD", "heavy-ball", "Nesterov", "Adam", "delta momentum")
START = (-3.5, 2.0)


def grad_psi(P: Tensor, k: Tensor, a: Tensor, w: Tensor) -> Tensor:
    """The gradient of Eq. 53 at points P (n, 2), one surface per row."""
    r, t = P[:, 0], P[:, 1]
    inner = r - t + a * torch.sin(w * r)
    return torch.stack([2 * r + 2 * k * inner * (1 + a * w * torch.cos(w * r)), -2 * k * inner], 1)


class Rule:
    """One method's update for many independent 2-D points (one row each), written out."""

    def __init__(self, method: str, lr: Tensor):
        self.method, self.lr, self.t = method, lr[:, None], 0
        self.m = self.v = None

    def step(self, P: Tensor, g: Tensor) -> Tensor:
        self.t += 1
        if self.m is None:
            self.m, self.v = torch.zeros_like(P), torch.zeros_like(P)
        if self.method == "GD":
            return P - self.lr * g
        if self.method in ("heavy-ball", "Nesterov"):  # torch SGD: buf = 0.9 buf + g (buf = g at step 1)
            self.m = g.clone() if self.t == 1 else 0.9 * self.m + g
            return P - self.lr * (g + 0.9 * self.m if self.method == "Nesterov" else self.m)
        if self.method == "Adam":  # torch Adam, betas (0.9, 0.999), eps 1e-8
            self.m = 0.9 * self.m + 0.1 * g
            self.v = 0.999 * self.v + 0.001 * g * g
            m_hat, v_hat = self.m / (1 - 0.9**self.t), self.v / (1 - 0.999**self.t)
            return P - self.lr * m_hat / (v_hat.sqrt() + 1e-8)
        # delta momentum, flat key per point: m <- 0.9 m - 0.5 <m, k> k - lr g, k = g / |g|; p <- p + m
        key = g / g.norm(dim=1, keepdim=True).clamp_min(1e-12)
        self.m = 0.9 * self.m - 0.5 * (self.m * key).sum(1, keepdim=True) * key - self.lr * g
        return P + self.m


def reference(method: str, lr: float):
    if method == "GD":
        return lambda ps: torch.optim.SGD(ps, lr=lr)
    if method == "heavy-ball":
        return lambda ps: torch.optim.SGD(ps, lr=lr, momentum=0.9)
    if method == "Nesterov":
        return lambda ps: torch.optim.SGD(ps, lr=lr, momentum=0.9, nesterov=True)
    if method == "Adam":
        return lambda ps: torch.optim.Adam(ps, lr=lr)
    return lambda ps: DeltaMomentum(ps, lr=lr)


def check_rules(steps: int = 200) -> None:
    """Each written-out rule equals its optimizer on one surface (float64, 1e-8 after 200 steps)."""
    k, a, w = 20.0, 1.0, 5.0
    surface = fig4_surface(k, a, w)
    for method in METHODS:
        lr = 1e-3
        p = torch.tensor([START], dtype=torch.float64, requires_grad=True)
        opt = reference(method, lr)([p])
        rule, P = Rule(method, torch.tensor([lr], dtype=torch.float64)), torch.tensor([START], dtype=torch.float64)
        kk, aa, ww = (torch.tensor([x], dtype=torch.float64) for x in (k, a, w))
        for _ in range(steps):
            opt.zero_grad()
            surface(p[0, 0], p[0, 1]).backward()
            opt.step()
            P = rule.step(P, grad_psi(P, kk, aa, ww))
        err = float((P - p.detach()).abs().max())
        if err > 1e-8:  # summation order differs (torch adds g + 0.9 buf in place): round-off grows
            raise AssertionError(f"{method}: the written-out rule is {err:.1e} off its optimizer")


def sweep(method: str, max_steps: int, tol: float = 1e-4) -> dict[tuple, tuple[int, float] | None]:
    """surface -> (fewest iterations, its rate) over LRS, or None when no rate converged."""
    grid = [(s, lr) for s in SURFACES for lr in LRS]
    k, a, w = (torch.tensor([s[i] for s, _ in grid], dtype=torch.float64) for i in range(3))
    rule = Rule(method, torch.tensor([lr for _, lr in grid], dtype=torch.float64))
    P = torch.tensor([START] * len(grid), dtype=torch.float64)
    hit = torch.full((len(grid),), -1, dtype=torch.long)
    alive = torch.ones(len(grid), dtype=torch.bool)
    for step in range(max_steps):
        g = grad_psi(P, k, a, w)
        done = alive & (g.norm(dim=1) < tol)
        hit[done] = step
        alive &= ~done & torch.isfinite(P).all(1) & (P.abs().max(1).values < 1e3)
        if not alive.any():
            break
        P = torch.where(alive[:, None], rule.step(P, torch.nan_to_num(g)), P)
    best: dict[tuple, tuple[int, float] | None] = {}
    for (s, lr), h in zip(grid, hit.tolist(), strict=True):
        if h >= 0 and (best.get(s) is None or h < best[s][0]):
            best[s] = (h, lr)
        best.setdefault(s, None)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-steps", type=int, default=20000)
    a = ap.parse_args()
    torch.set_num_threads(1)
    check_rules()
    results = {m: sweep(m, a.max_steps) for m in METHODS}
    print(f"\n### E2: iterations to |grad psi| < 1e-4 on Eq. 53 (best rate of {len(LRS)}; – = none converged "
          f"within {a.max_steps:,})\n")  # fmt: skip
    print("| k | a | ω | " + " | ".join(METHODS) + " |\n|---|---|---|" + "---|" * len(METHODS))
    for s in SURFACES:
        cells = [f"{r[0]:,} ({r[1]:.0e})" if (r := results[m][s]) else "–" for m in METHODS]
        print(f"| {s[0]:g} | {s[1]:g} | {s[2]:g} | " + " | ".join(cells) + " |")
    print("\n| method | surfaces converged (of 18) | median iterations at ω = 2 / 5 / 10 (converged only) |")
    print("|---|---|---|")
    for m in METHODS:
        done = sum(r is not None for r in results[m].values())
        med = []
        for om in (2.0, 5.0, 10.0):
            its = [r[0] for s, r in results[m].items() if s[2] == om and r is not None]
            med.append(f"{statistics.median(its):,.0f} ({len(its)})" if its else "–")
        print(f"| {m} | {done} | {' / '.join(med)} |")


if __name__ == "__main__":
    main()
