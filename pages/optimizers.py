"""Optimizers as memories: race optimizers on 2-D surfaces with their internal memories drawn."""

import pandas as pd
import streamlit as st

from app.exports import PLOTLY_CONFIG, figures_html
from app.opt_figures import (
    PROBE_STEPS,
    assoc,
    assoc_figure,
    loss_figure,
    memory_figure,
    probe,
    probe_figure,
    race,
    race_figure,
    rules_figure,
    stream_figure,
)
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
lr = choice(c3.select_slider, "Learning rate", [0.001, 0.003, 0.01, 0.03, 0.05, 0.1, 0.3], key="opt_lr", default=0.03)
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
            "steps to forget the old gradient": f"more than {PROBE_STEPS}" if h is None else str(h),  # one type
        }
        for n, (_, h) in curves.items()
    ]
)
st.dataframe(table, hide_index=True)
st.subheader("An optimizer writes an associative memory")
st.caption("A linear memory W learns 32 key → value pairs (64 with overcomplete keys), one pair a step, keys arriving with Zipf frequencies "
           "(§3.1: an optimizer's state is a memory of gradients). Each optimizer writes W at its best rate (Zipf 1).")  # fmt: skip
a1, a2 = st.columns(2)
keys = choice(a1.radio, "Keys", ["orthogonal", "overcomplete (64 keys in 32 dims)"], key="opt_assoc_keys",
              horizontal=True)  # fmt: skip
zipf = choice(a2.select_slider, "Zipf exponent", [0.5, 1.0, 1.5], key="opt_assoc_zipf", default=1.0)
written = {n: assoc(n, keys == "orthogonal", zipf) for n in names}
figs["assoc"] = assoc_figure(written)
st.plotly_chart(figs["assoc"], key="opt_assoc", config=PLOTLY_CONFIG)
with_memory = [n for n, r in written.items() if r["contents"] is not None]
if with_memory:
    held = choice(st.selectbox, "Gradient stream held by", with_memory, key="opt_assoc_stream")
    figs["stream"] = stream_figure(written[held], held)
    st.plotly_chart(figs["stream"], key="opt_stream", config=PLOTLY_CONFIG)
st.subheader("Inner rules write a memory")
st.caption("The rules a memory layer writes with (§2, §4: Hebbian, delta, DGD, Eq. 93 as printed, and an MLP memory "
           "by GD or Eq. 88) each see N key → value pairs once (N from d/4 to 2d), then are read at every key (the paper's "
           "experiment E3). "
           "Each rule at its best step of 0.1–10.")  # fmt: skip
rho = choice(st.select_slider, "Key correlation ρ", [0.0, 0.3, 0.6], key="opt_rules_rho", default=0.0)
with st.spinner("Running every inner rule on every condition (once per server, a few seconds)..."):
    figs["rules"] = rules_figure(rho)
st.plotly_chart(figs["rules"], key="opt_rules", config=PLOTLY_CONFIG)
if not is_hidden("exports"):
    st.download_button("Figures (.html)", lambda: figures_html(figs, "Optimizers as memories"), "optimizers.html",
                       "text/html", on_click="ignore", key="opt_dl_html")  # fmt: skip
with st.expander("What am I looking at?"):
    st.markdown(
        "- **Race**: contours of the loss (log scale, lighter is lower); each line is an optimizer's path from the "
        "same start, the dot is where it is at the chosen step; the star is the minimum.\n"
        "- **Loss**: each optimizer's loss per step (log scale where every loss is positive; the saddle's is "
        "unbounded below, so its axis is linear); the red line is the chosen step.\n"
        "- **Memories**: the norm of each buffer (momentum, Adam's moments, M3's fast M1 and slow M2, ...). "
        "M3's slow memory changes only once every f steps.\n"
        "- **Probe**: the gradient is a fixed direction u1 for 50 steps, then an orthogonal u2. The curve is the "
        "cosine between each update and u1: how long the optimizer's memory keeps pushing along the old "
        "gradient. Plain SGD forgets at once; momentum with β = 0.9 takes a few steps. 'Steps to forget' counts "
        "until the cosine falls below half of its value before the switch: M3's step NS(M1)/√V is nearly "
        "orthogonal to a constant gradient (cos ≈ 0.06), and after the switch its slow memory keeps pushing "
        "along u1 (cos ≈ 0.25, fading slowly) for the whole probe.\n"
        "- **Associative memory**: each dot is one key → value pair: how often its key arrived and how far W k is "
        "from v after the stream. With orthogonal keys plain SGD stores each pair independently (error (1 − lr)^n, "
        "tested); rules whose state mixes the pairs' gradients (momentum, Adam, Muon's orthogonalisation, M3) "
        "trade the rare pairs against the common ones. Overcomplete keys cannot all be stored: which ones are kept "
        "is the optimizer's choice.\n"
        "- **Gradient stream**: what the optimizer's memory (its momentum, Adam's first moment, M3's fast "
        "momentum) holds about each pair over the last 64 steps: the signed share ⟨M, v k^T⟩ / ‖M‖ (with "
        "orthogonal keys the squared shares add up to at most 1; a pair's gradient has no share on another pair). "
        "The x marks which pair each step wrote: a heavy-ball momentum holds the pairs written in the last few "
        "steps, the latest largest, each fading by its β per step (tested against the closed form); a pair "
        "already stored leaves no gradient to remember, so late in the stream the memory is about the rare pairs. "
        "Blue is a positive share, red a negative one. The share is relative to ‖M‖: when one pair's gradient is "
        "all the memory holds, its row stays at ±1 while the whole memory fades (its norm is in the memories "
        "chart).\n"
        "- **Inner rules**: the cosine between what each rule's memory returns for a key and the value stored with "
        "it, after one pass; ρ is how similar the keys are. Hebbian (linear attention) adds v kᵀ and cannot "
        "correct itself; the delta rule and DGD subtract what the memory already returns for the key, so they "
        "overwrite and cope better as keys correlate; the gated delta rule also forgets (α 0.98 a step), which costs "
        "it most as N grows. The **overwrite** dot: d/2 pairs, then a quarter of their keys again with new values, "
        "read for the new ones. Eq. 93 as printed stores values at half their size (its fixed point; a cosine "
        "cannot show a size: `python bench/inner_rules.py` prints the norms). The MLP memory (dashed) has twice "
        "the weights; on the dot-product loss it is the MLP's Hebbian rule."
    )
