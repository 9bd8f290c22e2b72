"""The whole view in the URL: controls bound to query parameters, presets, lessons, instructor mode.

- Every control that shapes a view is bound with `bind="query-params"` (its key is the parameter name),
  so a copied link restores the same view.
- `?preset=NAME` fills the controls a named preset sets (app/presets.py); parameters written explicitly
  in the URL win over the preset's values.
- `?hide=model,seed,...` (the instructor parameter) hides those controls: their values still come from
  the URL, the learner just cannot change them.
- `?lesson=NAME` shows that lesson's instructions at the top of the page it opens.

Streamlit drops a bound parameter from the URL when its widget is not drawn, so a hidden control is read
from the query string directly instead of being bound.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlencode

import streamlit as st

HIDE_PARAM = "hide"
PRESET_PARAM = "preset"
LESSON_PARAM = "lesson"

# Controls an instructor may hide (query-parameter name -> what the learner would see).
HIDEABLE = {
    "model": "model picker",
    "seed": "seed",
    "stepper_source": "text source",
    "stepper_sample": "sample picker",
    "stepper_frozen": "freeze toggles",
    "stepper_compare": "second model",
    "stepper_layer": "layer picker",
    "stepper_memory": "memory picker",
    "stepper_colour": "strip colouring",
    "exports": "downloads and trace upload",
    "cl_models": "continual-learning models",
    "cl_regime": "language regime",
    "cl_frozen": "frozen Hope level",
    "cl_step": "tokens per step",
    "cl_detail": "model of the detail views",
    "ct_optimizers": "outer-loop optimizers",
    "ct_steps": "steps per task",
    "opt_surface": "optimizer surface",
    "opt_optimizers": "optimizer picker",
    "opt_lr": "optimizer learning rate",
    "race_task": "race task",
    "race_optimizers": "racing optimizers",
}


INSTRUCTOR_KEY = "_instructor_hide"
HIDDEN_VALUES = "_instructor_values"


def keep_instructor_mode() -> None:
    """An instructor's `?hide=` holds for the whole visit: kept in the session the first time it is seen and
    written back into the URL when navigating to another page drops it (with the hidden controls' values)."""
    raw = st.query_params.get_all(HIDE_PARAM)
    if raw:
        st.session_state[INSTRUCTOR_KEY] = list(raw)
        return
    if INSTRUCTOR_KEY in st.session_state:
        st.query_params[HIDE_PARAM] = st.session_state[INSTRUCTOR_KEY]
        for key, value in st.session_state.get(HIDDEN_VALUES, {}).items():
            if key not in st.query_params:
                st.query_params[key] = value


def remember_hidden(key: str, value) -> None:
    """A hidden control's value, kept for the visit (the URL that carried it may be dropped by navigation)."""
    if value is not None:
        st.session_state.setdefault(HIDDEN_VALUES, {})[key] = value if isinstance(value, list) else str(value)


def hidden_controls() -> set[str]:
    """The controls the URL's instructor parameter hides (unknown names are ignored)."""
    raw = st.query_params.get_all(HIDE_PARAM)
    names = {n.strip() for value in raw for n in value.split(",")}
    return names & set(HIDEABLE)


def is_hidden(key: str) -> bool:
    return key in hidden_controls()


SET_BY_CODE = "_set_by_code"  # the control keys a preset wrote into session state, until their widget runs


def _mark_set_by_code(key: str) -> None:
    st.session_state.setdefault(SET_BY_CODE, set()).add(key)


def _set_by_code(key: str) -> bool:
    """Whether code wrote `key`'s value since its widget last ran (then the widget takes it without a default)."""
    written = st.session_state.get(SET_BY_CODE, set())
    if key in written:
        written.discard(key)
        return True
    return False


def choice(widget: Callable, label: str, options: Sequence, *, key: str, default: Any = None, **kw) -> Any:
    """A selectbox / radio / select_slider over `options`, bound to the URL, or its URL value when hidden."""
    options = list(options)
    if default is None or default not in options:
        default = options[0] if options else None
    if is_hidden(key):  # the URL's value, else a preset's, else the default
        by_text = {str(o): o for o in options}
        preset = st.session_state.get(key)
        value = by_text.get(st.query_params.get(key, ""), preset if preset in options else default)
        remember_hidden(key, value)
        return value
    if key in st.session_state and st.session_state[key] not in options:
        del st.session_state[key]
    if _set_by_code(key):  # a preset's value this run: passing a default too makes Streamlit warn
        return widget(label, options, key=key, bind="query-params", **kw)
    # Every other run passes the same default: the bound URL drops a value equal to the widget's default, so a
    # widget built without it (default: the first option) would leave the first option out of a shared link.
    if getattr(widget, "__name__", "") == "select_slider":
        return widget(label, options, value=default, key=key, bind="query-params", **kw)
    index = options.index(default) if options else None
    return widget(label, options, index=index, key=key, bind="query-params", **kw)


def multichoice(label: str, options: Sequence, *, key: str, default: Sequence = (), container=st, **kw) -> list:
    """A multiselect bound to the URL (repeated parameters), or its URL values when hidden."""
    options = list(options)
    if is_hidden(key):
        by_text = {str(o): o for o in options}
        if key in st.query_params:  # the URL's values, else a preset's, else the default
            values = [by_text[v] for v in st.query_params.get_all(key) if v in by_text]
        else:
            values = [o for o in st.session_state.get(key, default) if o in options]
        remember_hidden(key, [str(v) for v in values])
        return values
    _set_by_code(key)  # a multiselect without a default drops only the empty selection from the URL: no matter
    if key in st.session_state:
        st.session_state[key] = [o for o in st.session_state[key] if o in options]
        return container.multiselect(label, options, key=key, bind="query-params", **kw)
    return container.multiselect(label, options, default=[o for o in default if o in options], key=key,
                                 bind="query-params", **kw)  # fmt: skip


def whole_number(raw: str | None, limit: int) -> int | None:
    """A URL value as a whole number in [0, limit], else None. ASCII digits only: str.isdigit() accepts
    '²' and other digits int() refuses, and int() refuses more than 4,300 digits."""
    if raw is None or not (raw.isascii() and raw.isdigit()) or len(raw) > len(str(limit)):
        return None
    value = int(raw)
    return value if value <= limit else None


def ignored_from_link(*what: str) -> None:
    """The one notice for link values the app could not use: it names them (never a silent drop)."""
    st.warning("Ignored from the link: " + "; ".join(what) + ".", icon=":material/link_off:")


def _read_url_number(key: str, low: int, high: int) -> str | None:
    """Once per session: the link's whole number for `key`, when in [low, high], into session state (a
    preset's value stands when the URL has none). Returns the link's value when it was refused."""
    seen = f"_url_read_{key}"
    if seen in st.session_state:
        return None
    st.session_state[seen] = True
    raw = st.query_params.get(key)
    value = whole_number(raw, high)
    if value is not None and value >= low:
        st.session_state[key] = value
        return None
    return raw


def _write_url_number(key: str, value: int, default: int) -> None:
    """The URL holds `value` while it differs from the default."""
    if value != default:
        st.query_params[key] = str(value)
    elif key in st.query_params:
        del st.query_params[key]


def int_input(container, label: str, low: int, high: int, default: int, *, key: str, **kw) -> int:
    """A whole-number input kept in the URL by hand, not by binding: Streamlit's bound number input parses
    the link itself and raises on 1e999 or a number past 64 bits. The link is read once per session; a value
    outside [low, high] is dropped and named. The URL holds the value while it differs from the default."""
    refused = _read_url_number(key, low, high)
    if refused is not None:
        del st.query_params[key]
        ignored_from_link(f"{key}={refused[:20]!r}{'…' if len(refused) > 20 else ''} (not a whole number from "
                          f"{low} to {high:,})")  # fmt: skip
    if key in st.session_state:
        value = int(container.number_input(label, low, high, key=key, **kw))
    else:
        value = int(container.number_input(label, low, high, default, key=key, **kw))
    _write_url_number(key, value, default)
    return value


def url_position(key: str, n: int) -> int:
    """A position (e.g. the token index) kept in the URL by hand rather than by binding: a bound slider
    whose range changes (a new text) re-reads the URL and would undo a reset. The URL is read once per
    session (a bad value is ignored); `set_url_position` writes it back."""
    _read_url_number(key, 0, 10**9)
    value = st.session_state.get(key, 0)
    value = value if isinstance(value, int) else 0
    st.session_state[key] = max(0, min(n - 1, value))
    return st.session_state[key]


def set_url_position(key: str, value: int) -> None:
    _write_url_number(key, value, 0)


def apply_preset(presets: dict[str, dict]) -> str | None:
    """Once per session and preset: copy the preset's values into the controls the URL leaves unset.
    Returns the active preset's name (None when the URL names none or an unknown one)."""
    name = st.query_params.get(PRESET_PARAM)
    if name not in presets:
        return None
    if st.session_state.get("_applied_preset") != name:
        st.session_state["_applied_preset"] = name
        for key, value in presets[name].items():
            if key not in st.query_params:
                st.session_state[key] = value
                _mark_set_by_code(key)
    return name


def share_query(params: dict[str, Any]) -> str:
    """A query string for a link (lists become repeated parameters, None values are left out)."""
    flat = []
    for key, value in params.items():
        for v in value if isinstance(value, list | tuple) else [value]:
            if v is not None and v != "":
                flat.append((key, str(v)))
    return urlencode(flat)
