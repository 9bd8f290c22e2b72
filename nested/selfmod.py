"""Self-modifying Titans (PAPER.md §4; NL Eqs. 83-96), the sequence mixer of Hope.

Per token t, with every memory a 2-layer residual MLP M(x) = x + W1 silu(W2 x) (Eqs. 89/91):

    o_t   = M_memory,t-1(q_t)                                     read before write (Eq. 94)
    k_t   = M_k(x_t),  v_t = M_v(x_t),  eta_t = head(M_eta(x_t)),  alpha_t = head(M_alpha(x_t))
    q_t   = x_t W_q (fixed, default) or M_q(x_t) (adaptive_q)     (§11.2a)
    (adaptive_k / adaptive_v = False: k_t = x_t W_k / v_t = x_t W_v, a fixed projection instead of a
    memory; Table 6's "k / v projection moved to the lowest level")
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

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nested.config import ModelConfig
from nested.layers import (
    CausalConv,
    RMSNorm,
    bank_forward,
    bank_self_grads,
    causal_conv,
    check_finite,
    fold_heads,
    inner_scale,
    split_points,
    unfold_heads,
)
from nested.levels import MEMORY_TEXT, Level
from nested.memory import RecurrenceInputs, run_recurrence, step_tables
from nested.selfmod_state import ChunkArgs, ChunkOut, SelfModState
from nested.trace import HOPE_ROWS


def memory_names(adaptive_q: bool, adaptive_k: bool = True, adaptive_v: bool = True) -> list[str]:
    """The memories of one self-modifying Titans layer, M_memory last (a fixed projection is not one)."""
    kv = (["M_k"] if adaptive_k else []) + (["M_v"] if adaptive_v else [])
    return kv + (["M_q"] if adaptive_q else []) + ["M_eta", "M_alpha", "M_memory"]


def memories_finite(outs: list) -> Tensor:
    """One flag, computed inside a compiled graph: every layer's new memories (`ChunkOut.W1`, `.W2`)
    are finite. nested.compile.advance_mixers names the layer when it is not."""
    return torch.isfinite(torch.stack([t.sum() for out in outs for t in (out.W1, out.W2)])).all()


def clip_fraction(clipped: Tensor, batch: int) -> Tensor:
    """From `inner_scale`'s (N = batch x heads, M, T) guard flags: the fraction of heads whose inner
    gradient was clipped, per item, token and memory (batch, T, M)."""
    N, M, T = clipped.shape
    return clipped.float().view(batch, N // batch, M, T).mean(1).transpose(1, 2)


class SelfModifyingTitans(nn.Module):
    """The self-modifying Titans mixer. `forward(x, state, stepwise)` -> (y, state, record)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        H, dh = cfg.n_heads, cfg.head_dim
        hm = cfg.mem_mult * dh
        self.names = memory_names(cfg.adaptive_q, cfg.adaptive_k, cfg.adaptive_v)
        M = len(self.names)
        self.i_q, self.i_k, self.i_v = (self.names.index(n) if n in self.names else None for n in ("M_q", "M_k", "M_v"))
        self.i_eta, self.i_alpha, self.i_mem = M - 3, M - 2, M - 1
        # Meta-learned initial states M_box,0 (knowledge transfer by initialisation, Eq. 28)
        self.W1_0 = nn.Parameter(0.02 * torch.randn(H, M, dh, hm))
        self.W2_0 = nn.Parameter(torch.randn(H, M, hm, dh) / dh**0.5)
        fixed = lambda adaptive: None if adaptive else nn.Linear(cfg.d_model, cfg.d_model, bias=False)  # noqa: E731
        self.q_proj, self.k_proj, self.v_proj = fixed(cfg.adaptive_q), fixed(cfg.adaptive_k), fixed(cfg.adaptive_v)
        # scalar heads per attention head on M_eta(x) and M_alpha(x): [eta, alpha]  (§11.2b)
        self.gate_w = nn.Parameter(0.05 * torch.randn(H, 2, dh))
        self.gate_b = nn.Parameter(torch.tensor([cfg.eta_init_bias, cfg.alpha_init_bias]).repeat(H, 1))
        # one depthwise causal conv each for q, k, v; channels laid out per head as [q_h, k_h, v_h]
        self.conv_qkv = CausalConv(3 * cfg.d_model, cfg.conv_width)
        self.out_norm = RMSNorm(cfg.d_model)
        self.out_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    # -- state ---------------------------------------------------------------------------------
    def init_state(self, batch: int, device, dtype) -> SelfModState:
        H = self.cfg.n_heads

        def per_item(p: Tensor) -> Tensor:  # contiguous: one compiled graph for every chunk
            return p.unsqueeze(0).expand(batch, *p.shape).reshape(batch * H, *p.shape[1:]).contiguous()

        W1, W2 = per_item(self.W1_0), per_item(self.W2_0)
        mom = self.cfg.momentum > 0
        conv = torch.zeros(batch * H, self.cfg.conv_width - 1, 3 * self.cfg.head_dim, device=device, dtype=dtype)
        return SelfModState(pos=0, W1=W1, W2=W2, F1=W1, F2=W2, conv=conv,
                            S1=torch.zeros_like(W1) if mom else None, S2=torch.zeros_like(W2) if mom else None)  # fmt: skip

    # -- what the nest, traces and freezing see ---------------------------------------------------
    writable = True  # nested.Freeze can scale its writes
    learned = ("W1", "W2", "F1", "F2", "S1", "S2")  # the memories, their gradient references and momentum
    # what its trace rows "eta" / "alpha" hold, as the stepper labels them (title, symbol)
    trace_rows = HOPE_ROWS

    def with_write_gain(self, state: SelfModState, gain: float) -> SelfModState:
        """The state with every memory's eta_t scaled by `gain` (0 freezes the writes, not the decay)."""
        return replace(state, eta_gain=float(gain))

    def components(self) -> list[str]:
        return list(self.names)

    def snapshot(self, state: SelfModState) -> dict:
        """Each memory's first layer W2 (the one the DGD preconditioner acts on), item 0, head 0."""
        W2 = state.W2[0].detach().float().cpu().numpy()
        return {name: W2[m] for m, name in enumerate(self.names)}

    def nest(self, layer: int) -> list[Level]:
        c, per = self.cfg, self.W1_0[:, 0].numel() + self.W2_0[:, 0].numel()

        def chunk(n: str) -> str:
            return f" (gradients refreshed every {c.chunk_size if n == 'M_memory' else c.proj_chunk} tokens)"

        return [Level(n, layer, "self-modifying memory", 1, per, MEMORY_TEXT[n] + chunk(n)) for n in self.names]

    # -- forward -------------------------------------------------------------------------------
    def forward(self, x: Tensor, state: SelfModState, stepwise: bool, layer: int = 0, core=None):
        """(y, state, record) for x (B, T, d), one token (streaming) or many. `core` may hold a compiled
        copy of `_chunk_core` (nested.compile): {"chunk": ...}."""
        core = core or {}
        cfg = self.cfg
        B, H = x.shape[0], cfg.n_heads
        consts = self.chunk_consts(B)
        fixed_all = self.fixed_projections(x)
        xh_all = fold_heads(x, H)
        outs, recs = [], []
        for a, b in split_points(state.pos, x.shape[1], [cfg.chunk_size, cfg.proj_chunk]):
            fixed = tuple(None if f is None else f[:, a:b] for f in fixed_all)
            y, state, rec = self._piece(xh_all[:, a:b], fixed, state, stepwise, consts, core.get("chunk"))
            outs.append(y)
            recs.append(rec)
        check_finite({"W1": state.W1, "W2": state.W2}, layer, "selfmod")
        clipped = torch.cat([r.pop("clipped") for r in recs], dim=1)  # (B, T, M)
        record = {k: torch.cat([r[k] for r in recs], dim=-1) for k in recs[0]}
        record = {k: v.view(B, H, -1).transpose(1, 2) for k, v in record.items()}  # (B, T, H)
        record["clipped"] = clipped
        o = unfold_heads(torch.cat(outs, dim=1), H)
        return self.out_proj(self.out_norm(o)), state, record

    def fixed_projections(self, x: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        """q, k, v of x (B, T, d) from the fixed projections, heads folded (None where a memory makes it)."""
        H = self.cfg.n_heads
        return tuple(None if p is None else fold_heads(p(x), H) for p in (self.q_proj, self.k_proj, self.v_proj))

    def chunk_consts(self, batch: int) -> dict:
        """Per-call constants of `_chunk_core` in the folded (batch x heads) layout."""
        H, dh = self.cfg.n_heads, self.cfg.head_dim
        return {
            "gate_w": self.gate_w.repeat(batch, 1, 1)[:, :, None],  # (N, 2, 1, dh)
            "gate_b": self.gate_b.repeat(batch, 1)[:, :, None],  # (N, 2, 1)
            "conv_w": self.conv_qkv.weight.view(H, 3 * dh, -1).repeat(batch, 1, 1),  # (N, 3dh, w)
        }

    def piece_core(self, x: Tensor, args: ChunkArgs, stepwise: bool = False) -> tuple[Tensor, ChunkOut]:
        """One piece x (B, n, d) that crosses no chunk boundary, as a pure function of tensors: the layer
        output (B, n, d) and the `_chunk_core` outputs (for `next_state`). `args` from `core_args`."""
        H = self.cfg.n_heads
        out = self._chunk_core(fold_heads(x, H), self.fixed_projections(x), self.chunk_consts(x.shape[0]), stepwise,
                               *args)  # fmt: skip
        return self.out_proj(self.out_norm(unfold_heads(out.o, H))), out

    def _refresh_frozen(self, state: SelfModState) -> tuple[Tensor, Tensor]:
        """At a chunk boundary the frozen (gradient-reference) state becomes the current one."""
        pos, m = state.pos, self.i_mem
        F1, F2, W1, W2 = state.F1, state.F2, state.W1, state.W2
        proj_now = pos % self.cfg.proj_chunk == 0
        mem_now = pos % self.cfg.chunk_size == 0
        if proj_now and mem_now:
            return W1, W2
        if proj_now:
            return torch.cat([W1[:, :m], F1[:, m:]], 1), torch.cat([W2[:, :m], F2[:, m:]], 1)
        if mem_now:
            return torch.cat([F1[:, :m], W1[:, m:]], 1), torch.cat([F2[:, :m], W2[:, m:]], 1)
        return F1, F2

    def core_args(self, state: SelfModState) -> ChunkArgs:
        """The state's tensor inputs of `_chunk_core` (positions stay in the state)."""
        F1, F2 = self._refresh_frozen(state)
        return ChunkArgs(F1, F2, state.W1, state.W2, state.S1, state.S2, state.conv, float(state.eta_gain))

    def next_state(self, state: SelfModState, n: int, args: ChunkArgs, out: ChunkOut) -> tuple[SelfModState, dict]:
        """The state after n tokens and their record, from a core's inputs `args` and outputs `out`."""
        new = replace(state, pos=state.pos + n, F1=args.F1, F2=args.F2, conv=out.conv, W1=out.W1, W2=out.W2,
                      S1=out.S1, S2=out.S2)  # fmt: skip
        return new, {"eta": out.eta, "alpha": out.alpha, "surprise": out.surprise, "clipped": out.clipped}

    def _piece(self, xh: Tensor, fixed: tuple, state: SelfModState, stepwise: bool, consts: dict, core=None):
        """Tokens inside one chunk of both chunk sizes, heads folded into the batch (N = B*H): the
        frozen state is constant here. Returns o (N, n, dh), the new state, per-token records."""
        args = self.core_args(state)
        if core is None or (stepwise and xh.shape[1] > 1):  # one token: stepwise and parallel are one step
            core = self._chunk_core
        elif torch.is_grad_enabled() and not args.conv.requires_grad:
            # the first chunk's zero conv state would otherwise compile a second graph
            args = args._replace(conv=args.conv.detach().requires_grad_(True))
        out = core(xh, fixed, consts, stepwise, *args)
        new, record = self.next_state(state, xh.shape[1], args, out)
        return out.o, new, record

    def _chunk_core(self, xh, fixed, consts, stepwise: bool, F1, F2, W1, W2, S1, S2, conv_state, gain: float):
        """The tensor work of `_piece`: a pure function of tensors (and the frozen flag `gain`), what
        `nested.compile_model(model, "chunks" | "train")` compiles. Returns a `ChunkOut`."""
        cfg = self.cfg
        N, n, dh = xh.shape
        M, hm, m = F1.shape[1], F1.shape[-1], self.i_mem
        proj = bank_forward(F1, F2, xh)  # every memory on x_t, frozen state (N, M, n, dh)
        logits = (proj[:, self.i_eta : self.i_alpha + 1] * consts["gate_w"]).sum(-1) + consts["gate_b"]
        gates = torch.sigmoid(logits)
        eta, alpha = cfg.eta_scale * gain * gates[:, 0], gates[:, 1]  # (N, n)
        log_alpha = F.logsigmoid(logits[:, 1])
        if not cfg.forget_gate:  # E4's "no alpha": the DGD decay term is I - eta k k^T
            alpha, log_alpha = torch.ones_like(alpha), torch.zeros_like(log_alpha)

        raw = torch.cat([proj[:, i] if f is None else f for f, i in zip(fixed, (self.i_q, self.i_k, self.i_v), strict=True)],
                        dim=-1)  # fmt: skip
        conv, conv_state = causal_conv(raw, conv_state, consts["conv_w"])
        cq, ck, v = F.silu(conv).split(dh, dim=-1)
        q, k = F.normalize(cq, dim=-1), F.normalize(ck, dim=-1)

        # v_hat_box = M_box(v_t) (Eq. 87) and every memory's inner gradient at k_t, frozen state
        e, hidden, g2, inner_loss = bank_self_grads(
            F1, F2, k, v, cfg.inner_objective, cfg.eq92_sign, cfg.stopgrad_targets
        )
        scale, clipped = inner_scale(e, hidden, g2, k, cfg.inner_update, cfg.inner_clip)
        e, g2 = e * scale, g2 * scale

        mom = cfg.momentum > 0
        beta = torch.full_like(eta, cfg.momentum) if mom else None
        K = cfg.inner_steps
        tables = None if stepwise else step_tables(alpha, beta, K, log_alpha)
        # First layers W2 of all memories share the key k: stack them along the output rows, and read
        # only M_memory's rows (the row-separable read of recurrence_chunk).
        reads2, W2_next, S2_next = run_recurrence(
            W2.reshape(N, M * hm, dh),
            S2.reshape(N, M * hm, dh) if mom else None,
            RecurrenceInputs(
                decay=alpha,
                lr=eta,
                grads=g2.transpose(1, 2).reshape(N, n, M * hm),
                gkeys=k,
                precond=eta if cfg.precondition else None,
                pkeys=k if cfg.precondition else None,
                mom=beta,
                queries=q,
            ),
            stepwise,
            cfg.read_after_write,
            read_rows=slice(m * hm, (m + 1) * hm),
            tables=tables,
            steps=K,
        )
        # Second layers W1: each memory has its own key (its hidden activation). M_memory is read; the
        # projection memories only need their end-of-piece state (a broadcast stack sharing the tables).
        reads1, W1_mem, S1_mem = run_recurrence(
            W1[:, m],
            S1[:, m] if mom else None,
            RecurrenceInputs(decay=alpha, lr=eta, grads=e[:, m], gkeys=hidden[:, m], mom=beta, queries=F.silu(reads2)),
            stepwise,
            cfg.read_after_write,
            tables=tables,
            steps=K,
        )
        bcast = lambda t: None if t is None else t[:, None]  # noqa: E731
        _, W1_rest, S1_rest = run_recurrence(
            W1[:, :m],
            S1[:, :m] if mom else None,
            RecurrenceInputs(decay=bcast(alpha), lr=bcast(eta), grads=e[:, :m], gkeys=hidden[:, :m], mom=bcast(beta)),
            stepwise,
            tables=None if tables is None else tables.unsqueeze(1),
            steps=K,
        )
        W1_new = torch.cat([W1_rest, W1_mem[:, None]], 1)
        S1_new = torch.cat([S1_rest, S1_mem[:, None]], 1) if mom else None
        S2_new = S2_next.view(N, M, hm, dh) if mom else None
        # o_t = M_memory,t-1(q_t)
        return ChunkOut(q + reads1, W1_new, W2_next.view(N, M, hm, dh), S1_new, S2_new, conv_state, eta, alpha,
                        inner_loss[:, m], clip_fraction(clipped, N // self.cfg.n_heads))  # fmt: skip
