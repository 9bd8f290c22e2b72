"""E4 (PAPER.md §9): self-generated learning rates and retention on in-context regression, 3 seeds.

    python bench/e4_regression.py [--steps 1200 --seq-len 128 --seeds 0 1 2 --layers 1 --jobs 2 ...]
    python bench/e4_regression.py --report        # print the table from the cells already run

Each cell (variant, layers, seed) is meta-trained with AdamW on fresh sequences and measured on 512 fresh
ones (nested.incontext_regression); cells are cached under runs/e4/, so a stopped study resumes where it
stopped and `--jobs 2` splits the cells between two processes. Columns: the query MSE over every seed
(predicting 0 scores 1.0), how many seeds learned (MSE < 0.9), and over those: the MSE, by noise level
(the lowest and highest of four log-spaced sigma bins), in the 8 tokens after a switch and 32-40 tokens
after it; the Spearman correlation of the sequence-mean eta_t with 1/sigma^2; the change in retention
right after a switch (negative: the model forgets there).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.cells import cached_cell  # noqa: E402
from bench.stats import fmt_mean_sd  # noqa: E402
from nested.incontext_regression import VARIANTS, RegressionTask, measure, train_variant  # noqa: E402


def cell_path(root: Path, variant: str, layers: int, seed: int, steps: int, task: RegressionTask) -> Path:
    slug = variant.split()[0]
    return root / f"{slug}-L{layers}-s{seed}-{steps}-T{task.seq_len}-d{task.d_key}.json"


def run_cell(task: RegressionTask, variant: str, layers: int, seed: int, steps: int) -> dict:
    t0 = time.perf_counter()
    model, losses = train_variant(variant, task, steps, seed, n_layers=layers)
    m = measure(model, task)
    return {"variant": variant, "layers": layers, "seed": seed, "steps": steps, "seconds": time.perf_counter() - t0,
            "params": sum(p.numel() for p in model.parameters()), "final_train": sum(losses[-50:]) / 50,
            **dataclasses.asdict(m)}  # fmt: skip


def gate(cells: list[dict], key: str, digits: int) -> str:
    """A gate measure over seeds; attention has no learning rate nor retention (NaN): '-'."""
    values = [c[key] for c in cells]
    return "-" if any(math.isnan(v) for v in values) else fmt_mean_sd(values, digits)


def _mean(cells: list[dict], value) -> float:
    return sum(value(c) for c in cells) / len(cells)


def _after(cell: dict, start: int) -> float:
    """The query MSE in the 8 tokens from `start` tokens after the switch."""
    return dict(map(tuple, cell["mse_after_switch"])).get(start, float("nan"))


LEARNED = 0.9  # query MSE below this: the model escaped the plateau of predicting 0 (MSE 1)


def report(cells: list[dict]) -> None:
    """All seeds' query MSE; every other column over the seeds that learned (the 'learned' count), since a
    model still predicting 0 has no gain or retention to read."""
    print(f"{'model':40s} {'params':>6s} {'MSE, all seeds':>15s} {'learned':>7s} {'MSE, learned':>15s} "
          f"{'low sigma':>9s} {'high sigma':>10s} {'0-8 after':>9s} {'32-40 after':>11s} {'corr(eta, 1/s2)':>16s} "
          f"{'retention dip':>16s}")  # fmt: skip
    for variant in VARIANTS:
        for layers in sorted({c["layers"] for c in cells}):
            every = [c for c in cells if c["variant"] == variant and c["layers"] == layers]
            if not every:
                continue
            cs = [c for c in every if c["mse"] < LEARNED]
            learned = f"{len(cs)}/{len(every)}"
            head = (
                f"{variant + f' (L{layers})':40s} {every[0]['params']:6d} {fmt_mean_sd([c['mse'] for c in every]):>15s}"
            )
            if not cs:
                print(f"{head} {learned:>7s}")
                continue
            print(f"{head} {learned:>7s} {fmt_mean_sd([c['mse'] for c in cs]):>15s} "
                  f"{_mean(cs, lambda c: c['mse_by_sigma'][0][1]):9.3f} "
                  f"{_mean(cs, lambda c: c['mse_by_sigma'][-1][1]):10.3f} "
                  f"{_mean(cs, lambda c: _after(c, 0)):9.3f} {_mean(cs, lambda c: _after(c, 32)):11.3f} "
                  f"{gate(cs, 'eta_corr', 2):>16s} {gate(cs, 'alpha_dip', 4):>16s}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--layers", type=int, nargs="+", default=[1])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--d-key", type=int, default=8)
    ap.add_argument("--root", default="runs/e4")
    ap.add_argument("--jobs", type=int, default=1, help="split the cells between this many processes")
    ap.add_argument("--job", type=int, default=None, help="(internal) this process's share")
    ap.add_argument("--report", action="store_true", help="print the cells already run; train nothing")
    a = ap.parse_args()
    torch.set_num_threads(1)
    root = Path(a.root)
    root.mkdir(parents=True, exist_ok=True)
    task = RegressionTask(d_key=a.d_key, seq_len=a.seq_len)
    helpers = []
    if a.job is None:  # this process takes share 0 and starts one process per other share
        a.job = 0
        if not a.report:
            helpers = [subprocess.Popen([sys.executable, *sys.argv, "--job", str(j)], stdout=subprocess.DEVNULL)
                       for j in range(1, a.jobs)]  # fmt: skip
    grid = [(v, L, s) for s in a.seeds for L in a.layers for v in a.variants]
    for i, (variant, layers, seed) in enumerate(grid):
        if i % a.jobs == a.job and not a.report:
            cached_cell(cell_path(root, variant, layers, seed, a.steps, task), True,
                        lambda: run_cell(task, variant, layers, seed, a.steps),  # noqa: B023
                        lambda c: f"{c['variant']} L{c['layers']} seed {c['seed']}: query MSE {c['mse']:.3f} "
                                  f"({c['seconds']:.0f} s)")  # fmt: skip
    if a.job:
        return  # a helper: the first process reports
    for helper in helpers:
        helper.wait()
    cells = [c for v, L, s in grid if (c := cached_cell(cell_path(root, v, L, s, a.steps, task), False, dict, str))]
    report(cells)


if __name__ == "__main__":
    main()
