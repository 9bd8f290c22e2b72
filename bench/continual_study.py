"""The forgetting study behind docs/RESULTS.md (issue: continual learning, live).

    python bench/continual_study.py              # in context: the shipped languages models, schedule ABA
    python bench/continual_study.py --outer      # across training: optimizers on teacher tasks, lr grid
    python bench/continual_study.py --training-seeds runs   # in context, over the models' training seeds
    python bench/continual_study.py --learners   # across training: E5's learners (i)-(v), schedule ABACAD

In context: for each shipped model, 3 stream seeds, the probe accuracy on A right after A, after B, and
after A again (and on B after B), plus each language alone; both regimes (own alphabets, shared).
Across training: each optimizer's learning rate picked from a grid by how well it learns each task (the
loss on each task at the end of its own segment, seed 0: picking by the final loss on all tasks would
reward a rate too small to learn anything, which "forgets" nothing), then 3 training seeds at that rate:
the loss on A after A, after B, after A again.
Prints markdown tables (mean ± sd over seeds).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MODELS = {"Hope": "hope-languages", "Titans": "titans-languages", "Transformer, window 64": "swa-languages",
          "Transformer": "transformer-languages"}  # fmt: skip
GRID = [0.001, 0.003, 0.01, 0.03, 0.1]


def pm(x) -> str:
    x = np.asarray(x, dtype=float)
    return f"{x.mean():.2f} ± {x.std(ddof=1) if len(x) > 1 else 0.0:.2f}"


def in_context(seeds: list[int], segment_len: int) -> None:
    import nested
    from nested.checkpoint import CHECKPOINTS
    from nested.forgetting import isolation_scores, retention
    from nested.tasks import SuccessorLanguages

    models = {k: nested.load(CHECKPOINTS / v).eval() for k, v in MODELS.items() if (CHECKPOINTS / v).is_dir()}
    for shared in (False, True):
        task = SuccessorLanguages(n_tasks=4, shared=shared)
        print(f"\n### In context, {'one shared alphabet' if shared else 'own alphabets'}: schedule ABA, "
              f"{segment_len} tokens a segment, {len(seeds)} stream seeds (probe chance {task.probe_chance():.3f})\n")  # fmt: skip
        print("| model | A alone | A after A | A after B | B after B | A after A again |")
        print("|---|---|---|---|---|---|")
        res = retention(models, task, "ABA", segment_len, seeds)
        for name, mats in res.items():
            alone = isolation_scores(models[name], task, n_streams=len(seeds), segment_len=segment_len)["probe"]["A"]
            print(f"| {name} | {alone:.2f} | {pm(mats[:, 0, 0])} | {pm(mats[:, 1, 0])} | {pm(mats[:, 1, 1])} | "
                  f"{pm(mats[:, 2, 0])} |")  # fmt: skip


TRAINED = {"Hope": "hope", "Titans": "titans", "Transformer, window 64": "transformer-swa",
           "Transformer": "transformer"}  # fmt: skip


def training_seeds(seeds: list[int], segment_len: int, runs: Path, only: list[str] | None = None) -> None:
    """Each model's training seeds: the shipped checkpoint (seed 0) and `runs/lang-<model>-s<k>/model`
    (trained by `python -m nested train --preset languages-<model> --seed k`; Hope's second stage in
    `runs/lang-hope-s<k>-cont`, see bench/language_seeds.sh), each streamed over the same
    stream seeds; mean ± sd over training seeds of each seed's mean over streams. Own alphabets."""
    import nested
    from nested.checkpoint import CHECKPOINTS
    from nested.forgetting import isolation_scores, retention
    from nested.tasks import SuccessorLanguages

    task = SuccessorLanguages(n_tasks=4, shared=False)
    print(f"\n### In context, own alphabets, over training seeds: schedule ABA, {segment_len} tokens a segment, "
          f"{len(seeds)} stream seeds per model (probe chance {task.probe_chance():.3f})\n")  # fmt: skip
    print("| model | training seeds | A alone | A after A | A after B | B after B | A after A again |")
    print("|---|---|---|---|---|---|---|")
    for name, ckpt in MODELS.items():
        if only and name not in only:
            continue
        stage = "-cont" if name == "Hope" else ""  # Hope's recipe has a second stage (nested.cards)
        dirs = [CHECKPOINTS / ckpt] + sorted(runs.glob(f"lang-{TRAINED[name]}-s[0-9]{stage}/model"))
        dirs = [d for d in dirs if (d / "config.json").is_file()]
        per_seed, alone = [], []
        for d in dirs:
            model = nested.load(d).eval()
            per_seed.append(retention({name: model}, task, "ABA", segment_len, seeds)[name].mean(0))
            alone.append(isolation_scores(model, task, n_streams=len(seeds), segment_len=segment_len)["probe"]["A"])
        m = np.stack(per_seed)
        for d, row, a in zip(dirs, per_seed, alone, strict=True):  # each training seed (its mean over streams)
            print(f"  {d}: A alone {a:.2f}, A after A {row[0, 0]:.2f}, after B {row[1, 0]:.2f}, B after B "
                  f"{row[1, 1]:.2f}, A again {row[2, 0]:.2f}", file=sys.stderr, flush=True)  # fmt: skip
        print(f"| {name} | {len(dirs)} | {pm(alone)} | {pm(m[:, 0, 0])} | {pm(m[:, 1, 0])} | {pm(m[:, 1, 1])} | "
              f"{pm(m[:, 2, 0])} |", flush=True)  # fmt: skip


