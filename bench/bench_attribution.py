"""How interactive the attribution page is: each method's time on 256 bytes, per shipped text model.

    python bench/bench_attribution.py [--tokens 256]

For each model the time of one plain forward (the baseline, measured in the same run), then each method
(nested.attribution.attribute) and the level contributions, as milliseconds and as a ratio to the forward.
The page's goal: a live saliency under a second for 256 tokens on this CPU.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.models import build_frozen  # noqa: E402
from app.samples import sample_texts  # noqa: E402
from bench.timing import median_ms  # noqa: E402
from nested.attribution import METHODS, attribute, level_contributions  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=256)
    a = ap.parse_args()
    text = next(iter(sample_texts().values()))
    tokens = torch.tensor([list(text.encode())[: a.tokens]])
    pos = tokens.shape[1] - 2
    target = int(tokens[0, pos + 1])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {tokens.shape[1]} bytes, median of 3")
    print("| model | forward (ms) | " + " | ".join(f"{m} (ms, x fwd)" for m in METHODS) + " | levels (ms, x fwd) |")
    print("|---|---|" + "---|" * (len(METHODS) + 1))
    for name in ("hope", "titans", "transformer"):
        model = build_frozen(name, 0, device="cpu")
        with torch.no_grad():
            fwd = median_ms(lambda m=model: m(tokens))
        cells = []
        for method in METHODS:
            n = 1 if method in ("integrated_gradients", "occlusion") else 3

            def run(m=model, meth=method):
                try:
                    attribute(m, tokens, pos, target, meth)
                except FloatingPointError:  # the page's fallback: first order
                    attribute(m, tokens, pos, target, meth, exact_cms=False)

            ms = median_ms(run, n)
            cells.append(f"{ms:.0f} ({ms / fwd:.1f})")
        lv = median_ms(lambda m=model: level_contributions(m, tokens, pos, target), 1)
        print(f"| {name} | {fwd:.0f} | " + " | ".join(cells) + f" | {lv:.0f} ({lv / fwd:.1f}) |", flush=True)


if __name__ == "__main__":
    main()
