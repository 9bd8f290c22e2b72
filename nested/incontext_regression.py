"""E4 (PAPER.md §9): self-generated learning rates and retention, on in-context linear regression.

Each sequence has a hidden noise level sigma ~ LogUniform(0.01, 1) and, with probability 1/2, a regime
switch at a random position where the map A is redrawn. Tokens are (k_t, v_t = A k_t + sigma eps_t);
every `query_every`-th token is a query (k_q, 0) whose target is A k_q, the noiseless value under the
map in force. A model that infers sigma from its context should write faster when the context is clean
(an optimal, Kalman-like gain grows with 1/sigma^2) and forget right after a switch.

The networks are the library's blocks (x + mixer(norm(x)), then an MLP) between a linear read-in of the
token and a linear read-out of the prediction, so every memory variant is the library's own mixer with
a `ModelConfig` switch (`VARIANTS`). `bench/e4_regression.py` trains and measures them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor, nn

from nested.config import ModelConfig
from nested.layers import RMSNorm
from nested.model import Block  # the model's own wiring


@dataclass(frozen=True)
class RegressionTask:
    d_key: int = 8
    seq_len: int = 128
    query_every: int = 8
    sigma_min: float = 0.01
    sigma_max: float = 1.0
    switch_prob: float = 0.5

    @property
    def d_in(self) -> int:
        return 2 * self.d_key + 1  # [k, v, is_query]

    def sample(self, batch: int, generator: torch.Generator) -> dict[str, Tensor]:
        """inputs (B, T, 2d+1), targets (B, T, d), is_query (B, T), sigma (B,), switch_at (B,) (-1: none)."""
        B, T, d, g = batch, self.seq_len, self.d_key, generator
        log_lo, log_hi = math.log(self.sigma_min), math.log(self.sigma_max)
        sigma = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(B, generator=g))
        maps = torch.randn(2, B, d, d, generator=g) / d**0.5  # before / after the switch; unit-norm values
        switching = torch.rand(B, generator=g) < self.switch_prob
        switch_at = torch.randint(T // 4, 3 * T // 4, (B,), generator=g)
        switch_at = torch.where(switching, switch_at, torch.full_like(switch_at, -1))
        pos = torch.arange(T)
        after = (switch_at[:, None] >= 0) & (pos[None] >= switch_at[:, None])  # (B, T)
        A = torch.where(after[..., None, None], maps[1][:, None], maps[0][:, None])  # (B, T, d, d)
        keys = torch.randn(B, T, d, generator=g) / d**0.5  # |k| ~ 1
        clean = (A @ keys[..., None]).squeeze(-1)
        is_query = (pos[None] % self.query_every == self.query_every - 1).expand(B, T)
        noisy = clean + sigma[:, None, None] * torch.randn(B, T, d, generator=g) / d**0.5  # |noise| ~ sigma
        values = torch.where(is_query[..., None], torch.zeros_like(noisy), noisy)
        inputs = torch.cat([keys, values, is_query[..., None].float()], dim=-1)
        return {"inputs": inputs, "targets": clean, "is_query": is_query, "sigma": sigma, "switch_at": switch_at}


# E4's models (PAPER.md §9): one ModelConfig change each from the full self-modifying Titans (model 4)
VARIANTS: dict[str, dict] = {
    "0 softmax attention (reference)": {"mixer": "attention"},
    "1 Titans, static gates": {"mixer": "titans", "titans_gates": "static"},
    "2 Titans, data-dependent gates": {"mixer": "titans"},
    "3 self-modifying eta/alpha only": {"adaptive_k": False, "adaptive_v": False},
    "4 self-modifying Titans": {},
    "5a fixed v": {"adaptive_v": False},
    "5b fixed k": {"adaptive_k": False},
    "5c with momentum": {"momentum": 0.9},
    "5d no alpha": {"forget_gate": False},
    "5e GD, not DGD": {"precondition": False},
}


def variant_config(variant: str, d_model: int = 32, n_layers: int = 1, **overrides) -> ModelConfig:
    base = {"name": "e4", "mixer": "selfmod", "ffn": "mlp", "d_model": d_model, "n_layers": n_layers,
            "inner_update": "normalized", "inner_clip": 10.0}  # fmt: skip
    return ModelConfig(**{**base, **VARIANTS[variant], **overrides})


class RegressionNet(nn.Module):
    """read-in -> n_layers x Block(mixer, MLP) -> norm -> read-out. forward(inputs) -> (prediction, records)."""

    def __init__(self, cfg: ModelConfig, d_in: int, d_out: int):
        super().__init__()
        torch.manual_seed(cfg.seed)
        self.cfg = cfg
        self.read_in = nn.Linear(d_in, cfg.d_model)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layers)])
        self.norm = RMSNorm(cfg.d_model)
        self.read_out = nn.Linear(cfg.d_model, d_out)

    def forward(self, inputs: Tensor) -> tuple[Tensor, list[dict]]:
        x = self.read_in(inputs)
        records = []
        for layer, block in enumerate(self.blocks):
            state = block.mixer.init_state(inputs.shape[0], inputs.device, inputs.dtype)
            x, _, record = block(x, state, None, layer=layer)
            records.append(record)
        return self.read_out(self.norm(x)), records


def squared_errors(pred: Tensor, batch: dict) -> Tensor:
    """(B, T): each token's squared error, summed over the value's dimensions (only queries are scored)."""
    return ((pred - batch["targets"]) ** 2).sum(-1)


def query_mse(pred: Tensor, batch: dict) -> Tensor:
    """Mean squared error per query token, over the batch's queries."""
    return squared_errors(pred, batch)[batch["is_query"]].mean()


