"""The stepper's views: the browser-side player (app/player.py) and, on request, the interactive Plotly
figures of the token it rests on. Streamlit glue only; what is drawn is built by pure functions.

A fragment holds the player: its reports (a window it lacks, the position it rests on) rerun only the
fragment, and a report that asks for nothing costs the server a light payload and a URL write."""

from __future__ import annotations

import streamlit as st

from app import player
from app.exports import PLOTLY_CONFIG
from app.figures import loss_curves, memory_heatmap, rate_curves, token_strip
from app.models import decode_token
from app.runstate import StepperRun, downsample
from app.stepper_ui import ensure, topk_line
from app.urlstate import set_url_position

REPORT = "stepper_player"  # the component's key: session_state[REPORT].view is the browser's last report
CMD = "_player_cmd"  # the server's last command {seq, index?, playing?, speed?}
KNOWN = "_player_known"  # the position the browser is known to hold (its report, or the last command)
ABSORBED = "_player_absorbed"  # the id of the last report applied (each is applied once)
ACKED = "_player_acked"  # the seq of the last command the browser said it applied
SERVED = "_player_served"  # the nonce of the last window request answered
SENT_SIG = "_player_sig"  # the view whose frames were last sent
STREAM_BUDGET = 512  # tokens one rerun streams at most (~1.2 s of the default model on one core)


def command(**move) -> None:
    """Tell the browser to move (index / playing / speed): applied once, in order. A command carries the
    speed, and the moves of earlier commands the browser has not yet acknowledged (it applies only the
    latest it receives)."""
    prev = st.session_state.get(CMD, {})
    acked = prev.get("seq", -1) <= st.session_state.get(ACKED, -1)
    carry = {k: v for k, v in prev.items() if k != "seq" and (k == "speed" or not acked)}
    st.session_state[CMD] = {**carry, **move, "seq": prev.get("seq", -1) + 1}
    if "index" in move:
        st.session_state[KNOWN] = move["index"]


def absorb_report(n: int) -> dict | None:
    """The browser's last report, applied to the session's position; returns it (None: no report yet)."""
    state = st.session_state.get(REPORT)
    view = getattr(state, "view", None) if state is not None else None
    if not isinstance(view, dict):
        return None
    if view.get("rid") == st.session_state.get(ABSORBED):
        return None  # absorbed already (the widget keeps its last value across reruns)
    st.session_state[ABSORBED] = view.get("rid")
    if view.get("seq") != st.session_state.get(CMD, {}).get("seq"):
        return None  # it predates the server's last move: the browser has not applied it yet
    st.session_state[ACKED] = view.get("seq")
    index = view.get("index")
    if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < n:
        st.session_state["stepper_index"] = index
        st.session_state[KNOWN] = index
    st.session_state["stepper_playing"] = view.get("playing") is True
    return view


def names(run: StepperRun, other: StepperRun | None, memory: str, colour: str, layer: int) -> dict:
    """The panel titles the browser shows (what each mark is)."""
    tr = run.view(0, snapshots=False)
    gates = tr.gate_labels(layer) if run.memory_names(layer) else None
    rates = (
        [["eta", gates["eta"][0]], ["alpha", gates["alpha"][0]], ["surprise", "surprise (inner loss)"]] if gates else []
    )
    return {"main": run.label, "frozen": ", ".join(run.frozen), "other": other.label if other else None, "memory": memory if run.memory_names(layer) else None,
            "colour": colour, "rates": rates}  # fmt: skip


def player_view(run: StepperRun, other: StepperRun | None, model, other_model, *, layer: int, memory: str,
                colour: str, speed: int) -> None:  # fmt: skip
    """Mount the player with what the browser needs now: a requested window, or the window of a new view
    or a new position; otherwise a light payload."""
    n = len(run.tokens)
    view = absorb_report(n) or {}
    index = st.session_state["stepper_index"]
    moved = st.session_state.get(KNOWN) != index  # moved by the server (reset, new text, a link)
    if moved:
        command(index=index, playing=False)
    if st.session_state.get(CMD, {}).get("speed") != speed:
        command(speed=speed)
    set_url_position("stepper_index", index)
    need = view.get("need")
    sig = player.view_signature(run, other, layer, memory, colour)
    start, windows = None, 1
    if isinstance(need, dict) and need.get("nonce") != st.session_state.get(SERVED):
        st.session_state[SERVED] = need.get("nonce")
        start = need.get("start") if isinstance(need.get("start"), int) else None
        windows = need.get("windows") if isinstance(need.get("windows"), int) else 1
    if start is None and (moved or st.session_state.get(SENT_SIG) != sig):
        start = player.window_around(index)
    cmd, title = st.session_state[CMD], names(run, other, memory, colour, layer)
    if start is not None:

        def cover(a: int, b: int) -> bool:
            return ensure(run, model, b, start=a) and (other is None or ensure(other, other_model, b, False, a))

        progress = _stream_some(run, other, model, other_model, *_first_window(start, n))
        if progress is False:
            return
        if progress is not None:  # far ahead: this rerun streamed a bounded piece; the browser asks again
            data = player.light_payload(run, other, layer=layer, memory=memory, colour=colour, cmd=cmd, names=title)
            data["progress"] = progress
        else:
            data = player.payload(run, other, model, start, layer=layer, memory=memory, colour=colour, cmd=cmd,
                                  names=title, windows=windows, ensure=cover)  # fmt: skip
            if data is None:
                return
            st.session_state[SENT_SIG] = sig
    else:
        data = player.light_payload(run, other, layer=layer, memory=memory, colour=colour, cmd=cmd, names=title)
    player.component()(key=REPORT, data=data, default={"view": None}, on_view_change=lambda: None)


