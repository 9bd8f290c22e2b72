"""PAPER.md §9 E3: Hebbian vs delta vs DGD-style inner rules on a stream of key-value pairs, 3 seeds.

    python bench/inner_rules.py [--seeds 3] [--d 64]

The study itself (the pairs, the rules, the conditions, each rule's step) is nested.rule_recall; this prints
its tables. The optimizers page draws the same numbers ("Inner rules write a memory").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stats import mean_sd  # noqa: E402
from nested.rule_recall import N_OVER_D, REPEATS, RHOS, RULES, overwrite_key, recall_key, study  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--d", type=int, default=64)
    a = ap.parse_args()
    torch.set_num_threads(1)
    chosen, scores, results = study(a.d, a.seeds)
    for rule in RULES:
        print(f"{rule}: eta {chosen[rule]:g} (seed-0 mean recall by eta: "
              f"{', '.join(f'{e:g} {s:.3f}' for e, s in scores[rule].items())})", flush=True)  # fmt: skip

    def cell(xs: list[tuple[float, float]], i: int) -> str:
        m, sd = mean_sd([x[i] for x in xs])
        return f"{m:.2f} ± {sd:.2f}" if abs(m) < 100 else f"{m:.1e} ± {sd:.1e}"

    print(f"\n### E3: recall cosine after one pass (d {a.d}, {a.seeds} seeds, mean ± sd)\n")
    for rho in RHOS:
        cols = [recall_key(rho, r) for r in N_OVER_D] + [overwrite_key(rho)]
        print(f"rho = {rho:g}\n\n| rule | eta | " + " | ".join(f"N/d {r:g}" for r in N_OVER_D) + " | overwrite |")
        print("|---|---|" + "---|" * len(cols))
        for rule in RULES:
            print(f"| {rule} | {chosen[rule]:g} | " + " | ".join(cell(results[rule][c], 0) for c in cols) + " |")
        print()
    print(
        f"### E3: recalled norm / stored norm, N/d {N_OVER_D[0]:g}, rho 0: one pass and {REPEATS} passes "
        "(Eq. 93's fixed point 1/2)\n"
    )
    print("| rule | eta | one pass | recall after repeats | norm ratio after repeats |\n|---|---|---|---|---|")
    for rule in RULES:
        once, fixed = results[rule][recall_key(0.0, N_OVER_D[0])], results[rule]["fixed point"]
        print(f"| {rule} | {chosen[rule]:g} | {cell(once, 1)} | {cell(fixed, 0)} | {cell(fixed, 1)} |")


if __name__ == "__main__":
    main()
