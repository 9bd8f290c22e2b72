"""Softmax attention as a non-parametric associative memory (PAPER.md §1.3e, Eqs. 62-63).

    M*(q) = argmin_M sum_i s(k_i, q) ||v_i - M||^2 = sum_i [s(k_i, q) / sum_j s(k_j, q)] v_i      (62)

with s(k, q) = exp(<k, q> / sqrt(d)); restricting i to (t - c, t] gives sliding-window attention (63).
Its state is the cache of every (k, v) seen (frequency infinity: it "updates" every token by caching).
Positions by rotary embedding at absolute positions, so streaming with a cache equals the parallel pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nested.config import ModelConfig
from nested.layers import rope
from nested.levels import Level


def weighted_regression_minimiser(keys: Tensor, values: Tensor, q: Tensor) -> Tensor:
    """Eq. 62 solved as a weighted least-squares problem: the M minimising sum_i w_i ||v_i - M||^2 with
    w_i = exp(<k_i, q>/sqrt(d)), by least squares on the rows sqrt(w_i) M = sqrt(w_i) v_i. The oracle
    for softmax attention in the tests."""
    sw = torch.exp(keys @ q / keys.shape[-1] ** 0.5).sqrt()[:, None]
    return torch.linalg.lstsq(sw, sw * values).solution[0]


def softmax_read(q: Tensor, K: Tensor, V: Tensor, allowed: Tensor) -> Tensor:
    """Eq. 62 in closed form for queries q (..., n, d) over keys/values (..., L, d): the softmax-weighted
    mean of the allowed values (Eq. 63 when `allowed` is a window)."""
    scores = (q @ K.transpose(-1, -2)) / q.shape[-1] ** 0.5
    return torch.softmax(scores.masked_fill(~allowed, float("-inf")), -1) @ V


@dataclass(frozen=True)
class CacheState:
    """Softmax attention's stream state: the keys and values it still attends to (batch, heads, L, dh)."""

    pos: int
    k: Tensor
    v: Tensor


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.out_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def init_state(self, batch: int, device, dtype) -> CacheState:
        H, dh = self.cfg.n_heads, self.cfg.head_dim
        empty = torch.zeros(batch, H, 0, dh, device=device, dtype=dtype)
        return CacheState(0, empty, empty)

    # -- what the nest, traces and freezing see ---------------------------------------------------
    writable = False  # a cache, not a learned write: nothing to freeze
    learned = ()  # the cache holds the tokens themselves
    trace_rows: dict = {}  # no write, no retention

    def with_write_gain(self, state: CacheState, gain: float) -> CacheState:
        raise ValueError("softmax attention caches every key and value; it has no write strength to freeze")

    def components(self) -> list[str]:
        return ["attention_cache"]

    def snapshot(self, state: CacheState) -> None:
        return None

    def nest(self, layer: int) -> list[Level]:
        return [Level("attention_cache", layer, "attention", 1, 0,
                      "softmax attention: caches every key and value (frequency infinity, non-parametric)")]  # fmt: skip

    def forward(self, x: Tensor, state: CacheState, stepwise: bool, layer: int = 0, core=None):
        cfg = self.cfg
        B, n, d = x.shape
        H, dh = cfg.n_heads, cfg.head_dim
        pos = state.pos
        positions = torch.arange(pos, pos + n, device=x.device)
        q, k, v = (t.view(B, n, H, dh).transpose(1, 2) for t in self.qkv(x).chunk(3, -1))
        q, k = rope(q, positions, cfg.rope_base), rope(k, positions, cfg.rope_base)
        K = torch.cat([state.k, k], dim=2)
        V = torch.cat([state.v, v], dim=2)
        L = K.shape[2]
        key_pos = torch.arange(pos + n - L, pos + n, device=x.device)
        allowed = key_pos[None, :] <= positions[:, None]
        if cfg.window is not None:
            allowed &= key_pos[None, :] > positions[:, None] - cfg.window
        if stepwise:
            o = torch.cat([softmax_read(q[:, :, t : t + 1], K, V, allowed[t]) for t in range(n)], dim=2)
        else:
            o = F.scaled_dot_product_attention(q, K, V, attn_mask=allowed)
        keep = L if cfg.window is None else min(L, cfg.window - 1)
        new = CacheState(pos + n, K[:, :, L - keep :], V[:, :, L - keep :])
        y = self.out_proj(o.transpose(1, 2).reshape(B, n, d))
        return y, new, {}
