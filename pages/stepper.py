"""Token stepper: stream text one byte at a time and watch every memory update."""

import streamlit as st

from app.exports import PLOTLY_CONFIG
from app.figures import loss_curves, memory_heatmap, rate_curves, token_strip
from app.models import decode_token
from app.runstate import StepperRun, downsample, frozen_options
from app.session import frozen_model
from app.stepper_ui import current_runs, ensure, export_panel, topk_line
from app.urlstate import choice, multichoice, set_url_position, url_position

settings = st.session_state["settings"]
st.title("Token stepper")
st.caption("Each step feeds one byte. Memories write every token; CMS levels learn once per period from the "
           "next-token loss. Keys: → step, ← back, space play/pause.")  # fmt: skip
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


def toggle_play() -> None:
    st.session_state["stepper_playing"] = not st.session_state.get("stepper_playing", False)


def scrub() -> None:
    st.session_state["stepper_index"] = st.session_state["stepper_slider"]


def move(delta: int) -> None:
    st.session_state["stepper_index"] = max(0, min(n - 1, st.session_state["stepper_index"] + delta))


def restart_stream() -> None:
    """Reset: back to token 0 with fresh memories (the run is recomputed; a replayed trace is kept)."""
    st.session_state["stepper_index"] = 0
    st.session_state["stepper_playing"] = False
    for key in ("stepper_run", "stepper_compare_run"):
        old = st.session_state.get(key)
        if old is not None and not old.replay:
            st.session_state[key] = StepperRun(old.key, old.tokens, old.frozen, preset=old.preset)


c1, c0, c2, c3 = st.columns([2, 2, 3, 3], vertical_alignment="bottom")
c0.button("Reset", icon=":material/restart_alt:", on_click=restart_stream, key="stepper_reset",
          help="Back to the first token with fresh memories (the model's weights never change).")  # fmt: skip
playing = st.session_state.setdefault("stepper_playing", False)
c1.button("Pause" if playing else "Play", icon=":material/pause:" if playing else ":material/play_arrow:",
          on_click=toggle_play, shortcut="space", key="stepper_play", help="Play / pause (space)")  # fmt: skip
speed = choice(c2.select_slider, "Speed (tokens/s)", [1, 2, 5, 10], key="stepper_speed", default=5)
i0 = st.session_state["stepper_index"] + 1
if not ensure(run, model, i0) or (other and not ensure(other, other_model, i0, snapshots=False)):
    st.stop()
l1, l2, l3 = st.columns(3)
layer = choice(l1.selectbox, "Layer", list(range(run.layers())), key="stepper_layer")
names = run.memory_names(layer)
memory = choice(l2.selectbox, "Memory", names, key="stepper_memory", default="M_memory")
colours = ["surprise", "eta", "loss"] if names else ["loss"]  # attention has no inner loss or learning rate
colour = choice(l3.radio, "Colour the strip by", colours, key="stepper_colour", horizontal=True)


