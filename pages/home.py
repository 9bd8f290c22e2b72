"""The nest: the selected model's levels, their update periods, and when each one learned."""

import pandas as pd
import streamlit as st

import nested
from app.exports import PLOTLY_CONFIG
from app.figures import nest_raster
from app.models import describe_model
from app.nest_run import nest_trace
from app.presets import TOUR
from app.registry import page_for
from app.session import frozen_model
from app.urlstate import choice

settings = st.session_state["settings"]
st.title("The nest")
st.markdown(
    "**Nested Learning Lab** runs small versions of the models of *Nested Learning: The Illusion of Deep "
    "Learning Architectures* (Behrouz, Razaviyayn, Zhong, Mirrokni; NeurIPS 2025, arXiv 2512.24695) live in your browser. The "
    "paper's idea: a model is a set of **nested optimisation problems**, each learning at its own frequency "
    "(§1.2). Attention and the in-context memories learn **every token**; the Continuum Memory System's MLP "
    "levels learn **every C tokens** from the next-token loss; the weights learn **once per optimizer step**, "
    "and the optimizer's own moments are a memory too. Below: the chosen model's levels, and when each learned."
)
with st.expander("A 60-second tour", icon=":material/tour:", expanded="tour" in st.query_params):
    for step, (page, preset, what) in enumerate(TOUR, start=1):
        st.page_link(
            str(page_for(page).path), label=f"{step}. {what}", query_params={"preset": preset} if preset else None
        )
    st.caption("Every view keeps its state in the URL: copy the address bar to share exactly what you see. "
               "The Workshop page has the lessons; Claims says which of the paper's claims hold at this scale.")  # fmt: skip


model = frozen_model(settings["model"], settings["seed"])
lvls = nested.levels(model)
st.subheader(f"{settings['model']}: {describe_model(settings['model'])}")
table = pd.DataFrame(
    [
        {
            "level": lv.name,
            "layer": "—" if lv.layer is None else str(lv.layer),
            "kind": lv.kind,
            "updates": lv.period_label,
            "parameters": lv.params,
            "what it learns": lv.description,
        }
        for lv in lvls
    ]  # fmt: skip
)
# every row on screen (the slowest levels are the point) and names in full: no scroll, no cut cells
st.dataframe(table, hide_index=True, width="stretch", height=38 + 35 * len(table), row_height=35,
             column_config={"level": st.column_config.TextColumn(width="medium"),
                            "kind": st.column_config.TextColumn(width="medium"),
                            "what it learns": st.column_config.TextColumn(width="large")})  # fmt: skip
st.caption("Rows run fastest (top) to slowest. 'parameters' counts per sequence for in-context memories.")

n_tokens = choice(st.select_slider, "Tokens of the sample", [96, 256, 512, 1024], key="nest_tokens", default=96,
                  help="How much of the first sample text to stream; the default model's run is precomputed.")  # fmt: skip
bar = st.empty()


def _progress(done: int, total: int) -> None:  # a click reruns the page: the stream stops between pieces
    bar.progress(done / total, text=f"Streaming the sample through {settings['model']}: {done} / {total} tokens…")


trace = nest_trace(settings["model"], settings["seed"], n_tokens, lambda: model, _progress)
bar.empty()
st.plotly_chart(nest_raster(lvls, trace), width="stretch", config=PLOTLY_CONFIG)
with st.expander("What am I looking at?"):
    st.markdown(
        "Each row is one level of the nest; each tick is a token after which that level's parameters "
        "changed. Memories and attention tick every token; each CMS level ticks once per its period "
        "(its update uses the summed gradients of the chunk's next-token losses, Eq. 71). The optimizer "
        "and weight rows never tick here: this is inference, the outer loop is not running."
    )
