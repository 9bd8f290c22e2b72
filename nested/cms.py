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
a level's weights enter the forward `Anchored` to its initial weights: their value is the level's state,
their outer gradient flows to the meta-learned initial weights (the step itself is a constant for the
outer loop, FO-MAML). A forward that learns records each level's `LevelUse`s (its matmuls' inputs and
outputs); `level_grads` takes the loss's gradient at the outputs and forms each level's weight gradient
from them (for a weight held constant over its chunk that is exactly autograd with respect to it).

Variants (§5.2): sequential (Eq. 70/73, the chain, Hope's default); independent (Eq. 74: the levels
read the same input, mixed by learnable softmax weights); nested (Eq. 72: at the end of the next-slower
level's period a level is reset to an initial state that the slower level learns, first order: it takes
the slower level's step with the summed gradients the faster level saw in that window).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import NamedTuple

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


class Anchored(NamedTuple):
    """First-order CMS: per-item weights `value` (B, out, in) used as they are, whose outer gradient
    flows to `base` (out, in), summed over the batch (what `value = base.expand(B, ...)` would send it)."""

    value: Tensor
    base: Tensor
    traced: bool = False  # inside a compiled graph (nested.compile): see _AnchoredMatmul


class _AnchoredMatmul(torch.autograd.Function):
    """value @ x per batch item; the backward sends the base its batch-summed gradient as one matmul
    (not B per-item weight gradients and their sum), and the value its per-item gradient only where it
    is wanted. Inside a compiled graph (`traced`) needs_input_grad does not say what a torch.func.vjp or
    the outer backward wants, so every gradient is formed and the compiler drops the unused ones."""

    @staticmethod
    def forward(value: Tensor, base: Tensor, x: Tensor, traced: bool) -> Tensor:
        return torch.bmm(value, x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        value, _, x, ctx.traced = inputs
        ctx.save_for_backward(value, x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        value, x = ctx.saved_tensors
        need_value, need_base, need_x, _ = (True,) * 4 if ctx.traced else ctx.needs_input_grad
        g_value = torch.bmm(grad, x.transpose(1, 2)) if need_value else None
        g_base = None
        if need_base:  # sum_b grad_b x_b^T = (out, B n) @ (B n, in)
            n_out, n_in = grad.shape[1], x.shape[1]
            g_base = grad.transpose(0, 1).reshape(n_out, -1) @ x.transpose(0, 1).reshape(n_in, -1).T
        g_x = torch.bmm(value.transpose(1, 2), grad) if need_x else None
        return g_value, g_base, g_x, None


def item_matmul(w: Tensor | Anchored, x: Tensor) -> Tensor:
    """w @ x per batch item (B, out, in) x (B, in, n), for plain or `Anchored` weights."""
    if isinstance(w, Anchored):
        return _AnchoredMatmul.apply(w.value, w.base, x, w.traced)
    return torch.bmm(w, x)


@dataclass(frozen=True)
class LevelUse:
    """One use of a level's weights in a forward: h = up x^T, s = silu(h), out = down s. Its weight
    gradients are (dL/dh) x and (dL/dout) s^T, summed over the uses in the level's chunk."""

    level: int
    x: Tensor  # (B, d, n): the normed input, transposed
    h: Tensor  # (B, hid, n)
    s: Tensor  # (B, hid, n)
    out: Tensor  # (B, d, n)


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

    def forward_weights(self, weights: tuple[Pair, ...]) -> tuple:
        """The level weights a first-order training forward uses: each value `Anchored` to its initial
        weights where it carries no graph of its own (a leaf of its own where the initial weights are
        frozen: the level's uses still need a graph for its gradient)."""
        if self.cfg.cms_second_order:
            return weights

        def use(value: Tensor, base: Tensor):
            if value.requires_grad:
                return value
            return Anchored(value, base) if base.requires_grad else value.detach().requires_grad_(True)

        return tuple((use(u, self.up0[lv]), use(w, self.down0[lv])) for lv, (u, w) in enumerate(weights))

    # -- forward -------------------------------------------------------------------------------
    def level_mlp(self, level: int, x: Tensor, up, down, uses: list | None = None) -> Tensor:
        """MLP^(l)(x) with per-batch-item weights up (B, hid, d), down (B, d, hid) (Eq. 70), plain or
        `Anchored`. Written with the weights on the left (W x^T), so the weight gradients come in their
        own layout. `uses`: a list that records this use (`LevelUse`) for the level's gradient."""
        xt = self.norms[level](x).transpose(1, 2)  # (B, d, n)
        h = item_matmul(up, xt)
        s = F.silu(h)
        out = item_matmul(down, s)
        if uses is not None:
            uses.append(LevelUse(level, xt, h, s, out))
        return out.transpose(1, 2)

    def forward(self, x: Tensor, weights: tuple[Pair, ...], uses: list | None = None) -> Tensor:
        if self.agg is not None:  # independent (Eq. 74)
            mix = torch.softmax(self.agg, 0)
            return x + sum(mix[lv] * self.level_mlp(lv, x, *weights[lv], uses) for lv in range(self.n_levels))
        for lv in range(self.n_levels):  # sequential / nested chain (Eq. 70/73)
            x = x + self.level_mlp(lv, x, *weights[lv], uses)
        return x

    # -- the rule ------------------------------------------------------------------------------
    def ending(self, pos: int) -> list[int]:
        """The levels whose period ends right before token `pos`."""
        return [lv for lv, p in enumerate(self.periods) if pos > 0 and pos % p == 0]

    def learning(self, state: CMSState, pos: int) -> list[int]:
        """The levels whose gradient is needed at segment end `pos`: those that step there (exact), or
        every level (segment reading: each segment adds to every level's sum). Frozen levels never."""
        return [lv for lv in self.learning_levels(pos) if self.cfg.cms_lr * state.gain[lv] != 0.0]

    def span(self, pos: int) -> int:
        """How many tokens back the loss differentiated at `pos` reaches."""
        return max((self.level_span(lv) for lv in self.learning_levels(pos)), default=0)

    def level_span(self, level: int) -> int:
        """How many tokens back a level's uses are differentiated: its chunk ("exact") or the segment."""
        return self.segment if self.cfg.cms_grad == "segment" else self.periods[level]

    def learning_levels(self, pos: int) -> list[int]:
        """The levels a segment end `pos` differentiates, frozen or not: those ending there ("exact") or all."""
        return self.ending(pos) if self.cfg.cms_grad == "exact" else list(range(self.n_levels))

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


def level_grads(loss: Tensor, wanted: list[tuple[int, int, list[LevelUse]]], retain: bool, create: bool) -> dict:
    """d loss / d (each wanted level's weights), held constant over its uses, one backward:
    {(layer, level): (g_up, g_down)}. `wanted` lists (layer, level, the level's uses in its chunk); the
    backward stops at the uses' outputs and each weight gradient is one batched matmul over the chunk."""
    outputs = [t for _, _, uses in wanted for u in uses for t in (u.h, u.out)]
    got = torch.autograd.grad(loss, outputs, retain_graph=retain, create_graph=create, allow_unused=True)
    got = iter([torch.zeros_like(t) if g is None else g for t, g in zip(outputs, got, strict=True)])
    grads = {}
    for layer, lv, uses in wanted:
        if not uses:
            continue  # no use in this span (a state without its window): no step
        pairs = [(next(got), next(got)) for _ in uses]
        g_h, g_out = torch.cat([p[0] for p in pairs], 2), torch.cat([p[1] for p in pairs], 2)
        x, s = torch.cat([u.x for u in uses], 2), torch.cat([u.s for u in uses], 2)
        if not create:  # first order: the gradient is a constant for the outer loop, as autograd.grad's is
            x, s = x.detach(), s.detach()
        grads[(layer, lv)] = (torch.bmm(g_h, x.transpose(1, 2)), torch.bmm(g_out, s.transpose(1, 2)))
    return grads


class MLP(nn.Module):
    """A plain pre-norm FFN (the Transformer's level-1 block: frequency 0 at test time, §1.2)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm = RMSNorm(cfg.d_model)
        self.up = nn.Linear(cfg.d_model, cfg.mlp_mult * cfg.d_model, bias=False)
        self.down = nn.Linear(cfg.mlp_mult * cfg.d_model, cfg.d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.down(F.silu(self.up(self.norm(x))))
