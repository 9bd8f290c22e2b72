"""Continuum Memory System (PAPER.md §5; NL Eqs. 70-74): the levels, their state, and their rule.

k MLP levels; level l holds fast weights theta^(l) that change every C_l tokens (its period, counted in
tokens inside the sequence, DESIGN.md §3) by the sum of the chunk's per-token gradients of the
next-token loss (Eq. 71, the sum read as t = i-C+1..i, §11.3):

    theta^(l) <- theta^(l) - eta^(l) * sum_{t in chunk} grad_theta L_NTP(theta^(l); x_t)   every C_l tokens

The gradient (`cms_grad`, docs/FIDELITY.md):
- "exact" (default): autograd of the chunk's summed next-token loss with the level's weights held
  constant over its chunk, through every path (upper layers, the memories written inside the chunk,
  whatever the other levels' periods). One backward serves every level that ends at a token: earlier
  tokens' losses cannot depend on a later chunk's weights (causality).
- "segment": the run is cut into segments of G = gcd(C_l) tokens and each segment's loss is
  differentiated through the weights as used in that segment only; a slower level sums those. Equal to
  "exact" for the fastest level when its period is G; the reading the compiled segment step takes.

The weights a forward uses are per batch item. In training, first order (`cms_second_order=False`),
each level's weights are `anchor`ed once per chunk: their value is the level's state, their gradient
flows to the meta-learned initial weights (the step itself is a constant for the outer loop, FO-MAML).

Variants (§5.2): sequential (Eq. 70/73, the chain, Hope's default); independent (Eq. 74: the levels
read the same input, mixed by learnable softmax weights); nested (Eq. 72: at the end of the next-slower
level's period a level is reset to an initial state that the slower level learns, first order: it takes
the slower level's step with the summed gradients the faster level saw in that window).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nested.config import ModelConfig
from nested.layers import RMSNorm, check_finite

Pair = tuple[Tensor, Tensor]  # a level's (up (B, hid, d), down (B, d, hid))


@dataclass(frozen=True)
class CMSState:
    """One layer's CMS levels inside a stream, per batch item. Written out of place (`replace`)."""

    weights: tuple[Pair, ...]  # what each level's forward uses now
    acc: tuple[Pair | None, ...]  # "segment" reading: the open chunk's summed gradients (None = empty)
    gain: tuple[float, ...]  # learning-rate multiplier per level; 0 freezes the level
    meta: tuple[Pair, ...] | None = None  # nested variant: the state each level is reset to
    meta_acc: tuple[Pair | None, ...] | None = None


@dataclass(frozen=True)
class LevelStep:
    """What one level's update did, for traces and clip rates. Tensors, so a run without a trace never
    waits for the device (`nested.recorder` reads them)."""

    layer: int
    level: int
    norm: Tensor | None  # Frobenius norm of the change, batch item 0 (None for a reset)
    clipped: Tensor | None  # the clip on the summed update fired, batch item 0
    reset: bool = False  # nested variant: a reset to the learned initial state


def anchor(value: Tensor, base: Tensor, after: Tensor | None = None) -> Tensor:
    """First-order CMS: a tensor equal to `value` (B, ...) whose outer gradient flows to `base` (...).
    `after` (an exact zero from nested.state.after, or None) orders it after the stream's state in the
    autograd graph, so that the level gradient's backward does not walk the graph before its chunk."""
    if after is not None:
        base = base + after
    return base.expand_as(value) + (value - base).detach()


def clip_coeff(a: Tensor, b: Tensor, max_norm: float) -> Tensor:
    """Per-batch-item factor (B, 1, ..., 1) that clips the joint norm of two (B, ...) updates."""
    dims = tuple(range(1, a.dim()))
    norm = torch.hypot(torch.linalg.vector_norm(a, dim=dims), torch.linalg.vector_norm(b, dim=dims))
    return (max_norm / norm.clamp_min(1e-12)).clamp(max=1.0).view((-1,) + (1,) * (a.dim() - 1))


def clipped_step(pair: Pair, grads: Pair, lr: float, max_norm: float) -> tuple[Pair, Tensor]:
    """pair - lr * clip(grads) (Eq. 71 with the joint clip), and the clip factor (B, 1, 1)."""
    factor = clip_coeff(grads[0], grads[1], max_norm)
    coeff = -lr * factor
    return (torch.addcmul(pair[0], coeff, grads[0]), torch.addcmul(pair[1], coeff, grads[1])), factor


