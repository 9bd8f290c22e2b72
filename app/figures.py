"""Plotly figure builders (pure functions of library data, tested without Streamlit)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from nested.levels import Level
from nested.trace import HOPE_ROWS, Trace

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


KIND_NAMES = {"attention": "attention (every token)", "memory": "memory (every token)",
              "self-modifying memory": "self-modifying memory (every token)", "cms": "CMS level (every C tokens)",
              "optimizer": "optimizer state (every step)", "weights": "weights (every step)"}  # fmt: skip


def nest_raster(levels: list[Level], trace: Trace, steps_every: int | None = None) -> go.Figure:
    """The "brain waves" picture: one row per level (fastest at the top), a tick at every token where
    that level's parameters changed, coloured by kind (the legend). Outer-loop rows (optimizer state,
    weights) tick once per optimizer step when `steps_every` (tokens per optimizer step) is given; in pure
    inference they never tick, and their row is drawn empty with a note saying so."""
    start = trace.meta.get("start", 0)
    T = len(trace)
    fig = go.Figure()
    rows = [level_row_label(lv) for lv in levels]
    for lv, row in zip(levels, rows, strict=True):
        if lv.period is None:
            ticks = list(range(start + steps_every - 1, start + T, steps_every)) if steps_every else []
        else:
            ticks = trace.ticks(lv.layer, lv.name)
        hover = f"{row}<br>update after token %{{x}}<br>{lv.period_label}<extra></extra>"
        if not ticks:  # an invisible point keeps the row on the axis; hovering it says why it is empty
            hover = f"{row}: {lv.period_label}; no update in this stream<extra></extra>"
        fig.add_trace(
            go.Scatter(
                x=ticks or [start], y=[row] * max(1, len(ticks)), mode="markers",
                marker={"symbol": "line-ns-open", "size": 14, "line": {"width": 2}, "color": KIND_COLOURS[lv.kind],
                        "opacity": 1.0 if ticks else 0.0},
                name=KIND_NAMES[lv.kind], legendgroup=lv.kind, showlegend=False, hovertemplate=hover,
            )
        )  # fmt: skip
    for kind in dict.fromkeys(lv.kind for lv in levels):  # one visible legend mark per kind, rows or not
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=KIND_NAMES[kind], legendgroup=kind,
                                 marker={"symbol": "line-ns-open", "size": 14, "line": {"width": 2},
                                         "color": KIND_COLOURS[kind]}))  # fmt: skip
    fig.update_yaxes(categoryorder="array", categoryarray=rows[::-1], title=None)
    title = "token index"
    if any(lv.period is None for lv in levels) and not steps_every:
        title += " (the optimizer and weights rows never tick while streaming: no optimizer step runs)"
    fig.update_xaxes(title=title, range=[start - 0.5, start + max(T, 1) - 0.5])
    # the legend sits between the title and the rows (room for both in the top margin: no overlap at any width)
    fig.update_layout(height=165 + 26 * len(rows), margin={"l": 10, "r": 10, "t": 75, "b": 50},
                      title="Update ticks per level (brain waves)", legend={"orientation": "h", "y": 1.02,
                      "yanchor": "bottom", "x": 1, "xanchor": "right"})  # fmt: skip
    return fig


STRIP_WIDTH = 48  # tokens per row of the strip


def token_strip(tokens: list[int], values: np.ndarray, index: int, label: str) -> go.Figure:
    """One cell per streamed token, coloured by `values` (surprise or learning rate), the current token
    outlined; hover shows the byte and the value."""
    from app.models import decode_token

    n, width = len(values), STRIP_WIDTH
    rows = max(1, -(-n // width))
    z = np.full(rows * width, np.nan)
    z[:n] = values
    text = np.full(rows * width, "", dtype=object)
    text[:n] = [decode_token(t) for t in tokens[:n]]
    heat = go.Heatmap(z=z.reshape(rows, width), text=text.reshape(rows, width), texttemplate="%{text}",
                      colorscale="Viridis", colorbar={"title": {"text": label}},
                      customdata=np.arange(rows * width).reshape(rows, width), xgap=1, ygap=1,
                      hovertemplate="token %{customdata}: '%{text}'<br>" + label + " %{z:.4f}<extra></extra>")  # fmt: skip
    r, c = divmod(index, width)
    layout = {"height": 60 + 28 * rows, "margin": {"l": 5, "r": 5, "t": 5, "b": 5},
              "yaxis": {"autorange": "reversed", "showticklabels": False}, "xaxis": {"showticklabels": False},
              "shapes": [{"type": "rect", "x0": c - 0.5, "x1": c + 0.5, "y0": r - 0.5, "y1": r + 0.5,
                          "line": {"color": "red", "width": 3}}] if index < n else []}  # fmt: skip
    return go.Figure([heat], layout)


SYMLOG_EPS = 1e-6  # entries below this are drawn (almost) white


def symlog(x, eps: float = SYMLOG_EPS):
    """sign(x) log10(1 + |x| / eps): a colour scale that shows 1e-6 and 1 on the same map."""
    return np.sign(x) * np.log10(1.0 + np.abs(x) / eps)


def memory_heatmap(m: np.ndarray, title: str, zmax: float) -> go.Figure:
    """A memory matrix on a fixed, symmetric-log colour range [-zmax, zmax] (the same on every frame, so
    frames compare; memories shrink by orders of magnitude over a stream, so a linear scale would go
    blank). Rows = outputs, columns = inputs; hover shows the real value."""
    top = float(symlog(zmax))
    ticks = [v for v in (1e-5, 1e-3, 1e-1, 10.0) if v <= zmax * 1.0001]
    tickvals = [float(symlog(-v)) for v in reversed(ticks)] + [0.0] + [float(symlog(v)) for v in ticks]
    ticktext = [f"-{v:g}" for v in reversed(ticks)] + ["0"] + [f"{v:g}" for v in ticks]
    fig = go.Figure(
        go.Heatmap(z=symlog(np.clip(m, -zmax, zmax)), customdata=m, zmin=-top, zmax=top, colorscale="RdBu",
                   reversescale=True, colorbar={"tickvals": tickvals, "ticktext": ticktext},
                   hovertemplate="row %{y}, col %{x}: %{customdata:.3g}<extra></extra>")
    )  # fmt: skip
    fig.update_yaxes(autorange="reversed", title="output")
    fig.update_xaxes(title="input")
    fig.update_layout(title=title, height=330, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


SURPRISE_PANEL = ("surprise (inner loss)", "surprise")


def rate_curves(
    eta: np.ndarray,
    alpha: np.ndarray,
    surprise: np.ndarray,
    index: int,
    cms_ticks: list[int],
    gates: dict | None = None,
) -> go.Figure:
    """eta_t, alpha_t and surprise of one layer over the streamed tokens, stacked on one shared x axis;
    `gates` names the first two panels (Trace.gate_labels: Titans' rows hold θ_t and 1 − α_t); the current
    token in red, CMS updates as dotted lines on the surprise panel. (Built from plain
    layout dicts: make_subplots and add_vline cost ~200 ms per frame at a few hundred tokens.)"""
    x = np.arange(len(eta))
    domains = ((0.70, 1.0), (0.36, 0.64), (0.0, 0.30))
    # the x axis spans at least two tokens, so the first token's point is drawn (not an empty -1..1 axis)
    layout = {"height": 440, "showlegend": False, "margin": {"l": 10, "r": 10, "t": 30, "b": 40},
              "xaxis": {"anchor": "y3", "title": {"text": "token index"}, "range": [-0.5, max(len(eta) - 1, 1) + 0.5]},
              "annotations": [], "shapes": []}  # fmt: skip
    traces = []
    gates = gates or HOPE_ROWS
    panels = (gates["eta"], gates["alpha"], SURPRISE_PANEL)
    for row, ((title, name), y, dom) in enumerate(zip(panels, (eta, alpha, surprise), domains, strict=True)):
        axis = "y" if row == 0 else f"y{row + 1}"
        layout[f"yaxis{'' if row == 0 else row + 1}"] = {"domain": list(dom), "anchor": "x"}
        traces.append(go.Scatter(x=x, y=y, mode="lines" if len(x) > 1 else "markers", name=name, yaxis=axis,
                                 hovertemplate="token %{x}: %{y:.4f}"))  # fmt: skip
        layout["annotations"].append({"text": title, "x": 0.5, "y": dom[1], "xref": "paper", "yref": "paper",
                                      "xanchor": "center", "yanchor": "bottom", "showarrow": False})  # fmt: skip
    layout["shapes"].append({"type": "line", "x0": index, "x1": index, "y0": 0, "y1": 1, "xref": "x",
                             "yref": "paper", "line": {"color": "red", "width": 1}})  # fmt: skip
    layout["shapes"] += [{"type": "line", "x0": t, "x1": t, "y0": 0, "y1": 1, "xref": "x", "yref": "y3 domain",
                          "line": {"color": "#d62728", "width": 1, "dash": "dot"}} for t in cms_ticks]  # fmt: skip
    return go.Figure(traces, layout)


COMPARE_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728")


def loss_curves(losses: dict[str, np.ndarray], index: int) -> go.Figure:
    """Per-token next-token loss of several runs on the same stream (NaN where the target is unknown)."""
    fig = go.Figure()
    for j, (name, y) in enumerate(losses.items()):  # distinct hues, not two shades of one
        fig.add_trace(go.Scatter(x=np.arange(len(y)), y=y, mode="lines", name=name,
                                 line={"color": COMPARE_COLOURS[j % len(COMPARE_COLOURS)], "dash": "solid" if j == 0 else "dot"},
                                 hovertemplate=name + "<br>token %{x}: %{y:.3f} nats<extra></extra>"))  # fmt: skip
    fig.add_vline(x=index, line={"color": "red", "width": 1})
    fig.update_layout(title="next-token loss per token (nats)", height=260, legend={"orientation": "h", "y": -0.25},
                      margin={"l": 10, "r": 10, "t": 40, "b": 10})  # fmt: skip
    fig.update_xaxes(title="token index")
    return fig
