"""The rank-one linear recurrence that every memory layer of the library runs (PAPER.md §2, §4)
(self-modifying Titans Eq. 88, Titans §3, DeltaNet); the one-step rules on a linear memory it generalises
are in nested.rules.

Convention (PAPER.md §2): a matrix memory W has shape (out, in) and reads y = W k (column vectors).
Batched tensors put the batch (or batch x heads) first: W is (N, out, in), a key sequence is (N, C, in).

       S_t = b_t S_{t-1} + c_t g_t gk_t^T                      (momentum; S_t = c_t g_t gk_t^T when off)
       W_t = a_t W_{t-1} - p_t (W_{t-1} pk_t) pk_t^T - S_t      (decay, DGD preconditioner, gradient step)

with g_t gk_t^T the inner gradient of token t (precomputed, PAPER.md §4.3), in two schedules that
compute the same function: `recurrence_step` (the literal per-token loop) and `recurrence_chunk`
(chunk-parallel: cumulative decays, one unit-triangular solve for the preconditioner's
self-interaction, then matmuls; the DeltaNet/TTT "dual form" of DESIGN.md §6).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class RecurrenceInputs:
    """Per-token inputs of the recurrence for one chunk (or any run of tokens).

    decay a: (N, C); precond p: (N, C) or None (no DGD term); pkeys: (N, C, in) keys of the
    preconditioner; lr c: (N, C); grads g: (N, C, out); gkeys: (N, C, in); mom b: (N, C) or None
    (momentum off). Queries (N, C, in) or None: what to read from the memory at each token. log_decay /
    log_mom: log a and log b in closed form where the caller has them (a sigmoid gate: logsigmoid of its
    logit), used by the chunk form's tables instead of log(a) (see `decay_tables`)."""

    decay: Tensor
    lr: Tensor
    grads: Tensor
    gkeys: Tensor
    precond: Tensor | None = None
    pkeys: Tensor | None = None
    mom: Tensor | None = None
    queries: Tensor | None = None
    log_decay: Tensor | None = None
    log_mom: Tensor | None = None


def recurrence_step(
    W: Tensor,
    S: Tensor | None,
    inp: RecurrenceInputs,
    read_after_write: bool = False,
    read_rows: slice | None = None,
) -> tuple[Tensor | None, Tensor, Tensor | None]:
    """The literal per-token recurrence (Eq. 88 with momentum, Titans §3): a Python loop over tokens.

    Returns (reads (N, C, out) or None, W after the last token, S after the last token); reads are of
    the output rows `read_rows` (all by default)."""
    rows = read_rows or slice(None)
    reads = []
    for t in range(inp.grads.shape[-2]):
        q = inp.queries[..., t, :, None] if inp.queries is not None else None
        if q is not None and not read_after_write:
            reads.append((W[..., rows, :] @ q)[..., 0])
        grad = (inp.lr[..., t, None, None] * inp.grads[..., t, :, None]) * inp.gkeys[..., t, None, :]
        if inp.mom is not None:
            S = inp.mom[..., t, None, None] * S + grad
            step = S
        else:
            step = grad
        W_new = inp.decay[..., t, None, None] * W - step
        if inp.precond is not None:
            pk = inp.pkeys[..., t, :]
            u = W @ pk[..., :, None]  # (..., out, 1)
            W_new = W_new - (inp.precond[..., t, None, None] * u) * pk[..., None, :]
        W = W_new
        if q is not None and read_after_write:
            reads.append((W[..., rows, :] @ q)[..., 0])
    out = torch.stack(reads, -2) if reads else None
    return out, W, S


_MASKS: dict[tuple, tuple[Tensor, Tensor]] = {}


def _tril_masks(C: int, device) -> tuple[Tensor, Tensor]:
    """(inclusive, strict) lower-triangular boolean masks, cached per size and device in eager mode.
    A compiled graph builds them itself (constants to the compiler): a tensor a graph stores in a global
    would be its output, and inside a torch.func transform (the segment graph of nested.compile) it cannot be one."""

    def build() -> tuple[Tensor, Tensor]:
        inc = torch.ones(C, C, dtype=torch.bool, device=device).tril()
        return inc, inc.tril(-1)

    if torch.compiler.is_compiling():  # first, so a graph never guards on the cache's contents
        return build()
    key = (C, str(device))
    if key not in _MASKS:
        _MASKS[key] = build()
    return _MASKS[key]


