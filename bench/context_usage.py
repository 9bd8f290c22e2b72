"""PAPER.md §9 E7, reduced to what this CPU affords: loss vs position in the shipped byte LMs, read far past
the 128 bytes they were trained on, and Hope's loss with every in-context level frozen (3 sample seeds).

    python bench/context_usage.py [--length 1024] [--n 16] [--seeds 3]
    python bench/context_usage.py --hope runs/text-hope-new/model     # another Hope checkpoint in Hope's rows

E7 proper trains d 128-192 models on synthetic documents with recurring names at sequence 1024; here the
models are the shipped text checkpoints (d 64, 2 layers, trained on 128-byte windows of Python's docs), and the
text is the held-out split. Each seed draws --n windows of --length bytes; the table gives the mean next-byte
loss (nats) in position bins, mean ± sd over seeds. "Hope, levels frozen" runs hope-text with every memory's
writes and every CMS level's learning rate at 0 (nested.Freeze), so its gap to Hope is what the in-context
levels add at each position; "memories frozen" and "CMS frozen" stop one kind each.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nested  # noqa: E402
from bench.stats import fmt_mean_sd  # noqa: E402
from nested.checkpoint import CHECKPOINTS  # noqa: E402
from nested.tasks import make_task  # noqa: E402

MODELS = {"Transformer": "transformer-text", "Titans": "titans-text", "Hope": "hope-text"}
BINS = ((0, 16), (16, 64), (64, 128), (128, 256), (256, 512), (512, 1024), (1024, 4096))


@torch.no_grad()
def position_loss(model, tokens: torch.Tensor, freeze=None) -> torch.Tensor:
    """Mean next-token loss at each position (T - 1,) over the batch, one run from a fresh state."""
    state = model.init_state(tokens.shape[0], freeze=freeze)
    logits = model.run(tokens, state).logits
    loss = F.cross_entropy(logits[:, :-1].transpose(1, 2).float(), tokens[:, 1:], reduction="none")
    return loss.mean(0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--length", type=int, default=1024)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--hope", default=str(CHECKPOINTS / MODELS["Hope"]), help="the Hope checkpoint of Hope's rows")
    a = ap.parse_args()
    torch.set_num_threads(1)
    task = make_task("text", seq_len=a.length, split="val")
    paths = {**{label: CHECKPOINTS / ckpt for label, ckpt in MODELS.items()}, "Hope": Path(a.hope)}
    models = {label: nested.load(path, device="cpu").eval() for label, path in paths.items()}
    hope = models["Hope"]
    levels = nested.Freeze.options(hope)

    def frozen(which: str) -> nested.Freeze:
        return nested.Freeze(tuple((name, 0.0) for name in levels if which in name))

    runs = {**{label: (m, None) for label, m in models.items()}, "Hope, levels frozen": (hope, frozen("layer")),
            "Hope, memories frozen": (hope, frozen("memories")), "Hope, CMS frozen": (hope, frozen("cms"))}  # fmt: skip
    bins = [(lo, min(hi, a.length - 1)) for lo, hi in BINS if lo < a.length - 1]
    table: dict[str, list[list[float]]] = {label: [] for label in runs}
    for seed in range(a.seeds):
        tokens = task.sample(a.n, 10**6 + seed).inputs
        for label, (model, freeze) in runs.items():
            per_pos = position_loss(model, tokens, freeze)
            table[label].append([float(per_pos[lo:hi].mean()) for lo, hi in bins])
        print(f"seed {seed} done", file=sys.stderr, flush=True)
    print(f"\n### Loss vs position (nats/byte), {a.n} held-out windows of {a.length} bytes x {a.seeds} seeds\n")
    print("| model | " + " | ".join(f"{lo}–{hi}" for lo, hi in bins) + " |\n|---|" + "---|" * len(bins))
    for label, rows in table.items():
        cells = [fmt_mean_sd([r[i] for r in rows]) for i in range(len(bins))]
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
