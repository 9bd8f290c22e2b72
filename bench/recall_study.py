"""Is it memorising? Recall of the shipped recall models with test-time learning on, off, sign-flipped
and with 4 inner steps per token.

    python bench/recall_study.py [--family mqar] [--seeds 3] [--n 64]
    python bench/recall_study.py --family niah-single --training-seeds runs   # over training seeds


For each shipped recall model (app.recall_ui.RECALL_MODELS) and each switch (nested.recall_lab.SWITCHES),
the accuracy at every context size, mean ± sd over `seeds` evaluation seeds (fresh sequences; the
weights are the shipped ones, one training run each). A seed whose inner loop diverges (a memory went
non-finite: ascent can do that) is counted, not averaged. arXiv 2602.21204 reports that flipping the inner
gradient of test-time-training layers to ascent barely hurts; here is what our models do. Results:
docs/RESULTS.md. With `--training-seeds RUNS`, the memory models over their training seeds: the shipped one
(seed 0) and RUNS/recall-<model>-s<k>-mix/model (bench/recall_seeds.sh); each seed's mean over the evaluation
seeds, then mean ± sd over the training seeds that finished.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nested  # noqa: E402
from app.models import build_frozen, is_trained  # noqa: E402
from app.recall_ui import RECALL_MODELS  # noqa: E402
from nested.recall_lab import FAMILIES, SWITCHES, recall_curve  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--family", default="mqar", choices=list(FAMILIES))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--switches", default="|".join(SWITCHES), help="names of SWITCHES, separated by |")
    ap.add_argument("--training-seeds", default=None, metavar="RUNS", help="the memory models over training seeds")
    ap.add_argument("--models", default="Hope|Titans", help="with --training-seeds: which, separated by |")
    a = ap.parse_args()
    switches = a.switches.split("|")
    unknown = [s for s in switches if s not in SWITCHES]
    if unknown:
        ap.error(f"unknown switches {unknown}; choose from {list(SWITCHES)}")
    sizes = FAMILIES[a.family].sizes
    if a.training_seeds:
        return training_seeds(a, switches, sizes, Path(a.training_seeds))
    print(f"{a.family}: accuracy (mean ± sd over {a.seeds} evaluation seeds, {a.n} sequences each); chance 10%")
    print("| model | inner updates | " + " | ".join(f"{FAMILIES[a.family].size_label} {s}" for s in sizes) + " |")
    print("|---|---|" + "---|" * len(sizes))
    for label, name in RECALL_MODELS.items():
        model = build_frozen(name, 0, device="cpu")
        trained = "" if is_trained(name) else " (untrained)"
        for switch in switches:
            runs = [recall_curve(model, a.family, n=a.n, seed=100 + s, switch=switch) for s in range(a.seeds)]
            cells = []
            for i in range(len(sizes)):
                acc = [r[i]["accuracy"] for r in runs if r[i]["accuracy"] is not None]
                diverged = f" ({len(runs) - len(acc)}/{len(runs)} diverged)" if len(acc) < len(runs) else ""
                if not acc:
                    cells.append(f"diverged{diverged}")
                    continue
                sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
                cells.append(f"{statistics.mean(acc):.1%} ± {sd:.1%}{diverged}")
            print(f"| {label}{trained} | {switch} | " + " | ".join(cells) + " |", flush=True)


SEEDED = {"Hope": "hope", "Titans": "titans"}  # label -> the model name in bench/recall_seeds.sh's run folders


def training_seeds(a, switches: list[str], sizes, runs: Path) -> None:
    print(f"{a.family}: accuracy over training seeds (each: mean of {a.seeds} evaluation seeds, {a.n} sequences each); "
          "chance 10%")  # fmt: skip
    print(
        "| model | training seeds | inner updates | "
        + " | ".join(f"{FAMILIES[a.family].size_label} {s}" for s in sizes)
        + " |"
    )
    print("|---|---|---|" + "---|" * len(sizes))
    for label, short in SEEDED.items():
        if label not in a.models.split("|"):
            continue
        models = [build_frozen(RECALL_MODELS[label], 0, device="cpu")]
        for path in sorted(runs.glob(f"recall-{short}-s*-mix/model")):
            if (path / "config.json").is_file():
                m = nested.load(path, device="cpu").eval()
                models.append(m.requires_grad_(False))
        for switch in switches:
            per_seed = []  # (training seed, size) mean over evaluation seeds; None where every one diverged
            for model in models:
                runs_ = [recall_curve(model, a.family, n=a.n, seed=100 + s, switch=switch) for s in range(a.seeds)]
                row = []
                for i in range(len(sizes)):
                    acc = [r[i]["accuracy"] for r in runs_ if r[i]["accuracy"] is not None]
                    row.append(statistics.mean(acc) if acc else None)
                per_seed.append(row)
            cells = []
            for i in range(len(sizes)):
                acc = [row[i] for row in per_seed if row[i] is not None]
                sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
                cells.append(f"{statistics.mean(acc):.1%} ± {sd:.1%}" if acc else "diverged")
            print(f"| {label} | {len(models)} | {switch} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