@st.fragment(run_every=1.0 / speed if playing else None)
def views() -> None:
    """Everything a step changes, redrawn alone (a fragment): the position controls live here too, so
    stepping, scrubbing and playing never rerun the page and the slider is never stale."""
    tick = not st.session_state.pop("_stepper_full_run", False)  # a rerun of the fragment, not of the page
    if playing and tick and st.session_state["stepper_index"] < n - 1:
        st.session_state["stepper_index"] += 1
    b1, b2, b3 = st.columns([2, 2, 6], vertical_alignment="bottom")
    b1.button("Back", icon=":material/chevron_left:", on_click=move, args=(-1,), shortcut="left", key="stepper_back",
              width="stretch")  # fmt: skip
    b2.button("Step", icon=":material/chevron_right:", on_click=move, args=(1,), shortcut="right", key="stepper_step",
              width="stretch")  # fmt: skip
    st.session_state["stepper_slider"] = st.session_state["stepper_index"]
    b3.slider("Token", 0, max(n - 1, 1), key="stepper_slider", disabled=n < 2, on_change=scrub)
    i = st.session_state["stepper_index"]
    set_url_position("stepper_index", i)
    if not ensure(run, model, i + 1) or (other and not ensure(other, other_model, i + 1, snapshots=False)):
        return
    figs, tr = {}, run.view(i)
    cols = st.columns(2) if other else [st.container()]
    for col, r in zip(cols, [run, other] if other else [run], strict=True):
        t = r.view(i, snapshots=r is run)
        col.markdown(f"**{r.label}**" + (f" (frozen: {', '.join(r.frozen)})" if r.frozen else ""))
        values = t.array("loss")[: i + 1] if colour == "loss" else t.array(colour)[: i + 1, layer].mean(-1)
        figs[f"strip {r.key[0]}"] = token_strip(r.tokens, values, i, colour)
        col.plotly_chart(figs[f"strip {r.key[0]}"], key="strip" if r is run else "strip_cmp", config=PLOTLY_CONFIG)
        loss = t.loss[i]
        col.markdown(f"Token {i}: **'{decode_token(r.tokens[i])}'** — next-token loss "
                     + ("unknown (last token)" if loss != loss else f"{loss:.3f} nats")
                     + f"  \nPredicted next: {topk_line(t, i)}")  # fmt: skip
    if other:
        figs["loss"] = loss_curves({f"{r.key[0]}{' (frozen)' if r.frozen else ''}": r.view(i, r is run).array("loss")[: i + 1]
                                    for r in (run, other)}, i)  # fmt: skip
        st.plotly_chart(figs["loss"], key="loss_cmp", config=PLOTLY_CONFIG)
    now, before = run.matrices(layer, i, model)
    whose = f"{run.label}: " if other else ""
    if other:
        st.caption(f"The memory and the curves below are **{run.label}**'s, the left model (the comparison model "
                   "keeps no memory snapshots).")  # fmt: skip
    if now and memory in now:
        m = downsample(now[memory])
        h1, h2 = st.columns(2)
        figs["memory"] = memory_heatmap(m, f"{whose}{memory} after token {i}", 1.0)
        h1.plotly_chart(figs["memory"], key="heat_now", config=PLOTLY_CONFIG)
        if before is not None:
            figs["change"] = memory_heatmap(m - downsample(before[memory]), "change from the previous token", 0.1)
            h2.plotly_chart(figs["change"], key="heat_delta", config=PLOTLY_CONFIG)
    elif names:
        kept = sorted(t for t, _ in run.view(i).snapshots.get(layer, []) if t >= 0)
        span = f" (it holds those of tokens {kept[0]}–{kept[-1]})" if kept else ""
        st.info(f"No memory matrices for token {i} here: a saved or precomputed trace keeps the matrices of a "
                f"window of tokens only{span}. The rates, losses and predictions cover every token.",
                icon=":material/grid_off:")  # fmt: skip
    if names:  # attention has no self-generated learning rate, retention or surprise to draw
        ticks = tr.ticks(layer, "cms", upto=i)
        figs["rates"] = rate_curves(
            *(tr.array(a)[: i + 1, layer].mean(-1) for a in ("eta", "alpha", "surprise")),
            i,
            ticks,
            tr.gate_labels(layer),
        )
        st.plotly_chart(figs["rates"], key="curves", config=PLOTLY_CONFIG)
    export_panel(run, figs, settings)


st.session_state["_stepper_full_run"] = True
views()
with st.expander("What am I looking at?"):
    st.markdown(
        "- **Strip**: one cell per byte up to the current one, coloured by the memory's surprise (its inner loss "
        "½‖M(k) − v̂‖²), by the self-generated learning rate η_t (both averaged over heads), or by the model's "
        "next-token loss on that byte (the only choice for attention). Red box: current token.\n"
        "- **Heatmaps**: the chosen memory's first-layer matrix (head 0) after this token, and what this token "
        "changed (Eq. 88: M ← M(αI − η k kᵀ) − η ∇L). The colour scale is fixed and logarithmic in |value| "
        "(memories shrink by orders of magnitude); hover for values.\n"
        "- **Curves**: η_t and α_t generated by M_η and M_α, and the surprise; dotted lines are CMS updates.\n"
        "- **Prediction**: the model's top next bytes and the loss on the byte that actually came.\n"
        "- **Compare**: a second model on the same bytes (never frozen) and both models' per-token loss."
    )
