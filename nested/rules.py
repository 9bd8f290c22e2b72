"""One-step inner rules on a linear memory (PAPER.md §1.1, §2): each the closed-form solution of one
proximal step of an inner objective (Eq. 6 and the proximal form of §1.1).

Convention (PAPER.md §2): a matrix memory W has shape (out, in) and reads y = W k (column vectors).

- Hebbian / linear attention, dot-product objective (Eq. 64):  W <- a W + eta v k^T
- delta rule, L2 objective (§2):                                W <- W (I - eta k k^T) + eta v k^T
- gated delta rule (§2):                                        W <- W (a I - eta k k^T) + eta v k^T
- DGD, delta gradient descent (Eq. 56/57):  W <- W (I - eta' x x^T) - eta' grad_y x^T,
  eta' = eta / (1 + eta ||x||^2)

The memory layers run the batched, chunk-parallel generalisation of these in nested.memory.
"""

from __future__ import annotations

import torch
from torch import Tensor


def hebbian_update(W: Tensor, k: Tensor, v: Tensor, eta: float = 1.0, decay: float = 1.0) -> Tensor:
    """Dot-product (Hebbian) rule, Eq. 64: one GD step on L = -<W k, v> plus decay.

    W_t = a W_{t-1} + eta v k^T. State-independent: it cannot overwrite (PAPER.md §2)."""
    return decay * W + eta * torch.outer(v, k)


def delta_update(W: Tensor, k: Tensor, v: Tensor, eta: float) -> Tensor:
    """Delta rule (PAPER.md §2): one GD step on L = 1/2 ||W k - v||^2.

    W_t = W_{t-1} - eta (W_{t-1} k - v) k^T = W_{t-1}(I - eta k k^T) + eta v k^T
    (right multiplication in the y = W k convention; see the Eq. 65 note in docs/FIDELITY.md)."""
    return W - eta * torch.outer(W @ k - v, k)


def gated_delta_update(W: Tensor, k: Tensor, v: Tensor, eta: float, decay: float) -> Tensor:
    """Gated delta rule (PAPER.md §2): W_t = W_{t-1}(a I - eta k k^T) + eta v k^T."""
    return decay * W - eta * torch.outer(W @ k, k) + eta * torch.outer(v, k)


def dgd_eta_prime(eta: float | Tensor, x: Tensor) -> Tensor:
    """The DGD step size of Eq. 57: eta' = eta / (1 + eta ||x||^2) (App. C, corrected; PAPER.md §2)."""
    return eta / (1.0 + eta * (x * x).sum(-1))


def dgd_update(W: Tensor, x: Tensor, grad_y: Tensor, eta: float) -> Tensor:
    """Delta gradient descent, Eq. 57: the exact minimiser of Eq. 56,

        argmin_W 1/2 ||W x - u||^2 + 1/(2 eta) ||W - W_t||^2,   u = -grad_y L(W_t; x)

    W_{t+1} = W_t (I - eta' x x^T) - eta' grad_y x^T,  eta' = eta / (1 + eta ||x||^2)."""
    ep = dgd_eta_prime(eta, x)
    return W - ep * torch.outer(W @ x, x) - ep * torch.outer(grad_y, x)


def dgd_proximal_minimiser(W: Tensor, x: Tensor, grad_y: Tensor, eta: float) -> Tensor:
    """The Eq. 56 objective solved by its normal equations (a linear solve, no Sherman-Morrison):
    W (x x^T + I/eta) = u x^T + W_t / eta. Used as the oracle for `dgd_update`."""
    u = -grad_y
    A = torch.outer(x, x) + torch.eye(x.numel(), dtype=x.dtype) / eta
    rhs = torch.outer(u, x) + W / eta
    return torch.linalg.solve(A, rhs.T).T
