"""The global sidebar: model picker, device in use, seed. Bound to the URL so links restore them; an
instructor's `?hide=model,seed` keeps their URL values and hides the widgets."""

from __future__ import annotations

import streamlit as st

from app.models import DEFAULT_MODEL
from app.session import model_description, model_names
from app.train_ui import collect_pending
from app.urlstate import choice, is_hidden, remember_hidden
from nested.device import describe, pick_device

MAX_SEED = 2**31 - 1


def _seed_from_url() -> int | None:
    raw = st.query_params.get("seed")
    return int(raw) if raw is not None and raw.isdigit() and int(raw) <= MAX_SEED else None


def _clean_query_params() -> None:
    """Garbage in the URL must never raise: drop values the widgets would reject."""
    qp = st.query_params
    if qp.get("model") not in (None, *model_names()):
        del qp["model"]
    if qp.get("seed") is not None and _seed_from_url() is None:
        del qp["seed"]


def global_sidebar() -> dict:
    collect_pending()  # a training that ended while this session was elsewhere joins the pickers now
    _clean_query_params()
    with st.sidebar:
        st.markdown("### Nested Learning Lab")
        model = choice(st.selectbox, "Model", model_names(), key="model", default=DEFAULT_MODEL,
                       help="The model every page runs. Its weights are shared read-only; your stream state is yours. "
                       "Models you train on the Train page are listed as 'yours: …' (this session only).")  # fmt: skip
        st.caption(model_description(model))
        if is_hidden("seed"):
            seed = _seed_from_url() or 0
            remember_hidden("seed", seed)
        else:
            seed = st.number_input(
                "Seed", min_value=0, max_value=MAX_SEED, value=None if "seed" in st.session_state else 0, step=1,
                key="seed", bind="query-params",
                help="Seeds untrained models' initial weights and any sampled data (trained checkpoints are fixed).",
            )  # fmt: skip
        device = pick_device()
        st.caption(f"Device: **{describe(device)}**")
    return {"model": model, "seed": int(seed or 0), "device": str(device)}
