"""PAPER.md §9 E8 (Table 5's formal languages at our scale): parity and (aa)*, trained on strings of length
1-40, tested on 41-80 (the paper's Bin1), each model at its best rate, 3 seeds (issue 13 §2-3).

    python bench/formal_study.py [--steps 1000] [--seeds 3]     # resumable: cells cached in runs/formal/
    python bench/formal_study.py --report

Every model is d 64, 2 layers, trained on the label token only (nested.tasks.formal: "<string>=Y|N"),
batch 32, AdamW, global clip 1. The rate is the best of LRS on seed 0 by in-length held-out accuracy (within
its sampling noise, by loss); seeds 1.. rerun at that rate. Accuracy is on 512 fresh strings in length (1-40) and out of length (41-80); chance
is 50 % for both languages (parity labels are fair coins; half the lengths are even).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cells import cached_cell  # noqa: E402
from bench.stats import fmt_mean_sd  # noqa: E402

MODELS = {  # label -> (registry name, model overrides)
    "Transformer": ("transformer", {}),
    "Linear attention": ("linear-attention", {}),
    "DeltaNet": ("deltanet", {}),
    "Titans": ("titans", {}),
    "Hope": ("hope", {"cms_periods": [16, 64]}),
}
LANGUAGES = ("parity", "aa")
LRS = (3e-3, 1e-2)
TRAIN_LEN, TEST_LEN = (1, 40), (41, 80)
CACHE = Path("runs/formal")


def cell_path(label: str, language: str, lr: float, seed: int, steps: int) -> Path:
    safe = "".join(ch if ch.isalnum() else "_" for ch in label)
    return CACHE / f"{language}-{safe}-lr{lr:g}-s{seed}-n{steps}.json"


def run_cell(label: str, language: str, lr: float, seed: int, steps: int) -> dict:
    from nested.tasks import make_task
    from nested.train import TrainConfig, train

    name, extra = MODELS[label]
    cfg = TrainConfig(model=name, model_args={"d_model": 64, "n_layers": 2, **extra}, task="formal",
                      task_args={"language": language, "min_len": TRAIN_LEN[0], "max_len": TRAIN_LEN[1]},
                      lr=lr, steps=steps, seed=seed, batch_size=32, eval_every=0, ckpt_every=0,
                      out_dir=f"/tmp/formal-{name}-{language}-{seed}")  # fmt: skip
    t0 = time.perf_counter()
    try:
        res = train(cfg, progress=False, log=lambda *_: None)
    except FloatingPointError as exc:
        return {"label": label, "language": language, "lr": lr, "seed": seed, "diverged": str(exc)}
    model = res["model"].eval()
    cell = {"label": label, "language": language, "lr": lr, "seed": seed, "steps": steps,
            "seconds": time.perf_counter() - t0, "params": sum(p.numel() for p in model.parameters())}  # fmt: skip
    for split, (lo, hi) in (("in", TRAIN_LEN), ("out", TEST_LEN)):
        task = make_task("formal", language=language, min_len=lo, max_len=hi)
        probe = task.probe(lambda x: model(x).cpu(), n=512, seed=10**9 + seed)
        cell[f"{split}_accuracy"], cell[f"{split}_loss"] = probe["accuracy"], probe["loss"]
    return cell


def cached(label: str, language: str, lr: float, seed: int, steps: int, compute: bool) -> dict | None:
    return cached_cell(cell_path(label, language, lr, seed, steps), compute,
                       lambda: run_cell(label, language, lr, seed, steps),
                       lambda c: f"{language} {label} lr {lr:g} seed {seed}: in {c.get('in_accuracy')} "
                                 f"out {c.get('out_accuracy')}{' diverged' if 'diverged' in c else ''}")  # fmt: skip


NOISE = 2 * (0.25 / 512) ** 0.5  # two standard errors of an accuracy over 512 answers near 50 %


def best_lr(label: str, language: str, steps: int, compute: bool) -> float | None:
    """The rate with the best in-length accuracy on seed 0; within NOISE of it, the lower in-length loss (a
    model right on 70 % of strings can have a higher loss than one that answers 50/50 everywhere)."""
    cells = [c for lr in LRS if (c := cached(label, language, lr, 0, steps, compute)) and "in_loss" in c]
    if not cells:
        return None
    top = max(c["in_accuracy"] for c in cells)
    return min((c for c in cells if c["in_accuracy"] >= top - NOISE), key=lambda c: c["in_loss"])["lr"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--models", default="", help="only these labels of MODELS, separated by |")
    a = ap.parse_args()
    torch.set_num_threads(1)
    CACHE.mkdir(parents=True, exist_ok=True)
    compute = not a.report
    labels = [m for m in a.models.split("|") if m] or list(MODELS)
    if unknown := [m for m in labels if m not in MODELS]:
        ap.error(f"unknown models {unknown}; choose from {list(MODELS)}")
    rows = []
    for language in LANGUAGES:
        for label in labels:
            lr = best_lr(label, language, a.steps, compute)
            if lr is None:
                continue
            cells = [c for s in range(a.seeds) if (c := cached(label, language, lr, s, a.steps, compute))]
            ok = [c for c in cells if "in_accuracy" in c]
            if not ok:
                continue
            rows.append(f"| {language} | {label} | {ok[0]['params']:,} | {lr:g} | "
                        f"{fmt_mean_sd([c['in_accuracy'] for c in ok], 1, 100)} | {fmt_mean_sd([c['out_accuracy'] for c in ok], 1, 100)} | "
                        f"{len(ok)}{f' ({len(cells) - len(ok)} diverged)' if len(ok) < len(cells) else ''} | "
                        f"{statistics.mean(c['seconds'] for c in ok):.0f} s |")  # fmt: skip
    print(f"\n### Formal languages (E8): train on lengths {TRAIN_LEN[0]}-{TRAIN_LEN[1]}, {a.steps} steps x 32\n")
    print("| language | model | parameters | best lr | accuracy in length (%) | accuracy on 41-80 (%) | seeds | time |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
