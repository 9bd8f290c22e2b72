"""The global sidebar: model picker, device in use, seed. Bound to the URL so links restore them; an
instructor's `?hide=model,seed` keeps their URL values and hides the widgets."""

from __future__ import annotations

import streamlit as st

from app.lessons import lessons
from app.models import DEFAULT_MODEL, weights_seed
from app.presets import PRESETS
from app.session import model_description, model_names
from app.train_ui import collect_pending
from app.urlstate import LESSON_PARAM, PRESET_PARAM, choice, ignored_from_link, is_hidden, remember_hidden, whole_number
from nested.device import describe, pick_device

MAX_SEED = 2**31 - 1


def _seed_from_url() -> int | None:
    raw = st.query_params.get("seed")
    return whole_number(raw, MAX_SEED)


def _clean_query_params() -> list[str]:
    """Garbage in the URL must never raise: drop values the widgets would reject, and say which (a link
    that silently shows something else is worse than one that says so)."""
    qp, ignored = st.query_params, []
    if qp.get("model") not in (None, *model_names()):
        ignored.append(f"model={qp.get('model')!r} (no such model)")
        del qp["model"]
    if qp.get("seed") is not None and _seed_from_url() is None:
        ignored.append(f"seed={qp.get('seed')!r} (not a whole number up to {MAX_SEED})")
        del qp["seed"]
    if qp.get(PRESET_PARAM) is not None and qp.get(PRESET_PARAM) not in PRESETS:
        ignored.append(f"preset={qp.get(PRESET_PARAM)!r} (no such preset)")
        del qp[PRESET_PARAM]
    if qp.get(LESSON_PARAM) is not None and qp.get(LESSON_PARAM) not in lessons():
        ignored.append(f"lesson={qp.get(LESSON_PARAM)!r} (no such lesson)")
        del qp[LESSON_PARAM]
    return ignored


LINK_NOTICE_SHOWN = 8  # parameters named in the notice; the rest are counted


def restored_from_link() -> None:
    """A new session that opens on a link says what the link restored, once: a shared link, or an open
    tab reconnecting after the server restarted (its session is new; its URL still holds the view). What
    a link cannot hold is said too, so a restarted workshop knows what to redo."""
    if st.session_state.get("_link_notice_done"):
        return
    st.session_state["_link_notice_done"] = True
    held = [k for k in st.query_params if k != "hide"]
    if not held:
        return
    named = ", ".join(held[:LINK_NOTICE_SHOWN]) + (
        f" and {len(held) - LINK_NOTICE_SHOWN} more" if len(held) > LINK_NOTICE_SHOWN else ""
    )
    st.toast(f"This view was restored from its link ({named}). Uploaded files and models trained in an earlier "
             "session are not part of a link: upload or train them again.", icon=":material/link:")  # fmt: skip


def global_sidebar() -> dict:
    collect_pending()  # a training that ended while this session was elsewhere joins the pickers now
    ignored = _clean_query_params()
    restored_from_link()
    with st.sidebar:
        st.markdown("### Nested Learning Lab")
        if ignored:
            ignored_from_link(*ignored)
        model = choice(st.selectbox, "Model", model_names(), key="model", default=DEFAULT_MODEL,
                       help="The model every page runs. Its weights are shared read-only; your stream state is yours. "
                       "Models you train on the Train page are listed as 'yours: …' (this session only).")  # fmt: skip
        st.caption(model_description(model))
        if is_hidden("seed"):
            seed = _seed_from_url() or 0
            remember_hidden("seed", seed)
        else:
            seed = st.number_input(
                "Seed", min_value=0, max_value=MAX_SEED, value=None if "seed" in st.session_state else 0, step=1,
                key="seed", bind="query-params",
                help="Seeds untrained models' initial weights and any sampled data (trained checkpoints are fixed).",
            )  # fmt: skip
        device = pick_device()
        st.caption(f"Device: **{describe(device)}**")
        # pages key their runs and caches by the seed that decides the weights (0 for a trained checkpoint)
        seed = int(seed or 0)
        weights = weights_seed(model, seed)
        if weights != seed:
            st.caption("This model is trained: the seed does not change its weights, so nothing is recomputed.")
    return {"model": model, "seed": weights, "device": str(device)}
