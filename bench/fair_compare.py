"""Hope against the baselines at matched size and equal tokens, each at its best learning rate, 3 seeds
(issue 13 §2, the byte LM part).

    python bench/fair_compare.py [--steps 300] [--seeds 3]      # resumable: cells cached in runs/fair/
    python bench/fair_compare.py --report
    python bench/fair_compare.py --models "Transformer|Gated DeltaNet"   # only these (labels of MODELS)

Every model is d 64, 2 layers (parameters printed), trained by the text recipe (byte LM on the offline
corpus, seq 128, batch 16, AdamW, global clip 1) for the same number of steps. Each model's rate is the
best of LRS on seed 0 (held-out loss); seeds 1.. rerun at that rate. Hope runs at the library's defaults
(chosen by bench/stability_study.py). Reported: held-out nats/byte mean ± sd, training tokens/s on this
CPU (1 thread) and the loss each reached, so equal tokens and the time it took are both on the table.
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
CACHE = Path("runs/fair")


def cell_path(label: str, lr: float, seed: int, steps: int) -> Path:
    safe = "".join(ch if ch.isalnum() else "_" for ch in label)
    return CACHE / f"{safe}-lr{lr:g}-s{seed}-n{steps}.json"


def run_cell(label: str, lr: float, seed: int, steps: int) -> dict:
    from nested.train import evaluate, preset, train

    name, extra = MODELS[label]
    cfg = preset("text-transformer", model=name, lr=lr, steps=steps, seed=seed, eval_every=0, ckpt_every=0,
                 out_dir=f"/tmp/fair-{name}-{seed}", model_args={"d_model": 64, "n_layers": 2, **extra})  # fmt: skip
    t0 = time.perf_counter()
    try:
        res = train(cfg, progress=False, log=lambda *_: None)
    except FloatingPointError as exc:
        return {"label": label, "lr": lr, "seed": seed, "steps": steps, "diverged": str(exc)}
    seconds = time.perf_counter() - t0
    model = res["model"]
    return {"label": label, "lr": lr, "seed": seed, "steps": steps, "eval_loss": evaluate(model, cfg)["loss"],
            "seconds": seconds, "tokens_per_s": res["tokens_seen"] / seconds,
            "params": sum(p.numel() for p in model.parameters())}  # fmt: skip


def cached(label: str, lr: float, seed: int, steps: int, compute: bool = True) -> dict | None:
    path = cell_path(label, lr, seed, steps)
    if path.is_file():
        return json.loads(path.read_text())
    if not compute:
        return None
    cell = run_cell(label, lr, seed, steps)
    path.write_text(json.dumps(cell, indent=1))
    print(f"{label} lr {lr:g} seed {seed}: {cell.get('eval_loss', cell.get('diverged'))}", flush=True)
    return cell


def best_lr(label: str, steps: int, compute: bool) -> float | None:
    cells = [c for lr in LRS if (c := cached(label, lr, 0, steps, compute)) is not None and "eval_loss" in c]
    return min(cells, key=lambda c: c["eval_loss"])["lr"] if cells else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--models", default="", help="only these labels of MODELS, separated by |")
    a = ap.parse_args()
    torch.set_num_threads(1)
    CACHE.mkdir(parents=True, exist_ok=True)
    compute = not a.report
    rows = []
    only = [m for m in a.models.split("|") if m]
    unknown = [m for m in only if m not in MODELS]
    if unknown:
        ap.error(f"unknown models {unknown}; choose from {list(MODELS)}")
    for label in only or MODELS:
        lr = best_lr(label, a.steps, compute)
        if lr is None:
            continue
        cells = [c for s in range(a.seeds) if (c := cached(label, lr, s, a.steps, compute)) is not None]
        ok = [c for c in cells if "eval_loss" in c]
        grid = ", ".join(f"{x:g}: {c['eval_loss']:.3f}" for x in LRS if (c := cached(label, x, 0, a.steps, False))
                         and "eval_loss" in c)  # fmt: skip
        losses = [c["eval_loss"] for c in ok]
        sd = statistics.stdev(losses) if len(losses) > 1 else 0.0
        rows.append(f"| {label} | {ok[0]['params']:,} | {lr:g} | {statistics.mean(losses):.3f} ± {sd:.3f} "
                    f"({len(ok)} seeds) | {statistics.mean(c['tokens_per_s'] for c in ok):,.0f} | "
                    f"{statistics.mean(c['seconds'] for c in ok):.0f} s | {grid} |")  # fmt: skip
    print(f"\n### Byte LM at equal tokens: d 64, 2 layers, {a.steps} steps x 16 x 128 bytes, best rate of {LRS}\n")
    print("| model | parameters | best lr | held-out nats/byte | tokens/s (1 thread) | time | seed 0 at each lr |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
