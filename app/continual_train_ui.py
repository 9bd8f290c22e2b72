"""The continual page's second tab: continual learning across training (the outer loop, PAPER.md §9 E5).
Each chosen learner (an MLP, CMS sequential / independent / nested, fast/slow weights) is trained on task A,
then B, ... by each chosen optimizer; the held-out loss of every task, E5's recovery measures and the
optimizers' own memories are drawn. Runs are pure functions of their settings: cached per process."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app.continual_figures import optimizer_memories, training_curves
from app.exports import PLOTLY_CONFIG
from app.urlstate import choice, multichoice
from nested.continual_learners import LearnerSpec
from nested.continual_train import MAX_STEPS, SequenceRun, Teachers, parse_schedule, train_sequence

# each optimizer's learning rate on these teachers: the best of 0.001 ... 0.1 by how well it learns each task
# (schedule ABAC, 200 steps a task, seed 0), measured by `python bench/continual_study.py --outer`
LEARNING_RATES = {"sgd": 0.1, "momentum": 0.03, "adam": 0.01, "muon": 0.03, "m3": 0.01, "delta-momentum": 0.1}
# E5's learners (i)-(v) and the slowest-level ablation; a CMS level of period C steps at lr / sqrt(C)
LEARNERS = {LearnerSpec.parse(s).label: s for s in ("mlp", "cms-sequential:1,32,512", "cms-independent:1,32,512",
                                                     "cms-nested:1,32,512", "fast-slow", "cms-sequential:1,32,64")}  # fmt: skip
MAX_RUNS = 8


@st.cache_data(max_entries=64, show_spinner="Training…")
def cached_run(
    schedule: str, optimizer: str, lr: float, steps: int, reset: bool, seed: int, learner: str = "mlp"
) -> dict:
    return train_sequence(schedule, optimizer, lr, steps, seed=seed, reset_state=reset, learner=learner).to_dict()


def across_training_tab() -> None:
    st.markdown(
        "Here the **outer loop** learns: one small network is trained on regression task A, then B, … (each a "
        "random teacher on the same inputs, so they interfere). The optimizer's state is itself a memory of past "
        "gradients (§3.1): momentum and M3's slow momentum carry the last task into the next one. The paper's reading "
        "predicts that a slow memory reduces forgetting; at this scale we measured no such effect (docs/RESULTS.md): "
        "every optimizer forgets A completely while it learns B, and clearing the memories at a switch changes "
        "almost nothing."
    )
    names = multichoice("Optimizers", list(LEARNING_RATES), key="ct_optimizers", default=["momentum", "adam", "m3"])
    learners = multichoice("Learners (PAPER §9 E5)", list(LEARNERS), key="ct_learners", default=["MLP"],
                           help=LEARNER_HELP)  # fmt: skip
    c3, c4 = st.columns([3, 3])
    schedule = c3.text_input("Schedule", "ABAC", key="ct_schedule", max_chars=12, bind="query-params",
                             help="Task letters in order, e.g. E5's ABACAD.")  # fmt: skip
    steps = choice(c4.select_slider, "Steps per task", [50, 100, 200, 300, 500, 1000, 2000], key="ct_steps", default=200,
                   help="E5 uses 2,000: a level of period 512 steps only a few times a task.")  # fmt: skip
    reset = st.toggle("Clear the optimizer's memories at every task switch", key="ct_reset",
                      help="§4.5 argues that dropping the momentum at a boundary hurts; compare.")  # fmt: skip
    if not names or not learners:
        st.info("Pick at least one optimizer and one learner.")
        return
    if len(names) * len(learners) > MAX_RUNS:
        st.error(f"{len(names)} optimizers × {len(learners)} learners is {len(names) * len(learners)} trainings: "
                 f"pick at most {MAX_RUNS} combinations.")  # fmt: skip
        return
    try:
        schedule = parse_schedule(schedule, Teachers().names)
        if len(schedule) * steps > MAX_STEPS:
            raise ValueError(
                f"{len(schedule)} segments × {steps:,} steps is over {MAX_STEPS:,} steps: with {len(schedule)} "
                f"segments a task trains at most {MAX_STEPS // len(schedule):,} steps"
            )
    except ValueError as exc:
        st.error(f"Cannot run that schedule: {exc}.")
        return
    runs = {}
    for learner in learners:
        for n in names:
            name = n if learners == ["MLP"] else f"{n} · {learner}"
            runs[name] = cached_run(schedule, n, LEARNING_RATES[n], steps, reset, 0, LEARNERS[learner])
    for n, r in runs.items():
        if r["diverged_at"] is not None:
            st.warning(f"{n} diverged at step {r['diverged_at']}: its curve stops there.")
    st.plotly_chart(training_curves(runs), key="ct_curves", config=PLOTLY_CONFIG)
    st.plotly_chart(optimizer_memories(runs), key="ct_memories", config=PLOTLY_CONFIG)
    st.caption(
        "Each line: the size (Frobenius norm) of one of an optimizer's memories. exp_avg / exp_avg_sq: Adam's "
        "running mean of the gradients and of their squares; momentum_buffer: momentum's sum of past gradients; "
        "M1 / M2: M3's fast and slow momentum (M2 changes once a chunk). A learner with several groups (CMS levels, "
        "fast and slow weights) has one optimizer per group: its line is their norms combined."
    )
    st.caption("Held-out MSE on every task at the end of each segment (a zero predictor scores about 1.0).")
    rows = []
    for n, r in runs.items():
        at = {s: i for i, s in enumerate(r["steps"])}
        for j, (t, _, b) in enumerate(r["segments"]):
            if b in at:
                rows.append({"run": n, "after segment": f"{j + 1}: {t}",
                             **{f"loss on {u}": r["losses"][at[b]][k] for k, u in enumerate(r["tasks"]) if u in schedule}})  # fmt: skip
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="ct_table")
    returns = [recovery_row(n, SequenceRun.from_dict(r)) for n, r in runs.items()]
    st.caption(
        "E5's measures. **Lost when it returns**: a task's held-out loss when its next segment starts, minus the "
        "best it reached before. **Steps to recover**: steps into that segment until its loss is within 10 % of "
        "that best (None: not within the segment; the bound is relative, so a learner that fitted a task almost "
        "exactly may never come back within 10 % of it: read the loss lost beside it). **Online loss**: the training "
        "loss averaged over the whole run. The CMS learners level off about 100× above the MLP: their slow levels "
        "barely move and their fastest level has 12 hidden units against the MLP's 64."
    )
    st.dataframe(pd.DataFrame(returns), hide_index=True, key="ct_returns")


def recovery_row(name: str, run: SequenceRun) -> dict:
    """E5's measures of a run for the table: the first two returns of a task (the loss lost, the steps to
    recover), the online loss."""
    row = {"run": name, "values stored": run.n_values, "online loss": run.mean_online_loss()}
    for i, ret in enumerate(run.recovery()[:2]):
        where = f"{ret['task']} at its return {i + 1}"
        row[f"lost: {where}"] = ret["forgot"]
        row[f"steps to recover: {where}"] = ret["steps"]  # None: not within the segment
    return row


LEARNER_HELP = (
    "MLP: one network, every weight steps every step. CMS sequential (Eq. 70/71): a chain of MLP levels, level l "
    "steps every C_l steps with the sum of its gradients, at lr/√C_l. CMS independent (Eq. 74): the levels read the "
    "same input, mixed by learnable weights. CMS nested (Eq. 72): a fast level restarts from a state its slower "
    "neighbour learns. Fast/slow weights (Hinton & Plaut): each weight is a slow part (lr/10) plus a fast part that "
    "decays with a 32-step memory. All store about 2,650 values (nested: 4,324, its initial states)."
)
