"""The gradient-stream probe (PAPER.md §9, E1): what an optimizer remembers, and for how long.

A matrix parameter receives the gradient u1 for T1 steps, then an orthogonal u2 for T2 steps. The probe
returns cos(-update, u1) at every step: how much of each step still moves along the old direction."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


def orthogonal_directions(shape=(8, 8), seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    u1 = torch.randn(shape, generator=g, dtype=torch.float64)
    u2 = torch.randn(shape, generator=g, dtype=torch.float64)
    u1 = u1 / u1.norm()
    u2 = u2 - (u2 * u1).sum() * u1
    return u1, u2 / u2.norm()


def gradient_stream_probe(make_optimizer: Callable, T1: int = 50, T2: int = 100, shape=(8, 8), seed: int = 0):
    """Returns (cos_u1, cos_u2): arrays of length T1 + T2 with cos(-update_t, u_i)."""
    u1, u2 = orthogonal_directions(shape, seed)
    p = torch.zeros(shape, dtype=torch.float64, requires_grad=True)
    opt = make_optimizer([p])
    c1, c2 = [], []
    for t in range(T1 + T2):
        before = p.detach().clone()
        p.grad = (u1 if t < T1 else u2).clone()
        opt.step()
        step = -(p.detach() - before)
        n = step.norm().clamp_min(1e-300)
        c1.append(float((step * u1).sum() / n))
        c2.append(float((step * u2).sum() / n))
    return np.asarray(c1), np.asarray(c2)


def memory_half_life(cos_u1: np.ndarray, T1: int, threshold: float = 0.5) -> int | None:
    """Steps after the switch until cos(update, u1) first drops below `threshold` times its value on the
    last step before the switch (None if never, within the probe). Relative, because an optimizer's step
    need not follow a constant gradient: M3's NS(M1) / sqrt(V) is nearly orthogonal to it (cos 0.06), and
    an absolute bar of 0.5 would call it forgotten at once while its slow memory keeps u1 for the whole
    probe."""
    before = cos_u1[T1 - 1]
    after = np.nonzero(cos_u1[T1:] < threshold * before)[0]
    return int(after[0]) + 1 if after.size else None
