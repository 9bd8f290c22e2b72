"""The recall lab: what each memory kept, where the needle was written, and what test-time learning adds."""

import json

import pandas as pd
import streamlit as st

from app import recall_figures as rf
from app import recall_ui as ru
from app.exports import PLOTLY_CONFIG, figures_html, rows_csv
from app.urlstate import choice, int_input, multichoice
from nested.errors import NonFiniteMemoryError
from nested.recall_lab import FAMILIES, write_ratio

st.title("Recall lab: what each memory kept")
st.markdown(
    "Hide facts in a context and ask for them at the end. Memory models must **write** each fact into their "
    "memory while reading (test-time learning, PAPER.md §8.4–8.5); a Transformer looks back with attention, "
    "a sliding window only as far as its window. Switch the inner updates off, or flip their sign, to see what "
    "the memories contribute."
)
c1, c2, c3 = st.columns([2, 3, 2])
family = choice(c1.selectbox, "Task", list(FAMILIES), key="recall_family")
models = ru.lab_models()
labels = multichoice("Models", list(models), key="recall_models", default=ru.DEFAULT_MODELS, container=c2)
switches = multichoice("Inner updates", list(ru.SWITCH_LABELS), key="recall_switches", default=["on", "off"],
                       container=c3, help="on: as trained; off: no memory write, no CMS step; ascent: sign flipped; 4 steps: four inner steps per token")  # fmt: skip
seed = int_input(c1, "Seed", 0, 10**6, 0, key="recall_seed")
if not labels or not switches:
    st.info("Pick at least one model and one setting of the inner updates.")
    st.stop()
for sw in switches:
    st.caption(ru.SWITCH_STATUS[sw])
for lb in ru.untrained(labels):
    st.warning(f"**{lb}** has no shipped recall checkpoint here: it is untrained (seeded), its curve is noise.")
colours = rf.model_colours(models)
curves = ru.curves_for(family, labels, switches, seed)
missing = [(lb, sw) for lb in labels for sw in switches if sw not in curves.get(lb, {})]
if missing:
    b1, b2 = st.columns([1, 4], vertical_alignment="center")
    if b1.button("Run live", icon=":material/play_arrow:", key="recall_run", help="Any other click stops the run"):
        ru.run_live(family, missing, seed, b2.progress(0.0, text="starting…"))
        st.rerun()
    b2.caption(f"Not precomputed: {', '.join(f'{lb} ({sw})' for lb, sw in missing)}. Press Run live "
               f"({ru.SAMPLES} sequences per size; any other click stops it and keeps the sizes done).")  # fmt: skip
if curves:
    st.plotly_chart(rf.curve_figure(curves, family, colours), key="recall_curves", config=PLOTLY_CONFIG)
    diverged = sorted({f"{lb} ({sw})" for lb, by in curves.items() for sw, rows in by.items()
                       if any(r["accuracy"] is None for r in rows)})  # fmt: skip
    if diverged:
        st.caption(f"The inner loop diverged (a memory went non-finite) for {', '.join(diverged)} at some sizes: "
                   "those points are gaps.")  # fmt: skip
    table = pd.DataFrame([{"model": lb, "inner updates": sw, **{str(r["size"]): "diverged" if r["accuracy"] is None
                                                                 else f"{r['accuracy']:.0%}" for r in rows}}
                          for lb, by in curves.items() for sw, rows in by.items()])  # fmt: skip
    st.dataframe(table, hide_index=True, key="recall_table")
    flat = [{"task": family, "model": lb, "inner_updates": sw, "seed": seed, **r}
            for lb, by in curves.items() for sw, rows in by.items() for r in rows]  # fmt: skip
    d1, d2, d3 = st.columns(3)
    d1.download_button("Curves (.csv)", rows_csv(flat), f"recall-{family}.csv", "text/csv", key="recall_dl_csv")
    d2.download_button("Curves (.json)", json.dumps(flat, indent=1), f"recall-{family}.json", "application/json",
                       key="recall_dl_json")  # fmt: skip
    d3.download_button("Figure (.html)", lambda: figures_html({"curves": rf.curve_figure(curves, family, colours)},
                       "Recall lab"), f"recall-{family}.html", "text/html", on_click="ignore", key="recall_dl_html")  # fmt: skip

st.subheader("One example")
e1, e2, e3 = st.columns(3)
size = choice(e1.select_slider, FAMILIES[family].size_label, ru.EXAMPLE_SIZES[family], key="recall_size",
              default=ru.EXAMPLE_DEFAULT[family])  # fmt: skip
ex_seed = int_input(e2, "Example", 0, 10**6, 0, key="recall_example")
ex_switch = choice(e3.radio, "Inner updates in the example", switches, key="recall_ex_switch", horizontal=True)
examples = {}
for lb in labels:
    try:
        examples[lb] = ru.cached_example(models[lb], family, size, ex_seed, ex_switch)
    except NonFiniteMemoryError as exc:
        st.warning(f"**{lb}**: the inner loop diverged on this example ({exc}); it is left out.")
if not examples:
    st.stop()
labels = list(examples)
st.plotly_chart(rf.strip_figure(examples[labels[0]]), key="recall_strip", config=PLOTLY_CONFIG)
st.caption(f"Coloured by {labels[0]}'s answers. Every model's answers:")
rows = [{"model": lb, "answer": "".join(ex["answer"]), "predicted": "".join(ex["predicted"]),
         "right": f"{sum(ex['correct'])}/{len(ex['correct'])}",
         "p(answer) at each query": " ".join(f"{p:.2f}" for p in ex.get("p_answer", [])),
         "write ratio (needle / rest)": ru.ratio_text(write_ratio(ex)) if ex["memory_change"] else "no memory"}
        for lb, ex in examples.items()]  # fmt: skip
st.dataframe(pd.DataFrame(rows), hide_index=True, key="recall_answers")
memory = {lb: ex for lb, ex in examples.items() if ex["memory_change"]}
if memory:
    what = choice(st.radio, "Show", ["memory_change", "surprise", "eta"], key="recall_what", horizontal=True)
    st.plotly_chart(rf.write_figure(memory, colours, what), key="recall_writes", config=PLOTLY_CONFIG)
with st.expander("What am I looking at?"):
    st.markdown(ru.EXPLAINER)
