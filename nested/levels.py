"""The nest of a model (PAPER.md §1.2, Definitions 2-3): every component that learns, with its update
period, ordered fastest to slowest. Components with equal frequency are ordered so that one whose state
the other needs comes first (momentum before the weights it moves)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

EVERY_STEP = None  # period of outer-loop components: one update per optimizer step, not per token


@dataclass(frozen=True)
class Level:
    name: str
    layer: int | None  # None for model-wide components
    kind: str  # attention | memory | self-modifying memory | cms | optimizer | weights
    period: int | None  # tokens per update; None = every optimizer step
    params: int  # numbers this component holds (per batch item for in-context memories)
    description: str

    @property
    def period_label(self) -> str:
        if self.period is None:
            return "every optimizer step"
        return "every token" if self.period == 1 else f"every {self.period} tokens"


MEMORY_TEXT = {
    "M_k": "generates keys k_t; trained in context on its own values M_k(v_t)",
    "M_v": "generates the shared values v_t; trained on M_v(v_t)",
    "M_q": "generates queries q_t (adaptive-q variant)",
    "M_eta": "generates the learning rate eta_t of every memory",
    "M_alpha": "generates the retention (decay) alpha_t of every memory",
    "M_memory": "the memory read by q_t: o_t = M_memory(q_t)",
}


def levels(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> list[Level]:
    """Every component of the nest with its update period, fastest to slowest (DESIGN.md §2)."""
    out: list[Level] = []
    for i, blk in enumerate(model.blocks):
        out += blk.mixer.nest(i)
        if hasattr(blk.ffn, "nest"):
            out += blk.ffn.nest(i)
    n_weights = sum(p.numel() for p in model.parameters())
    if optimizer is not None:
        bufs = sorted(
            {k for st in optimizer.state.values() for k, v in st.items() if torch.is_tensor(v) and v.dim() > 0}
        )
        opt_name = type(optimizer).__name__
        n_opt = sum(
            v.numel() for st in optimizer.state.values() for v in st.values() if torch.is_tensor(v) and v.dim() > 0
        )
    else:
        bufs, opt_name, n_opt = ["exp_avg", "exp_avg_sq"], "AdamW", 2 * n_weights
    out.append(Level(f"optimizer ({opt_name})", None, "optimizer", EVERY_STEP, n_opt,
                     f"the outer optimizer's memories of past gradients: {', '.join(bufs) or 'none yet'}"))  # fmt: skip
    out.append(Level("weights", None, "weights", EVERY_STEP, n_weights,
                     "embeddings, projections, norms and the meta-learned initial states of every memory"))  # fmt: skip
    # stable sort: period ascending, per-step components last (already in dependency order)
    return sorted(out, key=lambda lv: float("inf") if lv.period is None else lv.period)
