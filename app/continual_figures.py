"""Figures of the continual-learning page, pure functions of `ContinualLab.summary()` (tested without
Streamlit): forgetting curves per model, the forgetting matrix, and which level carries which task."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

TASK_COLOURS = {"A": "#1f77b4", "B": "#d62728", "C": "#2ca02c", "D": "#9467bd", "E": "#ff7f0e", "F": "#8c564b",
                "T": "#7f7f7f"}  # fmt: skip


def task_colour(task: str) -> str:
    return TASK_COLOURS.get(task, "#7f7f7f")


def _stacked(n: int, titles: list[str], segments: list, y_title: str, log_y: bool = False) -> dict:
    """A layout of n panels sharing the x axis, built in one go (make_subplots and one add_vrect per
    panel and segment cost several times more per redraw): each segment's span tinted in its task's
    colour in every panel, its letter above the top panel, each panel's title at its top left."""
    gap = 0.05 if n > 1 else 0.0
    h = (1.0 - gap * (n - 1)) / n
    layout, shapes, notes = {}, [], []
    for r in range(n):
        top = 1.0 - r * (h + gap)
        ax = "" if r == 0 else str(r + 1)
        # a log axis labelled by decades only: minor labels (2, 3, ... 9) crowd a short panel
        scale = {"type": "log", "dtick": 1} if log_y else {"range": [0, 1.02], "tickformat": ".0%"}
        layout[f"yaxis{ax}"] = {"domain": [top - h, top], "title": {"text": y_title}, "anchor": "x", **scale}
        notes.append({"text": f"<b>{titles[r]}</b>", "x": 0, "xref": "paper", "xanchor": "left", "y": top,
                      "yref": "paper", "yanchor": "bottom", "showarrow": False, "font": {"size": 12}})  # fmt: skip
        for t, a, b in segments:
            shapes.append({"type": "rect", "xref": "x", "yref": f"y{ax} domain", "x0": a, "x1": b, "y0": 0, "y1": 1,
                           "fillcolor": task_colour(t), "opacity": 0.08, "line": {"width": 0}, "layer": "below"})  # fmt: skip
    for t, a, b in segments:
        notes.append({"text": f"<b>{t}</b>", "x": (a + b) / 2, "xref": "x", "y": 1.0, "yref": "paper",
                      "yanchor": "bottom", "yshift": 16, "showarrow": False, "font": {"color": task_colour(t)}})  # fmt: skip
    layout.update(shapes=shapes, annotations=notes, height=170 * n + 110, hovermode="x unified",
                  margin={"l": 10, "r": 10, "t": 60, "b": 10}, legend={"orientation": "h", "y": -0.3 / n - 0.05})  # fmt: skip
    return layout


def forgetting_curves(summary: dict, models: list[str] | None = None) -> go.Figure:
    """One panel per model: accuracy on every task's probe (what follows each symbol?) at every probed
    position of the stream, from the state reached there. Shaded spans are the segments; the dotted
    line is chance."""
    models = models or list(summary["models"])
    x = summary["positions"]
    traces = []
    for r, m in enumerate(models):
        acc = np.array(summary["models"][m]["curves"]).reshape(len(x), -1)
        yax = "y" if r == 0 else f"y{r + 1}"
        for j, t in enumerate(summary["tasks"]):
            traces.append(go.Scatter(x=x, y=acc[:, j], mode="lines", name=f"task {t}", legendgroup=t, yaxis=yax,
                                     showlegend=r == 0, line={"color": task_colour(t), "width": 2},
                                     hovertemplate=f"{m}<br>task {t} after token %{{x}}: %{{y:.0%}}<extra></extra>"))  # fmt: skip
        traces.append(go.Scatter(x=[x[0], x[-1]], y=[summary["chance"]] * 2, mode="lines", yaxis=yax, name="chance",
                                 showlegend=False, hoverinfo="skip", line={"color": "#999", "dash": "dot", "width": 1}))  # fmt: skip
    layout = _stacked(len(models), [_title(summary, m) for m in models], summary["segments"], "probe acc.")
    layout["xaxis"] = {"title": {"text": "tokens streamed"}, "anchor": f"y{len(models)}" if len(models) > 1 else "y"}
    for r, m in enumerate(models):  # a level frozen mid-stream: where it stopped learning
        at = summary["models"][m].get("freeze_at")
        if at:
            ax = "" if r == 0 else str(r + 1)
            layout["shapes"].append({"type": "line", "xref": "x", "yref": f"y{ax} domain", "x0": at, "x1": at, "y0": 0,
                                     "y1": 1, "line": {"color": "#333", "dash": "dash", "width": 1.5}})  # fmt: skip
            layout["annotations"].append({"text": "frozen from here", "x": at, "xref": "x", "y": 1, "yref": f"y{ax} domain",
                                          "xanchor": "left", "yanchor": "top", "showarrow": False, "font": {"size": 10}})  # fmt: skip
    return go.Figure(traces, layout)


