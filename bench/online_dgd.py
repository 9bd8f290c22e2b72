"""PAPER.md §9 E10: DGD vs GD as an online optimizer on a temporally correlated stream and on an i.i.d.
shuffle of the same data, 3 seeds.

    python bench/online_dgd.py [--seeds 3] [--steps 4000] [--d 16]

A linear model y = W x learns online (predict, then one step) from a stream (x_t, y_t = A_t x_t + noise):
x_t an AR(1) process (x_t = phi x_{t-1} + sqrt(1 - phi^2) e_t, phi 0.95) normalised to unit norm ("DGD with
normalised inputs"), A_t a teacher that rotates slowly (A_t = A_{t-1} R, R = exp(omega S) for a random
unit skew-symmetric S, omega 2e-3 rad per step), noise sd 0.05. The shuffle presents the same pairs in a random
order (so the targets' drift becomes noise). The rules are the library's (nested.rules):
GD on 1/2 |W x - y|^2 (the delta rule) and DGD (Eq. 57: W (I - eta' x x^T) - eta' (W x - y) x^T, eta' = eta /
(1 + eta |x|^2)). Each rule's step is the best of ETAS per stream on seed 0 (online loss); seeds report at it.

Reported: the online (prequential) squared error over the second half of the stream, and the mean cosine
between the prediction and the target (a scale-free tracking measure: DGD's fixed point W x = y / 2 on unit
inputs, PAPER.md §2, costs it squared error but not direction).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stats import fmt_mean_sd  # noqa: E402
from nested.rules import delta_update, dgd_update  # noqa: E402

ETAS = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
RULES = {"GD (delta rule)": lambda W, x, y, eta: delta_update(W, x, y, eta),
         "DGD (Eq. 57)": lambda W, x, y, eta: dgd_update(W, x, W @ x - y, eta)}  # fmt: skip


def stream(steps: int, d: int, seed: int, phi: float = 0.95, omega: float = 2e-3, noise: float = 0.05):
    g = torch.Generator().manual_seed(seed)
    S = torch.randn(d, d, generator=g, dtype=torch.float64)
    S = (S - S.T) / (S - S.T).norm()
    R = torch.linalg.matrix_exp(omega * (2 * d) ** 0.5 * S)  # about omega radians per step per plane
    A = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))[0]
    x = torch.randn(d, generator=g, dtype=torch.float64)
    xs, ys = [], []
    for _ in range(steps):
        x = phi * x + (1 - phi**2) ** 0.5 * torch.randn(d, generator=g, dtype=torch.float64)
        xn = F.normalize(x, dim=0)
        A = A @ R
        xs.append(xn)
        ys.append(A @ xn + noise * torch.randn(d, generator=g, dtype=torch.float64))
    return torch.stack(xs), torch.stack(ys)


def online(rule: str, eta: float, xs: torch.Tensor, ys: torch.Tensor) -> tuple[float, float]:
    """(mean squared error, mean cosine) of the predictions over the second half of the stream."""
    W = torch.zeros(xs.shape[1], xs.shape[1], dtype=torch.float64)
    err, cos = [], []
    for x, y in zip(xs, ys, strict=True):
        pred = W @ x
        err.append(float((pred - y).square().sum()))
        cos.append(float(F.cosine_similarity(pred, y, dim=0)))
        W = RULES[rule](W, x, y, eta)
    half = len(err) // 2
    return statistics.mean(err[half:]), statistics.mean(cos[half:])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--d", type=int, default=16)
    a = ap.parse_args()
    torch.set_num_threads(1)
    data = {}
    for seed in range(a.seeds):
        xs, ys = stream(a.steps, a.d, seed)
        perm = torch.randperm(a.steps, generator=torch.Generator().manual_seed(seed + 99))
        data[seed] = {"correlated": (xs, ys), "shuffled": (xs[perm], ys[perm])}
    print(f"\n### E10: online error over the second half of {a.steps} steps, d {a.d}, {a.seeds} seeds\n")
    print("| stream | rule | best eta (seed 0) | squared error | cosine(prediction, target) |\n|---|---|---|---|---|")
    for kind in ("correlated", "shuffled"):
        for rule in RULES:
            by_eta = {eta: online(rule, eta, *data[0][kind])[0] for eta in ETAS}
            eta = min(by_eta, key=by_eta.get)
            runs = [online(rule, eta, *data[s][kind]) for s in range(a.seeds)]
            err, cos = fmt_mean_sd([r[0] for r in runs]), fmt_mean_sd([r[1] for r in runs])
            print(f"| {kind} | {rule} | {eta:g} | {err} | {cos} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
