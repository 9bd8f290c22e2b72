"""Step time of each optimizer inside the M3-live race, and of the page's redraw.

    python bench/bench_race.py [--steps 60]

For each task, every optimizer races on the same batches (nested.race); the table gives the median time of
a whole training step and of the optimizer's own update, each also as a ratio to AdamW's measured in the
same run. Then the redraw: the race's record and all six figures serialised (what a tick of the page's
fragment costs the server beyond training), and one Step press through AppTest (the whole page).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import race_figures as rf  # noqa: E402
from bench.timing import median_ms  # noqa: E402
from nested.race import LABELS, Race, RaceConfig  # noqa: E402
from nested.race_tasks import PROBLEMS  # noqa: E402


def redraw(race: Race, task: str) -> None:
    rec = race.record()
    figs = [rf.loss_figure(rec), rf.accuracy_figure(rec, PROBLEMS[task].chance), rf.memory_figure(rec),
            rf.layer_figure(rec, next(iter(rec["runners"]))), rf.spectrum_figure(rec), rf.step_time_figure(rec)]  # fmt: skip
    for f in figs:
        f.to_json()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    a = ap.parse_args()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; median over {a.steps} steps (first 5 dropped)"
    )
    for task in PROBLEMS:
        race = Race(RaceConfig(task=task, optimizers=tuple(LABELS)))
        race.advance(a.steps + 5)
        med = {n: {k: statistics.median(h[k] for h in r.history[5:]) for k in ("step_ms", "opt_ms")}
               for n, r in race.runners.items()}  # fmt: skip
        base = med["adamw"]
        print(f"\n## {task}\n| optimizer | whole step (ms) | x AdamW | update (ms) | x AdamW |\n|---|---|---|---|---|")
        for n, m in med.items():
            print(f"| {LABELS[n]} | {m['step_ms']:.2f} | {m['step_ms'] / base['step_ms']:.2f} | {m['opt_ms']:.2f} | "
                  f"{m['opt_ms'] / base['opt_ms']:.2f} |")  # fmt: skip
        tick = sum(m["step_ms"] for m in med.values())
        print(f"one race step of all {len(med)}: {tick:.1f} ms; redraw (record + 6 figures): {median_ms(lambda r=race, t=task: redraw(r, t), n=5):.1f} ms")  # fmt: skip
    from streamlit.testing.v1 import AppTest

    from app.registry import ROOT, page_for

    at = AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=300)
    at.run()
    at.switch_page(str(page_for("race").path))
    at.run()
    first = median_ms(lambda: at.button(key="race_step").click().run(), n=1)
    press = median_ms(lambda: at.button(key="race_step").click().run(), n=5)
    print(
        f"\nthe page (AppTest, digits, 3 optimizers, 5 steps a press): first Step {first:.0f} ms, then median {press:.0f} ms a press"
    )


if __name__ == "__main__":
    main()
