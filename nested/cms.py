"""Continuum Memory System (PAPER.md §5; NL Eqs. 70-74).

k MLP levels; level l holds fast weights theta^(l) that change every C_l tokens (its period, counted in
tokens inside the sequence, DESIGN.md §3) by the sum of the chunk's per-token gradients of the
next-token loss (Eq. 71, the sum read as t = i-C+1..i, §11.3):

    theta^(l) <- theta^(l) - eta^(l) * sum_{t in chunk} grad_theta L_NTP(theta^(l); x_t)   every C_l tokens

Variants (§5.2):
- sequential (Eq. 70/73, Hope's default): the chain y = MLP^(f_k)(...MLP^(f_1)(x)), each level pre-norm
  with a residual; every initial state is meta-learned by the outer loop.
- independent (Eq. 74): the levels read the same input; outputs mixed by learnable softmax weights.
- nested (Eq. 72): the chain, and each level is re-initialised at the end of the next-slower level's
  period to an initial state that the slower level learns (first-order: it takes the slower level's
  step with the summed gradients the faster level saw over that window).

The gradients need the whole network's loss, so the update loop lives in nested.model (segments of
gcd(C_l) tokens); this module holds the levels' parameters, forward, and state.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from nested.config import ModelConfig
from nested.layers import RMSNorm


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

    @property
    def n_levels(self) -> int:
        return len(self.periods)

    def parent(self, level: int) -> int | None:
        """The next-slower level (nested variant): the one whose period is the smallest larger one."""
        slower = [j for j, p in enumerate(self.periods) if p > self.periods[level]]
        return min(slower, key=lambda j: self.periods[j]) if slower else None

    def init_state(self, batch: int) -> dict:
        def per_item(p: Tensor) -> Tensor:
            # First order (the default), the state is a value: ItemLinear routes the outer gradient
            # of every use to the meta-learned base. Second order keeps the graph in the state.
            w = p.unsqueeze(0).expand(batch, *p.shape).clone()
            return w if self.cfg.cms_second_order else w.detach()

        up = [per_item(p) for p in self.up0]
        down = [per_item(p) for p in self.down0]
        st = {
            "up": up,
            "down": down,
            "acc_up": [None] * len(up),  # summed gradients of the level's current chunk (None = empty)
            "acc_down": [None] * len(down),
            "lr_scale": [1.0] * self.n_levels,  # 0 freezes a level (eta -> 0)
        }
        if self.cfg.cms_variant == "nested":
            st["meta_up"] = [u.clone() for u in up]
            st["meta_down"] = [w.clone() for w in down]
            st["meta_acc_up"] = [None] * len(up)
            st["meta_acc_down"] = [None] * len(down)
        return st

    def level_mlp(self, level: int, x: Tensor, up: Tensor, down: Tensor, record: list | None = None,
                  bases: list | None = None, traced: bool = False) -> Tensor:  # fmt: skip
        """MLP^(l)(x) with per-batch-item weights up (B, hid, d), down (B, d, hid).

        `record` collects (input, output) of both matmuls: the per-item weight gradients of Eq. 71 are
        built from their output cotangents (`weight_grads`). `bases` replaces the meta-learned initial
        weights as the outer-gradient anchors (the inference replay passes detached leaves). `traced`:
        the compiled segment step (nested.segment), which differentiates with torch.func and lets the
        compiler drop the gradients nobody uses (`TracedItemLinear`)."""
        up0, down0 = bases[level] if bases is not None else (self.up0[level], self.down0[level])
        xn = self.norms[level](x)
        if traced:
            a = TracedItemLinear.apply(xn, up, up0)
            h = F.silu(a)
            o = TracedItemLinear.apply(h, down, down0)
        elif self.cfg.cms_second_order or not torch.is_grad_enabled():  # second order: the weights carry the graph
            a = xn @ up.transpose(1, 2)
            h = F.silu(a)
            o = h @ down.transpose(1, 2)
        else:
            a = ItemLinear.apply(xn, up, up0)
            h = F.silu(a)
            o = ItemLinear.apply(h, down, down0)
        if record is not None:
            record.append((xn, a, h, o))
        return o

    def forward(self, x: Tensor, up: list[Tensor], down: list[Tensor], record: list | None = None,
                bases: list | None = None, traced: bool = False) -> Tensor:  # fmt: skip
        levels = [
            lambda y, i=i: self.level_mlp(i, y, up[i], down[i], record, bases, traced) for i in range(self.n_levels)
        ]
        if self.agg is not None:
            w = torch.softmax(self.agg, 0)
            return x + sum(w[i] * levels[i](x) for i in range(self.n_levels))
        for level in levels:
            x = x + level(x)
        return x


def weight_grads(record: tuple, grad_a: Tensor | None, grad_o: Tensor | None) -> tuple[Tensor, Tensor]:
    """Per-item gradients (B, hid, d), (B, d, hid) of one level's weights from its recorded matmul
    inputs and the cotangents of their outputs: dL/dW = sum_t (dL/dy_t) x_t^T."""
    xn, a, h, o = record
    g_up = torch.zeros(a.shape[0], a.shape[-1], xn.shape[-1], dtype=a.dtype, device=a.device) if grad_a is None \
        else grad_a.transpose(1, 2) @ xn  # fmt: skip
    g_down = torch.zeros(o.shape[0], o.shape[-1], h.shape[-1], dtype=o.dtype, device=o.device) if grad_o is None \
        else grad_o.transpose(1, 2) @ h  # fmt: skip
    return g_up, g_down


_PASS = threading.local()  # .segment: a segment-gradient pass is running on this thread


@contextmanager
def segment_pass():
    """Mark a backward that only asks for matmul-output cotangents (`NestedLM._segment_grads`): the base
    gradients ItemLinear would also form are not wanted there. Thread-local, so a backward on another
    thread (another session, a CUDA worker) is never affected; at worst it computes them anyway."""
    _PASS.segment = True
    try:
        yield
    finally:
        _PASS.segment = False


class ItemLinear(torch.autograd.Function):
    """y = x W_b^T for per-batch-item weights W (B, out, in), x (B, T, in), whose value is, for the
    outer loop, the meta-learned `base` (out, in) plus a constant (first-order CMS, docs/FIDELITY.md).

    The backward gives the base the summed gradient of every item and token in one matmul, instead of
    a (B, out, in) gradient per use chained back through every update. A weight that itself requires
    grad (a caller's leaf) still gets its own gradient."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, base: Tensor) -> Tensor:
        ctx.save_for_backward(x, weight)
        return x @ weight.transpose(1, 2)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y: Tensor):
        x, weight = ctx.saved_tensors
        need_x, need_w, need_base = ctx.needs_input_grad
        return _item_linear_grads(x, weight, grad_y, need_x, need_w, need_base and not getattr(_PASS, "segment", False))


