"""Optimizers as memories: race optimizers on 2-D surfaces with their internal memories drawn."""

import pandas as pd
import streamlit as st

from app.exports import PLOTLY_CONFIG, figures_html
from app.opt_figures import loss_figure, memory_figure, probe, probe_figure, race, race_figure
from app.urlstate import choice, is_hidden, multichoice
from nested.optim import OPTIMIZERS, SURFACES

st.title("Optimizers as memories")
st.markdown(
    "An optimizer's state is an **associative memory of past gradients** (Nested Learning §3.1, Eqs. 33–41): "
    "momentum compresses gradients into one vector, Adam maps gradients to their variance, M3 keeps a fast "
    "and a slow memory (Algorithm 1). Race them and watch what each remembers."
)
c1, c2, c3 = st.columns([1, 2, 1])
surface = choice(c1.selectbox, "Surface", list(SURFACES), key="opt_surface", default="quadratic")
c1.caption(f"{SURFACES[surface]().name}: {SURFACES[surface]().description}")
names = multichoice(
    "Optimizers", list(OPTIMIZERS), key="opt_optimizers", default=["sgd", "momentum", "adam"], container=c2
)
lr = choice(c3.select_slider, "Learning rate", [0.001, 0.003, 0.01, 0.03, 0.05, 0.1, 0.3], key="opt_lr", default=0.05)
if not names:
    st.info("Pick at least one optimizer.")
    st.stop()
steps = 200
paths = {n: race(surface, n, lr, steps) for n in names}
for n, p in paths.items():
    if p.diverged:
        st.warning(f"{n} diverged at step {len(p.losses) - 2} with learning rate {lr}: try a smaller one.")
step = st.slider("Step", 0, steps, value=steps, key="opt_step", bind="query-params")
figs = {"race": race_figure(surface, paths, step), "loss": loss_figure(paths, step),
        "memories": memory_figure(paths, step)}  # fmt: skip
st.plotly_chart(figs["race"], key="opt_race", config=PLOTLY_CONFIG)
a, b = st.columns(2)
a.plotly_chart(figs["loss"], key="opt_loss", config=PLOTLY_CONFIG)
b.plotly_chart(figs["memories"], key="opt_memories", config=PLOTLY_CONFIG)
st.subheader("What momentum remembers")
curves = {n: probe(n, lr) for n in names}
figs["probe"] = probe_figure({n: c for n, (c, _) in curves.items()})
st.plotly_chart(figs["probe"], key="opt_probe", config=PLOTLY_CONFIG)
table = pd.DataFrame(
    [
        {
            "optimizer": n,
            "final loss": float(paths[n].losses[-1]),
            "steps to forget the old gradient": "never" if h is None else h,
        }
        for n, (_, h) in curves.items()
    ]
)
st.dataframe(table, hide_index=True)
if not is_hidden("exports"):
    st.download_button("Figures (.html)", lambda: figures_html(figs, "Optimizers as memories"), "optimizers.html",
                       "text/html", on_click="ignore", key="opt_dl_html")  # fmt: skip
with st.expander("What am I looking at?"):
    st.markdown(
        "- **Race**: contours of the loss (log scale, darker is lower); each line is an optimizer's path from the "
        "same start, the dot is where it is at the chosen step; the star is the minimum.\n"
        "- **Memories**: the norm of each buffer (momentum, Adam's moments, M3's fast M1 and slow M2, ...). "
        "M3's slow memory changes only once every f steps.\n"
        "- **Probe**: the gradient is a fixed direction u1 for 50 steps, then an orthogonal u2. The curve is the "
        "cosine between each update and u1: how long the optimizer's memory keeps pushing along the old "
        "gradient. Plain SGD forgets at once; momentum with β = 0.9 takes a few steps."
    )
