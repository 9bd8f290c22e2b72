"""Train: train or adapt a model on shipped text, a task or your own text, live; the result joins every page."""

import streamlit as st

import nested
from app import train_ui as tu
from app.samples import sample_texts
from app.trainer import CORPUS, OPTIMIZERS, TASK_CHOICES
from app.urlstate import choice

st.title("Train")
device, cap = tu.device_caps()
st.caption(
    f"Train any model with any optimizer, on **{device}**: each run takes at most **{cap.steps} steps**, and each "
    f"start or resume trains at most **{cap.seconds:.0f} s** (then it stops and keeps its last checkpoint). "
    "One run at a time per session; the training runs beside the app, so other pages and visitors are not held up."
)
c1, c2, c3 = st.columns(3)
start = tu.STARTS[choice(c1.radio, "Start from", list(tu.STARTS), key="train_start")]
if start == "adapt":
    base = choice(c1.selectbox, "Shipped model", tu.shipped_models(), key="train_base")
    size = (0, 0)
else:
    base = choice(c1.selectbox, "Model", list(nested.MODELS), key="train_model")
    size = (choice(c1.select_slider, "Width (d_model)", [32, 64, 128], key="train_width", default=64),
            choice(c1.select_slider, "Layers", [1, 2, 3], key="train_layers", default=2))  # fmt: skip
optimizer = choice(c2.selectbox, "Optimizer", OPTIMIZERS, key="train_optimizer")
lr_raw = c2.text_input("Learning rate", "3e-3", key="train_lr", max_chars=24,
                       help="Any positive number; an absurd one diverges, and the page says so.")  # fmt: skip
seed = c2.number_input("Seed", 0, 10**6, 0, key="train_seed")
steps = c3.number_input(f"Steps (at most {cap.steps})", 1, cap.steps, min(100, cap.steps), key="train_steps")
batch = choice(c3.select_slider, "Batch", [4, 8, 16, 32], key="train_batch", default=8)
source = tu.SOURCES[choice(st.radio, "Data", list(tu.SOURCES), key="train_source", horizontal=True)]
seq_len = 64
if source == "task":
    pick = choice(st.selectbox, "Task", list(TASK_CHOICES), key="train_task")
else:
    seq_len = choice(c3.select_slider, "Sequence length", [32, 64, 128, 256], key="train_seq", default=64)
    if source == "corpus":
        pick = choice(st.selectbox, "Text", [CORPUS, *sample_texts()], key="train_corpus")
    else:
        pick = ""
        st.text_area("Paste your text (at least a sequence length and two bytes; the first 100 kB are used)",
                     key="train_text", height=120)  # fmt: skip
found = tu.recipe(start, base, size, optimizer, lr_raw, (source, pick), seq_len, steps, batch, seed)
job = tu.current_job()
running = job is not None and job.running
if found is not None:
    cfg, label = found
    tu.show_estimate(cfg, cap)
    if st.button("Start training", icon=":material/play_arrow:", key="train_go", disabled=running, type="primary"):
        tu.start(cfg, label, cap)
        job = tu.current_job()
        running = job is not None and job.running


@st.fragment(run_every=tu.POLL_S if running else None)
def live() -> None:
    tu.progress_view()


live()
tu.result_panel(cap)
with st.expander("What am I looking at?"):
    st.markdown(
        "- **Cost**: tokens = steps x batch x sequence length; the time is the setup plus the steps times one step "
        "of this very recipe, both timed on this device (five real steps at learning rate 0).\n"
        "- **Adapt** starts from a shipped checkpoint's weights and fine-tunes all of them.\n"
        "- **Loss**: the next-byte cross-entropy of each step's batch (nats/token). A run whose loss turns "
        "non-finite or passes 50 nats has diverged: it is stopped and your earlier result is kept.\n"
        "- **Stop** keeps the run's last step as a checkpoint; **Resume** continues it exactly (the same batches "
        "and optimizer state as an uninterrupted run). The same training is `python -m nested train`."
    )
