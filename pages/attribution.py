"""Attribution: which earlier bytes, and which levels, drove one prediction (Captum on the embeddings)."""

import json

import streamlit as st

from app import attribution_ui as au
from app.exports import PLOTLY_CONFIG, rows_csv
from app.models import decode_token
from app.samples import sample_texts
from app.session import user_text
from app.textlink import linked_text_area
from app.urlstate import choice, set_url_position, url_position

settings = st.session_state["settings"]
name, seed = settings["model"], settings["seed"]
st.title("Attribution: what drove this prediction?")
st.caption(f"Model **{name}** (pick another in the sidebar). Up to {au.MAX_CHARS} bytes are attributed.")
samples = sample_texts()
source = choice(st.radio, "Text", ["sample", "your text"], key="attr_source", horizontal=True)
if source == "sample":
    text = samples[choice(st.selectbox, "Sample", list(samples), key="attr_sample")]
else:
    text = user_text(linked_text_area("Your text", "attr_text", max_chars=4000, placeholder="Paste a sentence or two"))
    if text is None:
        st.stop()
data = list(text.encode("utf-8"))[: au.MAX_CHARS]
text = bytes(data).decode("utf-8", "ignore")
data = list(text.encode("utf-8"))
if len(data) < 2:
    st.info("The text needs at least two bytes.")
    st.stop()
st.session_state.setdefault("attr_position", au.DEFAULT_POSITION)  # a link's position wins (url_position)
position = url_position("attr_position", len(data) - 1)
position = st.slider("Predict the byte after", 0, len(data) - 2, min(position, len(data) - 2), key="attr_slider",
                     help="The prediction explained is the next byte after this one")  # fmt: skip
st.session_state["attr_position"] = position
set_url_position("attr_position", position)
c1, c2 = st.columns(2)
target_kind = choice(c1.radio, "Target", ["the next byte", "the model's top guess"], key="attr_target", horizontal=True)
try:
    target = data[position + 1] if target_kind == "the next byte" else au.top_guess(name, seed, text, position)
except FloatingPointError as exc:  # a memory diverged on this text (NonFiniteMemoryError)
    st.error(f"The model cannot read this text: {exc}.")
    st.stop()
method = choice(c2.selectbox, "Method", list(au.METHOD_LABELS), key="attr_method",
                help="; ".join(f"{k}: {v}" for k, v in au.METHOD_LABELS.items()))  # fmt: skip
st.caption(f"Context ends with {text[max(0, position - 30) : position + 1]!r}; target {decode_token(target)!r}.")
if method == "integrated_gradients" and not st.toggle("Compute integrated gradients", key="attr_run_ig",
                                                      help="32 forward-backward passes: a few seconds"):  # fmt: skip
    st.info("Integrated gradients run on demand: switch it on above.")
    st.stop()
try:
    attr = au.cached_attribution(name, seed, text, position, target, method)
except (ValueError, FloatingPointError) as exc:
    st.error(f"This attribution cannot be computed: {exc}.")
    st.stop()
st.plotly_chart(au.strip_figure(data, attr), key="attr_strip", config=PLOTLY_CONFIG)
rows = [{"byte": i, "char": decode_token(data[i]), "attribution": a} for i, a in enumerate(attr["scores"])]
d1, d2 = st.columns(2)
d1.download_button("Attributions (.csv)", rows_csv(rows), f"attribution-{method}.csv", "text/csv", key="attr_dl_csv")
d2.download_button("Attributions (.json)", json.dumps({**attr, "text": text[: position + 1]}, indent=1),
                   f"attribution-{method}.json", "application/json", key="attr_dl_json")  # fmt: skip
if attr.get("fallback"):
    st.warning("The exact gradient through the CMS updates was not finite here: these attributions use the "
               "first-order gradient, which leaves out how each byte changed the CMS levels.")  # fmt: skip
if attr["delta"] is not None:
    st.metric("Completeness gap of integrated gradients", f"{attr['delta']:+.3f} nats",
              help=f"Σ attributions − (F(text) − F(baseline)); F(text) − F(baseline) = {attr['gap_of']:+.3f} nats. "
              "Near 0: the attributions account for the whole change.")  # fmt: skip
try:
    levels = au.cached_levels(name, seed, text, position, target)
except (ValueError, FloatingPointError) as exc:
    levels = None
    st.caption(f"The level contributions cannot be computed here: {exc}.")
if levels:
    st.plotly_chart(au.levels_figure(levels), key="attr_levels", config=PLOTLY_CONFIG)
elif levels is not None:
    st.caption("This model has no inner levels (no memories, no CMS): only the tokens can be attributed.")
with st.expander("What am I looking at?"):
    st.markdown(au.EXPLAINER)
