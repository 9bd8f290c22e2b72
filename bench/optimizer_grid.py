"""Which M3 reading trains better on our tasks? Byte-level LM on Python's offline docs (pydoc_data).

    python bench/m3_variants.py [--steps 150 --seeds 2]

A small Transformer (d_model 64, 2 layers, seq 64, batch 16) per optimizer x learning rate x seed; the
score is the held-out loss after training, best learning rate per optimizer (mean over seeds). AdamW and
Muon are the references. The chosen default and these numbers are recorded in docs/FIDELITY.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nested  # noqa: E402
from nested.optim import M3, Muon  # noqa: E402


def corpus() -> tuple[torch.Tensor, torch.Tensor]:
    from pydoc_data.topics import topics

    data = torch.tensor(list(" ".join(topics[k] for k in sorted(topics)).encode("utf-8")), dtype=torch.long)
    cut = int(0.9 * len(data))
    return data[:cut], data[cut:]


def batches(data, n, seq, batch, seed):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        idx = torch.randint(0, len(data) - seq - 1, (batch,), generator=g)
        yield torch.stack([data[i : i + seq + 1] for i in idx])


def loss_of(model, x):
    logits = model(x[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))


def run(make_opt, lr, seed, steps, train, val) -> float:
    model = nested.build_model("transformer", d_model=64, n_layers=2, seed=seed, device="cpu")
    opt = make_opt(list(model.parameters()), lr)
    for x in batches(train, steps, 64, 16, seed):
        opt.zero_grad()
        loss_of(model, x).backward()
        opt.step()
    with torch.no_grad():
        return float(sum(loss_of(model, x) for x in batches(val, 8, 64, 32, 123)) / 8)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--seeds", type=int, default=2)
    a = ap.parse_args()
    train, val = corpus()
    optimizers = {
        "AdamW": (lambda ps, lr: torch.optim.AdamW(ps, lr=lr), [1e-3, 3e-3, 1e-2]),
        "Muon": (lambda ps, lr: Muon(ps, lr=lr, adamw_lr=lr / 3, weight_decay=0.0), [1e-2, 3e-2, 1e-1]),
        "M3 paper": (lambda ps, lr: M3(ps, lr=lr, variant="paper", betas=(0.9, 0.999, 0.99), slow_every=10),
                     [1e-5, 3e-5, 1e-4, 3e-4, 1e-3]),
        "M3 ema": (lambda ps, lr: M3(ps, lr=lr, variant="ema", betas=(0.9, 0.999, 0.99), slow_every=10),
                   [1e-4, 3e-4, 1e-3, 3e-3]),
        "M3 ema+rms": (lambda ps, lr: M3(ps, lr=lr, variant="ema", rms_match=True, slow_every=10),
                       [1e-2, 3e-2, 1e-1]),
    }  # fmt: skip
    print(f"{a.steps} steps, {a.seeds} seeds; held-out loss (nats/byte), mean over seeds")
    t0 = time.perf_counter()
    for name, (make, lrs) in optimizers.items():
        scores = {lr: [run(make, lr, s, a.steps, train, val) for s in range(a.seeds)] for lr in lrs}
        row = "  ".join(f"lr {lr:g}: {sum(v) / len(v):.3f}" for lr, v in scores.items())
        best = min(scores, key=lambda lr: sum(scores[lr]))
        vals = scores[best]
        print(
            f"{name:11s} best {sum(vals) / len(vals):.3f} (lr {best:g}, seeds {', '.join(f'{v:.3f}' for v in vals)})  | {row}"
        )
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
