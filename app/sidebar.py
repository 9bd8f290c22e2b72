"""The global sidebar: model picker, device in use, seed. Bound to the URL so links restore them."""

from __future__ import annotations

import streamlit as st

from app.models import APP_MODELS, DEFAULT_MODEL, describe_model
from nested.device import describe, pick_device


def _clean_query_params() -> None:
    """Garbage in the URL must never raise: drop values the widgets would reject."""
    qp = st.query_params
    if qp.get("model") not in (None, *APP_MODELS):
        del qp["model"]
    seed = qp.get("seed")
    if seed is not None and not (seed.lstrip("-").isdigit() and 0 <= int(seed) < 2**31):
        del qp["seed"]


def global_sidebar() -> dict:
    _clean_query_params()
    with st.sidebar:
        st.markdown("### Nested Learning Lab")
        model = st.selectbox(
            "Model",
            list(APP_MODELS),
            index=list(APP_MODELS).index(DEFAULT_MODEL),
            format_func=lambda n: f"{n}: {describe_model(n)}",
            key="model",
            bind="query-params",
            help="The model every page runs. Its weights are shared read-only; your stream state is yours.",
        )
        seed = st.number_input(
            "Seed", min_value=0, max_value=2**31 - 1, value=0, step=1, key="seed", bind="query-params",
            help="Seeds untrained models' initial weights and any sampled data (trained checkpoints are fixed).",
        )  # fmt: skip
        device = pick_device()
        st.caption(f"Device: **{describe(device)}**")
    return {"model": model, "seed": int(seed), "device": str(device)}
