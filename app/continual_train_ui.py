"""The continual page's second tab: continual learning across training (the outer loop, PAPER.md §9 E5).
One MLP is trained on task A, then B, ... by each chosen optimizer; the held-out loss of every task and
the optimizer's own memories are drawn. Runs are pure functions of their settings: cached per process."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app.continual_figures import optimizer_memories, training_curves
from app.exports import PLOTLY_CONFIG
from app.urlstate import choice, multichoice
from nested.continual_train import Teachers, parse_schedule, train_sequence

# each optimizer's learning rate on these teachers: the best of 0.001 ... 0.1 by how well it learns each task
# (schedule ABAC, 200 steps a task, seed 0), measured by `python bench/continual_study.py --outer`
LEARNING_RATES = {"sgd": 0.1, "momentum": 0.03, "adam": 0.01, "muon": 0.03, "m3": 0.01, "delta-momentum": 0.1}


@st.cache_data(max_entries=64, show_spinner="Training…")
def cached_run(schedule: str, optimizer: str, lr: float, steps: int, reset: bool, seed: int) -> dict:
    return train_sequence(schedule, optimizer, lr, steps, seed=seed, reset_state=reset).to_dict()


def across_training_tab() -> None:
    st.markdown(
        "Here the **outer loop** learns: one small network is trained on regression task A, then B, … (each a "
        "random teacher on the same inputs, so they interfere). The optimizer's state is itself a memory of past "
        "gradients (§3.1): momentum and M3's slow momentum carry the last task into the next one. The paper's reading "
        "predicts that a slow memory reduces forgetting; at this scale we measured no such effect (docs/RESULTS.md): "
        "every optimizer forgets A completely while it learns B, and clearing the memories at a switch changes "
        "almost nothing."
    )
    c1, c2, c3 = st.columns([3, 2, 2])
    names = multichoice("Optimizers", list(LEARNING_RATES), key="ct_optimizers", default=["momentum", "adam", "m3"],
                        container=c1)  # fmt: skip
    schedule = c2.text_input("Schedule", "ABAC", key="ct_schedule", max_chars=12, bind="query-params")
    steps = choice(c3.select_slider, "Steps per task", [50, 100, 200, 300, 500], key="ct_steps", default=200)
    reset = st.toggle("Clear the optimizer's memories at every task switch", key="ct_reset",
                      help="§4.5 argues that dropping the momentum at a boundary hurts; compare.")  # fmt: skip
    if not names:
        st.info("Pick at least one optimizer.")
        return
    try:
        schedule = parse_schedule(schedule, Teachers().names)
    except ValueError as exc:
        st.error(f"Cannot run that schedule: {exc}.")
        return
    runs = {n: cached_run(schedule, n, LEARNING_RATES[n], steps, reset, 0) for n in names}
    for n, r in runs.items():
        if r["diverged_at"] is not None:
            st.warning(f"{n} diverged at step {r['diverged_at']}: its curve stops there.")
    st.plotly_chart(training_curves(runs), key="ct_curves", config=PLOTLY_CONFIG)
    st.plotly_chart(optimizer_memories(runs), key="ct_memories", config=PLOTLY_CONFIG)
    rows = []
    for n, r in runs.items():
        at = {s: i for i, s in enumerate(r["steps"])}
        for j, (t, _, b) in enumerate(r["segments"]):
            if b in at:
                rows.append({"optimizer": n, "after segment": f"{j + 1}: {t}",
                             **{f"loss on {u}": r["losses"][at[b]][k] for k, u in enumerate(r["tasks"]) if u in schedule}})  # fmt: skip
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="ct_table")
