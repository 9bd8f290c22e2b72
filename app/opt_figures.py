"""Figures and cached runs for the optimizers-as-memories page (pure functions; pytest covers them)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import plotly.graph_objects as go

from nested.optim import OPTIMIZERS, SURFACES, Path, gradient_stream_probe, memory_half_life, run_on_surface
from nested.rule_recall import LINEAR, N_OVER_D, overwrite_key, recall_key, study

COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
PROBE_SWITCH = 50  # steps of gradient u1 before the stream switches to u2
PROBE_STEPS = 100  # steps of u2 after the switch


@lru_cache(maxsize=64)
def race(surface: str, optimizer: str, lr: float, steps: int) -> Path:
    """One optimizer's path on a surface (cached: the result is never mutated by the page)."""
    return run_on_surface(SURFACES[surface](), lambda ps: OPTIMIZERS[optimizer](ps, lr=lr), steps=steps)


@lru_cache(maxsize=32)
def probe(optimizer: str, lr: float) -> tuple[np.ndarray, int | None]:
    """cos(update, u1) while the gradient is u1 for PROBE_SWITCH steps, then u2 ⟂ u1; and the half-life."""
    cos_u1, _ = gradient_stream_probe(lambda ps: OPTIMIZERS[optimizer](ps, lr=lr), T1=PROBE_SWITCH, T2=PROBE_STEPS)
    return cos_u1, memory_half_life(cos_u1, PROBE_SWITCH)


def race_figure(surface: str, paths: dict[str, Path], step: int) -> go.Figure:
    """The surface's contours (log scale) and every optimizer's path up to `step`, its point now marked."""
    s = SURFACES[surface]()
    xs, ys, z = s.grid(140)
    # the colour bar reads in loss above the surface's lowest point (log ticks), so a shade means a value
    gap = np.log10(z - z.min() + 1e-3)
    ticks = [v for v in (1e-3, 1e-2, 0.1, 1, 10, 100, 1e3, 1e4) if np.log10(v + 1e-3) <= gap.max()]
    fig = go.Figure(go.Contour(x=xs, y=ys, z=gap, colorscale="Greys", showscale=True, contours={"coloring": "heatmap"},
                               hoverinfo="skip", opacity=0.6,
                               colorbar={"title": {"text": "loss − min", "side": "right"}, "thickness": 12, "x": 1.02,
                                         "tickvals": [float(np.log10(v + 1e-3)) for v in ticks],
                                         "ticktext": [f"{v:g}" for v in ticks]}))  # fmt: skip
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
    # the legend above the plot, right-aligned: at the right it would cover the colour bar's labels
    fig.update_layout(title=f"{s.name}: paths up to step {step}", height=480,
                      margin={"l": 10, "r": 10, "t": 70, "b": 10},
                      legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 1, "xanchor": "right"})  # fmt: skip
    return fig


