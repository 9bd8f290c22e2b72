"""Hope against the baselines at matched size and equal tokens, each at its best learning rate, 3 seeds
(issue 13 §2, the byte LM part).

    python bench/fair_compare.py [--steps 300] [--seeds 3]      # resumable: cells cached in runs/fair/
    python bench/fair_compare.py --report
    python bench/fair_compare.py --models "Transformer|Gated DeltaNet"   # only these (labels of MODELS)
    python bench/fair_compare.py --seconds 150    # equal wall-clock: each model trains 150 s at its best rate

Every model is d 64, 2 layers (parameters printed), trained by the text recipe (byte LM on the offline
corpus, seq 128, batch 16, AdamW, global clip 1) for the same number of steps. Each model's rate is the
best of LRS on seed 0 (held-out loss); seeds 1.. rerun at that rate. Hope runs at the library's defaults
(chosen by bench/stability_study.py). Reported: held-out nats/byte mean ± sd, training tokens/s on this
CPU (1 thread) and the loss each reached, so equal tokens and the time it took are both on the table.
With --seconds each model instead trains for that many seconds of this CPU (1 thread; the steps it reached
are reported) at the best rate of the equal-token grid (the grid's cells when cached, else BEST_LR: the
rates that grid chose in docs/RESULTS.md, sessions 8 and 12).
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

MODELS = {  # label -> (registry name, model overrides); fastest first, so a stopped study has the baselines
    "Transformer": ("transformer", {}),
    "Transformer, window 32": ("transformer-swa", {"window": 32}),
    "DeltaNet": ("deltanet", {}),
    "Gated DeltaNet": ("gated-deltanet", {}),
    "Titans": ("titans", {}),
    "Hope-Attention": ("hope-attention", {"cms_periods": [16, 64]}),
    "Hope": ("hope", {"cms_periods": [16, 64]}),
}
LRS = (1e-3, 3e-3, 1e-2)
BEST_LR = {
    "Transformer": 3e-3,
    "Transformer, window 32": 3e-3,
    "DeltaNet": 1e-2,
    "Gated DeltaNet": 1e-2,
    "Titans": 1e-2,
    "Hope-Attention": 3e-3,
    "Hope": 3e-3,
}  # the 300-step grid's choices (RESULTS)
CACHE = Path("runs/fair")


def cell_path(label: str, lr: float, seed: int, steps: int, seconds: float | None = None) -> Path:
    safe = "".join(ch if ch.isalnum() else "_" for ch in label)
    budget = f"t{seconds:g}" if seconds else f"n{steps}"
    return CACHE / f"{safe}-lr{lr:g}-s{seed}-{budget}.json"


def run_cell(label: str, lr: float, seed: int, steps: int, seconds: float | None = None) -> dict:
    """Train one cell: `steps` steps, or as many as fit in `seconds` of training (evaluation not counted)."""
    from nested.train import evaluate, preset, train

    name, extra = MODELS[label]
    cfg = preset("text-transformer", model=name, lr=lr, steps=10**9 if seconds else steps, seed=seed,
                 eval_every=0, ckpt_every=0, out_dir=f"/tmp/fair-{name}-{seed}",
                 model_args={"d_model": 64, "n_layers": 2, **extra})  # fmt: skip
    t0 = time.perf_counter()
    out_of_time = (lambda: time.perf_counter() - t0 > seconds) if seconds else None
    try:
        res = train(cfg, progress=False, log=lambda *_: None, should_stop=out_of_time)
    except FloatingPointError as exc:
        return {"label": label, "lr": lr, "seed": seed, "steps": steps, "diverged": str(exc)}
    elapsed = time.perf_counter() - t0
    model = res["model"]
    return {"label": label, "lr": lr, "seed": seed, "steps": res["steps"], "eval_loss": evaluate(model, cfg)["loss"],
            "seconds": elapsed, "tokens_per_s": res["tokens_seen"] / elapsed,
            "params": sum(p.numel() for p in model.parameters())}  # fmt: skip


def cached(label: str, lr: float, seed: int, steps: int, compute: bool = True, seconds: float | None = None):
    return cached_cell(
        cell_path(label, lr, seed, steps, seconds),
        compute,
        lambda: run_cell(label, lr, seed, steps, seconds),
        lambda c: f"{label} lr {lr:g} seed {seed}: {c.get('eval_loss', c.get('diverged'))}",
    )


def best_lr(label: str, steps: int, compute: bool) -> float | None:
    cells = [c for lr in LRS if (c := cached(label, lr, 0, steps, compute)) is not None and "eval_loss" in c]
    return min(cells, key=lambda c: c["eval_loss"])["lr"] if cells else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--models", default="", help="only these labels of MODELS, separated by |")
    ap.add_argument("--seconds", type=float, default=0, help="equal wall-clock: train each cell this long")
    a = ap.parse_args()
    torch.set_num_threads(1)
    CACHE.mkdir(parents=True, exist_ok=True)
    compute = not a.report
    rows = []
    only = [m for m in a.models.split("|") if m]
    unknown = [m for m in only if m not in MODELS]
    if unknown:
        ap.error(f"unknown models {unknown}; choose from {list(MODELS)}")
    if a.seconds:
        return wall_clock(only or list(MODELS), a.seconds, a.seeds, compute, a.steps)
    for label in only or MODELS:
        lr = best_lr(label, a.steps, compute)
        if lr is None:
            continue
        cells = [c for s in range(a.seeds) if (c := cached(label, lr, s, a.steps, compute)) is not None]
        ok = [c for c in cells if "eval_loss" in c]
        grid = ", ".join(f"{x:g}: {c['eval_loss']:.3f}" for x in LRS if (c := cached(label, x, 0, a.steps, False))
                         and "eval_loss" in c)  # fmt: skip
        rows.append(f"| {label} | {ok[0]['params']:,} | {lr:g} | {fmt_mean_sd([c['eval_loss'] for c in ok])} "
                    f"({len(ok)} seeds) | {statistics.mean(c['tokens_per_s'] for c in ok):,.0f} | "
                    f"{statistics.mean(c['seconds'] for c in ok):.0f} s | {grid} |")  # fmt: skip
    print(f"\n### Byte LM at equal tokens: d 64, 2 layers, {a.steps} steps x 16 x 128 bytes, best rate of {LRS}\n")
    print("| model | parameters | best lr | held-out nats/byte | tokens/s (1 thread) | time | seed 0 at each lr |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


def wall_clock(labels: list[str], seconds: float, seeds: int, compute: bool, grid_steps: int) -> None:
    rows = []
    for label in labels:
        lr = best_lr(label, grid_steps, compute=False) or BEST_LR[label]
        cells = [c for s in range(seeds) if (c := cached(label, lr, s, 0, compute, seconds)) is not None]
        ok = [c for c in cells if "eval_loss" in c]
        if not ok:
            continue
        steps = [c["steps"] for c in ok]
        rows.append(f"| {label} | {lr:g} | {fmt_mean_sd([c['eval_loss'] for c in ok])} ({len(ok)} seeds"
                    f"{', ' + str(len(cells) - len(ok)) + ' diverged' if len(ok) < len(cells) else ''}) | "
                    f"{min(steps)}–{max(steps)} | {statistics.mean(c['tokens_per_s'] for c in ok):,.0f} |")  # fmt: skip
    print(f"\n### Byte LM at equal wall-clock: d 64, 2 layers, {seconds:g} s of training each (1 thread)\n")
    print("| model | lr | held-out nats/byte | steps reached | tokens/s |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