def _stream_some(run: StepperRun, other: StepperRun | None, model, other_model, start: int, end: int):
    """When the window [start, end) is more than STREAM_BUDGET tokens beyond what the runs have streamed,
    stream STREAM_BUDGET more and return {done, target} (the browser shows it and asks again; moving
    elsewhere stops it); None when the window is near; False when a model failed (the error is shown).
    One rerun's work stays bounded, so a far scrub never holds the session (or a core) for minutes."""
    runs = [(run, model, True)] + ([(other, other_model, False)] if other is not None else [])
    targets = [(r, m, snaps, r.needs_upto(start, end, snaps)) for r, m, snaps in runs]
    if all(t - r.computed <= STREAM_BUDGET for r, _, _, t in targets):
        return None
    for r, m, snaps, t in targets:
        if t > r.computed and not ensure(r, m, min(t, r.computed + STREAM_BUDGET) - 1, snaps):
            return False
    return {"done": min(r.computed for r, *_ in targets), "target": max(t for *_, t in targets)}


def _first_window(start: int, n: int) -> tuple[int, int]:
    start = max(0, min(n - 1, start))
    return start, min(n, start + player.WINDOW)


def plotly_figures(run: StepperRun, other: StepperRun | None, model, other_model, i: int, *, layer: int,
                   memory: str, colour: str) -> dict:  # fmt: skip
    """The stepper's figures for token i as Plotly (hover, zoom, PNG; the HTML export): strips, the memory
    and its change, the rate curves, and both models' losses when comparing."""
    if not ensure(run, model, i + 1) or (other and not ensure(other, other_model, i + 1, snapshots=False)):
        return {}
    figs, tr = {}, run.view(i)
    for r in [run, other] if other else [run]:
        t = r.view(i, snapshots=r is run)
        values = t.array("loss")[: i + 1] if colour == "loss" else t.array(colour)[: i + 1, layer].mean(-1)
        figs[f"strip {r.key[0]}"] = token_strip(r.tokens, values, i, colour)
    if other:
        figs["loss"] = loss_curves({f"{r.key[0]}{' (frozen)' if r.frozen else ''}": r.view(i, r is run).array("loss")[: i + 1]
                                    for r in (run, other)}, i)  # fmt: skip
    now, before = run.matrices(layer, i, model)
    if now and memory in now:
        m = downsample(now[memory])
        big = float(abs(now[memory]).max())
        figs["memory"] = memory_heatmap(m, f"{memory} after token {i} (largest |entry| {big:.1e})", 1.0)
        if before is not None:
            figs["change"] = memory_heatmap(m - downsample(before[memory]), "change from the previous token", 0.1)
    if run.memory_names(layer):
        ticks = tr.ticks(layer, "cms", upto=i)
        curves = (tr.array(a)[: i + 1, layer].mean(-1) for a in ("eta", "alpha", "surprise"))
        figs["rates"] = rate_curves(*curves, i, ticks, tr.gate_labels(layer))
    return figs


def interactive_figures(run, other, model, other_model, *, layer: int, memory: str, colour: str) -> None:
    """The Plotly figures of the token the player rests on, when the user asks for them."""
    i = st.session_state["stepper_index"]
    figs = plotly_figures(run, other, model, other_model, i, layer=layer, memory=memory, colour=colour)
    t = run.view(i)
    loss = t.loss[i]
    st.markdown(f"Figures of token {i}: **'{decode_token(run.tokens[i])}'** — next-token loss "
                + ("unknown (last token)" if loss != loss else f"{loss:.3f} nats") + f"  \nPredicted next: {topk_line(t, i)}")  # fmt: skip
    for name, fig in figs.items():
        st.plotly_chart(fig, key=f"fig_{name}", config=PLOTLY_CONFIG)
