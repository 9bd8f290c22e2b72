"""Which models the app offers and how it builds them. Weights are read-only and shared (cached per
process); every stream state lives in the session, never in the cached model."""

from __future__ import annotations

import torch

import nested

# The small models the app runs until trained checkpoints ship (built from a seed on the fly).
APP_MODELS: dict[str, dict] = {
    "hope": {"d_model": 64, "n_layers": 2, "cms_periods": (16, 64), "chunk_size": 16},
    "titans": {"d_model": 64, "n_layers": 2, "chunk_size": 16},
    "transformer": {"d_model": 64, "n_layers": 2},
    "hope-attention": {"d_model": 64, "n_layers": 2, "cms_periods": (16, 64)},
    "deltanet": {"d_model": 64, "n_layers": 2},
}
DEFAULT_MODEL = "hope"


def build_frozen(name: str, seed: int, device: str | None = None) -> nested.NestedLM:
    """A model whose weights nothing can change: parameters do not require grad; eval mode."""
    if name not in APP_MODELS:
        raise ValueError(f"unknown model {name!r}")
    model = nested.build_model(name, seed=seed, device=device, **APP_MODELS[name])
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def encode_text(text: str, limit: int | None = None) -> torch.Tensor:
    """Byte-level tokens (vocabulary 256) of a text, UTF-8."""
    data = text.encode("utf-8", errors="replace")
    if limit is not None:
        data = data[:limit]
    return torch.tensor(list(data), dtype=torch.long)[None]


def decode_token(tok: int) -> str:
    """A byte shown as a readable character (control bytes and partial UTF-8 as escapes)."""
    if 32 <= tok < 127:
        return chr(tok)
    return {10: "⏎", 9: "⇥", 32: "␣"}.get(tok, f"\\x{tok:02x}")
