"""M3 live: optimizers train a real network side by side, their memories drawn as they learn."""

import streamlit as st

from app import race_figures as rf
from app import race_ui as ru
from app.exports import PLOTLY_CONFIG
from app.urlstate import choice, int_input, multichoice
from nested.race import BEST_LR, LABELS
from nested.race_tasks import PROBLEMS

st.title("M3 live: optimizers train a network")
st.markdown(
    "Two to six optimizers train **the same network from the same weights on the same batches**, step by step. "
    "Watch how fast each learns and what each one's memory of past gradients holds while it does "
    "(Nested Learning §3.1: an optimizer is an associative memory; M3 adds a slow level, Algorithm 1)."
)
c1, c2, c3 = st.columns([2, 3, 1])
# raw names, no format_func: a bound widget writes its formatted label into the URL
task = choice(c1.radio, "Task", list(ru.TASKS), key="race_task", horizontal=True)
c1.caption(ru.TASKS[task])
names = multichoice("Optimizers", list(LABELS), key="race_optimizers", default=list(ru.DEFAULT_OPTIMIZERS),
                    container=c2, max_selections=6)  # fmt: skip
seed = int_input(c3, "Seed", 0, 10**6, 0, key="race_seed")
if not names:
    st.info("Pick at least one optimizer.")
    st.stop()
with st.expander("Learning rates (preset: each one's best on this task)", icon=":material/tune:"):
    cols = st.columns(len(names))
    lrs = tuple((n, choice(col.select_slider, LABELS[n], ru.LR_CHOICES, key=f"race_lr_{task}_{n}",
                           default=BEST_LR[task][n])) for n, col in zip(names, cols, strict=True))  # fmt: skip
setup = ru.Setup(task, tuple(names), lrs, seed)
k1, k2, k3, k4 = st.columns([3, 1, 1, 1], vertical_alignment="bottom")
per_tick = choice(k1.select_slider, "Steps per tick", [1, 2, 5, 10, 20], key="race_per_tick", default=5)
playing = k2.toggle("Play", key="race_play", help="Keep training, one tick a second")
k3.button("Step", icon=":material/skip_next:", key="race_step", on_click=lambda: st.session_state.update(_race_step=1),
          help=f"Train {per_tick} more steps of every optimizer")  # fmt: skip
k4.button("Reset", icon=":material/restart_alt:", key="race_reset", on_click=ru.reset, help="Back to step 0")


@st.fragment(run_every=1.0 if playing else None)
def views() -> None:
    """Everything a step changes: a tick reruns only this fragment."""
    race = ru.live(setup)
    stepped = st.session_state.pop("_race_step", None)
    if stepped or (playing and not st.session_state.pop("_race_full", False)):
        race = race or ru.start(setup)
        ru.advance(race, per_tick, ru.STEP_SECONDS if stepped else ru.TICK_SECONDS)
    record = race.record() if race else (ru.shipped(task) if setup.is_default else None)
    if record is None:
        st.info("Press **Step** or **Play** to start this race.")
        return
    if race is None:
        st.caption(f"A precomputed race of {ru.PRESET_STEPS} steps: press Step or Play to race it live from step 0.")
    for r in record["runners"].values():
        if r["diverged"]:
            st.warning(r["diverged"] + ". The other optimizers go on.")
    st.caption(ru.status_line(record))
    a, b = st.columns(2)
    a.plotly_chart(rf.loss_figure(record), key="race_loss", config=PLOTLY_CONFIG)
    b.plotly_chart(rf.accuracy_figure(record, PROBLEMS[task].chance), key="race_accuracy", config=PLOTLY_CONFIG)
    st.plotly_chart(rf.memory_figure(record), key="race_memories", config=PLOTLY_CONFIG)
    a, b = st.columns(2)
    pick = choice(a.selectbox, "Memories per layer of", list(record["runners"]), key="race_detail")
    a.plotly_chart(rf.layer_figure(record, pick), key="race_layers", config=PLOTLY_CONFIG)
    b.plotly_chart(rf.spectrum_figure(record), key="race_spectrum", config=PLOTLY_CONFIG)
    st.plotly_chart(rf.step_time_figure(record), key="race_times", config=PLOTLY_CONFIG)


st.session_state["_race_full"] = True
views()
with st.expander("What am I looking at?"):
    st.markdown(ru.EXPLAINER)
