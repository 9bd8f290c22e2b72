"""The learners of continual learning across training (PAPER.md §9 E5): networks the outer loop trains on a
stream of regression tasks, each with the rule that says when each of its parts learns.

A learner is a network plus `groups`: sets of its parameters that each get their own optimizer, step every
`period` outer steps with the *sum* of the gradients since their last step (Eq. 71: gradients accumulate in
`.grad` until the group steps), at `lr * lr_scale`. Equal budgets: every learner stores about the same
number of trained values (`n_values`; the MLP's 2,632) and does about the same multiply-adds per example.

- "mlp" (i): one MLP 32 -> 64 -> 8 (tanh); every parameter steps every step.
- "cms-sequential" (ii), Eq. 70/71: a chain of residual MLP levels x <- x + MLP_l(x) (32 -> h -> 32, tanh),
  then a linear readout; level l steps every C_l steps at lr / sqrt(C_l) (E5's eta_l ∝ C_l^-1/2).
- "cms-independent" (iii), Eq. 74: the levels read the same input; x + sum_l softmax(a)_l MLP_l(x).
- "cms-nested" (iv), Eq. 72: as sequential, and at the end of level l+1's period level l restarts from an
  initial state that level l+1 learns: that state takes level l+1's step (its optimizer, at its rate) with
  the gradients level l summed over that window (first order, as nested.cms does for tokens).
- "fast-slow" (v), Hinton & Plaut (1987): every weight is slow + fast; the slow part steps at lr / 10, the
  fast part at lr and decays toward zero by a factor 1 - 1/32 after every step (a 32-step memory).

The readout (and Eq. 74's mixing weights) step every step, like the fastest level, and are never reset:
docs/FIDELITY.md records it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

KINDS = ("mlp", "cms-sequential", "cms-independent", "cms-nested", "fast-slow")
DEFAULT_PERIODS = (1, 32, 512)  # E5's C = (1, 32, 512) steps
FAST_DECAY = 1 - 1 / 32
SLOW_SCALE = 0.1


@dataclass(frozen=True)
class LearnerSpec:
    """Which learner, and its levels' periods (CMS kinds only). `str(spec)` round-trips through `parse`:
    "mlp", "cms-sequential:1,32,512"."""

    kind: str = "mlp"
    periods: tuple[int, ...] = DEFAULT_PERIODS

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown learner {self.kind!r}; choose one of {', '.join(KINDS)}")
        if self.kind.startswith("cms"):
            if not 1 <= len(self.periods) <= 4 or any(not 1 <= p <= 4096 for p in self.periods):
                raise ValueError("a CMS learner has 1..4 levels, each a period of 1..4096 steps")
            if list(self.periods) != sorted(set(self.periods)):
                raise ValueError("CMS periods must be distinct and increasing (fastest first)")

    def __str__(self) -> str:
        return f"{self.kind}:{','.join(map(str, self.periods))}" if self.kind.startswith("cms") else self.kind

    @classmethod
    def parse(cls, text: str) -> LearnerSpec:
        kind, _, periods = text.strip().partition(":")
        if not periods:
            return cls(kind)
        try:
            return cls(kind, tuple(int(p) for p in periods.split(",")))
        except ValueError as exc:
            if "invalid literal" in str(exc):
                raise ValueError(f"periods must be whole numbers, e.g. {kind}:1,32,512") from None
            raise

    @property
    def label(self) -> str:
        names = {"mlp": "MLP", "cms-sequential": "CMS sequential", "cms-independent": "CMS independent",
                 "cms-nested": "CMS nested", "fast-slow": "fast/slow weights"}  # fmt: skip
        extra = f" C=({', '.join(map(str, self.periods))})" if self.kind.startswith("cms") else ""
        return names[self.kind] + extra


@dataclass
class Group:
    """Parameters that learn together: one optimizer, one period, one rate multiplier. A group with a
    `source` is the nested variant's initial state of that group: its gradient is the sum of the
    gradients its source stepped with, and its source restarts from it after each of its steps."""

    name: str
    params: list[nn.Parameter]
    period: int = 1
    lr_scale: float = 1.0
    source: int | None = None


class Residual(nn.Module):
    """One CMS level for vectors: x -> MLP(x) (32 -> h -> 32, tanh), added to the stream by its caller."""

    def __init__(self, d: int, hidden: int):
        super().__init__()
        self.up, self.down = nn.Linear(d, hidden), nn.Linear(hidden, d)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(torch.tanh(self.up(x)))


class CMSNet(nn.Module):
    """Eq. 70 (chain) or Eq. 74 (independent, `mix` = learnable softmax weights), then a readout."""

    def __init__(self, d_in: int, d_out: int, n_levels: int, hidden: int, independent: bool):
        super().__init__()
        self.levels = nn.ModuleList([Residual(d_in, hidden) for _ in range(n_levels)])
        self.mix = nn.Parameter(torch.zeros(n_levels)) if independent else None
        self.readout = nn.Linear(d_in, d_out)

    def forward(self, x: Tensor) -> Tensor:
        if self.mix is not None:
            w = torch.softmax(self.mix, 0)
            x = x + sum(w[i] * level(x) for i, level in enumerate(self.levels))
        else:
            for level in self.levels:
                x = x + level(x)
        return self.readout(x)


class FastSlowLinear(nn.Module):
    """y = x (W_slow + W_fast)^T + (b_slow + b_fast) (Hinton & Plaut's two weights per connection)."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.slow = nn.Linear(d_in, d_out)
        self.fast_w = nn.Parameter(torch.zeros(d_out, d_in))
        self.fast_b = nn.Parameter(torch.zeros(d_out))

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.linear(x, self.slow.weight + self.fast_w, self.slow.bias + self.fast_b)


class OuterLearner:
    """A network and the rule for its groups. Use: loss.backward(); learner.step(optimizers, step)."""

    def __init__(self, spec: LearnerSpec, d_in: int, d_out: int, seed: int = 0):
        torch.manual_seed(seed)
        self.spec = spec
        if spec.kind == "mlp":
            self.net = nn.Sequential(nn.Linear(d_in, 64), nn.Tanh(), nn.Linear(64, d_out))
            self.groups = [Group("all", list(self.net.parameters()))]
        elif spec.kind == "fast-slow":
            self.net = nn.Sequential(FastSlowLinear(d_in, 32), nn.Tanh(), FastSlowLinear(32, d_out))
            layers = [m for m in self.net if isinstance(m, FastSlowLinear)]
            self.groups = [Group("slow", [p for m in layers for p in m.slow.parameters()], lr_scale=SLOW_SCALE),
                           Group("fast", [p for m in layers for p in (m.fast_w, m.fast_b)])]  # fmt: skip
        else:
            n, periods = len(spec.periods), spec.periods
            hidden = max(2, round((64 * (d_in + d_out) - d_out * d_in) / (2 * d_in * n)))  # the MLP's multiply-adds
            self.net = CMSNet(d_in, d_out, n, hidden, independent=spec.kind == "cms-independent")
            fixed = list(self.net.readout.parameters()) + ([self.net.mix] if self.net.mix is not None else [])
            self.groups = [Group("readout", fixed)] + [
                Group(f"level {i} (C={c})", list(self.net.levels[i].parameters()), c, 1 / math.sqrt(c))
                for i, c in enumerate(periods)
            ]
            if spec.kind == "cms-nested":  # every level but the slowest restarts from a state its parent learns
                self.groups += [
                    Group(f"level {i} initial state", [nn.Parameter(p.detach().clone()) for p in self.groups[i + 1].params],
                          periods[i + 1], 1 / math.sqrt(periods[i + 1]), source=i + 1)
                    for i in range(n - 1)
                ]  # fmt: skip

    @property
    def n_values(self) -> int:
        """Trained values stored: every group's parameters (the nested variant's initial states too)."""
        return sum(p.numel() for g in self.groups for p in g.params)

    def optimizers(self, make: Callable, lr: float) -> list[torch.optim.Optimizer]:
        """One optimizer per group (`make(params, lr=...)`, e.g. an entry of nested.optim.OPTIMIZERS)."""
        return [make(g.params, lr=lr * g.lr_scale) for g in self.groups]

    def step(self, opts: list[torch.optim.Optimizer], step: int) -> None:
        """After the backward of outer step `step` (0-based): every group whose period ends steps with the
        gradients summed since its last step, and clears them (Eq. 71); an initial state then restarts its
        level (Eq. 72). Last, the fast weights decay."""
        for i, (g, opt) in enumerate(zip(self.groups, opts, strict=True)):
            if (step + 1) % g.period:
                continue
            if g.source is None:
                for init in (h for h in self.groups if h.source == i):  # its sums feed its initial state
                    for p, q in zip(g.params, init.params, strict=True):
                        if p.grad is not None:
                            q.grad = p.grad.clone() if q.grad is None else q.grad.add_(p.grad)
            opt.step()
            opt.zero_grad(set_to_none=True)
            if g.source is not None:
                with torch.no_grad():
                    for live, p in zip(self.groups[g.source].params, g.params, strict=True):
                        live.copy_(p)
        if self.spec.kind == "fast-slow":
            with torch.no_grad():
                for p in self.groups[1].params:
                    p.mul_(FAST_DECAY)