@dataclass(frozen=True)
class Measures:
    """E4's measures on fresh sequences (PAPER.md §9)."""

    mse: float  # query MSE over all queries
    mse_by_sigma: list[tuple[float, float]]  # (sigma bin's geometric centre, MSE)
    mse_after_switch: list[tuple[int, float]]  # (tokens since the switch, bin start; MSE)
    eta_corr: float  # Spearman correlation of the sequence-mean eta_t with 1/sigma^2 (last layer)
    alpha_dip: float  # mean retention over the 8 tokens after a switch minus over the 32 before (last layer)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if np.allclose(a, a[0]) or np.allclose(b, b[0]):
        return 0.0  # a constant rate (static gates) carries no information about sigma
    return float(np.corrcoef(a.argsort().argsort(), b.argsort().argsort())[0, 1])


@torch.no_grad()
def measure(model: RegressionNet, task: RegressionTask, n: int = 512, seed: int = 12345) -> Measures:
    batch = task.sample(n, torch.Generator().manual_seed(seed))
    pred, records = model(batch["inputs"])
    err = squared_errors(pred, batch)
    q = batch["is_query"]
    sigma, switch_at = batch["sigma"], batch["switch_at"]
    edges = np.geomspace(task.sigma_min, task.sigma_max, 5)
    by_sigma = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        rows = (sigma >= lo) & (sigma < hi)
        if rows.any():
            by_sigma.append((float(np.sqrt(lo * hi)), float(err[rows][q[rows]].mean())))
    pos = torch.arange(task.seq_len)
    since = pos[None] - switch_at[:, None]  # tokens since the switch (switching rows only)
    switched = switch_at >= 0
    after = []
    for start in (0, 8, 16, 32, 64):
        window = switched[:, None] & q & (since >= start) & (since < start + 8)
        if window.any():
            after.append((start, float(err[window].mean())))
    if "eta" not in records[-1]:  # attention: no learning rate, no retention gate
        return Measures(float(err[q].mean()), by_sigma, after, float("nan"), float("nan"))
    eta = records[-1]["eta"].mean(-1)  # (B, T), averaged over heads
    alpha = records[-1]["alpha"].mean(-1)
    corr = _spearman(eta.mean(1).numpy(), (1 / sigma**2).numpy())
    dips = []
    for b in torch.nonzero(switched).flatten().tolist():
        s = int(switch_at[b])
        dips.append(float(alpha[b, s : s + 8].mean() - alpha[b, max(0, s - 32) : s].mean()))
    return Measures(float(err[q].mean()), by_sigma, after, corr, float(np.mean(dips)) if dips else 0.0)


def train_variant(variant: str, task: RegressionTask, steps: int, seed: int, batch: int = 32, lr: float = 3e-3,
                  d_model: int = 32, n_layers: int = 1, log=None) -> tuple[RegressionNet, list[float]]:  # fmt: skip
    """Meta-train one variant (outer AdamW, fresh sequences every step, gradient norm clipped at 1)."""
    cfg = replace(variant_config(variant, d_model, n_layers), seed=seed)
    model = RegressionNet(cfg, task.d_in, task.d_key)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(1000 + seed)
    losses = []
    for step in range(steps):
        data = task.sample(batch, gen)
        loss = query_mse(model(data["inputs"])[0], data)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if log and (step + 1) % 50 == 0:
            log(f"{variant} seed {seed} step {step + 1}: query MSE {np.mean(losses[-50:]):.4f}")
    return model, losses
