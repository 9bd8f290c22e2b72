"""The model registry (DESIGN.md §2): names -> configuration defaults, and `build_model`."""

from __future__ import annotations

import threading
from dataclasses import fields

import torch

from nested.config import ModelConfig
from nested.device import pick_device
from nested.model import NestedLM

MODELS: dict[str, dict] = {
    # Hope: self-modifying Titans -> CMS (PAPER.md §6)
    "hope": {"mixer": "selfmod", "ffn": "cms"},
    # Hope-Attention: softmax attention -> CMS (§5.5)
    "hope-attention": {"mixer": "attention", "ffn": "cms"},
    # Baselines of matched size (same embedding, head, FFN budget)
    "titans": {"mixer": "titans", "ffn": "mlp"},
    "transformer": {"mixer": "attention", "ffn": "mlp"},
    "transformer-swa": {"mixer": "attention", "ffn": "mlp", "window": 64},
    "deltanet": {"mixer": "deltanet", "ffn": "mlp", "chunk_size": 64, "extra": {"rule": "delta"}},
    "gated-deltanet": {"mixer": "deltanet", "ffn": "mlp", "chunk_size": 64, "extra": {"rule": "gated_delta"}},
    "linear-attention": {"mixer": "linear", "ffn": "mlp", "chunk_size": 64},
}

DESCRIPTIONS = {
    "hope": "Self-modifying Titans + Continuum Memory System (the paper's Hope)",
    "hope-attention": "Softmax attention + Continuum Memory System",
    "titans": "Titans long-term memory (LMM) + MLP",
    "transformer": "Softmax attention + MLP (the two extreme frequencies)",
    "transformer-swa": "Sliding-window attention + MLP",
    "deltanet": "DeltaNet (delta-rule matrix memory) + MLP",
    "gated-deltanet": "Gated DeltaNet + MLP",
    "linear-attention": "Linear attention (Hebbian matrix memory) + MLP",
}


def make_config(name: str, vocab_size: int = 256, d_model: int = 64, n_layers: int = 2, seed: int = 0,
                **overrides) -> ModelConfig:  # fmt: skip
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    known = {f.name for f in fields(ModelConfig)}
    bad = set(overrides) - known
    if bad:
        raise ValueError(f"unknown option(s) for {name!r}: {sorted(bad)}")
    kw = dict(MODELS[name])
    kw["n_heads"] = max(1, d_model // 32)  # head dim 32 for every mixer (memories are per head)
    kw.update(overrides)
    return ModelConfig(name=name, vocab_size=vocab_size, d_model=d_model, n_layers=n_layers, seed=seed, **kw)


_SEEDED_BUILD = threading.Lock()


def build_model(name: str, vocab_size: int = 256, d_model: int = 64, n_layers: int = 2, seed: int = 0,
                device: str | torch.device | None = None, dtype: torch.dtype = torch.float32,
                **overrides) -> NestedLM:  # fmt: skip
    """Build a registry model with deterministic initial weights for `seed`, on `device` (auto)."""
    cfg = make_config(name, vocab_size=vocab_size, d_model=d_model, n_layers=n_layers, seed=seed, **overrides)
    return model_from_config(cfg, device=device, dtype=dtype)


def model_from_config(cfg: ModelConfig, device=None, dtype: torch.dtype = torch.float32) -> NestedLM:
    # the modules draw their initial weights from torch's global generator: seed it, and let no other
    # thread build (and reseed) in between, or two sessions building at once get each other's draws
    with _SEEDED_BUILD:
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(cfg.seed)
        try:
            model = NestedLM(cfg)
        finally:
            torch.random.set_rng_state(gen_state)
    dev = device if isinstance(device, torch.device) else pick_device(device)
    return model.to(device=dev, dtype=dtype)
