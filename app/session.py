"""Per-session helpers shared by pages: the read-only model cache, the session's own trained models, and
the error boundary.

A model trained on the Train page belongs to its session only: it is kept in st.session_state under
SESSION_MODELS (never in a cache shared by sessions), listed by the model pickers as "yours: ..." with a
random suffix (names never collide across sessions, so caches keyed by a model's name stay correct), and
`frozen_model` returns it like any other model."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

import streamlit as st

import nested
from app.models import APP_MODELS, build_frozen, describe_model
from app.textinput import TextInputError, clean_text, decode_upload

SESSION_MODELS = "session_models"  # st.session_state key: {name: SessionModel}, oldest first
YOURS = "yours: "
MAX_SESSION_MODELS = 3  # a session keeps its last few results (memory stays bounded)


@dataclass
class SessionModel:
    model: nested.NestedLM  # read-only: no parameter requires grad, eval mode
    description: str
    meta: dict = field(default_factory=dict)  # what the checkpoint download carries


@st.cache_resource(show_spinner="Loading the model…")
def _shared_model(name: str, seed: int) -> nested.NestedLM:
    """Read-only weights shared by all sessions (nothing ever writes to them: state lives per session)."""
    return build_frozen(name, seed)


def session_models() -> dict[str, SessionModel]:
    return st.session_state.setdefault(SESSION_MODELS, {})


def add_session_model(base: str, entry: SessionModel) -> str:
    """Keep a trained model for this session; returns its picker name. The oldest beyond
    MAX_SESSION_MODELS is dropped."""
    models = session_models()
    name = f"{YOURS}{base} ({secrets.token_hex(2)})"
    models[name] = entry
    while len(models) > MAX_SESSION_MODELS:
        models.pop(next(iter(models)))
    return name


def model_names() -> list[str]:
    """Every model a picker offers this session: the app's, then the session's own."""
    return [*APP_MODELS, *session_models()]


def model_description(name: str) -> str:
    entry = session_models().get(name)
    return entry.description if entry is not None else describe_model(name)


def frozen_model(name: str, seed: int) -> nested.NestedLM:
    """The model a page runs: this session's own by that name, else the shared read-only one."""
    entry = session_models().get(name)
    return entry.model if entry is not None else _shared_model(name, seed)


def show_error(exc: Exception, what: str) -> None:
    """A clear message instead of a traceback; the session's earlier state is untouched."""
    hint = " You can freeze a level or pick another text." if isinstance(exc, nested.NonFiniteMemoryError) else ""
    st.error(f"{what}: {exc}.{hint}")


def user_text(raw: str, what: str = "this page") -> str | None:
    """Typed text cleaned for a page (app.textinput.clean_text), its notes shown; None with a warning when
    it cannot be used."""
    try:
        text, notes = clean_text(raw, what=what)
    except TextInputError as exc:
        st.warning(f"Your text cannot be used: {exc}.")
        return None
    for note in notes:
        st.caption(note)
    return text


def upload_text(up) -> str:
    """An uploaded file's text (app.textinput.decode_upload), saying which encoding it was read in when it
    was not UTF-8. Raises TextInputError for a binary or oversized file."""
    text, encoding = decode_upload(up.getvalue())
    if encoding != "UTF-8":
        st.caption(f"Read as {encoding} (the file is not UTF-8).")
    return text