def _title(summary: dict, model: str) -> str:
    info = summary["models"][model]
    freeze, at = info.get("freeze"), info.get("freeze_at")
    if not freeze or freeze in model:  # the learner's name already says what is frozen (the page names it so)
        return model
    return f"{model} (frozen: {freeze}{f' from token {at:,}' if at else ''})"


def forgetting_matrix(summary: dict, model: str) -> go.Figure:
    """Rows: the end of each segment (in order); columns: tasks; cell: probe accuracy on that task from
    the state at that point. The diagonal-ish cells are 'just learned'; cells below them show what
    later segments left of it."""
    mat = np.array(summary["models"][model]["matrix"], dtype=float).reshape(-1, len(summary["tasks"]))
    rows = [f"after {j + 1}: {t}" for j, (t, _, _) in enumerate(summary["segments"])]
    fig = go.Figure(go.Heatmap(z=mat, x=[f"task {t}" for t in summary["tasks"]], y=rows, zmin=0, zmax=1,
                               colorscale="Blues", text=np.vectorize(lambda v: f"{v:.0%}")(mat) if mat.size else None,
                               texttemplate="%{text}", colorbar={"title": "acc.", "tickformat": ".0%"},
                               hovertemplate="%{y}, %{x}: %{z:.0%}<extra></extra>"))  # fmt: skip
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title=f"Forgetting matrix — {model}", height=120 + 28 * max(len(rows), 1),
                      margin={"l": 10, "r": 10, "t": 40, "b": 10})  # fmt: skip
    return fig


def level_resets(summary: dict, model: str) -> go.Figure:
    """Probe accuracy now, as is and with one level reset to its learned initial value: a level whose
    reset loses a task is the level carrying it."""
    info = summary["models"][model]
    names = ["as is"] + list(info["resets"])
    z = [info["curves"][-1]] + [rows[-1] for rows in info["resets"].values()]
    z = np.array(z, dtype=float)
    fig = go.Figure(go.Heatmap(z=z, x=[f"task {t}" for t in summary["tasks"]], y=[f"reset {n}" if n != "as is" else n for n in names],
                               zmin=0, zmax=1, colorscale="Greens", text=np.vectorize(lambda v: f"{v:.0%}")(z),
                               texttemplate="%{text}", colorbar={"title": "acc.", "tickformat": ".0%"},
                               hovertemplate="%{y}: %{x} %{z:.0%}<extra></extra>"))  # fmt: skip
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title=f"What if a level forgot now? — {model} at token {summary['pos']}", height=120 + 30 * len(names),
                      margin={"l": 10, "r": 10, "t": 40, "b": 10})  # fmt: skip
    return fig


def level_changes(summary: dict, model: str) -> go.Figure:
    """How far each level moved during each segment (Frobenius norm of its change), log colour: the
    fast memories move every token; a CMS level only at its period's boundaries."""
    info = summary["models"][model]
    changes = info["segment_changes"]
    levels = sorted({k for ch in changes for k in ch}, key=lambda k: (int(k.split()[1]), "cms" in k, k))
    z = np.array([[ch.get(lv, np.nan) for ch in changes] for lv in levels], dtype=float)
    cols = [f"{j + 1}: {t}" for j, (t, _, _) in enumerate(summary["segments"])]
    with np.errstate(divide="ignore", invalid="ignore"):
        logz = np.log10(np.where(z > 0, z, np.nan))
    fig = go.Figure(go.Heatmap(z=logz, x=cols, y=levels, colorscale="Reds", customdata=z,
                               colorbar={"title": "log10 ‖Δ‖"},
                               hovertemplate="%{y} during segment %{x}: ‖Δ‖ = %{customdata:.3g}<extra></extra>"))  # fmt: skip
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title=f"How much each level moved per segment — {model}", height=120 + 30 * max(len(levels), 1),
                      margin={"l": 10, "r": 10, "t": 40, "b": 10})  # fmt: skip
    return fig


