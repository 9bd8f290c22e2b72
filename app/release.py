"""Give a closed session's memory back to the operating system.

Two things kept a closed tab's memory. (1) Streamlit keeps a disconnected session for
`server.disconnectedSessionTTL` so a tab that lost its connection for a moment can resume it, in a TTL
cache that only drops expired sessions when another session is stored later: the last room's sessions
(their streams and traces, ~3-5 MB each) stayed until somebody else disconnected (measured: a room of 10
kept 3,340 trace events and 3,130 tensors alive 78 s after it closed). (2) glibc keeps freed heap pages in
its arenas, so RSS never came down (558 MB stayed after a 30-session room closed).

Each session holds a session-scoped resource whose release Streamlit calls when the tab disconnects (on
the server's event loop). The release schedules, on that loop, the end of the reconnect window: if the
session has not come back by then it is closed (Streamlit's public `Runtime.close_session`, the same
call a logout makes), then garbage is collected and glibc asked to return free pages (`malloc_trim`)."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import os
import threading
from dataclasses import dataclass

import streamlit as st
from streamlit import runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx

TRIM_DELAY_S = 2.0  # the session's state is dropped a moment after it is closed
CLOSE_MARGIN_S = 2.0  # close this long before the reconnect window ends: an expired entry can't be found


@dataclass(frozen=True)
class _SessionToken:
    session_id: str | None


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


def _trim_soon() -> None:
    timer = threading.Timer(TRIM_DELAY_S, trim_memory)
    timer.daemon = True
    timer.start()


def reconnect_window_s() -> float:
    """How long a disconnected session may still resume: the TTL less a margin (0 when the TTL is 0)."""
    ttl = float(st.get_option("server.disconnectedSessionTTL") or 0)
    return max(ttl - CLOSE_MARGIN_S, 0.0)


def close_if_gone(session_id: str) -> bool:
    """On the event loop: close the session unless it reconnected; True when it was closed."""
    if not runtime.exists():
        return False
    rt = runtime.get_instance()
    if rt.is_active_session(session_id):
        return False  # the tab came back: its state stays
    rt.close_session(session_id)
    _trim_soon()
    return True


_pending: dict[str, asyncio.TimerHandle] = {}


def _released(token: _SessionToken) -> None:
    """Streamlit's release of the session's resource: called when the tab disconnects, on the event loop."""
    _trim_soon()  # what the disconnect itself freed
    sid = getattr(token, "session_id", None)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return  # not on the server's loop (tests, another server): Streamlit's own expiry applies
    if sid is None:
        return
    old = _pending.pop(sid, None)
    if old is not None:
        old.cancel()  # a later disconnect of the same session restarts its window

    def end_of_window() -> None:
        _pending.pop(sid, None)
        close_if_gone(sid)

    _pending[sid] = loop.call_later(reconnect_window_s(), end_of_window)


@st.cache_resource(scope="session", on_release=_released, show_spinner=False)
def _session_token() -> _SessionToken:
    ctx = get_script_run_ctx()
    return _SessionToken(ctx.session_id if ctx is not None else None)


def trim_when_session_ends() -> None:
    """Call once per run (app/main.py): the first run of a session registers its release."""
    _session_token()
