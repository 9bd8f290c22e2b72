"""The named data of self-modifying Titans (nested.selfmod): the stream state of one layer, and the inputs
and outputs of its chunk step `_chunk_core` (a pure function of tensors, what nested.compile compiles)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from torch import Tensor


@dataclass(frozen=True)
class SelfModState:
    """One self-modifying Titans layer's stream state, per item x head (N = batch x heads) on dim 0.
    W = (W1, W2): every memory's current weights (N, M, ., .); F = (F1, F2): the state the inner
    gradients are taken at this chunk (§11.2g); S1, S2: momentum (None without); conv: the causal conv
    window; eta_gain scales every eta_t (0 freezes the writes: nested.Freeze)."""

    pos: int
    W1: Tensor
    W2: Tensor
    F1: Tensor
    F2: Tensor
    conv: Tensor
    S1: Tensor | None = None
    S2: Tensor | None = None
    eta_gain: float = 1.0


class ChunkArgs(NamedTuple):
    """The state's tensor inputs of `_chunk_core` (after the input and constants)."""

    F1: Tensor
    F2: Tensor
    W1: Tensor
    W2: Tensor
    S1: Tensor | None
    S2: Tensor | None
    conv: Tensor
    gain: float


class ChunkOut(NamedTuple):
    """What `_chunk_core` returns: the read o (N, n, dh), the new memories and conv window, and the
    per-token records eta, alpha, surprise (N, n) and the clipped fraction (B, n, M)."""

    o: Tensor
    W1: Tensor
    W2: Tensor
    S1: Tensor | None
    S2: Tensor | None
    conv: Tensor
    eta: Tensor
    alpha: Tensor
    surprise: Tensor
    clipped: Tensor
