"""Per-session helpers shared by pages: the read-only model cache and the error boundary."""

from __future__ import annotations

import streamlit as st

import nested
from app.models import build_frozen


@st.cache_resource(show_spinner="Loading the model…")
def frozen_model(name: str, seed: int) -> nested.NestedLM:
    """Read-only weights shared by all sessions (nothing ever writes to them: state lives per session)."""
    return build_frozen(name, seed)


def show_error(exc: Exception, what: str) -> None:
    """A clear message instead of a traceback; the session's earlier state is untouched."""
    hint = " You can freeze a level or pick another text." if isinstance(exc, nested.NonFiniteMemoryError) else ""
    st.error(f"{what}: {exc}.{hint}")
