"""M3, Multi-scale Momentum Muon (PAPER.md §7.1-7.2; NL Algorithm 1, Eq. 75).

`variant="paper"` is Algorithm 1 to the letter (no bias correction, weight decay or extra scaling):

    at the start of each chunk of f = slow_every steps (k >= 1):
        M2 <- M2 + b3 * (sum of the previous chunk's gradients);  O2 <- NS(M2)     (used for the whole chunk)
    every step:
        M1 <- M1 + b1 g;   V <- V + b2 g*g;   O1 <- NS(M1)
        W  <- W - lr (O1 + alpha O2) / (sqrt(V) + eps)

`variant="ema"` reads the additive notation as moving averages (PAPER.md §7.2 note 1, as App. B's Adam
must be read): M1 <- b1 M1 + (1-b1) g, V <- b2 V + (1-b2) g^2 with bias correction, M2 <- b3 M2 +
(1-b3) * chunk sum; `rms_match` (on by default for "ema") rescales each step to RMS 0.2 (AdamW's typical
update RMS, Moonlight). "ema" + rms_match is the default: it trains best of the three readings on our byte
LM (bench/optimizer_grid.py; numbers in docs/RESULTS.md); the literal Algorithm 1 does not train there.

NS is the quintic (3.4445, -4.7750, 2.0315) with `ns_steps` steps; 1-D tensors pass through NS unchanged.
A param group with `use_ns=False` (nested.optim.scope.scoped_groups: the paper's default keeps embeddings,
the output head and 1-D gains out of M3) is updated by the auxiliary AdamW instead (lr `adamw_lr`, default
the group's lr). Plain params (no groups) all go through M3, as on the 2-D surfaces.
The slow sum covers the f gradients of the previous chunk (Algorithm 1's f+1-term sum read as f terms,
like Eq. 71's). It is "CMS (independent variant) applied to the memory behind Adam's first moment".
"""

from __future__ import annotations

import torch

from nested.optim.memory_view import MemoryInfo, closure_loss, collect, ema_horizon
from nested.optim.muon import adamw_update
from nested.optim.newton_schulz import QUINTIC, newton_schulz

VARIANTS = ("paper", "ema")