def loss_figure(paths: dict[str, Path], step: int) -> go.Figure:
    fig = go.Figure()
    for i, (name, p) in enumerate(paths.items()):
        fig.add_trace(go.Scatter(y=p.losses, mode="lines", name=name, line={"color": COLOURS[i % len(COLOURS)]}))
    fig.add_vline(x=step, line={"color": "red", "width": 1})
    positive = all(float(np.min(p.losses)) > 0 for p in paths.values())  # a log axis drops the rest (the saddle)
    fig.update_yaxes(type="log" if positive else "linear", title="loss")
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
    fig.update_layout(title="the norm of each optimizer's memories", height=320,
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


# Each optimizer's rate for the associative memory: nested.optim.assoc.best_lr over (0.01, 0.03, 0.1, 0.3, 1.0)
# on the page's stream (Zipf 1, seed 0), orthogonal and overcomplete keys; tests/test_optimizers_page.py checks two
ASSOC_LR = {
    True: {"sgd": 1.0, "momentum": 0.1, "adam": 0.01, "muon": 0.01, "m3": 0.01, "delta-momentum": 0.1,
           "preconditioned-momentum": 0.01, "deep-momentum": 0.1},
    False: {"sgd": 0.3, "momentum": 0.03, "adam": 0.01, "muon": 0.01, "m3": 0.01, "delta-momentum": 0.03,
            "preconditioned-momentum": 0.01, "deep-momentum": 0.03},
}  # fmt: skip


def assoc_stream(orthogonal: bool, exponent: float):
    from nested.optim.assoc import zipf_stream

    return zipf_stream(n_pairs=32 if orthogonal else 64, d_key=32, steps=600, exponent=exponent, seed=0,
                       orthogonal=orthogonal)  # fmt: skip


@lru_cache(maxsize=64)
def assoc(optimizer: str, orthogonal: bool, exponent: float) -> dict:
    """One optimizer writing the Zipf key -> value memory at its rate of ASSOC_LR."""
    from nested.optim.assoc import write_memory

    stream = assoc_stream(orthogonal, exponent)
    lr = ASSOC_LR[orthogonal][optimizer]
    run = write_memory(stream, optimizer, lr)
    return {"lr": lr, "errors": run.errors.tolist(), "counts": run.counts.tolist(), "diverged": run.diverged,
            "memory": run.memory, "contents": None if run.contents is None else run.contents.tolist(),
            "presented": None if run.presented is None else run.presented.tolist()}  # fmt: skip


def assoc_figure(runs: dict[str, dict]) -> go.Figure:
    """Recall error of every key -> value pair against how often its key arrived (log-log)."""
    fig = go.Figure()
    # each optimizer in its colour of the race above; drawn last to first, so the first (plain SGD, whose pairs all
    # sit at the error floor) is on top, and the legend reversed back to the race's order
    for i, (name, r) in reversed(list(enumerate(runs.items()))):
        fig.add_trace(go.Scatter(x=r["counts"], y=np.maximum(r["errors"], 1e-6), mode="markers",
                                 name=f"{name} (lr {r['lr']:g})", marker={"color": COLOURS[i % len(COLOURS)]},
                                 hovertemplate=f"{name}: key seen %{{x}} times, recall error %{{y:.2e}}<extra></extra>"))  # fmt: skip
    fig.update_xaxes(type="log", title_text="times the key arrived (Zipf)")
    fig.update_yaxes(type="log", title_text="recall error ‖W k − v‖")
    fig.update_layout(title="Each optimizer writes W: which pairs does it keep?", height=380,
                      margin={"l": 10, "r": 10, "t": 40, "b": 10}, legend={"traceorder": "reversed"})  # fmt: skip
    return fig


def stream_figure(run: dict, name: str) -> go.Figure:
    """What one optimizer's memory holds about each pair over the last steps of the stream: the signed share
    <M, v_i k_i^T> / ||M|| per step (columns) and pair (rows, most frequent key first); x marks the pair
    each step wrote."""
    contents = np.asarray(run["contents"])  # (window, n_pairs)
    steps = list(range(len(contents)))
    fig = go.Figure(go.Heatmap(z=contents.T, x=steps, y=list(range(contents.shape[1])), colorscale="RdBu", zmid=0,
                               colorbar={"title": "share", "thickness": 12},
                               hovertemplate="step %{x} of the window: pair %{y}, share %{z:+.2f}<extra></extra>"))  # fmt: skip
    fig.add_trace(go.Scatter(x=steps, y=run["presented"], mode="markers", name="the pair this step wrote",
                             marker={"symbol": "x", "size": 7, "color": "black"}))  # fmt: skip
    fig.update_yaxes(title="pair (0 = most frequent key)", autorange="reversed")
    fig.update_xaxes(title=f"the last {len(contents)} steps of the stream")
    fig.update_layout(title=f"the gradient stream {name}'s {run['memory']} is compressing", height=380,
                      margin={"l": 10, "r": 10, "t": 40, "b": 10}, legend={"orientation": "h", "y": -0.25})  # fmt: skip
    return fig


RULE_COLUMNS = {0.25: "N = d/4", 0.5: "N = d/2", 1.0: "N = d", 2.0: "N = 2d"}


def rules_figure(rho: float, d: int = 64, seeds: int = 3) -> go.Figure:
    """Recall after one pass of every inner rule of nested.rule_recall (mean ± sd over seeds) against how many
    pairs the memory holds, keys correlated by rho; the last column overwrites a quarter of the pairs."""
    chosen, _, results = study(d, seeds)
    columns = [*RULE_COLUMNS.values(), "overwrite"]
    fig = go.Figure()
    for i, (rule, per) in enumerate(results.items()):
        colour, dash = COLOURS[i % len(COLOURS)], "solid" if rule in LINEAR else "dash"
        cells = [per[recall_key(rho, r)] for r in N_OVER_D] + [per[overwrite_key(rho)]]
        means = [float(np.mean([c[0] for c in cell])) for cell in cells]
        sds = [float(np.std([c[0] for c in cell])) for cell in cells]
        for part, mode in ((slice(0, -1), "lines+markers"), (slice(-1, None), "markers")):  # overwrite: its own test
            fig.add_trace(go.Scatter(x=columns[part], y=means[part], error_y={"type": "data", "array": sds[part]},
                                     mode=mode, name=f"{rule}, step {chosen[rule]:g}", legendgroup=rule,
                                     showlegend=mode != "markers", line={"color": colour, "dash": dash},
                                     hovertemplate=rule + ": %{x}, recall %{y:.2f}<extra></extra>"))  # fmt: skip
    fig.update_yaxes(title="recall: cos(M(k), v)", range=[0, 1.05])
    fig.update_xaxes(title=f"pairs written once (d = {d}); overwrite: d/2 pairs, then a quarter of the keys again")
    fig.update_layout(title=f"Inner rules write one memory, keys correlated ρ = {rho:g} ({seeds} seeds)", height=420,
                      margin={"l": 10, "r": 10, "t": 40, "b": 10})  # fmt: skip
    return fig
