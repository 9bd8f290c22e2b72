"""Figures of the recall lab (pages/recall.py): accuracy vs context, the example strip, where memories wrote."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from app.opt_figures import COLOURS
from nested.recall_lab import FAMILIES

MARGIN = {"l": 10, "r": 10, "t": 40, "b": 10}
SWITCH_DASH = {"on": "solid", "off": "dash", "ascent": "dot"}
STRIP_WIDTH = 64  # characters per row of the example strip


def curve_figure(curves: dict, family: str, colours: dict[str, str]) -> go.Figure:
    """Accuracy vs context size per model (colour) and switch (dash), chance dotted."""
    fam = FAMILIES[family]
    fig = go.Figure()
    chance = None
    for label, by_switch in curves.items():
        for switch, rows in by_switch.items():
            chance = rows[0]["chance"]
            fig.add_trace(go.Scatter(x=[r["size"] for r in rows], y=[r["accuracy"] for r in rows], mode="lines+markers",
                                     name=f"{label} (inner updates {switch})", line={"color": colours[label],
                                     "dash": SWITCH_DASH[switch]}, customdata=[[r["scored"]] for r in rows], connectgaps=False,
                                     hovertemplate=f"{label}, inner updates {switch}<br>{fam.size_label} %{{x}}: "
                                                   "%{y:.1%} of %{customdata[0]} answers<extra></extra>"))  # fmt: skip
    if chance is not None:
        fig.add_hline(y=chance, line={"color": "grey", "dash": "dot"}, annotation_text="chance")
    fig.update_xaxes(title=fam.size_label, type="log" if family != "mqar" else "linear", tickvals=list(fam.sizes))
    fig.update_yaxes(title="accuracy", tickformat=".0%", range=[0, 1.02])
    fig.update_layout(
        title="recall vs context length", height=400, margin=MARGIN, legend={"orientation": "h", "y": -0.2}
    )
    return fig


def strip_figure(ex: dict) -> go.Figure:
    """The example's text as a grid of characters: needles shaded, answers green (right) or red (wrong)."""
    text = ex["text"]
    if ex["scored"] and ex["scored"][-1] + 1 == len(text):  # the last answer is the target after the input
        text += ex["answer"][-1]
    n = len(text)
    rows = (n + STRIP_WIDTH - 1) // STRIP_WIDTH
    z = np.zeros((rows, STRIP_WIDTH))
    chars = np.full((rows, STRIP_WIDTH), "", dtype=object)
    for i, ch in enumerate(text):
        chars[i // STRIP_WIDTH, i % STRIP_WIDTH] = ch if ch.isprintable() else "·"
    for a, b in ex["needles"]:
        for i in range(a, min(b, n)):
            z[i // STRIP_WIDTH, i % STRIP_WIDTH] = 1
    for pos, ok in zip(ex["scored"], ex["correct"], strict=True):
        i = pos + 1  # the answer is the target after reading position `pos`: the character at pos + 1
        if i < n:
            z[i // STRIP_WIDTH, i % STRIP_WIDTH] = 3 if ok else 2
    hover = np.full((rows, STRIP_WIDTH), "", dtype=object)
    for i in range(n):
        kind = {0: "context", 1: "needle (written)", 2: "answer: wrong", 3: "answer: right"}[
            int(z[i // STRIP_WIDTH, i % STRIP_WIDTH])
        ]
        hover[i // STRIP_WIDTH, i % STRIP_WIDTH] = f"byte {i}: {chars[i // STRIP_WIDTH, i % STRIP_WIDTH]!r} — {kind}"
    colours = [[0, "#f7f7f7"], [0.25, "#f7f7f7"], [0.25, "#fdd49e"], [0.5, "#fdd49e"], [0.5, "#fcbba1"],
               [0.75, "#fcbba1"], [0.75, "#a1d99b"], [1, "#a1d99b"]]  # fmt: skip
    fig = go.Figure(go.Heatmap(z=z, text=chars, texttemplate="%{text}", colorscale=colours, zmin=0, zmax=3,
                               showscale=False, customdata=hover, hovertemplate="%{customdata}<extra></extra>",
                               xgap=1, ygap=1))  # fmt: skip
    fig.update_yaxes(autorange="reversed", showticklabels=False)
    fig.update_xaxes(showticklabels=False)
    fig.update_layout(title="the example: needles (orange), answers right (green) or wrong (red)",
                      height=60 + 26 * rows, margin=MARGIN)  # fmt: skip
    return fig


def write_figure(examples: dict[str, dict], colours: dict[str, str], what: str = "memory_change") -> go.Figure:
    """Per memory model and layer, `what` (memory change, surprise or eta) at every token; needles shaded."""
    fig = go.Figure()
    titles = {"memory_change": "‖ΔM‖ of the main memory", "surprise": "surprise (inner loss)", "eta": "η (write rate)"}
    first = None
    for label, ex in examples.items():
        first = first or ex
        for layer, values in enumerate(ex[what]):
            fig.add_trace(go.Scatter(y=values, mode="lines", name=f"{label}, layer {layer}",
                                     line={"color": colours[label], "dash": ["solid", "dot", "dash"][layer % 3]},
                                     hovertemplate=f"{label} layer {layer}, byte %{{x}}: %{{y:.3g}}<extra></extra>"))  # fmt: skip
    if first is not None:
        for a, b in first["needles"]:
            fig.add_vrect(x0=a - 0.5, x1=b - 0.5, fillcolor="#fdae6b", opacity=0.3, line_width=0)
        if first["scored"]:
            fig.add_vrect(x0=min(first["scored"]) - 0.5, x1=len(first["text"]) - 0.5, fillcolor="#9ecae1",
                          opacity=0.2, line_width=0, annotation_text="question", annotation_position="top left")  # fmt: skip
    fig.update_yaxes(type="log", title=titles[what])
    fig.update_xaxes(title="byte of the example")
    fig.update_layout(title=f"where each memory wrote: {titles[what]} per byte (needles shaded)", height=360,
                      margin=MARGIN, legend={"orientation": "h", "y": -0.25})  # fmt: skip
    return fig


def model_colours(labels) -> dict[str, str]:
    return {lb: COLOURS[i % len(COLOURS)] for i, lb in enumerate(labels)}
