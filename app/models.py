"""Which models the app offers and how it builds them. Weights are read-only and shared (cached per
process); every stream state lives in the session, never in the cached model.

The app runs the shipped checkpoints (assets/checkpoints, trained by `python -m nested ship`) where they
exist, and otherwise builds the model on the fly from the seed (untrained)."""

from __future__ import annotations

import nested
from nested.bytes import decode_token, encode_text  # noqa: F401  (the app's names for them)
from nested.checkpoint import CHECKPOINTS

# name in the picker -> (shipped checkpoint, registry model, on-the-fly settings)
APP_MODELS: dict[str, tuple[str | None, str, dict]] = {
    "hope": ("hope-text", "hope", {"d_model": 64, "n_layers": 2, "cms_periods": (16, 64)}),
    "titans": ("titans-text", "titans", {"d_model": 64, "n_layers": 2}),
    "transformer": ("transformer-text", "transformer", {"d_model": 64, "n_layers": 2}),
    "hope-recall": (
        "hope-recall",
        "hope",
        {"d_model": 64, "n_layers": 2, "cms_periods": (16, 64), "inner_update": "normalized", "cms_clip": 1000.0},
    ),
    # the recall lab (pages/recall.py): MQAR over 4-32 pairs, matched size
    "titans-recall": ("titans-recall", "titans", {"d_model": 64, "n_layers": 2}),
    "transformer-recall": ("transformer-recall", "transformer", {"d_model": 64, "n_layers": 2}),
    "swa-recall": ("swa-recall", "transformer-swa", {"d_model": 64, "n_layers": 2, "window": 24}),
    # continual learning in context (pages/continual.py): successor languages, matched size
    "hope-languages": (
        "hope-languages",
        "hope",
        {"d_model": 64, "n_layers": 2, "cms_periods": (16, 64), "inner_update": "normalized"},
    ),
    "titans-languages": ("titans-languages", "titans", {"d_model": 64, "n_layers": 2}),
    "swa-languages": ("swa-languages", "transformer-swa", {"d_model": 64, "n_layers": 2, "window": 64}),
    "transformer-languages": ("transformer-languages", "transformer", {"d_model": 64, "n_layers": 2}),
    "hope-attention": (None, "hope-attention", {"d_model": 64, "n_layers": 2, "cms_periods": (16, 64)}),
    "deltanet": (None, "deltanet", {"d_model": 64, "n_layers": 2}),
}
DEFAULT_MODEL = "hope"


def is_trained(name: str) -> bool:
    ckpt = APP_MODELS[name][0]
    return ckpt is not None and (CHECKPOINTS / ckpt / "model.safetensors").is_file()


def weights_seed(name: str, seed: int) -> int:
    """The seed that decides `name`'s weights: a shipped checkpoint's are fixed, so every seed is 0 for it
    (runs and caches keyed by it are not recomputed or duplicated per seed); an untrained model's weights
    come from the seed. Names the app does not ship (a session's trained model) keep the seed."""
    return 0 if name in APP_MODELS and is_trained(name) else seed


def describe_model(name: str) -> str:
    ckpt, reg, _ = APP_MODELS[name]
    base = nested.DESCRIPTIONS[reg]
    return f"{base} — trained ({ckpt})" if is_trained(name) else f"{base} — untrained (seeded)"


def build_frozen(name: str, seed: int, device: str | None = None) -> nested.NestedLM:
    """A model whose weights nothing can change: parameters do not require grad; eval mode."""
    if name not in APP_MODELS:
        raise ValueError(f"unknown model {name!r}")
    ckpt, reg, settings = APP_MODELS[name]
    if is_trained(name):
        model = nested.load(CHECKPOINTS / ckpt, device=device or nested.pick_device())
    else:
        model = nested.build_model(reg, seed=seed, device=device, **settings)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()
