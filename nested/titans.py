"""Titans neural long-term memory (PAPER.md §3; Titans arXiv 2501.00663), the LMM mixer.

    k_t = normalize(silu(conv(x_t W_K))), v_t = silu(conv(x_t W_V)), q_t = normalize(silu(conv(x_t W_Q)))
    l(M; x_t) = 1/2 || M(k_t) - v_t ||^2                                      (associative L2 loss)
    S_t = eta_t S_{t-1} - theta_t grad l(M_{t'}; x_t)                        (surprise with momentum)
    M_t = (1 - alpha_t) M_{t-1} + S_t                                         (forgetting gate)
    y_t = M_t(q_t)   (Titans' notation; `read_after_write=False` gives Hope's M_{t-1}(q_t))

Gates are data-dependent per token and head: theta_t = sigmoid(x w_theta) * max_lr, eta_t = sigmoid(x w_eta),
alpha_t = sigmoid(x w_alpha) (lucidrains' parameterisation, PAPER.md §3 [INFERENCE]). Gradients in a chunk
are taken at the chunk-start state M_{t'} (the chunk-wise parallel form of §3). The memory is the same
2-layer residual MLP as Hope's, so the comparison isolates self-modification and CMS.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nested.config import ModelConfig
from nested.layers import (
    CausalConv,
    RMSNorm,
    bank_inner_grads,
    check_finite,
    conv_qkv,
    inner_scale,
    split_points,
    unfold_heads,
)
from nested.levels import Level
from nested.memory import RecurrenceInputs, run_recurrence


@dataclass(frozen=True)
class TitansState:
    """One Titans layer's stream state, per item x head on dim 0: the memory W = (W1, W2), the chunk-start
    state F = (F1, F2) its gradients are taken at, the momentum S = (S1, S2), the q/k/v conv windows, and
    eta_gain scaling theta_t (0 freezes the writes: nested.Freeze)."""

    pos: int
    W1: Tensor
    W2: Tensor
    F1: Tensor
    F2: Tensor
    S1: Tensor
    S2: Tensor
    convs: tuple[Tensor, ...]
    eta_gain: float = 1.0


class TitansMemory(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        H, dh, d = cfg.n_heads, cfg.head_dim, cfg.d_model
        hm = cfg.mem_mult * dh
        self.W1_0 = nn.Parameter(0.02 * torch.randn(H, 1, dh, hm))
        self.W2_0 = nn.Parameter(torch.randn(H, 1, hm, dh) / dh**0.5)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.gates = nn.Linear(d, 3 * H)  # theta, eta (momentum decay), alpha (forget)
        with torch.no_grad():
            self.gates.weight.mul_(0.1)
            self.gates.bias.copy_(torch.tensor([-1.0] * H + [0.0] * H + [-5.0] * H))
        self.convs = nn.ModuleList([CausalConv(d, cfg.conv_width) for _ in range(3)])
        self.out_norm = RMSNorm(d)
        self.out_proj = nn.Linear(d, d, bias=False)

    def init_state(self, batch: int, device, dtype) -> TitansState:
        H = self.cfg.n_heads

        def per_item(p: Tensor) -> Tensor:
            return p.unsqueeze(0).expand(batch, *p.shape).reshape(batch * H, *p.shape[1:])

        W1, W2 = per_item(self.W1_0), per_item(self.W2_0)
        convs = tuple(c.init_state(batch, device, dtype) for c in self.convs)
        return TitansState(0, W1, W2, F1=W1, F2=W2, S1=torch.zeros_like(W1), S2=torch.zeros_like(W2), convs=convs)

    # -- what the nest, traces and freezing see ---------------------------------------------------
    writable = True
    learned = ("W1", "W2", "F1", "F2", "S1", "S2")  # the memory, its gradient reference and momentum
    # its trace rows: "eta" holds θ_t (the inner learning rate; Titans' η_t is the momentum decay, not traced)
    # and "alpha" holds 1 - α_t (the factor the memory is multiplied by)
    trace_rows = {"eta": ("inner learning rate θ_t", "θ"), "alpha": ("retention 1 − α_t", "1−α")}

    def with_write_gain(self, state: TitansState, gain: float) -> TitansState:
        """The state with the inner learning rate theta_t scaled by `gain` (0 stops the writes)."""
        return replace(state, eta_gain=float(gain))

    def components(self) -> list[str]:
        return ["titans_memory"]

    def snapshot(self, state: TitansState) -> dict:
        return {"titans_memory": state.W2[0, 0].detach().float().cpu().numpy()}

    def nest(self, layer: int) -> list[Level]:
        return [Level("titans_memory", layer, "memory", 1, self.W1_0.numel() + self.W2_0.numel(),
                      "Titans memory: surprise-driven writes with momentum and forgetting")]  # fmt: skip

    def forward(self, x: Tensor, state: TitansState, stepwise: bool, layer: int = 0, core=None):
        outs, recs = [], []
        for a, b in split_points(state.pos, x.shape[1], [self.cfg.chunk_size]):
            y, state, rec = self._piece(x[:, a:b], state, stepwise)
            outs.append(y)
            recs.append(rec)
        check_finite({"W1": state.W1, "W2": state.W2}, layer, "titans")
        return torch.cat(outs, 1), state, {k: torch.cat([r[k] for r in recs], 1) for k in recs[0]}

    def _piece(self, x: Tensor, state: TitansState, stepwise: bool):
        cfg = self.cfg
        H = cfg.n_heads
        B, n, _ = x.shape
        if state.pos % cfg.chunk_size == 0:
            F1, F2 = state.W1, state.W2
        else:
            F1, F2 = state.F1, state.F2
        q, k, v, convs = conv_qkv(x, self.qkv, self.convs, state.convs, H)
        # static gates (E4's model 1): the learned biases alone, the same at every token
        z = self.gates(x) if cfg.titans_gates == "data" else self.gates.bias.expand(B, n, 3 * H)
        z = z.view(B, n, 3, H).permute(2, 0, 3, 1).reshape(3, B * H, n)
        g = torch.sigmoid(z)
        theta, eta, alpha = g[0] * cfg.titans_max_lr * state.eta_gain, g[1], g[2]
        # the gates' logs in closed form: log(1 - alpha) = logsigmoid(-z) stays finite where 1 - alpha rounds to 0
        logs = {"log_decay": F.logsigmoid(-z[2]), "log_mom": F.logsigmoid(z[1])}
        if not cfg.forget_gate:  # nothing forgotten: 1 - alpha_t = 1
            alpha, logs["log_decay"] = torch.zeros_like(alpha), torch.zeros_like(alpha)

        e, hidden, g2, inner_loss = bank_inner_grads(F1, F2, k, v[:, None], "l2", "corrected")
        scale, _ = inner_scale(e, hidden, g2, k, cfg.inner_update, cfg.inner_clip)
        e, g2 = e[:, 0] * scale[:, 0], g2[:, 0] * scale[:, 0]
        decay = 1 - alpha
        reads2, W2, S2 = run_recurrence(
            state.W2[:, 0],
            state.S2[:, 0],
            RecurrenceInputs(decay=decay, lr=theta, grads=g2, gkeys=k, mom=eta, queries=q, **logs),
            stepwise,
            cfg.read_after_write,
            steps=cfg.inner_steps,
        )
        reads1, W1, S1 = run_recurrence(
            state.W1[:, 0],
            state.S1[:, 0],
            RecurrenceInputs(
                decay=decay, lr=theta, grads=e, gkeys=hidden[:, 0], mom=eta, queries=F.silu(reads2), **logs
            ),
            stepwise,
            cfg.read_after_write,
            steps=cfg.inner_steps,
        )
        o = q + reads1
        new = replace(state, pos=state.pos + n, F1=F1, F2=F2, W1=W1[:, None], W2=W2[:, None], S1=S1[:, None],
                      S2=S2[:, None], convs=convs)  # fmt: skip
        y = self.out_proj(self.out_norm(unfold_heads(o, H)))
        record = {
            "eta": theta.view(B, H, n).transpose(1, 2),
            "alpha": decay.view(B, H, n).transpose(1, 2),
            "surprise": inner_loss[:, 0].reshape(B, H, n).transpose(1, 2),
        }
        return y, new, record
