"""What the page tests share: open a page the way a browser does, read a chart's figure."""

from __future__ import annotations

import json

from streamlit.testing.v1 import AppTest

from app.registry import ROOT, page_for

MAIN = str(ROOT / "app" / "main.py")
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