@dataclass
class DecayTables:
    """Cumulative decay and momentum products of one chunk, shared by every recurrence that has the
    same per-token decay a and momentum b (all memories of a layer share alpha_t).

    LA[t, i] = A_t / A_i (i <= t), LAp[i, j] = A_{i-1} / A_j (j < i), A_t = prod_{i<=t} a_i,
    Ap_i = A_{i-1}; with momentum LB[i, j] = B_i / B_j, D = LA @ LB, s = LA @ B (and the primed forms)."""

    LA: Tensor
    LAp: Tensor
    A: Tensor
    Ap: Tensor
    D: Tensor
    Dp: Tensor
    LB: Tensor | None = None
    B: Tensor | None = None
    s: Tensor | None = None
    sp: Tensor | None = None

    def unsqueeze(self, dim: int) -> DecayTables:
        """Insert a broadcast dim (for a stack of memories sharing the tables)."""
        return DecayTables(*(None if t is None else t.unsqueeze(dim) for t in vars(self).values()))


def decay_tables(decay: Tensor, mom: Tensor | None = None, log_decay: Tensor | None = None,
                 log_mom: Tensor | None = None) -> DecayTables:  # fmt: skip
    """Tables for per-token decay (N, C) and optional momentum decay (N, C). Log-space, masked before
    exp, so no ratio overflows and nothing is divided. `log_decay` / `log_mom`, when the caller has them
    in closed form (a sigmoid gate: log sigmoid(z)), replace log(decay) / log(mom): the log of a gate that
    rounds to 0 has a second derivative of 1/gate^2, which overflows and made exact (second-order)
    gradients NaN."""
    C = decay.shape[-1]
    inc, strict = _tril_masks(C, decay.device)
    loga = torch.log(decay.clamp_min(1e-30)) if log_decay is None else log_decay
    la = torch.cumsum(loga, dim=-1)
    diff = la[..., :, None] - la[..., None, :]
    LA = torch.where(inc, diff, -torch.inf).exp()
    LAp = torch.where(strict, diff - loga[..., :, None], -torch.inf).exp()
    A = la.exp()
    Ap = (la - loga).exp()  # A_{t-1}
    if mom is None:
        return DecayTables(LA, LAp, A, Ap, LA, LAp)
    lb = torch.cumsum(torch.log(mom.clamp_min(1e-30)) if log_mom is None else log_mom, dim=-1)
    LB = torch.where(inc, lb[..., :, None] - lb[..., None, :], -torch.inf).exp()
    B = lb.exp()
    return DecayTables(
        LA, LAp, A, Ap, LA @ LB, LAp @ LB, LB, B, (LA @ B[..., None])[..., 0], (LAp @ B[..., None])[..., 0]
    )


def _t(x: Tensor) -> Tensor:
    return x.transpose(-1, -2)


