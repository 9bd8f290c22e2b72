"""Figures and cached runs for the optimizers-as-memories page (pure functions; pytest covers them)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import plotly.graph_objects as go

from nested.optim import OPTIMIZERS, SURFACES, Path, gradient_stream_probe, memory_half_life, run_on_surface

COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
PROBE_SWITCH = 50  # steps of gradient u1 before the stream switches to u2


@lru_cache(maxsize=64)
def race(surface: str, optimizer: str, lr: float, steps: int) -> Path:
    """One optimizer's path on a surface (cached: the result is never mutated by the page)."""
    return run_on_surface(SURFACES[surface](), lambda ps: OPTIMIZERS[optimizer](ps, lr=lr), steps=steps)


@lru_cache(maxsize=32)
def probe(optimizer: str, lr: float) -> tuple[np.ndarray, int | None]:
    """cos(update, u1) while the gradient is u1 for PROBE_SWITCH steps, then u2 ⟂ u1; and the half-life."""
    cos_u1, _ = gradient_stream_probe(lambda ps: OPTIMIZERS[optimizer](ps, lr=lr), T1=PROBE_SWITCH, T2=100)
    return cos_u1, memory_half_life(cos_u1, PROBE_SWITCH)


def race_figure(surface: str, paths: dict[str, Path], step: int) -> go.Figure:
    """The surface's contours (log scale) and every optimizer's path up to `step`, its point now marked."""
    s = SURFACES[surface]()
    xs, ys, z = s.grid(140)
    fig = go.Figure(go.Contour(x=xs, y=ys, z=np.log10(z - z.min() + 1e-3), colorscale="Greys", showscale=False,
                               contours={"coloring": "heatmap"}, hoverinfo="skip", opacity=0.6))  # fmt: skip
    for i, (name, p) in enumerate(paths.items()):
        pts = p.points[: step + 1]
        colour = COLOURS[i % len(COLOURS)]
        fig.add_trace(go.Scatter(x=pts[:, 0], y=pts[:, 1], mode="lines", name=name, line={"color": colour},
                                 hovertemplate=name + " step %{pointNumber}: (%{x:.3f}, %{y:.3f})<extra></extra>"))  # fmt: skip
        fig.add_trace(go.Scatter(x=pts[-1:, 0], y=pts[-1:, 1], mode="markers", showlegend=False,
                                 marker={"color": colour, "size": 11, "line": {"color": "white", "width": 1}},
                                 hoverinfo="skip"))  # fmt: skip
    if s.minimum is not None:
        fig.add_trace(go.Scatter(x=[s.minimum[0]], y=[s.minimum[1]], mode="markers", name="minimum",
                                 marker={"symbol": "star", "size": 14, "color": "gold"}))  # fmt: skip
    (x0, x1), (y0, y1) = s.bounds
    fig.update_xaxes(range=[x0, x1])
    fig.update_yaxes(range=[y0, y1])
    fig.update_layout(title=f"{s.name}: paths up to step {step}", height=460,
                      margin={"l": 10, "r": 10, "t": 40, "b": 10})  # fmt: skip
    return fig


def loss_figure(paths: dict[str, Path], step: int) -> go.Figure:
    fig = go.Figure()
    for i, (name, p) in enumerate(paths.items()):
        fig.add_trace(go.Scatter(y=p.losses, mode="lines", name=name, line={"color": COLOURS[i % len(COLOURS)]}))
    fig.add_vline(x=step, line={"color": "red", "width": 1})
    fig.update_yaxes(type="log", title="loss")
    fig.update_xaxes(title="step")
    fig.update_layout(title="loss per step", height=300, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def memory_figure(paths: dict[str, Path], step: int) -> go.Figure:
    """The norm of every internal memory of every optimizer, per step (the state the race hides)."""
    fig = go.Figure()
    for i, (name, p) in enumerate(paths.items()):
        for j, (mem, values) in enumerate(p.memories.items()):
            fig.add_trace(go.Scatter(y=np.linalg.norm(values, axis=-1), mode="lines", name=f"{name}: {mem}",
                                     line={"color": COLOURS[i % len(COLOURS)], "dash": ["solid", "dot", "dash",
                                                                                       "dashdot", "longdash"][j % 5]}))  # fmt: skip
    fig.add_vline(x=step, line={"color": "red", "width": 1})
    fig.update_yaxes(type="log", title="‖memory‖")
    fig.update_xaxes(title="step")
    fig.update_layout(title="what each optimizer remembers: the norm of each internal memory", height=320,
                      margin={"l": 10, "r": 10, "t": 40, "b": 10})  # fmt: skip
    return fig


def probe_figure(curves: dict[str, np.ndarray]) -> go.Figure:
    fig = go.Figure()
    for i, (name, c) in enumerate(curves.items()):
        fig.add_trace(go.Scatter(y=c, mode="lines", name=name, line={"color": COLOURS[i % len(COLOURS)]}))
    fig.add_vline(x=PROBE_SWITCH, line={"color": "black", "dash": "dot"}, annotation_text="gradient switches")
    fig.update_yaxes(title="cos(update, old gradient)", range=[-1.05, 1.05])
    fig.update_xaxes(title="step")
    fig.update_layout(title="how long each optimizer keeps following the old gradient", height=300,
                      margin={"l": 10, "r": 10, "t": 40, "b": 10})  # fmt: skip
    return fig
