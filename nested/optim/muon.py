"""Muon (PAPER.md §1.3d, Eq. 42): EMA momentum, then Newton-Schulz orthogonalisation, for parameters with
two or more dims; an auxiliary AdamW for the rest (embeddings' 1-D gains, biases). Same arithmetic as
torch.optim.Muon on matrices (tested equal)."""

from __future__ import annotations

import math

import torch

from nested.optim.memory_view import MemoryInfo, closure_loss, collect, ema_horizon
from nested.optim.newton_schulz import QUINTIC, newton_schulz


def adjust_lr(lr: float, rule: str | None, shape: torch.Size) -> float:
    """torch.optim.Muon's learning-rate adjustment: "original" sqrt(max(1, A/B)), "match_rms_adamw"
    0.2 sqrt(max(A, B)) (Moonlight), or "none"."""
    A, B = shape[0], math.prod(shape[1:])
    if rule is None or rule == "original":
        return lr * math.sqrt(max(1, A / B))
    if rule == "match_rms_adamw":
        return lr * 0.2 * math.sqrt(max(A, B))
    return lr


def split_matrix_groups(params, **defaults) -> list[dict]:
    """Split each param group into its >=2-D params (use_ns=True) and the rest (use_ns=False); a group that
    already says `use_ns` (nested.optim.scope.scoped_groups) is kept as it is."""
    groups = list(params)
    if groups and not isinstance(groups[0], dict):
        groups = [{"params": groups}]
    out = []
    for g in groups:
        if "use_ns" in g:  # already scoped (nested.optim.scope)
            out.append(dict(g, params=list(g["params"])))
            continue
        ps = list(g["params"])
        rest = {k: v for k, v in g.items() if k != "params"}
        mats = [p for p in ps if p.dim() >= 2]
        vecs = [p for p in ps if p.dim() < 2]
        if mats:
            out.append({**rest, "params": mats, "use_ns": True})
        if vecs:
            out.append({**rest, "params": vecs, "use_ns": False})
    return out


def adamw_update(p, g, st, lr, betas, eps, wd) -> None:
    """The auxiliary AdamW step for non-matrix parameters (state keys prefixed "adam_")."""
    b1, b2 = betas
    if "adam_step" not in st:
        st["adam_step"] = torch.tensor(0.0)
        st["adam_exp_avg"] = torch.zeros_like(p)
        st["adam_exp_avg_sq"] = torch.zeros_like(p)
    st["adam_step"] += 1
    t = st["adam_step"].item()
    p.mul_(1 - lr * wd)
    st["adam_exp_avg"].lerp_(g, 1 - b1)
    st["adam_exp_avg_sq"].mul_(b2).addcmul_(g, g, value=1 - b2)
    denom = (st["adam_exp_avg_sq"].sqrt() / math.sqrt(1 - b2**t)).add_(eps)
    p.addcdiv_(st["adam_exp_avg"], denom, value=-lr / (1 - b1**t))


class Muon(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-3, weight_decay: float = 0.1, momentum: float = 0.95,
                 nesterov: bool = True, ns_coefficients=QUINTIC, eps: float = 1e-7, ns_steps: int = 5,
                 adjust_lr_fn: str | None = None, ns_dtype: torch.dtype | str | None = "auto",
                 adamw_lr: float = 1e-3, adamw_betas=(0.9, 0.95), adamw_eps: float = 1e-8):  # fmt: skip
        defaults = {"lr": lr, "weight_decay": weight_decay, "momentum": momentum, "nesterov": nesterov,
                    "ns_coefficients": tuple(ns_coefficients), "eps": eps, "ns_steps": ns_steps,
                    "adjust_lr_fn": adjust_lr_fn, "ns_dtype": ns_dtype, "adamw_lr": adamw_lr,
                    "adamw_betas": tuple(adamw_betas), "adamw_eps": adamw_eps}  # fmt: skip
        super().__init__(split_matrix_groups(params), defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not group["use_ns"]:
                    adamw_update(p, p.grad, st, group["adamw_lr"], group["adamw_betas"], group["adamw_eps"],
                                 group["weight_decay"])  # fmt: skip
                    continue
                g, mu = p.grad, group["momentum"]
                if "momentum_buffer" not in st:
                    st["momentum_buffer"] = torch.zeros_like(g)
                buf = st["momentum_buffer"]
                buf.lerp_(g, 1 - mu)
                update = g.lerp(buf, mu) if group["nesterov"] else buf
                update = newton_schulz(update, group["ns_steps"], group["ns_coefficients"], group["eps"],
                                       group["ns_dtype"])  # fmt: skip
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(update, alpha=-adjust_lr(group["lr"], group["adjust_lr_fn"], p.shape))
        return loss

    def memories(self) -> list[MemoryInfo]:
        g = next((g for g in self.param_groups if g["use_ns"]), self.param_groups[0])
        b1, b2 = g["adamw_betas"]
        return [
            MemoryInfo("momentum_buffer", "gradients of matrix parameters", "EMA momentum (Eq. 42): m <- mu m + (1-mu) g",
                       1, ema_horizon(g["momentum"]), collect(self, "momentum_buffer")),
            MemoryInfo("newton_schulz", "the momentum",
                       f"||O^T O - I||^2 near m (Eqs. 43-44): {g['ns_steps']} inner GD steps every optimizer step "
                       "(a faster level nested inside the step)", 1, "none: re-solved from m each step", []),
            MemoryInfo("adam_exp_avg", "gradients of 1-D parameters (auxiliary AdamW)", "EMA of g (App. B)", 1,
                       ema_horizon(b1), collect(self, "adam_exp_avg")),
            MemoryInfo("adam_exp_avg_sq", "squared gradients of 1-D parameters", "EMA of g^2 (App. B)", 1,
                       ema_horizon(b2), collect(self, "adam_exp_avg_sq")),
        ]  # fmt: skip
