"""PAPER.md §9 E1: how long each optimizer's memory keeps an old gradient direction, 3 seeds.

    python bench/memory_horizon.py [--t1 1000] [--t2 3000]

An 8 x 8 parameter gets the gradient u1 for --t1 steps, then an orthogonal u2 (nested.optim.probe). For
each optimizer: the steps after the switch until cos(update, u1) falls below 50 % and below 1 % of its value
on the last step before the switch (relative, as nested.optim.memory_half_life explains), and the cosine
left at the end. Seeds change the directions. The optimizers are the library's (nested.optim); M3 "EMA" is
the default reading (variant "ema"), "literal" is Algorithm 1 to the letter (variant "paper", a plain sum).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from functools import partial
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nested.optim import M3, AdamMemory, DeltaMomentum, Muon  # noqa: E402
from nested.optim.memory_form import MomentumSGD  # noqa: E402
from nested.optim.probe import gradient_stream_probe, memory_half_life, orthogonal_directions  # noqa: E402

LR = 1e-2
OPTIMIZERS = {
    "SGD-m, β 0.9": lambda ps: MomentumSGD(ps, lr=LR, momentum=0.9),
    "SGD-m, β 0.99": lambda ps: MomentumSGD(ps, lr=LR, momentum=0.99),
    "Adam": lambda ps: AdamMemory(ps, lr=LR),
    "Muon": lambda ps: Muon(ps, lr=LR, weight_decay=0.0),
    "delta momentum (α 0.9, η_d 0.5)": lambda ps: DeltaMomentum(ps, lr=LR),
    **{f"M3 EMA, f {f}, α {a:g}": partial(M3, lr=LR, slow_every=f, alpha=a) for f in (10, 100) for a in (0.1, 0.5, 1.0)},
    **{f"M3 literal, f {f}, α {a:g}": partial(M3, lr=LR, slow_every=f, alpha=a, variant="paper")
       for f in (10, 100) for a in (0.1, 1.0)},
}  # fmt: skip


def horizon(cos_u1: np.ndarray, t1: int, fraction: float) -> int | None:
    return memory_half_life(cos_u1, t1, threshold=fraction)


def slow_memory_cos(make, t1: int, t2: int, seed: int) -> np.ndarray:
    """cos(M2, u1) after every step: what M3's slow memory itself holds (the update mixes it with the fast
    momentum and divides by sqrt(V), which hides it: the update's cos with u1 is about 0.04 before the switch)."""
    u1, u2 = orthogonal_directions((8, 8), seed)
    p = torch.zeros(8, 8, dtype=torch.float64, requires_grad=True)
    opt = make([p])
    out = []
    for t in range(t1 + t2):
        p.grad = (u1 if t < t1 else u2).clone()
        opt.step()
        m2 = opt.state[p]["M2"]
        out.append(float((m2 * u1).sum() / m2.norm().clamp_min(1e-300)))
    return np.asarray(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--t1", type=int, default=1000)
    ap.add_argument("--t2", type=int, default=3000)
    ap.add_argument("--seeds", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(1)

    def fmt(xs: list[int | None]) -> str:
        if any(x is None for x in xs):
            return f"> {a.t2}" if all(x is None for x in xs) else f"{[x or f'>{a.t2}' for x in xs]}"
        return f"{statistics.mean(xs):.0f}" + (f" ± {statistics.stdev(xs):.0f}" if len(xs) > 1 else "")

    print(f"\n### E1: steps after the switch until cos(update, u1) drops (u1 for {a.t1} steps, then u2; "
          f"{a.seeds} seeds)\n")  # fmt: skip
    print(
        "| optimizer | cos before the switch | to 50 % | to 1 % | cos after the probe | M3's slow memory M2: cos(M2, u1) "
        "at the switch, steps to 50 % |\n|---|---|---|---|---|---|"
    )
    for name, make in OPTIMIZERS.items():
        runs = [gradient_stream_probe(make, T1=a.t1, T2=a.t2, seed=s)[0] for s in range(a.seeds)]
        half = [horizon(c, a.t1, 0.5) for c in runs]
        one = [horizon(c, a.t1, 0.01) for c in runs]
        slow = "–"
        if name.startswith("M3"):
            m2 = [slow_memory_cos(make, a.t1, a.t2, s) for s in range(a.seeds)]
            slow = (f"{statistics.mean(float(c[a.t1 - 1]) for c in m2):.3f}, "
                    f"{fmt([horizon(c, a.t1, 0.5) for c in m2])}")  # fmt: skip
        print(f"| {name} | {statistics.mean(float(c[a.t1 - 1]) for c in runs):.3f} | {fmt(half)} | {fmt(one)} | "
              f"{statistics.mean(float(c[-1]) for c in runs):.3f} | {slow} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
