"""What the page tests share: open a page the way a browser does, read a chart's figure."""

from __future__ import annotations

import itertools
import json

from streamlit.testing.v1 import AppTest

from app.registry import ROOT, page_for

MAIN = str(ROOT / "app" / "main.py")
_REPORTS = itertools.count()
TIMEOUT = 300  # torch on a loaded 2-core machine: AppTest's default 3 s is far too short


def front_door(**params) -> AppTest:
    """A fresh session on the app's first page, opened from a link with this query string."""
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


def open_page(url_path: str, **params) -> AppTest:
    """A fresh session: the app's front door with the URL's query string, then the page."""
    at = front_door(**params)
    at.switch_page(str(page_for(url_path).path))
    return at.run()


def chart(at: AppTest, key: str) -> dict:
    """The Plotly figure (as JSON) of the chart whose widget key contains `key`."""
    return json.loads(next(c for c in at.get("plotly_chart") if key in c.proto.id).proto.spec)


def player_data(at: AppTest) -> dict:
    """What the server last sent the stepper's browser-side player (app/player.py's payload)."""
    return json.loads(next(e for e in at.get("bidi_component") if "stepper_player" in e.proto.id).proto.json)


def report(
    at: AppTest, index: int, *, playing: bool = False, need: dict | None = None, seq: int | None = None
) -> AppTest:
    """What the player in the browser tells the server (app/player.js): where it rests, whether it plays,
    a window it lacks; `seq` is the last server command it applied (by default the latest)."""
    seq = at.session_state["_player_cmd"]["seq"] if seq is None else seq
    rid = f"test-{next(_REPORTS)}"
    view = {"rid": rid, "index": index, "playing": playing, "seq": seq, "need": need}
    at.session_state["stepper_player"] = {"view": view}
    return at.run()


def step(at: AppTest, k: int = 1) -> AppTest:
    """The player stepped k tokens (→ pressed k times) and came to rest."""
    return report(at, at.session_state["stepper_index"] + k)
