"""Linear-attention family as matrix memories (PAPER.md §1.3e and §2): one GD step per token on an
inner objective, run by the shared rank-one recurrence of nested.memory.

    linear attention (Hebbian, Eq. 64):  S_t = a_t S_{t-1} + beta_t v_t k_t^T          (dot-product objective)
    DeltaNet (delta rule, §2):           S_t = S_{t-1}(I - beta_t k_t k_t^T) + beta_t v_t k_t^T
    gated DeltaNet:                      S_t = S_{t-1}(a_t I - beta_t k_t k_t^T) + beta_t v_t k_t^T
    read y_t = S_t q_t

The inner gradient of these rules does not depend on the state, so the chunk-parallel form is exact
at any chunk size (unlike the deep memories, whose gradients are taken at the chunk start).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nested.config import ModelConfig
from nested.layers import CausalConv, RMSNorm, check_finite, conv_qkv, split_points, unfold_heads
from nested.levels import Level
from nested.memory import RecurrenceInputs, run_recurrence


@dataclass(frozen=True)
class MatrixMemoryState:
    """One matrix-memory layer's stream state: the fast weights S (batch x heads, dh, dh), the q/k/v conv
    windows, and write_gain scaling beta_t (0 freezes the writes: nested.Freeze)."""

    pos: int
    S: Tensor
    convs: tuple[Tensor, ...]
    write_gain: float = 1.0


class DeltaNetMixer(nn.Module):
    """rule = "delta" (DeltaNet), "gated_delta" (gated DeltaNet) or "hebbian" (linear attention)."""

    def __init__(self, cfg: ModelConfig, rule: str = "delta"):
        super().__init__()
        if rule not in ("delta", "gated_delta", "hebbian"):
            raise ValueError(f"unknown rule {rule!r}")
        self.cfg, self.rule = cfg, rule
        d, H = cfg.d_model, cfg.n_heads
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.gates = nn.Linear(d, 2 * H)  # beta (write strength), a (decay)
        with torch.no_grad():
            self.gates.weight.mul_(0.1)
            self.gates.bias.copy_(torch.tensor([0.0] * H + [5.0] * H))
        self.convs = nn.ModuleList([CausalConv(d, cfg.conv_width) for _ in range(3)])
        self.out_norm = RMSNorm(d)
        self.out_proj = nn.Linear(d, d, bias=False)

    def init_state(self, batch: int, device, dtype) -> MatrixMemoryState:
        H, dh = self.cfg.n_heads, self.cfg.head_dim
        S = torch.zeros(batch * H, dh, dh, device=device, dtype=dtype)
        return MatrixMemoryState(0, S, tuple(c.init_state(batch, device, dtype) for c in self.convs))

    # -- what the nest, traces and freezing see ---------------------------------------------------
    writable = True
    learned = ("S",)  # the fast-weight matrix
    trace_rows = {"eta": ("write strength β_t", "β"), "alpha": ("retention (decay)", "decay")}

    def with_write_gain(self, state: MatrixMemoryState, gain: float) -> MatrixMemoryState:
        """The state with the write strength beta_t scaled by `gain` (0 stops the writes)."""
        return replace(state, write_gain=float(gain))

    def components(self) -> list[str]:
        return [f"{self.rule}_memory"]

    def snapshot(self, state: MatrixMemoryState) -> dict:
        return {f"{self.rule}_memory": state.S[0].detach().float().cpu().numpy()}

    def nest(self, layer: int) -> list[Level]:
        dh = self.cfg.head_dim
        return [Level(f"{self.rule}_memory", layer, "memory", 1, self.cfg.n_heads * dh * dh,
                      f"matrix memory written by the {self.rule.replace('_', ' ')} rule every token")]  # fmt: skip

    def forward(self, x: Tensor, state: MatrixMemoryState, stepwise: bool, layer: int = 0, core=None):
        cfg = self.cfg
        H = cfg.n_heads
        B, n, _ = x.shape
        q, k, v, convs = conv_qkv(x, self.qkv, self.convs, state.convs, H)
        z = self.gates(x).view(B, n, 2, H).permute(2, 0, 3, 1).reshape(2, B * H, n)
        g = torch.sigmoid(z)
        beta = g[0] * state.write_gain
        gated = self.rule == "gated_delta"
        decay = g[1] if gated else torch.ones_like(beta)
        log_decay = F.logsigmoid(z[1]) if gated else None  # closed form: finite where the gate rounds to 0
        S, outs = state.S, []
        for a, b in split_points(state.pos, n, [cfg.chunk_size]):
            sl = slice(a, b)
            inp = RecurrenceInputs(
                decay=decay[:, sl],
                lr=beta[:, sl],
                grads=-v[:, sl],  # dot-product gradient -v k^T; the delta rule adds the preconditioner
                gkeys=k[:, sl],
                precond=None if self.rule == "hebbian" else beta[:, sl],
                pkeys=None if self.rule == "hebbian" else k[:, sl],
                queries=q[:, sl],
                log_decay=None if log_decay is None else log_decay[:, sl],
            )
            r, S, _ = run_recurrence(S, None, inp, stepwise, read_after_write=True, steps=cfg.inner_steps)
            outs.append(r)
        check_finite({"S": S}, layer, self.rule)
        new = replace(state, pos=state.pos + n, S=S, convs=convs)
        y = self.out_proj(self.out_norm(unfold_heads(torch.cat(outs, 1), H)))
        record = {"eta": beta.view(B, H, n).transpose(1, 2), "alpha": decay.view(B, H, n).transpose(1, 2)}
        return y, new, record
