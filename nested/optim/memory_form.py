"""SGD with momentum and Adam written as associative memories (PAPER.md §1.3b-c, App. B).

Each class keeps its buffers as named memories and updates them with one step of the memory's inner
objective; the arithmetic (and its order) is torch.optim.SGD's and torch.optim.Adam's, so the results are
equal to them (tested).
"""

from __future__ import annotations

import math

import torch

from nested.optim.memory_view import MemoryInfo, closure_loss, collect, ema_horizon


class MomentumSGD(torch.optim.Optimizer):
    """W <- W - lr m with the momentum memory m <- mu m + g (Eqs. 33-34; the sign convention of torch:
    m stores the sum of past gradients, so the step subtracts it). Nesterov reads g + mu m."""

    def __init__(self, params, lr: float = 1e-2, momentum: float = 0.9, weight_decay: float = 0.0,
                 nesterov: bool = False):  # fmt: skip
        if lr < 0 or not 0 <= momentum < 1:
            raise ValueError(f"invalid lr={lr} or momentum={momentum}")
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "nesterov": nesterov})

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        for group in self.param_groups:
            mu, lr, wd = group["momentum"], group["lr"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad if wd == 0 else p.grad.add(p, alpha=wd)
                st = self.state[p]
                if mu:
                    if "momentum_buffer" not in st:
                        st["momentum_buffer"] = torch.clone(g).detach()  # first write: the memory is g
                    else:
                        st["momentum_buffer"].mul_(mu).add_(g)  # one GD step on <m, -g> with decay mu
                    m = st["momentum_buffer"]
                    g = g.add(m, alpha=mu) if group["nesterov"] else m
                p.add_(g, alpha=-lr)
        return loss

    def memories(self) -> list[MemoryInfo]:
        mu = self.param_groups[0]["momentum"]
        return [MemoryInfo("momentum_buffer", "gradients",
                           "one GD step on min_m <m, -g> with L2 retention (1-mu): m <- mu m + g (Eqs. 33-34)",
                           1, ema_horizon(mu), collect(self, "momentum_buffer"))]  # fmt: skip


class AdamMemory(torch.optim.Optimizer):
    """Adam as the optimal element-wise L2 memory of App. B (Eqs. 101-105) with EMA accumulators:
    M <- b1 M + (1-b1) g (gradients), H <- b2 H + (1-b2) g^2 (squared gradients), and the read
    W <- W - lr M_hat / (sqrt(H_hat) + eps). `decoupled=True` gives AdamW."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 decoupled: bool = False):  # fmt: skip
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                                  "decoupled": decoupled})  # fmt: skip

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        for group in self.param_groups:
            b1, b2 = group["betas"]
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                st = self.state[p]
                if not st:
                    st["step"] = torch.tensor(0.0)
                    st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                st["step"] += 1
                if wd:
                    if group["decoupled"]:
                        p.mul_(1 - lr * wd)
                    else:
                        g = g.add(p, alpha=wd)
                st["exp_avg"].lerp_(g, 1 - b1)
                st["exp_avg_sq"].mul_(b2).addcmul_(g, g, value=1 - b2)
                t = st["step"].item()
                step_size = lr / (1 - b1**t)
                denom = (st["exp_avg_sq"].sqrt() / math.sqrt(1 - b2**t)).add_(eps)
                p.addcdiv_(st["exp_avg"], denom, value=-step_size)
        return loss

    def memories(self) -> list[MemoryInfo]:
        b1, b2 = self.param_groups[0]["betas"]
        return [
            MemoryInfo("exp_avg", "gradients", "M of App. B Eq. 102, an EMA of g (first moment)", 1,
                       ema_horizon(b1), collect(self, "exp_avg")),
            MemoryInfo("exp_avg_sq", "squared gradients",
                       "H of Eq. 102, an EMA of g^2; P = H^(1/2) makes the L2-optimal memory Adam (Eq. 105)", 1,
                       ema_horizon(b2), collect(self, "exp_avg_sq")),
        ]  # fmt: skip