def outer(seeds: list[int], steps: int) -> None:
    from nested.continual_train import train_sequence

    names = ["sgd", "momentum", "adam", "muon", "m3", "delta-momentum"]
    print(f"\n### Across training: schedule ABAC, {steps} steps a task; lr from {GRID} by the mean loss on each task at "
          "the end of its own segment (seed 0)\n")  # fmt: skip
    best = {}
    for n in names:
        scores = {}
        for lr in GRID:
            r = train_sequence("ABAC", n, lr, steps, seed=0)
            m = r.forgetting_matrix()  # plasticity: the loss on each task at the end of its own segment
            own = [m[j, ord(t) - 65] for j, t in enumerate("ABAC")]
            scores[lr] = np.inf if r.diverged_at is not None else float(np.mean(own))
        best[n] = min(scores, key=scores.get)
        print(f"- {n}: " + ", ".join(f"{lr:g} → {v:.3f}" for lr, v in scores.items()) + f"; best {best[n]:g}")
    for reset in (False, True):
        print(f"\n| optimizer (lr) | A after A | A after B | A after A again | B after A again |"
              f"{' (memories cleared at each switch)' if reset else ''}")  # fmt: skip
        print("|---|---|---|---|---|")
        for n in names:
            mats = np.stack([train_sequence("ABA", n, best[n], steps, seed=s, reset_state=reset).forgetting_matrix()
                             for s in seeds])  # fmt: skip
            print(f"| {n} ({best[n]:g}) | {pm(mats[:, 0, 0])} | {pm(mats[:, 1, 0])} | {pm(mats[:, 2, 0])} | "
                  f"{pm(mats[:, 2, 1])} |")  # fmt: skip


LEARNERS = ["mlp", "cms-sequential:1,32,512", "cms-independent:1,32,512", "cms-nested:1,32,512", "fast-slow",
            "cms-sequential:1", "cms-sequential:1,32", "cms-sequential:1,32,64"]  # fmt: skip


def learners(seeds: list[int], steps: int, optimizer: str = "adam") -> None:
    """E5: the stream A, B, A, C, A, D (`steps` a block); each learner's base rate from GRID by how well it
    learns each task (ABAC, seed 0), then `seeds` training seeds: the loss on A after A and after B, how
    much of A is lost when it returns and the steps to recover within 10 % of its best, the online loss."""
    import time

    from nested.continual_learners import LearnerSpec
    from nested.continual_train import train_sequence

    print(f"\n### E5's learners: schedule ABACAD, {steps} steps a task, {optimizer}; base lr from {GRID} by the mean "
          "loss on each task at the end of its own segment (ABAC, seed 0)\n", flush=True)  # fmt: skip
    best = {}
    for name in LEARNERS:
        scores = {}
        for lr in GRID:
            r = train_sequence("ABAC", optimizer, lr, steps, seed=0, learner=name, eval_every=50)
            m = r.forgetting_matrix()
            scores[lr] = (
                np.inf
                if r.diverged_at is not None
                else float(np.mean([m[j, ord(t) - 65] for j, t in enumerate("ABAC")]))
            )
        best[name] = min(scores, key=scores.get)
        print(
            f"- {name}: " + ", ".join(f"{lr:g} → {v:.3f}" for lr, v in scores.items()) + f"; best {best[name]:g}",
            flush=True,
        )
    print("\n| learner (values stored, lr) | A after A | A after B | A lost at its 1st / 2nd return | steps to recover (1st / 2nd) "
          "| online loss | ms / step |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name in LEARNERS:
        mats, lost, rec, online, t0 = [], [[], []], [[], []], [], time.perf_counter()
        for s in seeds:
            r = train_sequence("ABACAD", optimizer, best[name], steps, seed=s, learner=name, eval_every=10)
            mats.append(r.forgetting_matrix())
            for i, ret in enumerate(r.recovery()[:2]):
                lost[i].append(ret["forgot"])
                rec[i].append(np.nan if ret["steps"] is None else ret["steps"])
            online.append(r.mean_online_loss())
        ms = (time.perf_counter() - t0) / (len(seeds) * 6 * steps) * 1e3
        m = np.stack(mats)

        def steps_pm(x):
            x = np.array(x, dtype=float)
            never = int(np.isnan(x).sum())
            shown = (
                f"{np.nanmean(x):.0f} ± {np.nanstd(x, ddof=1) if (~np.isnan(x)).sum() > 1 else 0:.0f}"
                if never < len(x)
                else "never"
            )
            return shown + (f" ({never} never)" if 0 < never < len(x) else "")

        print(f"| {LearnerSpec.parse(name).label} ({r.n_values:,}, {best[name]:g}) | {pm(m[:, 0, 0])} | {pm(m[:, 1, 0])} | "
              f"{pm(lost[0])} / {pm(lost[1])} | {steps_pm(rec[0])} / {steps_pm(rec[1])} | {pm(online)} | {ms:.2f} |", flush=True)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--outer", action="store_true", help="across training instead of in context")
    ap.add_argument("--learners", action="store_true", help="across training: E5's learners (i)-(v)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--segment", type=int, default=128, help="in context: tokens a segment")
    ap.add_argument("--steps", type=int, default=None, help="across training: optimizer steps a task (200; E5: 2000)")
    ap.add_argument("--training-seeds", default=None, metavar="RUNS",
                    help="in context, over training seeds: the shipped checkpoints and RUNS/lang-<model>-s<k>/model")  # fmt: skip
    ap.add_argument("--models", default="", help="with --training-seeds: only these (names of MODELS, separated by |)")
    a = ap.parse_args()
    seeds = list(range(a.seeds))
    if a.training_seeds:
        training_seeds(seeds, a.segment, Path(a.training_seeds), [m for m in a.models.split("|") if m])
    elif a.learners:
        learners(seeds, a.steps or 2000)
    elif a.outer:
        outer(seeds, a.steps or 200)
    else:
        in_context(seeds, a.segment)


if __name__ == "__main__":
    main()
