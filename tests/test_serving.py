"""How the server starts and lets go: warm caches before the first visitor (app.serve) and a closed tab's
session closed when its reconnect window ends (app.release)."""

from __future__ import annotations

import asyncio
import re

import pytest

from app import release, serve
from app.models import APP_MODELS, weights_seed
from app.presets import PRESETS, preset_path, shipped_run
from app.registry import ROOT


class FakeRuntime:
    """What app.release uses of Streamlit's Runtime: which sessions are connected, and closing one."""

    def __init__(self, active: set[str]):
        self.active, self.closed = set(active), []

    def is_active_session(self, session_id: str) -> bool:
        return session_id in self.active

    def close_session(self, session_id: str) -> None:
        self.closed.append(session_id)


@pytest.fixture
def fake_runtime(monkeypatch):
    rt = FakeRuntime(active={"back"})
    monkeypatch.setattr(release.runtime, "exists", lambda: True)
    monkeypatch.setattr(release.runtime, "get_instance", lambda: rt)
    monkeypatch.setattr(release, "trim_memory", lambda: False)
    return rt


def test_a_gone_session_is_closed_and_a_returning_one_kept(fake_runtime):
    assert release.close_if_gone("gone") is True
    assert release.close_if_gone("back") is False  # the tab reconnected within the window
    assert fake_runtime.closed == ["gone"]


def test_a_disconnect_closes_the_session_at_the_end_of_its_window_once(fake_runtime, monkeypatch):
    """Released on the server's loop: the close comes after the window, not before, and a second
    disconnect of the same session restarts the window (one close, not two)."""
    monkeypatch.setattr(release, "reconnect_window_s", lambda: 0.2)

    async def disconnects() -> list[list[str]]:
        seen = []
        release._released(release._SessionToken("s1"))
        await asyncio.sleep(0.1)
        seen.append(list(fake_runtime.closed))  # inside the window: still stored
        release._released(release._SessionToken("s1"))  # reconnected and left again
        await asyncio.sleep(0.15)
        seen.append(list(fake_runtime.closed))  # the first window would have ended here
        await asyncio.sleep(0.2)
        seen.append(list(fake_runtime.closed))
        return seen

    assert asyncio.run(disconnects()) == [[], [], ["s1"]]
    assert not release._pending


def test_the_window_is_the_configured_ttl_less_a_margin():
    import streamlit as st

    ttl = st.get_option("server.disconnectedSessionTTL")
    assert release.reconnect_window_s() == max(ttl - release.CLOSE_MARGIN_S, 0.0)


def test_warming_fills_every_shared_cache_the_pages_read(monkeypatch):
    """After app.serve.warm no shared model is built again (the builder is made to fail) and every
    shipped preset run is in memory; every app module a page imports was imported."""
    from app import session

    session._shared_model.clear()
    shipped_run.cache_clear()
    done = serve.warm()
    runs_cached = shipped_run.cache_info().currsize

    def no_build(*_):
        raise AssertionError("built after warming")

    monkeypatch.setattr(session, "build_frozen", no_build)
    for name in APP_MODELS:
        assert session._shared_model(name, weights_seed(name, 0)) is not None
    shipped = {p.run_key for p in PRESETS.values() if p.run_key is not None and preset_path(p.name).is_file()}
    assert runs_cached == len(shipped) > 0
    assert set(done["models"]) == set(APP_MODELS)
    imported = set()
    for page in (ROOT / "pages").glob("*.py"):
        imported |= set(re.findall(r"^from (app\.\w+) import", page.read_text(), flags=re.M))
    assert imported and imported <= set(done["modules"])


def test_a_model_that_cannot_load_is_reported_and_the_rest_warm(monkeypatch):
    from app import session

    session._shared_model.clear()

    def broken(name, seed, device=None):
        if name == "titans":
            raise ValueError("checkpoint damaged")
        return object()

    monkeypatch.setattr(session, "build_frozen", broken)
    done = serve.warm()
    assert done["failed"] == ["titans: checkpoint damaged"] and "titans" not in done["models"]
    assert set(done["models"]) == set(APP_MODELS) - {"titans"}
    session._shared_model.clear()  # nothing fake stays cached for later tests
