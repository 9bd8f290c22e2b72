"""2-D loss surfaces for the optimizer race (PAPER.md §7.3 Fig. 4 / Eq. 53; §9 E2) and a runner that
records the path and every internal memory of an optimizer at every step.

The point is stored as a (1, 2) matrix so matrix optimizers (Muon, M3) apply Newton-Schulz to it
(on a 1 x 2 matrix NS returns the unit direction: these methods move by normalised steps)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from nested.optim.memory_view import memory_view


@dataclass(frozen=True)
class Surface:
    name: str
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # f(x, y), elementwise on tensors
    start: tuple[float, float]
    bounds: tuple[tuple[float, float], tuple[float, float]]
    minimum: tuple[float, float] | None
    description: str

    def __call__(self, x, y):
        return self.fn(x, y)

    def grid(self, n: int = 120) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        (x0, x1), (y0, y1) = self.bounds
        xs, ys = torch.linspace(x0, x1, n, dtype=torch.float64), torch.linspace(y0, y1, n, dtype=torch.float64)
        X, Y = torch.meshgrid(xs, ys, indexing="xy")
        return xs.numpy(), ys.numpy(), self.fn(X, Y).numpy()


def fig4_surface(k: float = 20.0, a: float = 1.0, omega: float = 5.0) -> Surface:
    """psi(r, theta) = r^2 + k (r - theta + a sin(omega r))^2 from (-3.5, 2) (Eq. 53; k, a, omega are not
    given in the paper): a valley whose direction changes with r, so the curvature seen by the optimizer
    varies in time."""
    return Surface(
        f"Fig. 4 valley (k={k:g}, a={a:g}, ω={omega:g})",
        lambda r, t: r**2 + k * (r - t + a * torch.sin(omega * r)) ** 2,
        (-3.5, 2.0),
        ((-4.0, 1.5), (-4.0, 3.0)),
        (0.0, 0.0),
        "Eq. 53: time-varying curvature; delta momentum should win at high ω",
    )


def rosenbrock(a: float = 1.0, b: float = 100.0) -> Surface:
    return Surface("Rosenbrock", lambda x, y: (a - x) ** 2 + b * (y - x**2) ** 2, (-1.5, 2.0),
                   ((-2.0, 2.0), (-1.0, 3.0)), (a, a * a), "a curved narrow valley")  # fmt: skip


def ill_conditioned(kappa: float = 50.0) -> Surface:
    return Surface(f"Quadratic (κ={kappa:g})", lambda x, y: 0.5 * (x**2 + kappa * y**2), (-3.0, 1.0),
                   ((-3.5, 3.5), (-1.5, 1.5)), (0.0, 0.0), "curvature differs by κ between the axes")  # fmt: skip


def saddle() -> Surface:
    return Surface("Saddle", lambda x, y: x**2 - y**2 + 0.25 * y**4, (-2.0, 0.01), ((-2.5, 2.5), (-2.5, 2.5)),
                   (0.0, math.sqrt(2.0)), "escape along y from a near-saddle start")  # fmt: skip


SURFACES: dict[str, Callable[..., Surface]] = {
    "fig4": fig4_surface,
    "rosenbrock": rosenbrock,
    "quadratic": ill_conditioned,
    "saddle": saddle,
}


@dataclass
class Path:
    """An optimizer's run on a surface: points (steps+1, 2), losses (steps+1,), memories[name] =
    array (steps, ...) of that memory's tensor after each step (its first parameter: the point)."""

    points: np.ndarray
    losses: np.ndarray
    memories: dict[str, np.ndarray] = field(default_factory=dict)
    diverged: bool = False


def run_on_surface(surface: Surface, make_optimizer: Callable, steps: int = 200, max_norm: float = 1e6) -> Path:
    """Run any torch optimizer (built by `make_optimizer([param])`) from the surface's start point."""
    p = torch.tensor([surface.start], dtype=torch.float64, requires_grad=True)
    opt = make_optimizer([p])
    pts, losses, mems = [p.detach().clone()[0]], [], {}
    diverged = False
    for _ in range(steps):
        opt.zero_grad()
        loss = surface(p[0, 0], p[0, 1])
        losses.append(float(loss.detach()))
        loss.backward()
        opt.step()
        pts.append(p.detach().clone()[0])
        for mem in memory_view(opt):
            if mem.tensors:
                mems.setdefault(mem.name, []).append(mem.tensors[0].detach().clone().reshape(-1).numpy())
        if not torch.isfinite(p).all() or float(p.detach().abs().max()) > max_norm:
            diverged = True
            break
    with torch.no_grad():
        losses.append(float(surface(p[0, 0], p[0, 1])))
    memories = {k: np.stack(v) for k, v in mems.items()}
    return Path(torch.stack(pts).numpy(), np.asarray(losses), memories, diverged)
