"""Each optimizer at its best learning rate, 3 seeds, on a real network: the numbers behind nested.race.BEST_LR.

    python bench/optimizer_grid.py [--task digits|bytes|both] [--steps 300] [--seeds 3] [--out runs/grid.json]

One race runner (nested.race.Runner: the same network, batches and optimizers as the page's race) per
optimizer x learning rate x seed; the score is the test loss after `steps` steps (and the test accuracy).
For each optimizer the best learning rate is the one with the lowest mean test loss over the seeds; the
table prints mean ± sd over seeds at that rate. Muon and M3 are scoped as the paper uses them (hidden
matrices through the rule, the rest through AdamW: nested.optim.scope); "M3, every tensor" is M3 before the
scope existed, and "M3 Algorithm 1" the literal reading (PAPER.md §7.2 note 1). Finished cells are kept in
--out, so a stopped run resumes where it stopped. Results: docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nested.race import RaceConfig, Runner  # noqa: E402
from nested.race_tasks import make_problem  # noqa: E402

# label -> (optimizer, extra arguments, learning-rate grid)
GRID = {
    "AdamW": ("adamw", {}, [3e-4, 1e-3, 3e-3, 1e-2, 3e-2]),
    "SGD + momentum": ("sgd", {}, [0.01, 0.03, 0.1, 0.3, 1.0]),
    "Muon": ("muon", {}, [0.003, 0.01, 0.03, 0.1, 0.3]),
    "M3": ("m3", {}, [0.003, 0.01, 0.03, 0.1, 0.3]),
    "M3, every tensor": ("m3", {"scope": "all"}, [0.003, 0.01, 0.03, 0.1, 0.3]),
    "M3 Algorithm 1": ("m3-paper", {}, [1e-6, 1e-5, 1e-4, 1e-3, 1e-2]),
    "delta momentum": ("delta-momentum", {}, [0.01, 0.03, 0.1, 0.3, 1.0]),
}


def run_cell(task: str, name: str, extra: dict, lr: float, seed: int, steps: int) -> dict:
    problem = make_problem(task)
    cfg = RaceConfig(task=task, optimizers=(name,), lrs={name: lr}, seed=seed, eval_every=steps)
    runner = Runner(name, problem, cfg, **extra)
    t0 = time.perf_counter()
    for _ in range(steps):
        runner.step(steps)
    score = runner.score() or {"loss": float("inf"), "accuracy": 0.0}
    return {**score, "diverged": runner.diverged, "seconds": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="both", choices=["digits", "bytes", "both"])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", default="runs/optimizer_grid.json")
    a = ap.parse_args()
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = json.loads(out.read_text()) if out.is_file() else {}
    print(f"torch threads {torch.get_num_threads()}; {a.steps} steps, {a.seeds} seeds; test loss after training")
    for task in ["digits", "bytes"] if a.task == "both" else [a.task]:
        print(f"\n## {task}: {make_problem(task).label}")
        print(
            "| optimizer | best lr | test loss (mean ± sd) | test accuracy | loss at each lr |\n|---|---|---|---|---|"
        )
        for label, (name, extra, lrs) in GRID.items():
            cells = {}
            for lr in lrs:
                for seed in range(a.seeds):
                    key = f"{task}|{label}|{lr:g}|{seed}|{a.steps}"
                    if key not in done:
                        done[key] = run_cell(task, name, extra, lr, seed, a.steps)
                        out.write_text(json.dumps(done, indent=1))
                    cells.setdefault(lr, []).append(done[key])
            mean = {lr: statistics.mean(c["loss"] for c in v) for lr, v in cells.items()}
            best = min(mean, key=mean.get)
            losses, accs = [c["loss"] for c in cells[best]], [c["accuracy"] for c in cells[best]]
            sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0  # noqa: E731
            row = ", ".join(f"{lr:g}: {m:.3f}" for lr, m in mean.items())
            print(f"| {label} | {best:g} | {statistics.mean(losses):.3f} ± {sd(losses):.3f} | "
                  f"{statistics.mean(accs):.3f} ± {sd(accs):.3f} | {row} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
