"""Optimizers as associative memories (PAPER.md §1.3b-d, App. B): what each internal buffer is.

`memory_view(optimizer)` lists an optimizer's memories: name, what it compresses, the objective its
update is one step of, its update period, its horizon, and the current tensors. It works for this
package's optimizers (their `memories()` method) and for torch.optim.SGD / Adam / AdamW / Muon.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class MemoryInfo:
    name: str  # the state key (e.g. "exp_avg")
    compresses: str  # what flows into it: gradients, squared gradients, chunk sums, ...
    objective: str  # the inner problem its update is one step of
    period: int  # optimizer steps per update of this memory (1 = every step)
    horizon: str  # how far back it remembers
    tensors: list[Tensor] = field(default_factory=list)  # one per parameter that has the buffer

    @property
    def numel(self) -> int:
        return sum(t.numel() for t in self.tensors)


def ema_horizon(beta: float) -> str:
    """Steps that carry 50% and 99% of an EMA's mass: n with 1 - beta^n >= p (PAPER.md §7.3)."""
    if beta <= 0:
        return "1 step (no memory)"
    if beta >= 1:
        return "unbounded (a plain sum: never forgets)"
    n50 = math.ceil(math.log(0.5) / math.log(beta))
    n99 = math.ceil(math.log(0.01) / math.log(beta))
    return f"50% of its mass in the last {n50} steps, 99% in {n99} (beta={beta:g})"


def closure_loss(closure):
    """The torch.optim convention: re-evaluate the loss with gradients enabled when a closure is given."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def collect(optimizer: torch.optim.Optimizer, key: str) -> list[Tensor]:
    return [st[key] for group in optimizer.param_groups for p in group["params"]
            if (st := optimizer.state.get(p)) and key in st and torch.is_tensor(st[key])]  # fmt: skip


def _sgd_view(opt) -> list[MemoryInfo]:
    mu = opt.param_groups[0].get("momentum", 0.0)
    if not mu:
        return []
    return [MemoryInfo("momentum_buffer", "gradients",
                       "m = argmin <m, -g> + (1-mu)/2 ||m||^2 + 1/2 ||m - m_prev||^2: one GD step gives m <- mu m + g (Eqs. 33-34)",
                       1, ema_horizon(mu), collect(opt, "momentum_buffer"))]  # fmt: skip


def _adam_view(opt) -> list[MemoryInfo]:
    b1, b2 = opt.param_groups[0]["betas"]
    return [
        MemoryInfo("exp_avg", "gradients", "EMA of g: the first-moment memory M of App. B, Eq. 102 (M <- b1 M + (1-b1) g)",
                   1, ema_horizon(b1), collect(opt, "exp_avg")),
        MemoryInfo("exp_avg_sq", "squared gradients",
                   "EMA of g^2: H of Eq. 102; with P = H^(1/2) the optimal element-wise L2 memory is Adam (Eq. 105)",
                   1, ema_horizon(b2), collect(opt, "exp_avg_sq")),
    ]  # fmt: skip


def _muon_view(opt) -> list[MemoryInfo]:
    g = opt.param_groups[0]
    steps = g.get("ns_steps", 5)
    return [
        MemoryInfo("momentum_buffer", "gradients", "EMA momentum (Eq. 42): m <- mu m + (1-mu) g", 1,
                   ema_horizon(g.get("momentum", 0.95)), collect(opt, "momentum_buffer")),
        MemoryInfo("newton_schulz", "the momentum", f"||O^T O - I||^2 near m (Eq. 43): {steps} inner steps per optimizer step",
                   1, "none: re-solved from the momentum every step", []),
    ]  # fmt: skip


def memory_view(optimizer: torch.optim.Optimizer) -> list[MemoryInfo]:
    """The memories of any supported optimizer (see module docstring)."""
    if hasattr(optimizer, "memories"):
        return optimizer.memories()
    if isinstance(optimizer, torch.optim.SGD):
        return _sgd_view(optimizer)
    if isinstance(optimizer, torch.optim.Adam | torch.optim.AdamW):
        return _adam_view(optimizer)
    if isinstance(optimizer, torch.optim.Muon):
        return _muon_view(optimizer)
    raise TypeError(f"no memory view for {type(optimizer).__name__}")
