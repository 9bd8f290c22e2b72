"""Small shared pieces: causal depthwise convolution with carried state, rotary positions, and the
2-layer residual MLP memory (PAPER.md Eqs. 89/91) with its closed-form inner gradients (DESIGN.md §6)."""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nested.errors import NonFiniteMemoryError


def causal_conv(x: Tensor, state: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
    """Depthwise causal conv of x (N, T, ch) with weight (ch, w) or per-row (N, ch, w), carrying the
    last w-1 inputs in `state` (N, w-1, ch). Shifted multiply-adds: far cheaper than conv1d's backward
    on the CPU for width 4."""
    width, T = weight.shape[-1], x.shape[1]
    full = torch.cat([state, x], dim=1)
    w = weight if weight.dim() == 2 else weight[:, None]
    y = full[:, :T] * w[..., 0]
    for j in range(1, width):
        y = y + full[:, j : j + T] * w[..., j]
    return y, full[:, full.shape[1] - (width - 1) :].contiguous()  # same strides every call (compiled graphs)


class RMSNorm(nn.Module):
    """x / rms(x) * g. Written out: on the CPU torch's fused rms_norm is several times slower than
    these four ops for the small per-token tensors of streaming."""

    def __init__(self, d: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + self.eps) * self.weight


class CausalConv(nn.Module):
    """Depthwise causal convolution over time, width w (PAPER.md §3 and §6: "local convolutions with
    window 4"). State = the last w-1 inputs, so a sequence streamed in pieces gives the same output."""

    def __init__(self, channels: int, width: int):
        super().__init__()
        self.width = width
        w = torch.zeros(channels, width)
        w[:, -1] = 1.0  # start as identity: the memory sees the token itself
        self.weight = nn.Parameter(w + 0.02 * torch.randn(channels, width))

    def init_state(self, n: int, device, dtype) -> Tensor:
        return torch.zeros(n, self.width - 1, self.weight.shape[0], device=device, dtype=dtype)

    def forward(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        return causal_conv(x, state, self.weight)


def conv_qkv(x: Tensor, proj: nn.Linear, convs: nn.ModuleList, windows: tuple[Tensor, ...], n_heads: int):
    """The q, k, v of a linear-memory layer (Titans §3, DeltaNet): x W_qkv, each through its causal conv
    and SiLU, q and k L2-normalised, heads folded into the batch. Returns (q, k, v, the new conv windows)."""
    parts, new = [], []
    for part, conv, window in zip(proj(x).chunk(3, -1), convs, windows, strict=True):
        c, window = conv(part, window)
        parts.append(fold_heads(F.silu(c), n_heads))
        new.append(window)
    return F.normalize(parts[0], dim=-1), F.normalize(parts[1], dim=-1), parts[2], tuple(new)


def rope(x: Tensor, positions: Tensor, base: float) -> Tensor:
    """Rotary position embedding on the last dim of x (..., T, d) at absolute `positions` (T,)."""
    d = x.shape[-1]
    half = d // 2
    freqs = base ** (-torch.arange(half, device=x.device, dtype=x.dtype) / half)
    ang = positions.to(x.dtype)[:, None] * freqs[None]
    cos, sin = ang.cos(), ang.sin()
    x1, x2 = x[..., :half], x[..., half : 2 * half]
    out = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return torch.cat([out, x[..., 2 * half :]], dim=-1) if d % 2 else out


# ----------------------------------------------------------------------------------------------
# Residual MLP memory bank: M memories sharing an input, M(x) = x + W1 silu(W2 x)  (Eqs. 89/91)
# W1: (N, M, d, h), W2: (N, M, h, d).
# ----------------------------------------------------------------------------------------------


def silu_grad(z: Tensor) -> Tensor:
    s = torch.sigmoid(z)
    return s * (1 + z * (1 - s))


def first_layers(x: Tensor, W2: Tensor) -> Tensor:
    """x (N, T, d) through every memory's first layer W2 (N, M, h, d) -> (N, M, T, h). The input is
    shared, so one product against the M memories' rows stacked (N, M*h, d) does it: larger matrices
    than M separate products, and no copy of x per memory (nor a sum over memories in its backward)."""
    N, M, h, d = W2.shape
    return (x @ W2.reshape(N, M * h, d).transpose(-1, -2)).view(N, x.shape[1], M, h).transpose(1, 2)


def bank_forward(W1: Tensor, W2: Tensor, x: Tensor) -> Tensor:
    """All M memories applied to the shared input x (N, T, d) -> (N, M, T, d)."""
    return x[:, None] + F.silu(first_layers(x, W2)) @ W1.transpose(-1, -2)


def bank_inner_grads(W1: Tensor, W2: Tensor, k: Tensor, target: Tensor, objective: str, sign: str):
    """Closed-form inner gradients of every memory at state (W1, W2), for each token's key k (N, T, d)
    and target (N, M, T, d). Returns (e, hidden, g2, loss):

    - l2 objective (Eq. 93): L = 1/2 ||M(k) - v_hat||^2, e = dL/dy = M(k) - v_hat;
    - dot objective (Eq. 92): L = -<M(k), v_hat>, e = -v_hat ("corrected") or +v_hat ("printed").

    grad W1 = e hidden^T (key: hidden = silu(W2 k)); grad W2 = g2 k^T with g2 = (W1^T e) * silu'(W2 k).
    `loss` (N, M, T) is the L2 inner loss 1/2 ||M(k) - v_hat||^2, the memory's "surprise"."""
    z = first_layers(k, W2)
    hidden = F.silu(z)
    y = k[:, None] + hidden @ W1.transpose(-1, -2)
    err = y - target
    loss = 0.5 * (err * err).sum(-1)
    e = err if objective == "l2" else (-target if sign == "corrected" else target)
    g2 = (e @ W1) * silu_grad(z)
    return e, hidden, g2, loss


def bank_self_grads(W1: Tensor, W2: Tensor, k: Tensor, v: Tensor, objective: str, sign: str, stopgrad: bool):
    """Self-generated targets v_hat_m = M_m(v) (Eq. 87) and the inner gradients of every memory at key k.
    Same returns as `bank_inner_grads`. M(k) and M(v) are separate passes: one pass over [k; v] costs more
    in the backward, where taking its halves apart again zero-fills the whole batch once per slice."""
    with torch.no_grad() if stopgrad else nullcontext():
        target = bank_forward(W1, W2, v)
    return bank_inner_grads(W1, W2, k, target, objective, sign)


def inner_grad_norm(e: Tensor, hidden: Tensor, g2: Tensor, k: Tensor) -> Tensor:
    """Frobenius norm (N, M, T) of a memory's whole inner gradient per token:
    ||e h^T||^2 + ||g2 k^T||^2 = |e|^2 |h|^2 + |g2|^2 |k|^2 (both layers are outer products)."""
    sq = (e * e).sum(-1) * (hidden * hidden).sum(-1) + (g2 * g2).sum(-1) * (k * k).sum(-1)[:, None]
    return sq.clamp_min(1e-24).sqrt()


NORMALIZED_FLOOR = 1e-3  # normalised writes divide by max(norm, floor): a vanishing gradient stays small


def inner_scale(e: Tensor, hidden: Tensor, g2: Tensor, k: Tensor, rule: str, max_norm: float) -> tuple[Tensor, Tensor]:
    """Per-token factor (N, M, T, 1) for a memory's inner gradient, and where the guard fired (N, M, T).

    rule "gd" is Eq. 88's plain step: the factor only clips the norm to `max_norm` (DESIGN.md §7's guard).
    rule "normalized" divides every token's gradient by its norm (normalised GD: each write has norm 1 and
    its size is eta_t alone; docs/FIDELITY.md), then applies the same guard, which then fires only when
    `max_norm` < 1."""
    norm = inner_grad_norm(e, hidden, g2, k)
    if rule != "normalized":
        return (max_norm / norm).clamp(max=1.0)[..., None], norm > max_norm
    base = 1.0 / norm.clamp_min(NORMALIZED_FLOOR)
    after = norm * base
    return (base * (max_norm / after).clamp(max=1.0))[..., None], after > max_norm


def check_finite(tensors: dict[str, Tensor], layer: int, where: str) -> None:
    """Raise NonFiniteMemoryError naming the layer and the memory when any state is NaN/inf.

    One reduction per tensor and one host sync: a NaN or inf anywhere makes the sum non-finite (a
    finite sum that overflows is re-checked element-wise, so it cannot pass silently or wrongly)."""
    with torch.no_grad():
        sums = torch.stack([t.detach().sum() for t in tensors.values()])
        if bool(torch.isfinite(sums).all()):
            return
        for name, t in tensors.items():
            if not bool(torch.isfinite(t).all()):
                raise NonFiniteMemoryError(layer=layer, memory=f"{where}.{name}")


# -- heads and pieces (every mixer) ---------------------------------------------------------------
def fold_heads(x: Tensor, n_heads: int) -> Tensor:
    B, T, d = x.shape
    return x.view(B, T, n_heads, d // n_heads).transpose(1, 2).reshape(B * n_heads, T, d // n_heads)


def unfold_heads(x: Tensor, n_heads: int) -> Tensor:
    N, T, dh = x.shape
    return x.view(N // n_heads, n_heads, T, dh).transpose(1, 2).reshape(N // n_heads, T, n_heads * dh)


def split_points(pos: int, n: int, periods: list[int]) -> list[tuple[int, int]]:
    """Cut [0, n) so no piece crosses a multiple of any period, counting from absolute position pos."""
    cuts = {0, n}
    for p in periods:
        first = (-pos) % p
        cuts.update(range(first, n, p))
    c = sorted(cuts)
    return [(a, b) for a, b in zip(c[:-1], c[1:], strict=False) if b > a]
