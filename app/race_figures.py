"""Figures of a race (pages/race.py), drawn from its plain record (nested.race.Race.record)."""

from __future__ import annotations

import statistics

import plotly.graph_objects as go

from app.opt_figures import COLOURS
from nested.race import LABELS, MEMORY_LABELS

MARGIN = {"l": 10, "r": 10, "t": 40, "b": 10}
DASHES = ["solid", "dot", "dash", "dashdot"]


def _colour(record: dict, name: str) -> str:
    return COLOURS[list(record["runners"]).index(name) % len(COLOURS)]


def loss_figure(record: dict) -> go.Figure:
    """Training loss per step (lines) and held-out loss at each evaluation (markers), log scale."""
    fig = go.Figure()
    for name, r in record["runners"].items():
        c, h = _colour(record, name), r["history"]
        fig.add_trace(go.Scatter(x=[e["step"] for e in h], y=[e["loss"] for e in h], mode="lines", name=LABELS[name],
                                 line={"color": c, "width": 1}, legendgroup=name,
                                 hovertemplate=LABELS[name] + " step %{x}: training loss %{y:.3f}<extra></extra>"))  # fmt: skip
        ev = [e for e in h if "test_loss" in e]
        fig.add_trace(go.Scatter(x=[e["step"] for e in ev], y=[e["test_loss"] for e in ev], mode="markers+lines",
                                 name=f"{LABELS[name]} (held out)", legendgroup=name, showlegend=False,
                                 line={"color": c, "width": 2, "dash": "dot"}, marker={"size": 6},
                                 hovertemplate=LABELS[name] + " step %{x}: held-out loss %{y:.3f}<extra></extra>"))  # fmt: skip
    fig.update_yaxes(type="log", title="loss (nats)")
    fig.update_xaxes(title="step")
    fig.update_layout(title="loss: each step's batch (thin), held out (dots)", height=340, margin=MARGIN,
                      legend={"orientation": "h", "y": -0.25})  # fmt: skip
    return fig


def accuracy_figure(record: dict, chance: float) -> go.Figure:
    fig = go.Figure()
    for name, r in record["runners"].items():
        ev = [e for e in r["history"] if "test_accuracy" in e]
        fig.add_trace(go.Scatter(x=[e["step"] for e in ev], y=[e["test_accuracy"] for e in ev], mode="lines+markers",
                                 name=LABELS[name], line={"color": _colour(record, name)},
                                 hovertemplate=LABELS[name] + " step %{x}: %{y:.1%}<extra></extra>"))  # fmt: skip
    fig.add_hline(y=chance, line={"color": "grey", "dash": "dot"}, annotation_text="chance")
    fig.update_yaxes(title="held-out accuracy", tickformat=".0%", range=[0, 1])
    fig.update_xaxes(title="step")
    fig.update_layout(title="held-out accuracy", height=340, margin=MARGIN, showlegend=False)
    return fig


def step_time_figure(record: dict) -> go.Figure:
    """Median time of a whole training step and of the optimizer's own step, per optimizer."""
    names = [n for n, r in record["runners"].items() if r["history"]]
    whole = [statistics.median(e["step_ms"] for e in record["runners"][n]["history"]) for n in names]
    own = [statistics.median(e["opt_ms"] for e in record["runners"][n]["history"]) for n in names]
    labels = [LABELS[n] for n in names]
    fig = go.Figure([go.Bar(x=labels, y=whole, name="whole step (forward, backward, update)", marker_color="#9ecae1"),
                     go.Bar(x=labels, y=own, name="the optimizer's update", marker_color="#3182bd")])  # fmt: skip
    fig.update_layout(title="step time, median (ms, on this server)", barmode="group", height=300, margin=MARGIN,
                      legend={"orientation": "h", "y": -0.2})  # fmt: skip
    fig.update_yaxes(title="ms")
    return fig


def memory_figure(record: dict) -> go.Figure:
    """Each memory's norm over all layers, per step; M3's slow-memory updates marked on its curve."""
    fig = go.Figure()
    for name, r in record["runners"].items():
        c = _colour(record, name)
        for j, (key, norms) in enumerate(r["memory_norms"].items()):
            label = f"{LABELS[name]}: {MEMORY_LABELS[key]}"
            fig.add_trace(go.Scatter(x=list(range(1, len(norms) + 1)), y=norms, mode="lines", name=label,
                                     line={"color": c, "dash": DASHES[j % len(DASHES)]},
                                     hovertemplate=label + " step %{x}: ‖·‖ %{y:.3g}<extra></extra>"))  # fmt: skip
        if r["slow_updates"] and "M2" in r["memory_norms"]:
            steps = r["slow_updates"]
            fig.add_trace(go.Scatter(x=steps, y=[r["memory_norms"]["M2"][s - 1] for s in steps], mode="markers",
                                     name=f"{LABELS[name]}: slow memory updates (every f steps)",
                                     marker={"color": c, "symbol": "diamond", "size": 8},
                                     hovertemplate="M2 absorbed the last chunk at step %{x}<extra></extra>"))  # fmt: skip
    fig.update_yaxes(type="log", title="‖memory‖ (all layers)")
    fig.update_xaxes(title="step")
    fig.update_layout(title="what each optimizer remembers", height=360, margin=MARGIN,
                      legend={"orientation": "h", "y": -0.25})  # fmt: skip
    return fig


def layer_figure(record: dict, name: str) -> go.Figure:
    """One optimizer's memories per layer, now."""
    r = record["runners"][name]
    fig = go.Figure()
    for key, per_layer in r["layers"].items():
        fig.add_trace(go.Bar(y=list(per_layer), x=list(per_layer.values()), orientation="h", name=MEMORY_LABELS[key],
                             hovertemplate="%{y}: ‖·‖ %{x:.3g}<extra>" + MEMORY_LABELS[key] + "</extra>"))  # fmt: skip
    fig.update_xaxes(type="log", title="‖memory‖")
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title=f"{LABELS[name]}: its memories per layer, now", barmode="group", margin=MARGIN,
                      height=max(260, 40 + 22 * sum(len(v) for v in r["layers"].values())))  # fmt: skip
    return fig


def spectrum_figure(record: dict) -> go.Figure:
    """Singular values of the watched hidden matrix's last update (and Muon / M3's momentum before and after
    Newton-Schulz), each scaled to its largest."""
    fig = go.Figure()
    styles = {"update": ("solid", "the update it applied"), "momentum": ("dot", "momentum, before NS"),
              "after Newton-Schulz": ("dash", "momentum after NS")}  # fmt: skip
    for name, r in record["runners"].items():
        for key, values in r["spectrum"].items():
            dash, what = styles[key]
            fig.add_trace(go.Scatter(x=list(range(1, len(values) + 1)), y=values, mode="lines",
                                     name=f"{LABELS[name]}: {what}",
                                     line={"color": _colour(record, name), "dash": dash},
                                     hovertemplate=f"{LABELS[name]}, {what}: σ%{{x}} / σ1 = %{{y:.3g}}<extra></extra>"))  # fmt: skip
    fig.update_yaxes(type="log", title="σ_i / σ_1", range=[-4, 0.1])
    fig.update_xaxes(title="singular value index")
    fig.update_layout(title="all directions equal? singular values of one hidden matrix's step", height=420,
                      margin=MARGIN, legend={"orientation": "h", "y": -0.35})  # fmt: skip
    return fig
