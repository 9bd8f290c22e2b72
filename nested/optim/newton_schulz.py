"""Newton-Schulz orthogonalisation (PAPER.md §1.3d, Eqs. 43-44; §7.2 note 5).

NS is read as the inner GD solver of the orthogonality objective ||O^T O - I||_F^2 (Eq. 43); one GD step
with zeta = 1/4 from O ~ g is the cubic step O <- 1.5 O - 0.5 O O^T O (Eq. 44). Muon's quintic
X <- a X + (b A + c A^2) X, A = X X^T, (a, b, c) = (3.4445, -4.7750, 2.0315), is the default.
"""

from __future__ import annotations

import torch
from torch import Tensor

QUINTIC = (3.4445, -4.7750, 2.0315)
CUBIC = (1.5, -0.5, 0.0)  # Eq. 44 with zeta = 1/4: X <- 1.5 X - 0.5 X X^T X


def newton_schulz(
    G: Tensor,
    steps: int = 5,
    coefficients: tuple[float, float, float] = QUINTIC,
    eps: float = 1e-7,
    dtype: torch.dtype | str | None = "auto",
) -> Tensor:
    """Approximate the orthogonal factor U V^T of G (= U S V^T). Frobenius-normalised first (so the
    result is invariant to G's scale), run on the wide orientation (transposed when rows > cols), in
    `dtype`: "auto" = bfloat16 on CUDA (like torch.optim.Muon) and G's dtype elsewhere (bfloat16 matmuls
    are ~100x slower than float32 on CPUs without bf16 units: bench/bench_optimizers.py); None keeps G's
    dtype. 1-D tensors pass through unchanged; tensors with more than two dims are flattened to
    (shape[0], -1) and back."""
    if G.dim() < 2:
        return G
    if dtype == "auto":
        dtype = torch.bfloat16 if G.is_cuda else None
    shape = G.shape
    X = G.reshape(shape[0], -1)
    a, b, c = coefficients
    X = X.to(dtype) if dtype is not None else X.clone()
    tall = X.size(0) > X.size(1)
    if tall:
        X = X.T
    X = X / X.norm().clamp(min=eps)
    for _ in range(steps):
        A = X @ X.T
        B = torch.addmm(A, A, A, beta=b, alpha=c)
        X = torch.addmm(X, B, X, beta=a)
    if tall:
        X = X.T
    return X.to(G.dtype).reshape(shape)
