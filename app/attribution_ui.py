"""The attribution page's work (pages/attribution.py): cached attributions, the strip, the level bars.

Attributions are pure functions of (model, seed, text, position, target, method) and the read-only
weights, so they are cached for every session (st.cache_data). Should the exact CMS gradient fail (a
NaN in the second-order graph; the one cause found, a retention gate that underflows, is fixed in
nested.memory.decay_tables) the page falls back to the first-order gradient and says so with the
completeness gap it leaves.
"""

from __future__ import annotations

import math
from dataclasses import asdict

import plotly.graph_objects as go
import streamlit as st

from app.models import decode_token
from app.session import frozen_model
from nested.attribution import attribute, level_contributions

MAX_CHARS = 256  # the live saliency stays under a second for this many tokens on a 2-core CPU
DEFAULT_POSITION = 120  # mid-sample: enough context before the prediction for the strip to show something
METHOD_LABELS = {
    "saliency": "Saliency ‖∂F/∂e‖ (fast)",
    "input_x_gradient": "Input × gradient (signed)",
    "integrated_gradients": "Integrated gradients (on demand)",
    "occlusion": "Occlusion (no gradients)",
}
EXPLAINER = """
- **What is explained**: F = log p(target | the text up to the chosen position), the model's log-probability
  of the target as the next byte. The target is the byte that really comes next, or the model's own top guess.
- **The strip**: every byte up to the position, coloured by its attribution (blue raises F, red lowers it;
  saliency is a size, never negative). Hover a byte for its value.
- **Methods** (Captum): saliency is the gradient's size at each byte's embedding (one backward);
  input × gradient its dot product with the embedding; integrated gradients integrates the gradient on the
  straight path from the mean byte embedding (32 steps), so its attributions should add up to
  F(text) − F(baseline) — the **completeness gap** says how far they are; occlusion replaces one byte's
  embedding by the mean and measures the drop of F (one forward per byte).
- **Exact gradient**: a CMS level learns from the text it reads, so F depends on each byte also through the
  CMS updates. The exact gradient follows those paths (second order); the first-order one leaves them out,
  and the completeness gap shows what that costs.
- **Levels**: F with every level learning minus F with one level frozen for the whole text: how much that
  level's learning in context raised (positive) or lowered the target's probability.
"""


@st.cache_data(max_entries=128, show_spinner="Attributing…")
def cached_attribution(model_name: str, seed: int, text: str, position: int, target: int, method: str) -> dict:
    """The attribution, exact where it runs; on failure, first order with a note (`fallback`)."""
    model = frozen_model(model_name, seed)
    tokens = _tokens(text)
    try:
        out = asdict(attribute(model, tokens, position, target, method))
        out["exact"] = model.exact_input_grad
    except FloatingPointError:
        out = asdict(attribute(model, tokens, position, target, method, exact_cms=False))
        out["exact"], out["fallback"] = False, True
    if method == "integrated_gradients":
        base = _baseline_value(model, tokens, position, target)
        out["gap_of"] = out["value"] - base  # F(x) - F(b): what the attributions should add up to
    return out


@st.cache_data(max_entries=128, show_spinner="Freezing each level in turn…")
def cached_levels(model_name: str, seed: int, text: str, position: int, target: int) -> dict[str, float]:
    return level_contributions(frozen_model(model_name, seed), _tokens(text), position, target)


def _tokens(text: str):
    import torch

    return torch.tensor([list(text.encode("utf-8"))])


def _baseline_value(model, tokens, position: int, target: int) -> float:
    import torch

    with torch.no_grad():
        emb = model.embed(tokens[:, : position + 1].to(model.device))
        base = model.embed.weight.mean(0).expand_as(emb)
        logits = model.from_embeddings(base, tokens[:, : position + 1].to(model.device), exact_cms=False)
        return float(logits[0, -1].float().log_softmax(-1)[target])


def top_guess(model_name: str, seed: int, text: str, position: int) -> int:
    import torch

    model = frozen_model(model_name, seed)
    with torch.no_grad():
        return int(model(_tokens(text)[:, : position + 1].to(model.device))[0, -1].argmax())


def strip_figure(text_bytes: list[int], attr: dict, width: int = 64) -> go.Figure:
    """The bytes up to the position as a grid, coloured by attribution (diverging unless saliency)."""
    scores = attr["scores"]
    n = len(scores)
    rows = (n + width - 1) // width
    z = [[None] * width for _ in range(rows)]
    chars = [[""] * width for _ in range(rows)]
    hover = [[""] * width for _ in range(rows)]
    for i, s in enumerate(scores):
        r, c = divmod(i, width)
        ch = decode_token(text_bytes[i])
        z[r][c], chars[r][c] = s, ch if ch.isprintable() and ch != " " else "·"
        hover[r][c] = f"byte {i} {ch!r}: {s:+.4g}"
    signed = attr["method"] != "saliency"
    peak = max((abs(s) for s in scores if math.isfinite(s)), default=1.0) or 1.0
    fig = go.Figure(go.Heatmap(z=z, text=chars, texttemplate="%{text}", customdata=hover,
                               hovertemplate="%{customdata}<extra></extra>", xgap=1, ygap=1,
                               colorscale="RdBu" if signed else "Blues", zmid=0 if signed else None,
                               zmin=-peak if signed else 0, zmax=peak,
                               # horizontal, under the strip: a one-row strip squashed a vertical bar to nothing
                               colorbar={"title": {"text": "attribution", "side": "top"}, "orientation": "h",
                                         "thickness": 10, "len": 0.5, "y": -0.05, "yanchor": "top"}))  # fmt: skip
    fig.update_yaxes(autorange="reversed", showticklabels=False)
    fig.update_xaxes(showticklabels=False)
    target = decode_token(attr["target"])
    fig.update_layout(title=f"which bytes drove log p({target!r}) = {attr['value']:.2f} after byte {attr['position']}",
                      height=140 + 26 * rows, margin={"l": 10, "r": 10, "t": 40, "b": 70})  # fmt: skip
    return fig


def levels_figure(levels: dict[str, float]) -> go.Figure:
    names = list(levels)
    values = [levels[n] for n in names]
    fig = go.Figure(go.Bar(x=values, y=names, orientation="h",
                           marker_color=["#2166ac" if v >= 0 else "#b2182b" for v in values],
                           hovertemplate="%{y}: F − F(frozen) = %{x:+.4f} nats<extra></extra>"))  # fmt: skip
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title="F(all learning) − F(this level frozen), nats", zeroline=True)
    fig.update_layout(title="which level's learning in context drove it", height=80 + 28 * len(names),
                      margin={"l": 10, "r": 10, "t": 40, "b": 10})  # fmt: skip
    return fig
