"""The paper's momentum variants (PAPER.md §7.3; NL Eqs. 46-52).

All three follow W <- W + m (m holds the signed step), with m an associative memory of gradients:

- PreconditionedMomentum (Eqs. 46-47): m <- alpha m - lr P(g). P = "identity" (heavy ball) or "rms":
  P(g) = g / (sqrt(v) + eps), v an EMA of g^2 (a diagonal preconditioner memory).
- DeltaMomentum (Eqs. 48-49), in the stable normalised-key form of §7.3:
      m <- m (alpha I - eta_d k k^T) - lr g,  k = g / ||g||   ("flat": one key per tensor; "row": per row)
  the L2 objective ||m g^T - P||^2 makes the decay state- and gradient-dependent: the memory of the
  current gradient direction is erased before it is rewritten.
- DeepMomentum, DMGD (Eq. 50): the momentum is a coordinate-wise MLP of the current gradient,
      m_phi(g) = b + lr |g|_mean W1 silu(W2 u),  u = g / |g|_mean   (shared W1, W2 per tensor)
  trained by GD with decay alpha on the dot-product objective <m_phi(g), g> (NeurIPS Eq. 17), and
  W <- W + m_phi(g). With W1 = 0 it is exactly heavy-ball momentum (b is the linear momentum); the MLP
  term is homogeneous of degree 1 in g, so it vanishes as the gradient does (our reading: Eq. 50 is
  underspecified, and an MLP whose output does not scale with g diverges on a quadratic).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nested.optim.memory_view import MemoryInfo, closure_loss, collect, ema_horizon


class PreconditionedMomentum(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.9, preconditioner: str = "identity",
                 beta2: float = 0.999, eps: float = 1e-8):  # fmt: skip
        if preconditioner not in ("identity", "rms"):
            raise ValueError("preconditioner must be 'identity' or 'rms'")
        super().__init__(
            params, {"lr": lr, "alpha": alpha, "preconditioner": preconditioner, "beta2": beta2, "eps": eps}
        )

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    st["m"] = torch.zeros_like(p)
                    st["v"] = torch.zeros_like(p)
                g = p.grad
                if group["preconditioner"] == "rms":
                    st["v"].mul_(group["beta2"]).addcmul_(g, g, value=1 - group["beta2"])
                    g = g / (st["v"].sqrt() + group["eps"])
                st["m"].mul_(group["alpha"]).add_(g, alpha=-group["lr"])
                p.add_(st["m"])
        return loss

    def memories(self) -> list[MemoryInfo]:
        g = self.param_groups[0]
        out = [MemoryInfo("m", "preconditioned gradients P(g)", "min_m <m g^T, P> with decay alpha (Eqs. 46-47)", 1,
                          ema_horizon(g["alpha"]), collect(self, "m"))]  # fmt: skip
        if g["preconditioner"] == "rms":
            out.append(MemoryInfo("v", "squared gradients", "EMA of g^2: the preconditioner's memory", 1,
                                  ema_horizon(g["beta2"]), collect(self, "v")))  # fmt: skip
        return out


class DeltaMomentum(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.9, eta_d: float = 0.5, key: str = "flat",
                 eps: float = 1e-12):  # fmt: skip
        if key not in ("flat", "row"):
            raise ValueError("key must be 'flat' or 'row'")
        if not 0 <= eta_d <= 1 + alpha:
            raise ValueError("eta_d must lie in [0, 1 + alpha] for a stable decay")
        super().__init__(params, {"lr": lr, "alpha": alpha, "eta_d": eta_d, "key": key, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if "m" not in st:
                    st["m"] = torch.zeros_like(p)
                m, g = st["m"], p.grad
                if group["key"] == "row" and p.dim() >= 2:
                    m2, g2 = m.reshape(p.shape[0], -1), g.reshape(p.shape[0], -1)
                    k = g2 / g2.norm(dim=1, keepdim=True).clamp_min(group["eps"])
                    proj = (m2 * k).sum(1, keepdim=True) * k  # per row: (m k) k^T
                    m_new = group["alpha"] * m2 - group["eta_d"] * proj - group["lr"] * g2
                    m.copy_(m_new.reshape(p.shape))
                else:
                    k = g / g.norm().clamp_min(group["eps"])
                    proj = (m * k).sum() * k  # m (alpha I - eta_d k k^T) = alpha m - eta_d <m, k> k
                    m.mul_(group["alpha"]).sub_(proj, alpha=group["eta_d"]).sub_(g, alpha=group["lr"])
                p.add_(st["m"])
        return loss

    def memories(self) -> list[MemoryInfo]:
        g = self.param_groups[0]
        return [MemoryInfo("m", "gradients (keyed by their own direction)",
                           "min ||m g^T - P||^2: m <- m(alpha I - eta_d k k^T) - lr g, k = g/||g|| (Eqs. 48-49)", 1,
                           ema_horizon(g["alpha"]) + "; along the current gradient the decay is alpha - eta_d",
                           collect(self, "m"))]  # fmt: skip


class DeepMomentum(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.9, hidden: int = 8, inner_lr: float = 1e-2,
                 seed: int = 0):  # fmt: skip
        super().__init__(params, {"lr": lr, "alpha": alpha, "hidden": hidden, "inner_lr": inner_lr, "seed": seed})

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        for group in self.param_groups:
            h, a, lr, ilr = group["hidden"], group["alpha"], group["lr"], group["inner_lr"]
            for i, p in enumerate(group["params"]):
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    gen = torch.Generator().manual_seed(group["seed"] + i)
                    st["b"] = torch.zeros_like(p)
                    st["W2"] = torch.randn(h, generator=gen).to(p)
                    st["W1"] = torch.zeros(h).to(p)  # starts as heavy-ball momentum
                g = p.grad
                scale = g.abs().mean().clamp_min(1e-30)
                u = g / scale  # the MLP sees the gradient's shape, not its size
                z = u[..., None] * st["W2"]  # (..., h)
                sz = torch.sigmoid(z)
                feats = z * sz  # silu(z)
                # one GD step (decay alpha) on <m_phi(u), g>, gradients normalised by lr * scale^2
                grad_W1 = (u[..., None] * feats).reshape(-1, h).mean(0)
                grad_W2 = (u[..., None] ** 2 * st["W1"] * sz * (1 + z * (1 - sz))).reshape(-1, h).mean(0)
                st["b"].mul_(a).add_(g, alpha=-lr)
                st["W1"].mul_(a).add_(grad_W1, alpha=-ilr)
                st["W2"].add_(grad_W2, alpha=-ilr)
                # m_phi(u) = b + lr * scale * W1 silu(W2 u): degree-1 in g, so it vanishes with the gradient
                st["m"] = st["b"] + lr * scale * (F.silu(u[..., None] * st["W2"]) * st["W1"]).sum(-1)
                p.add_(st["m"])
        return loss

    def memories(self) -> list[MemoryInfo]:
        a = self.param_groups[0]["alpha"]
        return [
            MemoryInfo("b", "gradients", "the linear part of m_phi: heavy-ball momentum (Eq. 50 with W1 = 0)", 1,
                       ema_horizon(a), collect(self, "b")),
            MemoryInfo("W1", "gradient-weighted features", "output layer of the momentum MLP, GD on <m_phi(u), g>", 1,
                       ema_horizon(a), collect(self, "W1")),
            MemoryInfo("W2", "gradient-weighted features", "input layer of the momentum MLP", 1, "unbounded",
                       collect(self, "W2")),
        ]  # fmt: skip
