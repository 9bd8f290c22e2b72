"""The stepper's player: the stream is played, stepped and scrubbed in the browser, from windows of the
trace the server sends ahead of time (issue 17 item 2, issue 18 item 1).

The server never reruns per token. The browser keeps every frame it was sent (per view: model, text,
freeze, layer, memory, colour) and animates them on its own clock, so a speed holds whatever the
server is doing; keys act at once. It asks for the next window when fewer than a lookahead's tokens are
left ahead of the playhead, and tells the server its position only when it rests (a debounce), so the
page's link, exports and the interactive figures follow. The protocol, both ways, is plain JSON:

- server -> browser (`data`): `sig` (the view; a new one drops the browser's frames), `n`, `names`
  (panel titles), the frames of one window (`frames_from`, `frames`), the scalars of the tokens before
  it too (`scalars_from`, `scalars`: the strip and the curves show the last STRIP tokens), and `cmd`
  (`seq`, `index`, `playing`, `speed`): a move the server wants (a reset, a new text, a link), applied
  once by the browser (it remembers the last `seq` it applied).
- browser -> server (state `view`): `index`, `playing`, `speed`, `seq` (the last cmd applied) and
  `need` ({start, nonce, windows}: the windows it lacks, more of them at a higher speed; each nonce is
  served once).

No Streamlit at module level except the component's registration: the payload is built by pure
functions that pytest drives directly.
"""

from __future__ import annotations

import base64
import math
from pathlib import Path

import numpy as np

from app.figures import symlog
from app.runstate import StepperRun, downsample

WINDOW = 32  # tokens of frames a request returns (the live trace keeps the latest 64 tokens' matrices)
STRIP = 192  # tokens of scalars before the window: the strip and the curves show the last 4 rows of 48
HEAT_SIDE = 32  # heatmaps are pooled to at most this many cells a side
HEAT_ZMAX, CHANGE_ZMAX = 1.0, 0.1  # the colour ranges of the memory and of its change (as the Plotly maps)
MAX_WINDOWS = 4  # windows one request may ask for (fast playback asks for more at once)
SPEEDS = [1, 2, 5, 10, 30]  # tokens per second the player offers ("30" is fast-forward)


def quantize(m: np.ndarray, zmax: float) -> str:
    """A matrix on the symmetric-log colour scale, one byte a cell (0 = -zmax, 127 = 0, 254 = +zmax),
    row-major, base64: what the browser paints (the Plotly heatmaps use the same scale)."""
    top = float(symlog(zmax))
    q = np.rint(symlog(np.clip(m, -zmax, zmax)) / top * 127.0 + 127.0).astype(np.uint8)
    return base64.b64encode(q.tobytes()).decode("ascii")


def dequantize(payload: str, shape: tuple[int, int], zmax: float) -> np.ndarray:
    """The inverse of `quantize`, to the colour scale's resolution (tests; the browser does this in JS)."""
    q = np.frombuffer(base64.b64decode(payload), dtype=np.uint8).reshape(shape).astype(np.float64)
    s = (q - 127.0) / 127.0 * float(symlog(zmax))
    return np.sign(s) * (10.0 ** np.abs(s) - 1.0) * 1e-6


def _num(x: float) -> float | None:
    """JSON has no NaN: an unknown value (the last token's loss) is null."""
    x = float(x)
    return round(x, 5) if math.isfinite(x) else None


def view_signature(run: StepperRun, other: StepperRun | None, layer: int, memory: str, colour: str) -> str:
    """What the frames depend on: a change of any of these makes the browser drop what it holds."""
    return repr((run.key, run.frozen, other.key if other else None, layer, memory, colour, len(run.tokens)))


def scalars(run: StepperRun, other: StepperRun | None, start: int, end: int, layer: int, colour: str) -> list[dict]:
    """Per token in [start, end): the byte, the strip's value, the loss, the top guesses, η / α / surprise
    (this layer, mean over heads), whether a CMS level of this layer stepped after it, and the comparison
    model's loss and top guess. The runs must already cover `end - 1`."""
    from app.models import decode_token

    out = []
    if end <= start:
        return out
    t = run.view(end - 1, snapshots=False)
    has_rates = bool(run.memory_names(layer))
    ticks = set(t.ticks(layer, "cms", upto=end - 1)) if has_rates else set()
    rates = {a: t.array(a)[start:end, layer].mean(-1) for a in ("eta", "alpha", "surprise")} if has_rates else {}
    o = other.view(end - 1, snapshots=False) if other is not None else None
    for i in range(start, end):
        loss = t.loss[i]
        value = loss if colour == "loss" else rates[colour][i - start]
        row = {
            "c": decode_token(run.tokens[i]),
            "v": _num(value),
            "loss": _num(loss),
            "top": [[decode_token(int(k)), round(float(p), 3)] for k, p in zip(t.topk_ids[i], t.topk_probs[i], strict=True)],
        }  # fmt: skip
        if has_rates:
            row.update({a: _num(rates[a][i - start]) for a in rates} | {"cms": i in ticks})
        if o is not None:
            row["cmp_loss"] = _num(o.loss[i])
            row["cmp_top"] = decode_token(int(o.topk_ids[i][0]))
        out.append(row)
    return out


