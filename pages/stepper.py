"""Token stepper: stream text one byte at a time and watch every memory update."""

import streamlit as st

from app.player import SPEEDS
from app.runstate import StepperRun, frozen_options
from app.session import frozen_model
from app.stepper_ui import current_runs, ensure, export_panel
from app.stepper_view import interactive_figures, player_view, plotly_figures
from app.urlstate import choice, multichoice, url_position

settings = st.session_state["settings"]
st.title("Token stepper")
st.caption("Each step feeds one byte. Memories write every token; CMS levels learn once per period from the "
           "next-token loss. Keys: → step, ← back, space play/pause (they work after using any control).")  # fmt: skip
model = frozen_model(settings["model"], settings["seed"])
replaying = st.session_state.get("stepper_source") == "Saved trace"  # a replay recomputes nothing
frozen = tuple(multichoice("Freeze (η → 0)", frozen_options(model), key="stepper_frozen", disabled=replaying,
                           help="A saved trace replays as it was recorded: freezing applies to live runs only."
                           if replaying else "A frozen level stops learning; compare the loss with and without."))  # fmt: skip
run, other = current_runs(settings, frozen)
if run is None:
    st.stop()
if run.replay:
    recorded = ", ".join(run.frozen) or "nothing"
    st.info(f"Replaying a saved trace of {run.trace.meta.get('model', 'a model')} ({len(run.tokens)} tokens, frozen: "
            f"{recorded}): nothing is recomputed, so the sidebar's model and seed and the freeze toggles do not "
            "apply to it.")  # fmt: skip
other_model = frozen_model(other.key[0], settings["seed"]) if other else None
n = len(run.tokens)
url_position("stepper_index", n)


def restart_stream() -> None:
    """Reset: back to token 0 with fresh memories (the run is recomputed; a replayed trace is kept)."""
    st.session_state["stepper_index"] = 0
    for key in ("stepper_run", "stepper_compare_run"):
        old = st.session_state.get(key)
        if old is not None and not old.replay:
            st.session_state[key] = StepperRun(old.key, old.tokens, old.frozen, preset=old.preset)


c0, c1, c2 = st.columns([2, 4, 3], vertical_alignment="bottom")
c0.button("Reset", icon=":material/restart_alt:", on_click=restart_stream, key="stepper_reset",
          help="Back to the first token with fresh memories (the model's weights never change).")  # fmt: skip
speed = choice(c1.select_slider, "Speed (tokens/s)", SPEEDS, key="stepper_speed", default=5,
               help="Playback runs in your browser on its own clock: the speed holds whatever the server does.")  # fmt: skip
detail = c2.toggle("Interactive figures", key="stepper_figures", help="Plotly figures of the token the player rests "
                   "on: hover for values, zoom, a PNG from each toolbar (redrawn by the server on each rest).")  # fmt: skip
# the first token, for the layer and memory pickers; the player streams the rest in bounded pieces
if not ensure(run, model, 1, snapshots=False) or (other and not ensure(other, other_model, 1, snapshots=False)):
    st.stop()
l1, l2, l3 = st.columns(3)
layer = choice(l1.selectbox, "Layer", list(range(run.layers())), key="stepper_layer")
names = run.memory_names(layer)
memory = choice(l2.selectbox, "Memory", names, key="stepper_memory", default="M_memory")
colours = ["surprise", "eta", "loss"] if names else ["loss"]  # attention has no inner loss or learning rate
colour = choice(l3.radio, "Colour the strip by", colours, key="stepper_colour", horizontal=True)
view = {"layer": layer, "memory": memory, "colour": colour}


@st.fragment
def views() -> None:
    """The player (and the figures of the token it rests on): its reports rerun this fragment only."""
    player_view(run, other, model, other_model, speed=speed, **view)
    if detail:
        interactive_figures(run, other, model, other_model, **view)


views()
export_panel(run, lambda: plotly_figures(run, other, model, other_model, st.session_state["stepper_index"], **view),
             settings)  # fmt: skip
with st.expander("What am I looking at?"):
    st.markdown(
        "- **Player**: ◀ Back, ▶ Play / ❚❚ Pause, Step ▶ and the scrub bar move through the stream in your browser "
        "(keys: → ← space); the speed is kept on your browser's clock. The server computes windows of 32 tokens "
        "ahead and learns where you rest (the link then holds that token).\n"
        "- **Strip**: the last four rows of 48 bytes up to the current one, coloured by the memory's surprise (its "
        "inner loss ½‖M(k) − v̂‖²), by the self-generated learning rate η_t (both averaged over heads), or by the "
        "model's next-token loss on that byte (the only choice for attention); the colour range is the shown "
        "cells' 5th to 95th percentile (one outlier does not darken the rest). Red box: current token.\n"
        "- **Heatmaps**: the chosen memory's first-layer matrix (head 0, pooled to at most 32 × 32) after this "
        "token, and what this token changed (Eq. 88: M ← M(αI − η k kᵀ) − η ∇L). The colour scale is fixed and "
        "logarithmic in |value| (memories shrink by orders of magnitude); hover for values.\n"
        "- **Curves**: η_t and α_t generated by M_η and M_α, and the surprise, over the last 192 tokens, each on "
        "its own scale (its minimum and maximum at the left); dotted lines are CMS updates of this layer.\n"
        "- **Prediction**: the model's top next bytes and the loss on the byte that actually came.\n"
        "- **Interactive figures**: the same views as Plotly figures of the token the player rests on (hover, "
        "zoom, PNG), over the whole stream so far.\n"
        "- **Compare**: a second model on the same bytes (never frozen): its loss and top guess per token, and both "
        "models' per-token loss in the last panel."
    )