class M3(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999, 0.99), alpha: float = 1.0,
                 slow_every: int = 10, ns_steps: int = 5, eps: float = 1e-8, variant: str = "ema",
                 weight_decay: float = 0.0, rms_match: bool | None = None, ns_coefficients=QUINTIC,
                 ns_dtype: torch.dtype | str | None = "auto", adamw_lr: float | None = None,
                 adamw_betas=(0.9, 0.95)):  # fmt: skip
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if slow_every < 1:
            raise ValueError("slow_every must be >= 1")
        if rms_match is None:  # the default reading: EMA with RMS matching (docs/FIDELITY.md, bench/optimizer_grid.py)
            rms_match = variant == "ema"
        if variant == "paper" and (weight_decay or rms_match):
            raise ValueError('variant="paper" is Algorithm 1 to the letter: no weight decay or rms_match')
        defaults = {"lr": lr, "betas": tuple(betas), "alpha": alpha, "slow_every": slow_every, "ns_steps": ns_steps,
                    "eps": eps, "variant": variant, "weight_decay": weight_decay, "rms_match": rms_match,
                    "ns_coefficients": tuple(ns_coefficients), "ns_dtype": ns_dtype, "adamw_lr": adamw_lr,
                    "adamw_betas": tuple(adamw_betas), "use_ns": True}  # fmt: skip
        super().__init__(params, defaults)

    def _ns(self, X, group):
        return newton_schulz(X, group["ns_steps"], group["ns_coefficients"], 1e-7, group["ns_dtype"])

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure_loss(closure)
        for group in self.param_groups:
            b1, b2, b3 = group["betas"]
            f, ema = group["slow_every"], group["variant"] == "ema"
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                st = self.state[p]
                if not group["use_ns"]:  # outside the scope (nested.optim.scope): the auxiliary AdamW
                    lr = group["lr"] if group["adamw_lr"] is None else group["adamw_lr"]
                    adamw_update(p, g, st, lr, group["adamw_betas"], group["eps"], group["weight_decay"])
                    continue
                if not st:
                    st["step"] = 0
                    for k in ("M1", "V", "M2", "O2", "chunk_sum"):
                        st[k] = torch.zeros_like(p)
                # Lower-frequency level: at the start of every chunk after the first, the slow memory
                # absorbs the previous chunk's gradient sum and is re-orthogonalised.
                if st["step"] > 0 and st["step"] % f == 0:
                    if ema:
                        st["M2"].mul_(b3).add_(st["chunk_sum"], alpha=1 - b3)
                    else:
                        st["M2"].add_(st["chunk_sum"], alpha=b3)
                    st["O2"] = self._ns(st["M2"], group)
                    st["chunk_sum"].zero_()
                st["step"] += 1
                st["chunk_sum"].add_(g)
                if ema:
                    st["M1"].lerp_(g, 1 - b1)
                    st["V"].mul_(b2).addcmul_(g, g, value=1 - b2)
                    t = st["step"]
                    m1 = st["M1"] / (1 - b1**t)
                    v = st["V"] / (1 - b2**t)
                else:
                    st["M1"].add_(g, alpha=b1)
                    st["V"].addcmul_(g, g, value=b2)
                    m1, v = st["M1"], st["V"]
                update = (self._ns(m1, group) + group["alpha"] * st["O2"]) / (v.sqrt() + group["eps"])
                if group["rms_match"]:
                    update = update * (0.2 / update.pow(2).mean().sqrt().clamp_min(1e-12))
                if group["weight_decay"]:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(update, alpha=-group["lr"])
        return loss

    def memories(self) -> list[MemoryInfo]:
        g = self.param_groups[0]
        b1, b2, b3 = g["betas"]
        f, ema = g["slow_every"], g["variant"] == "ema"
        hz = ema_horizon if ema else (lambda _b: "unbounded (a plain sum: never forgets)")
        return [
            MemoryInfo("M1", "gradients", "fast momentum: one step on <m, -g> (" + ("EMA" if ema else "M1 += b1 g") + ")",
                       1, hz(b1), collect(self, "M1")),
            MemoryInfo("V", "squared gradients", "second moment H of App. B (" + ("EMA" if ema else "V += b2 g^2") + ")",
                       1, hz(b2), collect(self, "V")),
            MemoryInfo("chunk_sum", "gradients of the current chunk", "the slow level's context: sum over f steps",
                       1, f"the current chunk ({f} steps)", collect(self, "chunk_sum")),
            MemoryInfo("M2", "chunk sums of gradients", "slow momentum, CMS level of period f (Eq. 75)",
                       f, (f"{hz(b3)} chunks of {f} steps" if ema else "unbounded (a plain sum: never forgets)"),
                       collect(self, "M2")),
            MemoryInfo("O2", "the slow momentum", f"NS(M2), re-solved every {f} steps, used through the chunk", f,
                       f"{f} steps", collect(self, "O2")),
        ] + ([  # the parameters outside M3's scope (nested.optim.scope): the auxiliary AdamW's memories
            MemoryInfo("adam_exp_avg", "gradients of parameters outside the scope (auxiliary AdamW)",
                       "EMA of g (App. B)", 1, ema_horizon(g["adamw_betas"][0]), collect(self, "adam_exp_avg")),
            MemoryInfo("adam_exp_avg_sq", "squared gradients outside the scope", "EMA of g^2 (App. B)", 1,
                       ema_horizon(g["adamw_betas"][1]), collect(self, "adam_exp_avg_sq")),
        ] if any(not gr["use_ns"] for gr in self.param_groups) else [])  # fmt: skip
