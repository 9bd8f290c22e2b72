"""Plotly figure builders (pure functions of library data, tested without Streamlit)."""

from __future__ import annotations

import plotly.graph_objects as go

from nested.levels import Level
from nested.trace import Trace

KIND_COLOURS = {
    "attention": "#1f77b4",
    "memory": "#2ca02c",
    "self-modifying memory": "#2ca02c",
    "cms": "#d62728",
    "optimizer": "#9467bd",
    "weights": "#7f7f7f",
}


def level_row_label(lv: Level) -> str:
    return lv.name if lv.layer is None else f"L{lv.layer} {lv.name}"


def nest_raster(levels: list[Level], trace: Trace, steps_every: int | None = None) -> go.Figure:
    """The "brain waves" picture: one row per level (fastest at the top), a tick at every token where
    that level's parameters changed. Outer-loop rows tick once per optimizer step when `steps_every`
    (tokens per optimizer step) is given; in pure inference they never tick."""
    start = trace.meta.get("start", 0)
    T = len(trace)
    fig = go.Figure()
    rows = [level_row_label(lv) for lv in levels]
    for lv, row in zip(levels, rows, strict=True):
        if lv.period is None:
            ticks = list(range(start + steps_every - 1, start + T, steps_every)) if steps_every else []
        else:
            ticks = [e.token for e in trace.updates if e.layer == lv.layer and e.component == lv.name]
        fig.add_trace(
            go.Scatter(
                x=ticks,
                y=[row] * len(ticks),
                mode="markers",
                marker={
                    "symbol": "line-ns-open",
                    "size": 14,
                    "line": {"width": 2},
                    "color": KIND_COLOURS[lv.kind],
                },
                name=row,
                showlegend=False,
                hovertemplate=f"{row}<br>update after token %{{x}}<br>{lv.period_label}<extra></extra>",
            )
        )
    fig.update_yaxes(categoryorder="array", categoryarray=rows[::-1], title=None)
    fig.update_xaxes(title="token index", range=[start - 0.5, start + T - 0.5])
    fig.update_layout(height=80 + 26 * len(rows), margin={"l": 10, "r": 10, "t": 30, "b": 40},
                      title="Update ticks per level (brain waves)")  # fmt: skip
    return fig