def _item_linear_grads(x: Tensor, weight: Tensor, grad_y: Tensor, need_x: bool, need_w: bool, need_base: bool):
    """Gradients of y = x W^T (per item) for x, the per-item W, and the base (summed over items and tokens)."""
    gx = grad_y @ weight if need_x else None
    gw = grad_y.transpose(1, 2) @ x if need_w else None
    gb = grad_y.reshape(-1, grad_y.shape[-1]).t() @ x.reshape(-1, x.shape[-1]) if need_base else None
    return gx, gw, gb


class TracedItemLinear(torch.autograd.Function):
    """`ItemLinear` for traced code (torch.func + torch.compile, nested.segment): the same product and
    the same three gradients, each always formed (the compiler removes the ones no caller uses: the
    per-item weight gradient in the outer backward, the base gradient in the segment pass), so no
    thread-local switch is read. New-style (`setup_context`), as torch.func requires."""

    @staticmethod
    def forward(x: Tensor, weight: Tensor, base: Tensor) -> Tensor:
        return x @ weight.transpose(1, 2)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, weight, _ = inputs
        ctx.save_for_backward(x, weight)

    @staticmethod
    def backward(ctx, grad_y: Tensor):
        x, weight = ctx.saved_tensors
        return _item_linear_grads(x, weight, grad_y, True, True, True)


class MLP(nn.Module):
    """A plain pre-norm FFN (the Transformer's level-1 block: frequency 0 at test time, §1.2)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm = RMSNorm(cfg.d_model)
        self.up = nn.Linear(cfg.d_model, cfg.mlp_mult * cfg.d_model, bias=False)
        self.down = nn.Linear(cfg.mlp_mult * cfg.d_model, cfg.d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.down(F.silu(self.up(self.norm(x))))