def recurrence_chunk(
    W: Tensor,
    S: Tensor | None,
    inp: RecurrenceInputs,
    read_after_write: bool = False,
    read_rows: slice | None = None,
    tables: DecayTables | None = None,
) -> tuple[Tensor | None, Tensor, Tensor | None]:
    """The same function as `recurrence_step`, chunk-parallel (no loop over tokens).

    Unrolling the recurrence over the chunk gives (DecayTables for the notation)

        W_t = A_t W_0 - s_t S_0 - sum_{i<=t} LA[t,i] p_i u_i pk_i^T - sum_{j<=t} D[t,j] c_j g_j gk_j^T,

    where u_i = W_{i-1} pk_i solves the unit lower-triangular system (I + T) U = R with
    T[i,j] = LAp[i,j] p_j <pk_j, pk_i>. Every term is row-separable, so `read_rows` computes the reads of
    some output rows only. Leading batch dims broadcast (tables may be shared by a stack of memories)."""
    c, G, GK, PK, p = inp.lr, inp.grads, inp.gkeys, inp.pkeys, inp.precond
    tb = tables if tables is not None else decay_tables(inp.decay, inp.mom, inp.log_decay, inp.log_mom)
    momentum = inp.mom is not None
    cG = c[..., None] * G  # (..., C, out)

    def read(Qx: Tensor, inclusive: bool, U: Tensor | None, rows: slice) -> Tensor:
        Lm, Dm, Am = (tb.LA, tb.D, tb.A) if inclusive else (tb.LAp, tb.Dp, tb.Ap)
        r = Am[..., None] * (Qx @ _t(W[..., rows, :]))
        if S is not None and momentum:
            r = r - (tb.s if inclusive else tb.sp)[..., None] * (Qx @ _t(S[..., rows, :]))
        r = r - (Dm * (Qx @ _t(GK))) @ cG[..., rows]
        if U is not None:
            r = r - (Lm * (Qx @ _t(PK)) * p[..., None, :]) @ U[..., rows]
        return r

    everything = slice(None)
    U = None
    if p is not None:
        R = read(PK, inclusive=False, U=None, rows=everything)
        T = tb.LAp * (PK @ _t(PK)) * p[..., None, :]
        eye = torch.eye(T.shape[-1], dtype=T.dtype, device=T.device)
        U = torch.linalg.solve_triangular(eye + T, R, upper=False, unitriangular=True)

    reads = None
    if inp.queries is not None:
        reads = read(inp.queries, read_after_write, U, read_rows or everything)

    W_new = tb.A[..., -1, None, None] * W - _t(tb.D[..., -1, :, None] * cG) @ GK
    if U is not None:
        W_new = W_new - _t((tb.LA[..., -1, :] * p)[..., None] * U) @ PK
    S_new = None
    if momentum:
        S_new = _t(tb.LB[..., -1, :, None] * cG) @ GK
        if S is not None:
            W_new = W_new - tb.s[..., -1, None, None] * S
            S_new = S_new + tb.B[..., -1, None, None] * S
    return reads, W_new, S_new


def _each_token(t: Tensor | None, steps: int, dim: int) -> Tensor | None:
    """Every token of t (tokens along `dim`) `steps` times in a row."""
    return t if t is None or steps == 1 else t.repeat_interleave(steps, dim=dim)


def repeat_steps(inp: RecurrenceInputs, steps: int) -> RecurrenceInputs:
    """Every token's inputs `steps` times in a row: `steps` inner steps per token, each with the token's
    own (precomputed) gradient, decay, preconditioner and momentum (queries repeated too; see
    `run_recurrence` for which copy is read)."""
    if steps == 1:
        return inp

    def rep(t: Tensor | None, dim: int) -> Tensor | None:
        return _each_token(t, steps, dim)

    return RecurrenceInputs(decay=rep(inp.decay, -1), lr=rep(inp.lr, -1), grads=rep(inp.grads, -2),
                            gkeys=rep(inp.gkeys, -2), precond=rep(inp.precond, -1), pkeys=rep(inp.pkeys, -2),
                            mom=rep(inp.mom, -1), queries=rep(inp.queries, -2), log_decay=rep(inp.log_decay, -1),
                            log_mom=rep(inp.log_mom, -1))  # fmt: skip


def step_tables(decay: Tensor, mom: Tensor | None, steps: int, log_decay: Tensor | None = None) -> DecayTables:
    """`decay_tables` for inputs that `repeat_steps` repeats."""
    return decay_tables(*(_each_token(t, steps, -1) for t in (decay, mom, log_decay)))


def run_recurrence(
    W: Tensor,
    S: Tensor | None,
    inp: RecurrenceInputs,
    stepwise: bool,
    read_after_write: bool = False,
    read_rows: slice | None = None,
    tables: DecayTables | None = None,
    steps: int = 1,
):
    """Dispatch to the literal loop (`stepwise=True`) or the chunk-parallel form (which may reuse
    precomputed decay tables: `step_tables` when steps > 1). `steps` inner steps per token (the recall
    lab's "more inner steps" switch, `ModelConfig.inner_steps`): a token's read is taken before its first
    step (read before write) or after its last (read after write)."""
    inp = repeat_steps(inp, steps)
    if stepwise:
        reads, W, S = recurrence_step(W, S, inp, read_after_write, read_rows)
    else:
        reads, W, S = recurrence_chunk(W, S, inp, read_after_write, read_rows, tables)
    if reads is not None and steps > 1:
        reads = reads[..., steps - 1 :: steps, :] if read_after_write else reads[..., ::steps, :]
    return reads, W, S