def frames(run: StepperRun, model, start: int, end: int, layer: int, memory: str) -> list[dict | None]:
    """Per token in [start, end): the chosen memory's matrix after it and its change from the token
    before, quantised (None where the run keeps no matrices for it, e.g. beyond a saved trace's window)."""
    out: list[dict | None] = []
    if memory not in run.memory_names(layer):
        return [None] * max(0, end - start)
    before = run.snapshot(layer, start - 1, model)
    for i in range(start, end):
        now = run.snapshot(layer, i, model)
        if now is None or memory not in now:
            out.append(None)
        else:
            m = downsample(now[memory], HEAT_SIDE)
            change = None
            if before is not None and memory in before:
                change = quantize(m - downsample(before[memory], HEAT_SIDE), CHANGE_ZMAX)
            big = float(np.abs(now[memory]).max())  # the title says it: a memory can decay far below the colours
            out.append({"shape": list(m.shape), "m": quantize(m, HEAT_ZMAX), "d": change, "max": float(f"{big:.3g}")})
        before = now
    return out


def window_around(index: int) -> int:
    """The start of the window sent when the view or the position changes: token `index` and the 16
    before it (what a step back needs) and after it, so a preset's matrices (index ± 16) cover it whole.
    (The browser asks for aligned windows, index // WINDOW * WINDOW, as it plays on.)"""
    return max(0, index - WINDOW // 2 + 1)


def payload(run: StepperRun, other: StepperRun | None, model, start: int, *, layer: int, memory: str,
            colour: str, cmd: dict, names: dict, windows: int = 1, ensure=None) -> dict | None:  # fmt: skip
    """The data for one rerun: `windows` windows from `start` (clipped to the stream) with the scalars of
    the STRIP tokens before them, and the server's command. `ensure(a, b)` makes the runs cover tokens
    [a, b) (False: stop); it is called one window at a time, so every window's matrices are still in the
    live run's ring of recent snapshots when they are read. None when the first window fails."""
    n = len(run.tokens)
    start = max(0, min(start, n - 1))
    end = min(n, start + max(1, min(windows, MAX_WINDOWS)) * WINDOW)
    s0 = max(0, start - STRIP)
    got: list[dict | None] = []
    for a in range(start, end, WINDOW):
        b = min(end, a + WINDOW)
        if ensure is not None and not ensure(a, b):
            end = a
            break
        got += frames(run, model, a, b, layer, memory)
    if not got:
        return None  # the first window could not be computed (the error is on the page)
    data = light_payload(run, other, layer=layer, memory=memory, colour=colour, cmd=cmd, names=names)
    data.update(scalars_from=s0, scalars=scalars(run, other, s0, end, layer, colour), frames_from=start, frames=got)
    return data


def light_payload(run: StepperRun, other: StepperRun | None, *, layer: int, memory: str, colour: str, cmd: dict,
                  names: dict) -> dict:  # fmt: skip
    """A rerun that sends no frames (the browser already has them): the view and the command only."""
    return {"sig": view_signature(run, other, layer, memory, colour), "n": len(run.tokens), "names": names,
            "scalars_from": 0, "scalars": [], "frames_from": 0, "frames": [], "cmd": cmd, "speeds": SPEEDS, "window": WINDOW}  # fmt: skip


ASSETS = Path(__file__).with_name("player")
_COMPONENT = None


def component():
    """The registered component (once per process; the JS and CSS are read from app/player/)."""
    global _COMPONENT
    if _COMPONENT is None:
        import streamlit as st

        _COMPONENT = st.components.v2.component(
            "nested_player",
            html='<div class="nlp-root"></div>',
            js=(ASSETS / "player.js").read_text(),
            css=(ASSETS / "player.css").read_text(),
            isolate_styles=False,  # the player's text is part of the page (find-in-page, tests, screen readers)
        )
    return _COMPONENT