def summary_rows(summary: dict) -> list[dict]:
    """A table: per model and segment, in-stream accuracy and the probe on that segment's task at its end."""
    rows = []
    for m, info in summary["models"].items():
        for j, (t, a, b) in enumerate(summary["segments"]):
            probe = info["matrix"][j][summary["tasks"].index(t)] if t in summary["tasks"] else None
            rows.append({"model": m, "segment": f"{j + 1}: {t} [{a}, {b})", "in-stream accuracy": info["online"][j],
                         "probe at its end": probe})  # fmt: skip
    return rows


def training_curves(runs: dict[str, dict]) -> go.Figure:
    """Across training: one panel per optimizer, the held-out loss of every task over outer steps (log
    scale), the schedule's segments tinted. A task whose loss climbs while another is trained is forgotten."""
    names = list(runs)
    traces = []
    for r, n in enumerate(names):
        run = runs[n]
        loss = np.array(run["losses"], dtype=float).reshape(len(run["steps"]), -1)
        for j, t in enumerate(run["tasks"]):
            if not any(s[0] == t for s in run["segments"]):
                continue  # a task the schedule never trains: its curve says nothing
            traces.append(go.Scatter(x=run["steps"], y=loss[:, j], mode="lines", name=f"task {t}", legendgroup=t,
                                     showlegend=r == 0, line={"color": task_colour(t), "width": 2},
                                     yaxis="y" if r == 0 else f"y{r + 1}",
                                     hovertemplate=f"{n}<br>task {t} after step %{{x}}: %{{y:.3f}}<extra></extra>"))  # fmt: skip
    titles = [
        f"{n} (lr {runs[n]['lr']:g})" + (" — diverged" if runs[n]["diverged_at"] is not None else "") for n in names
    ]
    layout = _stacked(len(names), titles, next(iter(runs.values()))["segments"], "held-out MSE", log_y=True)
    layout["xaxis"] = {"title": {"text": "optimizer steps"}, "anchor": f"y{len(names)}" if len(names) > 1 else "y"}
    return go.Figure(traces, layout)


def optimizer_memories(runs: dict[str, dict]) -> go.Figure:
    """Every optimizer memory's norm over the steps (log scale): what each optimizer still carries from
    the task before. M3's slow memory M2 changes only once per chunk and outlives a task switch. A learner
    with one optimizer per group ("level 1 (C=32): exp_avg", ...) gets one line per memory kind, its groups'
    norms combined in quadrature (the norm of all its tensors of that kind)."""
    fig = go.Figure()
    for n, run in runs.items():
        combined: dict[str, np.ndarray] = {}
        for mem, norms in run["memories"].items():
            kind = mem.rsplit(": ", 1)[-1]
            sq = np.square(np.asarray(norms, dtype=float))
            combined[kind] = combined.get(kind, 0) + sq
        for kind, sq in combined.items():
            norms = np.sqrt(sq)
            if kind in ("newton_schulz", "chunk_sum") or not (norms > 0).any():
                continue
            fig.add_trace(go.Scatter(x=run["steps"][: len(norms)], y=norms, mode="lines", name=f"{n}: {kind}",
                                     hovertemplate=f"{n} {kind} at step %{{x}}: ‖·‖ = %{{y:.3g}}<extra></extra>"))  # fmt: skip
    segs = next(iter(runs.values()))["segments"]
    fig.update_layout(shapes=[{"type": "rect", "xref": "x", "yref": "y domain", "x0": a, "x1": b, "y0": 0, "y1": 1,
                               "fillcolor": task_colour(t), "opacity": 0.08, "line": {"width": 0}, "layer": "below"}
                              for t, a, b in segs])  # fmt: skip
    fig.update_yaxes(type="log", title_text="‖memory‖")
    fig.update_xaxes(title_text="optimizer steps")
    fig.update_layout(title="The optimizers' own memories", height=380, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig
