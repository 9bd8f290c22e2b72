"""Optimizer step time on one model, in one run: M3 (both variants) vs torch.optim.Muon, our Muon, AdamW.

    python bench/bench_optimizers.py [--d-model 128 --n-layers 4 --steps 20]

The step time is the optimizer's `step()` alone (gradients fixed), averaged; the ratio is against Muon
measured in the same process. The paper reports M3 slower than Muon, on par with AdaMuon (Fig. 12).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nested  # noqa: E402
from nested.optim import M3, Muon  # noqa: E402


def step_time(model, make, steps: int) -> float:
    params = [p for p in model.parameters()]
    opt = make(params)
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    opt.step()  # allocate state
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.step()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--n-layers", type=int, default=4)
    ap.add_argument("--steps", type=int, default=20)
    a = ap.parse_args()
    model = nested.build_model("transformer", d_model=a.d_model, n_layers=a.n_layers, device="cpu")
    n = sum(p.numel() for p in model.parameters())
    print(f"transformer d_model {a.d_model}, {a.n_layers} layers: {n} parameters; {torch.get_num_threads()} threads")
    cands = {
        "AdamW": lambda ps: torch.optim.AdamW(ps, lr=1e-3),
        "torch.optim.Muon (+AdamW for 1-D)": lambda ps: _torch_muon(ps),
        "nested Muon (bf16 NS, as torch)": lambda ps: Muon(ps, lr=1e-3, ns_dtype=torch.bfloat16),
        "nested Muon (fp32 NS, default on CPU)": lambda ps: Muon(ps, lr=1e-3),
        "M3 paper": lambda ps: M3(ps, lr=1e-3, variant="paper"),
        "M3 ema": lambda ps: M3(ps, lr=1e-3, variant="ema"),
        "M3 ema (bf16 NS)": lambda ps: M3(ps, lr=1e-3, variant="ema", ns_dtype=torch.bfloat16),
    }
    times = {k: step_time(model, f, a.steps) for k, f in cands.items()}
    base = times["torch.optim.Muon (+AdamW for 1-D)"]
    base32 = times["nested Muon (fp32 NS, default on CPU)"]
    for k, t in times.items():
        print(f"{k:40s} {t * 1e3:8.2f} ms/step   {t / base:6.3f}x torch Muon   {t / base32:6.3f}x fp32 Muon")


class _TorchMuonWithAdamW:
    """torch.optim.Muon takes only matrices; pair it with AdamW for the rest, as Muon is used."""

    def __init__(self, ps):
        mats = [p for p in ps if p.dim() == 2]
        rest = [p for p in ps if p.dim() != 2]
        self.opts = [torch.optim.Muon(mats, lr=1e-3), torch.optim.AdamW(rest, lr=1e-3)]

    def step(self):
        for o in self.opts:
            o.step()


def _torch_muon(ps):
    return _TorchMuonWithAdamW(ps)


if __name__ == "__main__":
    main()
