"""Continual learning, live: stream task after task through several models and watch what each keeps."""

import pandas as pd
import streamlit as st

from app import continual_ui as cl
from app.continual_figures import forgetting_curves, forgetting_matrix, level_changes, level_resets, summary_rows
from app.continual_train_ui import across_training_tab
from app.exports import PLOTLY_CONFIG
from app.session import frozen_model, session_models, user_text
from app.textlink import linked_text_area
from app.urlstate import choice, int_input, multichoice
from nested.continual import MAX_TOKENS, TEXT_TASK

st.title("Continual learning, live")
in_context, across = st.tabs(["In context (test time)", "Across training (outer loop)"])
with across:
    across_training_tab()
with in_context:
    st.markdown(
        "Each **language** is a rule learned *in context*: a random successor order over its own symbols, drawn fresh "
        "for every stream. The models' weights are fixed; only their memories and CMS levels learn from the stream "
        "(continual learning at test time, PAPER.md §8.2). **Probes** show a 4-symbol fragment of every language "
        "and ask *what comes next?* from each model's current state without changing it."
    )
    c1, c2, c3 = st.columns([3, 2, 2])
    models = multichoice(
        "Models",
        [*cl.LAB_MODELS, cl.FROZEN_HOPE, *session_models()],
        key="cl_models",
        default=cl.DEFAULT_MODELS,
        container=c1,
    )
    regime = choice(c2.radio, "Languages", list(cl.REGIMES), key="cl_regime")
    levels = frozen_model(cl.LAB_MODELS["Hope"], 0).freeze_options()
    frozen = choice(c3.selectbox, f"Level of '{cl.FROZEN_HOPE}'", levels, key="cl_frozen", default="layer 1 cms[1]")
    frozen_at = int_input(c3, "… frozen from token", 0, MAX_TOKENS, 0, key="cl_frozen_at", step=16,
                          help="0: frozen from the start. Later: the level learns until that token, then stops "
                          "(the run replays with the freeze there). 'Freeze now' below sets it to where the stream is.")  # fmt: skip
    c3.button("Freeze now", key="cl_freeze_now", on_click=cl.freeze_now, disabled=cl.FROZEN_HOPE not in models,
              icon=":material/ac_unit:", help=f"'{cl.FROZEN_HOPE}': its level stops learning from where the stream is now "
              f"(add '{cl.FROZEN_HOPE}' to the models first)")  # fmt: skip
    seed = int_input(c3, "Stream seed", 0, 10**6, 0, key="cl_seed")
    if not models:
        st.info("Pick at least one model.")
        st.stop()
    with_frozen = cl.FROZEN_HOPE in models
    setup = cl.Setup(tuple(models), cl.REGIMES[regime], int(seed), frozen if with_frozen else "",
                     frozen_at if with_frozen else 0)  # fmt: skip
    for label, score in cl.unlearned(setup).items():
        st.warning(f"**{label}** " + ("is untrained here (no shipped checkpoint): its curves are noise."
                   if score is None else f"learned these languages only partly: alone, it answers {score:.0%} of "
                   "the probes (chance 25%, an exact solver 100%). Read its curves with that in mind."))  # fmt: skip
    with st.expander("Schedule and your text", icon=":material/edit_note:"):
        raw = linked_text_area(
            "Your text (task T): streamed as a segment like any language", "cl_text", max_chars=20_000
        )
        text = (user_text(raw) or "") if raw.strip() else ""
        s1, s2, s3 = st.columns([3, 2, 1], vertical_alignment="bottom")
        schedule = s1.text_input("Schedule (letters, or A128 B64 …; T is your text)", cl.DEFAULT_SCHEDULE, key="cl_schedule",
                                 max_chars=400, bind="query-params")  # fmt: skip
        seglen = choice(
            s2.select_slider, "Segment length", [32, 64, 128, 256, 512], key="cl_seglen", default=cl.DEFAULT_SEGMENT
        )
        if s3.button("Run", icon=":material/replay:", key="cl_run_schedule", help="Start over with this schedule"):
            cl.run_schedule(setup, schedule, seglen, text)
    lab = cl.current_lab(setup, text)
    tasks = [chr(65 + i) for i in range(cl.N_TASKS)] + ([TEXT_TASK] if text else [])
    k1, k2, k3 = st.columns([3, 3, 1], vertical_alignment="bottom")
    step = choice(k1.select_slider, "Tokens per step", [16, 32, 64, 128], key="cl_step", default=32)
    speed = choice(k2.select_slider, "Play speed (steps/s)", [0.5, 1.0, 2.0], key="cl_speed", default=1.0)
    playing = k3.toggle("Play", key="cl_play", help=f"Keep streaming the current language, {step} tokens per tick")

    def switch(task: str) -> None:
        st.session_state["cl_task"] = st.session_state["_cl_feed"] = task

    @st.fragment(run_every=1.0 / speed if playing else None)
    def views() -> None:
        """The feed buttons and everything a step changes: a click reruns only this fragment."""
        current = st.session_state.get("cl_task", "A") if st.session_state.get("cl_task", "A") in tasks else "A"
        for col, t in zip(st.columns(len(tasks)), tasks, strict=True):
            col.button("Feed your text" if t == TEXT_TASK else f"Feed {t}", key=f"cl_feed_{t}", on_click=switch,
                       args=(t,), type="primary" if t == current else "secondary", width="stretch",
                       help=f"Switch the stream to {'your text' if t == TEXT_TASK else 'language ' + t} now and stream {step} tokens")  # fmt: skip
        run = cl.kept(setup) or lab
        clicked, full = st.session_state.pop("_cl_feed", None), st.session_state.pop("_cl_full_run", False)
        if clicked or (playing and not full):
            run = cl.feed(cl.materialise(setup, text), clicked or current, step) or run
        wanted = st.session_state.get("cl_detail")  # the reset probes are computed for the detail view only
        summary = run.summary(resets=[wanted]) if run is not None else cl.shipped_summary()
        if run is None:
            st.caption(
                f"A precomputed run of the schedule {summary['schedule']}: press a Feed button or Play to go on live."
            )
        held = (
            f" This run holds {run.nbytes() / 2**20:.1f} MB of model state (at most {MAX_TOKENS:,} tokens)."
            if run
            else ""
        )
        st.caption(
            f"Streamed {summary['pos']:,} tokens; now feeding **{current}**. Chance is {summary['chance']:.0%}.{held}"
        )
        st.plotly_chart(forgetting_curves(summary), key="cl_curves", config=PLOTLY_CONFIG)
        pick = choice(st.selectbox, "Details for", list(summary["models"]), key="cl_detail")
        if run is not None and pick != wanted:
            summary = run.summary(resets=[pick])
        a, b = st.columns(2)
        if summary["segments"]:
            a.plotly_chart(forgetting_matrix(summary, pick), key="cl_matrix", config=PLOTLY_CONFIG)
        if summary["models"][pick]["resets"]:
            b.plotly_chart(level_resets(summary, pick), key="cl_resets", config=PLOTLY_CONFIG)
        if summary["segments"] and any(summary["models"][pick]["segment_changes"]):
            st.plotly_chart(level_changes(summary, pick), key="cl_changes", config=PLOTLY_CONFIG)
        if summary["segments"]:
            st.dataframe(pd.DataFrame(summary_rows(summary)), hide_index=True, key="cl_table")

    st.session_state["_cl_full_run"] = True
    views()
    with st.expander("What am I looking at?"):
        st.markdown(cl.EXPLAINER)
