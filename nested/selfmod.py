"""Self-modifying Titans (PAPER.md §4; NL Eqs. 83-96), the sequence mixer of Hope.

Per token t, with every memory a 2-layer residual MLP M(x) = x + W1 silu(W2 x) (Eqs. 89/91):

    o_t   = M_memory,t-1(q_t)                                     read before write (Eq. 94)
    k_t   = M_k(x_t),  v_t = M_v(x_t),  eta_t = head(M_eta(x_t)),  alpha_t = head(M_alpha(x_t))
    q_t   = x_t W_q (fixed, default) or M_q(x_t) (adaptive_q)     (§11.2a)
    v_hat_box = M_box(v_t)                                        self-generated values (Eq. 87)
    M_box,t = M_box,t-1 (alpha_t I - eta_t k_t k_t^T) - eta_t grad L(M_box; k_t, v_hat_box)   (Eq. 88)

for box in {k, v, [q], eta, alpha, memory}. q and k are L2-normalised after SiLU and a causal
depthwise conv of width 4 (§6). Chunk-wise training (§4.3): k, v, eta, alpha, v_hat and every inner
gradient come from the state at the end of the *previous* chunk (the Eq. 90 index slip, §11.2g);
reads within a chunk see the within-chunk writes of earlier tokens. M_memory and the projection
memories have separate chunk sizes (§11.2i).

Deep memories (§11.2d): the DGD preconditioner (alpha I - eta k k^T) multiplies the first layer W2
(whose input is k); the second layer W1 gets the plain alpha decay; the gradient step applies to both.
Momentum (§11.2c): S_t = beta S_{t-1} + eta_t grad, M_t = decay(M_{t-1}) - S_t.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nested.config import ModelConfig
from nested.layers import CausalConv, bank_forward, bank_inner_grads, check_finite, clip_scale
from nested.memory import RecurrenceInputs, run_recurrence


def memory_names(adaptive_q: bool) -> list[str]:
    """The memories of one self-modifying Titans layer, M_memory last."""
    return ["M_k", "M_v"] + (["M_q"] if adaptive_q else []) + ["M_eta", "M_alpha", "M_memory"]


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


class SelfModifyingTitans(nn.Module):
    """The self-modifying Titans mixer. `forward(x, state, stepwise)` -> (y, state, record)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        H, dh = cfg.n_heads, cfg.head_dim
        hm = cfg.mem_mult * dh
        self.names = memory_names(cfg.adaptive_q)
        M = len(self.names)
        self.i_k, self.i_v = 0, 1
        self.i_q = 2 if cfg.adaptive_q else None
        self.i_eta, self.i_alpha, self.i_mem = M - 3, M - 2, M - 1
        # Meta-learned initial states M_box,0 (knowledge transfer by initialisation, Eq. 28)
        self.W1_0 = nn.Parameter(0.02 * torch.randn(H, M, dh, hm))
        self.W2_0 = nn.Parameter(torch.randn(H, M, hm, dh) / dh**0.5)
        self.q_proj = None if cfg.adaptive_q else nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.eta_w = nn.Parameter(0.05 * torch.randn(H, dh))
        self.eta_b = nn.Parameter(torch.full((H,), cfg.eta_init_bias))
        self.alpha_w = nn.Parameter(0.05 * torch.randn(H, dh))
        self.alpha_b = nn.Parameter(torch.full((H,), cfg.alpha_init_bias))
        self.conv_qkv = CausalConv(3 * cfg.d_model, cfg.conv_width)  # one depthwise conv each for q, k, v
        self.out_norm = nn.RMSNorm(cfg.d_model)
        self.out_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    # -- state ---------------------------------------------------------------------------------
    def init_state(self, batch: int, device, dtype) -> dict:
        H = self.cfg.n_heads

        def per_item(p: Tensor) -> Tensor:
            return p.unsqueeze(0).expand(batch, *p.shape).reshape(batch * H, *p.shape[1:])

        W1, W2 = per_item(self.W1_0), per_item(self.W2_0)
        st = {"pos": 0, "W1": W1, "W2": W2, "F1": W1, "F2": W2}
        if self.cfg.momentum > 0:
            st["S1"], st["S2"] = torch.zeros_like(W1), torch.zeros_like(W2)
        st["conv"] = self.conv_qkv.init_state(batch, device, dtype)
        return st

    # -- forward -------------------------------------------------------------------------------
    def forward(self, x: Tensor, state: dict, stepwise: bool, layer: int = 0):
        cfg = self.cfg
        outs, recs = [], []
        for a, b in split_points(state["pos"], x.shape[1], [cfg.chunk_size, cfg.proj_chunk]):
            y, state, rec = self._piece(x[:, a:b], state, stepwise)
            outs.append(y)
            recs.append(rec)
        check_finite({k: state[k] for k in ("W1", "W2")}, layer, "selfmod")
        record = {k: torch.cat([r[k] for r in recs], dim=1) for k in recs[0]}
        return torch.cat(outs, dim=1), state, record

    def _refresh_frozen(self, state: dict) -> tuple[Tensor, Tensor]:
        """At a chunk boundary the frozen (gradient-reference) state becomes the current one."""
        pos, m = state["pos"], self.i_mem
        F1, F2, W1, W2 = state["F1"], state["F2"], state["W1"], state["W2"]
        proj_now = pos % self.cfg.proj_chunk == 0
        mem_now = pos % self.cfg.chunk_size == 0
        if proj_now and mem_now:
            return W1, W2
        if proj_now:
            return torch.cat([W1[:, :m], F1[:, m:]], 1), torch.cat([W2[:, :m], F2[:, m:]], 1)
        if mem_now:
            return torch.cat([F1[:, :m], W1[:, m:]], 1), torch.cat([F2[:, :m], W2[:, m:]], 1)
        return F1, F2

    def _piece(self, x: Tensor, state: dict, stepwise: bool):
        """Tokens inside one chunk of both chunk sizes: the frozen state is constant here."""
        cfg = self.cfg
        H, dh = cfg.n_heads, cfg.head_dim
        B, n, _ = x.shape
        F1, F2 = self._refresh_frozen(state)
        M = F1.shape[1]
        xh = fold_heads(x, H)  # (N, n, dh)
        proj = bank_forward(F1, F2, xh)  # every memory on x_t, frozen state (N, M, n, dh)

        raw_q = proj[:, self.i_q] if cfg.adaptive_q else fold_heads(self.q_proj(x), H)
        head_w = lambda w: w.repeat(B, 1)  # (H, dh) -> (N, dh)  # noqa: E731
        head_b = lambda b: b.repeat(B)[:, None]  # noqa: E731
        eta = cfg.eta_scale * torch.sigmoid(
            (proj[:, self.i_eta] * head_w(self.eta_w)[:, None]).sum(-1) + head_b(self.eta_b)
        )
        alpha = torch.sigmoid((proj[:, self.i_alpha] * head_w(self.alpha_w)[:, None]).sum(-1) + head_b(self.alpha_b))

        raw = torch.cat(
            [unfold_heads(raw_q, H), unfold_heads(proj[:, self.i_k], H), unfold_heads(proj[:, self.i_v], H)], -1
        )
        conv, conv_state = self.conv_qkv(raw, state["conv"])
        cq, ck, cv = (fold_heads(t, H) for t in F.silu(conv).chunk(3, -1))
        q, k, v = F.normalize(cq, dim=-1), F.normalize(ck, dim=-1), cv

        target = bank_forward(F1, F2, v)  # v_hat_box = M_box(v_t), Eq. 87
        if cfg.stopgrad_targets:
            target = target.detach()
        e, hidden, g2, inner_loss = bank_inner_grads(F1, F2, k, target, cfg.inner_objective, cfg.eq92_sign)
        scale = clip_scale(e, hidden, g2, k, cfg.inner_clip)
        e, g2 = e * scale, g2 * scale

        N, hm = F1.shape[0], F1.shape[-1]
        mom = cfg.momentum > 0
        m = self.i_mem
        beta = torch.full_like(eta, cfg.momentum) if mom else None
        # First layers W2 of all memories share the key k: stack them along the output rows, and read
        # only M_memory's rows (the row-separable read of recurrence_chunk).
        inp2 = RecurrenceInputs(
            decay=alpha,
            lr=eta,
            grads=g2.permute(0, 2, 1, 3).reshape(N, n, M * hm),
            gkeys=k,
            precond=eta if cfg.precondition else None,
            pkeys=k if cfg.precondition else None,
            mom=beta,
            queries=q,
        )
        reads2, W2, S2 = run_recurrence(
            state["W2"].reshape(N, M * hm, dh),
            state["S2"].reshape(N, M * hm, dh) if mom else None,
            inp2,
            stepwise,
            cfg.read_after_write,
            read_rows=slice(m * hm, (m + 1) * hm),
        )
        # Second layers W1: each memory has its own key (its hidden activation). M_memory is read;
        # the projection memories only need their end-of-piece state.
        rest = lambda t: t[:, :m].reshape(N * m, *t.shape[2:])  # noqa: E731
        rep = lambda t: t.repeat_interleave(m, dim=0)  # noqa: E731
        S1_old = state["S1"] if mom else None
        reads1, W1_mem, S1_mem = run_recurrence(
            state["W1"][:, m],
            S1_old[:, m] if mom else None,
            RecurrenceInputs(decay=alpha, lr=eta, grads=e[:, m], gkeys=hidden[:, m], mom=beta, queries=F.silu(reads2)),
            stepwise,
            cfg.read_after_write,
        )
        _, W1_rest, S1_rest = run_recurrence(
            rest(state["W1"]),
            rest(S1_old) if mom else None,
            RecurrenceInputs(
                decay=rep(alpha), lr=rep(eta), grads=rest(e), gkeys=rest(hidden), mom=rep(beta) if mom else None
            ),
            stepwise,
        )
        o = q + reads1  # o_t = M_memory,t-1(q_t)

        new = dict(state)
        new.update(pos=state["pos"] + n, F1=F1, F2=F2, conv=conv_state)
        new["W1"] = torch.cat([W1_rest.view(N, m, dh, hm), W1_mem[:, None]], 1)
        new["W2"] = W2.view(N, M, hm, dh)
        if mom:
            new["S1"] = torch.cat([S1_rest.view(N, m, dh, hm), S1_mem[:, None]], 1)
            new["S2"] = S2.view(N, M, hm, dh)
        y = self.out_proj(self.out_norm(unfold_heads(o, H)))
        record = {
            "eta": eta.view(B, H, n).transpose(1, 2),
            "alpha": alpha.view(B, H, n).transpose(1, 2),
            "surprise": inner_loss[:, self.i_mem].reshape(B, H, n).transpose(1, 2),
        }
        return y, new, record
