"""Give a closed session's memory back to the operating system. Streamlit frees a session's state once
its tab has been gone for `server.disconnectedSessionTTL`, but glibc keeps freed heap pages in its arenas,
so the server's RSS never came down (558 MB stayed after a 30-session room closed). Each session holds a
session-scoped resource whose release (Streamlit calls it when the session ends) collects garbage and
asks glibc to return free pages (`malloc_trim`), a moment later, once the session's state has gone."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import threading

import streamlit as st

TRIM_DELAY_S = 2.0  # the session's state is dropped after its resources are released


def trim_memory() -> bool:
    """gc, then glibc's malloc_trim(0); False where there is no glibc (macOS, musl) or it is switched off
    (NESTED_MALLOC_TRIM=0, to measure without it)."""
    gc.collect()
    if os.environ.get("NESTED_MALLOC_TRIM", "1") == "0":
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return bool(libc is not None and libc.malloc_trim(0))
    except (OSError, AttributeError):
        return False


def _released(_token: object) -> None:
    timer = threading.Timer(TRIM_DELAY_S, trim_memory)
    timer.daemon = True
    timer.start()


@st.cache_resource(scope="session", on_release=_released, show_spinner=False)
def _session_token() -> object:
    return object()


def trim_when_session_ends() -> None:
    """Call once per run (app/main.py): the first run of a session registers its release."""
    _session_token()
