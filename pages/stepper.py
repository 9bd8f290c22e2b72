"""Token stepper: stream text one byte at a time and watch every memory update."""

import streamlit as st

from app.figures import memory_heatmap, rate_curves, token_strip
from app.models import decode_token, encode_text
from app.runstate import StepperRun, downsample, frozen_options
from app.samples import sample_texts
from app.session import frozen_model, show_error
from app.textinput import TextInputError, clean_text, decode_bytes

settings = st.session_state["settings"]
st.title("Token stepper")
st.caption("Each step feeds one byte. Memories write every token; CMS levels learn once per period from the "
           "next-token loss. Keys: → step, ← back, space play/pause.")  # fmt: skip
model = frozen_model(settings["model"], settings["seed"])

source = st.radio("Text", ["Sample", "Type or paste", "Upload"], horizontal=True, key="stepper_source")
raw = None
try:
    if source == "Sample":
        samples = sample_texts()
        raw = samples[st.selectbox("Sample", list(samples), key="stepper_sample")]
    elif source == "Type or paste":
        raw = st.text_area("Your text", "Memory is a neural update caused by an input.", key="stepper_typed")
    else:
        up = st.file_uploader("A .txt file (up to 1 MB)", type=["txt"], key="stepper_upload")
        raw = decode_bytes(up.getvalue()) if up is not None else None
    text, notes = clean_text(raw) if raw is not None else (None, [])
    for note in notes:
        st.info(note)
except TextInputError as exc:
    st.error(str(exc))
    text = None
run: StepperRun | None = st.session_state.get("stepper_run")
frozen = tuple(st.multiselect("Freeze (η → 0)", frozen_options(model), key="stepper_frozen",
                              help="A frozen level stops learning; compare the loss with and without."))  # fmt: skip
if text is not None:
    key = (settings["model"], settings["seed"], text, frozen)
    if run is None or run.key != key:
        run = StepperRun(key, encode_text(text)[0].tolist(), frozen)
        st.session_state["stepper_run"] = run
        st.session_state["stepper_index"] = 0
if run is None:
    st.stop()

n = len(run.tokens)
st.session_state.setdefault("stepper_index", 0)


def move(delta: int) -> None:
    st.session_state["stepper_index"] = max(0, min(n - 1, st.session_state["stepper_index"] + delta))


c1, c2, c3, c4 = st.columns([1, 1, 1, 3])
c1.button("◀ Back", on_click=move, args=(-1,), shortcut="left", key="stepper_back")
c2.button("Step ▶", on_click=move, args=(1,), shortcut="right", key="stepper_step")
playing = c3.toggle("Play", key="stepper_play", help="space")
speed = c4.select_slider("Speed (tokens/s)", [1, 2, 5, 10], value=5, key="stepper_speed")
st.slider("Token", 0, n - 1, key="stepper_index")
l1, l2, l3 = st.columns(3)
layer = l1.selectbox("Layer", list(range(len(model.blocks))), key="stepper_layer")
colour = l3.radio("Colour the strip by", ["surprise", "eta"], horizontal=True, key="stepper_colour")
try:
    run.ensure(model, 1)
except Exception as exc:  # a diverging memory or a bad state: report it, keep the session
    show_error(exc, "The model could not stream this text")
    st.stop()
names = list(run.initial.get(layer) or {})
memory = l2.selectbox("Memory", names, index=len(names) - 1, key="stepper_memory") if names else None


@st.fragment(run_every=1.0 / speed if playing else None)
def views() -> None:
    if playing and st.session_state["stepper_index"] < n - 1:
        st.session_state["stepper_index"] += 1
    i = st.session_state["stepper_index"]
    try:
        run.ensure(model, i + 1)
    except Exception as exc:  # a diverging memory or a bad state: report it, keep the session
        show_error(exc, "The model could not stream this token")
        return
    tr = run.trace
    values = tr.array(colour)[:, layer].mean(-1)
    st.plotly_chart(token_strip(run.tokens, values, i, colour), key="strip")
    now, before = run.matrices(layer, i)
    if now and memory:
        m, b = downsample(now[memory]), downsample(before[memory])
        h1, h2 = st.columns(2)
        h1.plotly_chart(memory_heatmap(m, f"{memory} after token {i}", 1.0), key="heat_now")
        h2.plotly_chart(memory_heatmap(m - b, "change from the previous token", 0.05), key="heat_delta")
    ticks = [e.token for e in tr.updates if e.layer == layer and e.component.startswith("cms")]
    st.plotly_chart(rate_curves(tr.array("eta")[:, layer].mean(-1), tr.array("alpha")[:, layer].mean(-1),
                                tr.array("surprise")[:, layer].mean(-1), i, ticks), key="curves")  # fmt: skip
    loss = tr.loss[i]
    st.markdown(f"**Token {i}: '{decode_token(run.tokens[i])}'** — next-token loss "
                + ("unknown (last token)" if loss != loss else f"{loss:.3f} nats"))  # fmt: skip
    st.dataframe({"next byte": [decode_token(int(t)) for t in tr.topk_ids[i]],
                  "probability": [round(float(p), 4) for p in tr.topk_probs[i]]}, hide_index=True)  # fmt: skip


views()
with st.expander("What am I looking at?"):
    st.markdown(
        "- **Strip**: one cell per byte, coloured by the memory's surprise (its inner loss ½‖M(k) − v̂‖²) or by "
        "the self-generated learning rate η_t, averaged over heads. The red box is the current token.\n"
        "- **Heatmaps**: the chosen memory's first-layer matrix (head 0) after this token, and what this token "
        "changed (Eq. 88: M ← M(αI − η k kᵀ) − η ∇L). Colour ranges are fixed so frames compare.\n"
        "- **Curves**: η_t and α_t generated by M_η and M_α, and the surprise; dotted lines are CMS updates.\n"
        "- **Prediction**: the model's top next bytes and the loss on the byte that actually came."
    )