class CMS(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d, L = cfg.d_model, len(cfg.cms_periods)
        self.periods = cfg.cms_periods
        hid = max(4, cfg.mlp_mult * d // L)  # the levels share the FFN budget: matched size
        self.up0 = nn.ParameterList([nn.Parameter(torch.randn(hid, d) / d**0.5) for _ in range(L)])
        self.down0 = nn.ParameterList([nn.Parameter(torch.randn(d, hid) / hid**0.5 * 0.5) for _ in range(L)])
        self.norms = nn.ModuleList([RMSNorm(d) for _ in range(L)])
        self.agg = nn.Parameter(torch.zeros(L)) if cfg.cms_variant == "independent" else None
        self.segment = math.gcd(*self.periods)

    @property
    def n_levels(self) -> int:
        return len(self.periods)

    def parent(self, level: int) -> int | None:
        """The next-slower level (nested variant): the one whose period is the smallest larger one."""
        slower = [j for j, p in enumerate(self.periods) if p > self.periods[level]]
        return min(slower, key=lambda j: self.periods[j]) if slower else None

    def nest(self, layer: int) -> list:
        from nested.levels import Level

        return [Level(f"cms[{lv}]", layer, "cms", p, self.up0[lv].numel() + self.down0[lv].numel(),
                      f"CMS level {lv}: MLP updated by the summed next-token-loss gradients of {p} tokens")
                for lv, p in enumerate(self.periods)]  # fmt: skip

    # -- state ---------------------------------------------------------------------------------
    def init_state(self, batch: int, gain: tuple[float, ...] | None = None) -> CMSState:
        def per_item(p: Tensor) -> Tensor:
            # second order keeps the graph to the initial weights in the state; first order is a value
            w = p.unsqueeze(0).expand(batch, *p.shape)
            return w if self.cfg.cms_second_order else w.detach().clone()

        weights = tuple((per_item(u), per_item(w)) for u, w in zip(self.up0, self.down0, strict=True))
        empty = (None,) * self.n_levels
        nested = self.cfg.cms_variant == "nested"
        return CMSState(weights=weights, acc=empty, gain=tuple(gain or (1.0,) * self.n_levels),
                        meta=weights if nested else None, meta_acc=empty if nested else None)  # fmt: skip

    def training_weights(self, state: CMSState, after: Tensor | None = None) -> CMSState:
        """The weights a training forward uses: first order, each level's value anchored to its
        initial weights once per chunk (a level that already holds an anchored tensor keeps it, so the
        same tensor serves its whole chunk and the exact gradient is taken with respect to it).
        `after`: see `anchor`."""
        if self.cfg.cms_second_order:
            return state
        weights = tuple(
            (u if u.requires_grad else anchor(u, self.up0[lv], after),
             w if w.requires_grad else anchor(w, self.down0[lv], after))
            for lv, (u, w) in enumerate(state.weights)
        )  # fmt: skip
        return replace(state, weights=weights)

    # -- forward -------------------------------------------------------------------------------
    def level_mlp(self, level: int, x: Tensor, up: Tensor, down: Tensor) -> Tensor:
        """MLP^(l)(x) with per-batch-item weights up (B, hid, d), down (B, d, hid) (Eq. 70). Written with
        the weights on the left (W x^T), so the backward gives their gradients in their own layout (a
        transposed gradient made every level step and anchor that follows it slower)."""
        h = F.silu(torch.bmm(up, self.norms[level](x).transpose(1, 2)))  # (B, hid, n)
        return torch.bmm(down, h).transpose(1, 2)

    def forward(self, x: Tensor, weights: tuple[Pair, ...]) -> Tensor:
        if self.agg is not None:  # independent (Eq. 74)
            mix = torch.softmax(self.agg, 0)
            return x + sum(mix[lv] * self.level_mlp(lv, x, *weights[lv]) for lv in range(self.n_levels))
        for lv in range(self.n_levels):  # sequential / nested chain (Eq. 70/73)
            x = x + self.level_mlp(lv, x, *weights[lv])
        return x

    # -- the rule ------------------------------------------------------------------------------
    def ending(self, pos: int) -> list[int]:
        """The levels whose period ends right before token `pos`."""
        return [lv for lv, p in enumerate(self.periods) if pos > 0 and pos % p == 0]

    def learning(self, state: CMSState, pos: int) -> list[int]:
        """The levels whose gradient is needed at segment end `pos`: those that step there (exact), or
        every level (segment reading: each segment adds to every level's sum). Frozen levels never."""
        levels = self.ending(pos) if self.cfg.cms_grad == "exact" else range(self.n_levels)
        return [lv for lv in levels if self.cfg.cms_lr * state.gain[lv] != 0.0]

    def span(self, pos: int) -> int:
        """How many tokens back the loss differentiated at `pos` reaches."""
        if self.cfg.cms_grad == "segment":
            return self.segment
        return max((self.periods[lv] for lv in self.ending(pos)), default=0)

    def step(self, state: CMSState, grads: dict[int, Pair], pos: int, layer: int) -> tuple[CMSState, list[LevelStep]]:
        """Take the Eq. 71 step of every level whose period ends before token `pos`, from `grads`
        (level -> gradient of the summed loss; "segment": of this segment only, accumulated here)."""
        cfg, second = self.cfg, self.cfg.cms_second_order
        weights, acc = list(state.weights), list(state.acc)
        meta_acc = list(state.meta_acc) if state.meta_acc is not None else None
        if cfg.cms_grad == "segment":
            for lv, g in grads.items():
                acc[lv] = g if acc[lv] is None else (acc[lv][0] + g[0], acc[lv][1] + g[1])
            grads = {lv: acc[lv] for lv in self.ending(pos) if acc[lv] is not None}
        events = []
        for lv in self.ending(pos):
            acc[lv] = None
            lr = cfg.cms_lr * state.gain[lv]
            if lv not in grads or lr == 0.0:
                continue  # a frozen level stays bit-for-bit fixed
            g_up, g_down = grads[lv]
            start = weights[lv] if second else (weights[lv][0].detach(), weights[lv][1].detach())
            weights[lv], factor = clipped_step(start, grads[lv], lr, cfg.cms_clip)
            check_finite({f"level{lv}.up": weights[lv][0], f"level{lv}.down": weights[lv][1]}, layer, "cms")
            if meta_acc is not None:
                old = meta_acc[lv]
                meta_acc[lv] = (g_up, g_down) if old is None else (old[0] + g_up, old[1] + g_down)
            norm = lr * factor[0, 0, 0] * torch.hypot(g_up[0].norm(), g_down[0].norm())
            events.append(LevelStep(layer, lv, norm.detach(), factor[0, 0, 0] < 1 - 1e-6))
        new = replace(state, weights=tuple(weights), acc=tuple(acc))
        if meta_acc is not None:
            new, resets = self._nested_resets(new, meta_acc, pos, layer)
            events += resets
        return new, events

    def _nested_resets(self, state: CMSState, meta_acc: list, pos: int, layer: int):
        """Eq. 72, first order: at the end of level l's parent period, the parent's step moves l's
        initial state by the gradients l saw in that window, and l restarts from it (unless frozen)."""
        meta, weights, events = list(state.meta), list(state.weights), []
        for lv in range(self.n_levels):
            parent = self.parent(lv)
            if parent is None or pos % self.periods[parent] or meta_acc[lv] is None:
                continue
            lr = self.cfg.cms_lr * state.gain[parent]
            g_up, g_down = meta_acc[lv]
            meta_acc[lv] = None
            if lr:
                meta[lv], _ = clipped_step(meta[lv], (g_up, g_down), lr, self.cfg.cms_clip)
            if state.gain[lv] != 0.0:
                weights[lv] = meta[lv]
                events.append(LevelStep(layer, lv, None, None, reset=True))
        return replace(state, weights=tuple(weights), meta=tuple(meta), meta_acc=tuple(meta_acc)), events


def level_grads(loss: Tensor, wanted: list[tuple[int, int, Pair]], retain: bool, create: bool) -> dict:
    """d loss / d (each wanted level's weights), one backward: {(layer, level): (g_up, g_down)}.
    `wanted` lists (layer, level, the weight tensors the forward used)."""
    tensors = [t for _, _, pair in wanted for t in pair]
    got = torch.autograd.grad(loss, tensors, retain_graph=retain, create_graph=create, allow_unused=True)
    got = [torch.zeros_like(t) if g is None else g for t, g in zip(tensors, got, strict=True)]
    return {(layer, lv): (got[2 * i], got[2 * i + 1]) for i, (layer, lv, _) in enumerate(wanted)}


class MLP(nn.Module):
    """A plain pre-norm FFN (the Transformer's level-1 block: frequency 0 at test time, §1.2)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm = RMSNorm(cfg.d_model)
        self.up = nn.Linear(cfg.d_model, cfg.mlp_mult * cfg.d_model, bias=False)
        self.down = nn.Linear(cfg.mlp_mult * cfg.d_model, cfg.d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.down(F.silu(self.up(self.norm(x))))
