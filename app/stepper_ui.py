"""The stepper page's Streamlit pieces: where the stream comes from (sample, text, upload, a saved
trace), the runs kept per session, and the export panel. The run logic itself is in app/runstate.py."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable

import streamlit as st

import nested
from app.exports import figures_html, trace_csv, trace_json, trace_npz
from app.models import APP_MODELS
from app.presets import FIRST_SAMPLE, shipped_run
from app.runstate import StepperRun
from app.samples import sample_texts
from app.session import show_error, upload_text
from app.textinput import TextInputError, clean_text
from app.textlink import linked_text_area
from app.urlstate import choice, is_hidden
from nested.trace import Trace

TRACE_UPLOAD_MB = 32  # a 4,096-token trace with every snapshot is ~20 MB uncompressed
SOURCES = ["Sample", "Type or paste", "Upload", "Saved trace"]
NO_COMPARE = "none"


def restart() -> None:
    """A new text starts at its first token. (A callback: a bound slider ignores script-side assignments
    made after the browser sent its value.) Model, seed and frozen levels keep the index, so the same
    token can be compared across them."""
    st.session_state["stepper_index"] = 0


def _source_run(settings: dict, frozen: tuple[str, ...]) -> tuple[tuple, list[int], Trace | None] | None:
    """(run key, tokens, preset or loaded trace) for the chosen source; None (with a message) if unusable."""
    sources = SOURCES if not is_hidden("exports") else SOURCES[:3]
    source = choice(st.radio, "Text", sources, key="stepper_source", horizontal=True, on_change=restart)
    try:
        if source == "Saved trace":
            up = st.file_uploader("A trace saved from this page (.npz)", type=["npz"], key="stepper_trace_upload",
                                  on_change=restart, max_upload_size=TRACE_UPLOAD_MB)  # fmt: skip
            if up is None:
                return None
            data = up.getvalue()
            try:
                trace = Trace.load(io.BytesIO(data))
            except ValueError as exc:
                raise TextInputError(f"this file cannot be replayed: {exc}") from None
            return ("trace", hashlib.sha1(data).hexdigest()), list(trace.tokens), trace
        if source == "Sample":
            samples = sample_texts()
            title = choice(
                st.selectbox, "Sample", list(samples), key="stepper_sample", default=FIRST_SAMPLE, on_change=restart
            )
            text, notes = clean_text(samples[title])
            ident: tuple = ("sample", title)
        else:
            if source == "Type or paste":
                raw = linked_text_area(
                    "Your text", "stepper_typed", "Memory is a neural update caused by an input.", on_change=restart
                )
            else:
                up = st.file_uploader(
                    "A .txt file (up to 1 MB)", type=["txt"], key="stepper_upload", on_change=restart, max_upload_size=1
                )  # the browser refuses a bigger file: it never reaches us
                if up is None:
                    return None
                raw = upload_text(up)
            text, notes = clean_text(raw)
            ident = ("text", text)
        for note in notes:
            st.info(note)
    except TextInputError as exc:
        st.error(str(exc))
        return None
    key = (settings["model"], settings["seed"], *ident, frozen)
    return key, nested.encode_bytes(text), shipped_run(key)


def current_runs(settings: dict, frozen: tuple[str, ...]) -> tuple[StepperRun | None, StepperRun | None]:
    """The session's main run and comparison run, rebuilt when what they are of changes. A failed input
    keeps the earlier runs (the session loses nothing)."""
    run: StepperRun | None = st.session_state.get("stepper_run")
    found = _source_run(settings, frozen)
    if found is not None:
        key, tokens, trace = found
        if run is None or run.key != key:
            if key[0] == "trace":
                run = StepperRun.from_trace(key, trace)
            else:
                run = StepperRun(key, tokens, frozen, preset=trace)
            st.session_state["stepper_run"] = run
    if run is None:
        return None, None
    others = [NO_COMPARE] + ([] if run.replay else list(APP_MODELS))
    other = choice(st.selectbox, "Compare with (same text, not frozen)", others, key="stepper_compare",
                   default=NO_COMPARE, help="A second model on the same stream, side by side.")  # fmt: skip
    if other == NO_COMPARE:
        return run, None
    ckey = (other, *run.key[1:-1], ())
    cmp_run: StepperRun | None = st.session_state.get("stepper_compare_run")
    if cmp_run is None or cmp_run.key != ckey:
        cmp_run = StepperRun(ckey, run.tokens, (), preset=shipped_run(ckey))
        st.session_state["stepper_compare_run"] = cmp_run
    return run, cmp_run


def ensure(
    run: StepperRun, model: nested.NestedLM | None, upto: int, snapshots: bool = True, start: int | None = None
) -> bool:
    """Compute what the view needs (token upto - 1, or every token of [start, upto)); a diverging memory
    is reported and the session goes on."""
    try:
        compute = (lambda: run.ensure(model, upto, snapshots)) if start is None else (
            lambda: run.ensure_window(model, start, upto, snapshots))  # fmt: skip
        if upto - run.computed > 64 and not run.replay:
            with st.spinner(f"Streaming {upto - run.computed} tokens through {run.key[0]}…"):
                compute()
        else:
            compute()
        return True
    except Exception as exc:  # noqa: BLE001 - any failure of the live model is shown, never raised
        show_error(exc, f"The model {run.key[0]} could not stream this text")
        return False


def topk_line(trace: Trace, i: int) -> str:
    """The top next-byte predictions after token i, on one line."""
    from app.models import decode_token

    return " · ".join(f"`{decode_token(int(t))}` {float(p):.2f}" for t, p in zip(trace.topk_ids[i], trace.topk_probs[i],
                                                                                 strict=True))  # fmt: skip


def export_panel(run: StepperRun, figures: Callable[[], dict], settings: dict) -> None:
    """Downloads (generated only when clicked): the figures of the current token (`figures` builds them) as
    one offline HTML page, the data as CSV and JSON, the whole trace as .npz (it loads back under Text →
    Saved trace)."""
    if is_hidden("exports") or (run.trace is None and run.preset is None):
        return
    trace = run.export_trace()
    if not run.replay:  # a replay keeps what it recorded (its key is the file's hash, not a model)
        trace.meta.update({"model": run.key[0], "seed": settings["seed"], "frozen": list(run.frozen)})
    stem = f"{trace.meta.get('model', 'trace')}-stepper"
    with st.expander("Export", icon=":material/download:"):
        st.caption("Each figure's toolbar has a camera button for a PNG. The trace holds every token computed so far "
                   "(the whole text when a precomputed run exists); load it back with Text → Saved trace.")  # fmt: skip
        c = st.columns(4)
        c[0].download_button("Trace (.npz)", lambda: trace_npz(trace), f"{stem}.npz", "application/octet-stream",
                             on_click="ignore", key="dl_trace")  # fmt: skip
        c[1].download_button("Data (.csv)", lambda: trace_csv(trace), f"{stem}.csv", "text/csv",
                             on_click="ignore", key="dl_csv")  # fmt: skip
        c[2].download_button("Data (.json)", lambda: trace_json(trace), f"{stem}.json", "application/json",
                             on_click="ignore", key="dl_json")  # fmt: skip
        c[3].download_button("Figures (.html)", lambda: figures_html(figures(), f"Token stepper: {run.key[0]}"),
                             f"{stem}.html", "text/html", on_click="ignore", key="dl_html")  # fmt: skip
