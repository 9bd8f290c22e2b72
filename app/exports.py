"""Exports: figures as PNG (the Plotly toolbar, configured here) and as one self-contained HTML file
(plotly.js inlined: it opens offline), data as CSV / JSON, the whole trace as .npz (loads back with
nested.Trace.load and replays in the stepper)."""

from __future__ import annotations

import csv
import html
import io
import json
import math

import numpy as np
import plotly.graph_objects as go

from nested.trace import Trace

# st.plotly_chart(config=...): the toolbar's camera button downloads a PNG at twice the screen size.
PLOTLY_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}


def _finite(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def per_token_rows(trace: Trace) -> list[dict]:
    """One row per token: the byte, the next-token loss, η / α / surprise per layer (mean over heads),
    the top prediction, and which levels updated after it."""
    from app.models import decode_token

    eta, alpha, surprise = (np.nanmean(trace.array(n), -1) for n in ("eta", "alpha", "surprise"))
    updated: dict[int, list[str]] = {}
    for e in trace.updates:
        if e.component.startswith("cms"):
            updated.setdefault(e.token, []).append(f"L{e.layer} {e.component}")
    rows = []
    for i, tok in enumerate(trace.tokens):
        row = {"token": i, "byte": int(tok), "char": decode_token(int(tok)), "loss": _finite(trace.loss[i]),
               "top1": decode_token(int(trace.topk_ids[i][0])), "top1_prob": float(trace.topk_probs[i][0])}  # fmt: skip
        for layer in range(trace.n_layers):
            for name, arr in (("eta", eta), ("alpha", alpha), ("surprise", surprise)):
                row[f"L{layer}_{name}"] = _finite(float(arr[i, layer])) if arr.size else None
        row["cms_updates"] = " ".join(updated.get(i, []))
        rows.append(row)
    return rows


def trace_csv(trace: Trace) -> str:
    rows = per_token_rows(trace)
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out.getvalue()


def trace_json(trace: Trace) -> str:
    """Per-token rows, every update event, and the trace's metadata (memory snapshots: use the .npz)."""
    updates = [{**e.to_dict(), "norm": _finite(e.norm)} for e in trace.updates]
    return json.dumps({"meta": trace.meta, "tokens": per_token_rows(trace), "updates": updates}, indent=1)


def trace_npz(trace: Trace) -> bytes:
    buf = io.BytesIO()
    trace.save(buf)
    return buf.getvalue()


def figures_html(figures: dict[str, go.Figure], title: str) -> str:
    """One HTML page holding every figure, interactive, with plotly.js inlined once (no CDN)."""
    parts = []
    for i, (caption, fig) in enumerate(figures.items()):
        div = fig.to_html(full_html=False, include_plotlyjs=i == 0, config=PLOTLY_CONFIG)
        parts.append(f"<h2>{html.escape(caption)}</h2>\n{div}")
    body = "\n".join(parts)
    title = html.escape(title)
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{title}</title></head>\n"
            f"<body style='font-family:sans-serif'><h1>{title}</h1>\n{body}\n</body></html>\n")  # fmt: skip


def rows_csv(rows: list[dict]) -> str:
    """Any list of flat dicts as CSV (the union of their keys, in first-seen order)."""
    fields = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
