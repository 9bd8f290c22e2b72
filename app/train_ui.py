"""The Train page's Streamlit pieces: the session's workspace and job, the recipe from the controls, start /
stop / resume, the live progress view, and the result handed to every page (app/session.py). The training
itself is nested.train.train in a background thread (app/trainer.py)."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import streamlit as st

import nested
from app.models import APP_MODELS, is_trained
from app.session import MAX_SESSION_MODELS, SessionModel, add_session_model, session_models, upload_text
from app.textinput import TextInputError, clean_text
from app.trainer import (
    MAX_CONCURRENT,
    MAX_TEXT,
    Busy,
    Caps,
    TrainJob,
    Workspace,
    caps_for,
    checkpoint_zip,
    data_for,
    estimate,
    model_args,
    parse_lr,
)
from nested.checkpoint import CHECKPOINTS
from nested.train import TrainConfig

POLL_S = 0.5  # the progress view's refresh while a run is going
JOB, RESULT, MESSAGE, WORKSPACE = "train_job", "train_result", "train_message", "train_workspace"
RECIPE = "train_recipe"  # the run the controls describe now (read by tests)
SOURCES = {"Shipped text": "corpus", "A task": "task", "Your text": "text"}  # label (and URL value) -> kind
STARTS = {"A new model": "new", "A shipped model (adapt)": "adapt"}


def device_caps() -> tuple[str, Caps]:
    device = str(nested.pick_device())
    return device, caps_for(device)


def shipped_models() -> list[str]:
    """The app models with a shipped checkpoint (what "adapt" fine-tunes)."""
    return [name for name in APP_MODELS if is_trained(name)]


def workspace() -> Workspace:
    """The session's run directory, made once; it goes when the session does."""
    if WORKSPACE not in st.session_state:
        st.session_state[WORKSPACE] = Workspace()
    return st.session_state[WORKSPACE]


def current_job() -> TrainJob | None:
    return st.session_state.get(JOB)


def your_text() -> str:
    """The pasted or uploaded text, cleaned and cut to MAX_TEXT (notes shown); TextInputError if unusable."""
    up = st.file_uploader(
        "…or upload a .txt file (up to 1 MB; it replaces the pasted text)",
        type=["txt"],
        key="train_upload",
        max_upload_size=1,
    )
    raw = upload_text(up) if up is not None else st.session_state.get("train_text", "")
    text, notes = clean_text(raw, limit=MAX_TEXT, what="training")
    for note in notes:
        st.info(note)
    return text


def recipe(start: str, base: str, size: tuple[int, int], optimizer: str, lr_raw: str, data: tuple[str, str],
           seq_len: int, steps: int, batch: int, seed: int) -> tuple[TrainConfig, str] | None:  # fmt: skip
    """The run the controls describe and a short label of its data; None (with a message) when the
    input cannot be used."""
    source, pick = data
    try:
        lr = parse_lr(lr_raw)
        text = your_text() if source == "text" else ""
        task, task_args = data_for(source, pick, text, seq_len)
    except (TextInputError, ValueError) as exc:
        st.error(f"Cannot train on this: {exc}.")
        st.session_state[RECIPE] = None
        return None
    if start == "adapt":
        ckpt, reg, settings = APP_MODELS[base]
        model = dict(model=reg, model_args=dict(settings), init=str(CHECKPOINTS / ckpt))
    else:
        model = dict(model=base, model_args=model_args(base, *size))
    label = {"corpus": pick, "task": pick, "text": f"your text ({len(text.encode()):,} bytes)"}[source]
    cfg = TrainConfig(**model, task=task, task_args=task_args, optimizer=optimizer, lr=lr, steps=int(steps),
                      batch_size=int(batch), seed=int(seed), eval_every=0, eval_samples=32, ckpt_every=0)  # fmt: skip
    st.session_state[RECIPE] = cfg
    return cfg, label


def show_estimate(cfg: TrainConfig, cap: Caps) -> None:
    """Tokens and the expected time, from a step measured on this device (not while this session trains)."""
    job = current_job()
    if job is not None and job.running:
        return
    try:
        with st.spinner("Timing a few steps on this device…"):
            est = estimate(cfg, cap)
        st.markdown("Cost: " + est.line(cap))
    except Exception as exc:  # noqa: BLE001 - a recipe that cannot even take a step says so
        st.error(f"This recipe cannot train: {exc}.")


def start(cfg: TrainConfig, label: str, cap: Caps, resume_from: TrainJob | None = None) -> None:
    """Start a run (or resume a stopped one exactly, with its own settings); one at a time per session."""
    job = current_job()
    if job is not None and job.running:
        st.warning("This session is already training: stop it first.")
        return
    ws = workspace()
    cfg = resume_from.cfg if resume_from else replace(cfg, out_dir=str(ws.new_run_dir()))
    try:
        new = TrainJob(cfg, cap, resume=resume_from is not None, workspace=ws,
                       label=resume_from.label if resume_from else label)  # fmt: skip
    except ValueError as exc:
        st.error(f"Cannot start: {exc}.")
        return
    try:
        st.session_state[JOB] = new.start()
        st.session_state.pop(MESSAGE, None)
        ws.prune(keep=cfg.out_dir)
    except Busy as exc:
        st.warning(f"Please wait: {exc}. Your earlier result is kept.")


def collect(job: TrainJob) -> bool:
    """Once a run has ended: keep its model for this session (done or stopped) or say why it failed.
    True the first time (the page reruns so every picker lists the result)."""
    if job.running or job.collected:
        return False
    job.collected = True
    if job.result is None:
        kept = " Your earlier result is kept." if st.session_state.get(RESULT) in session_models() else ""
        st.session_state[MESSAGE] = ("error", f"Training failed: {job.error}.{kept}")
        return True
    r, cfg = job.result, job.cfg
    if r["final_loss"] is None:  # stopped before its first step: nothing new to keep
        st.session_state[MESSAGE] = ("info", f"Stopped before the first step ({job.stop_reason}); nothing new to keep.")
        return True
    base = f"{cfg.model}-{cfg.task}-{r['steps']}"
    desc = (f"{cfg.model} trained {r['steps']} steps on {job.label} with {cfg.optimizer} (lr {cfg.lr:g}): "
            f"loss {r['final_loss']:.3f}. Yours, this session only.")  # fmt: skip
    meta = {
        "train": r["config"],
        **{k: r[k] for k in ("steps", "stopped", "tokens_seen", "train_seconds", "final_loss")},
    }
    st.session_state[RESULT] = add_session_model(base, SessionModel(r["model"], desc, meta))
    how = f"stopped at step {r['steps']} of {cfg.steps} ({job.stop_reason})" if r["stopped"] else "finished"
    st.session_state[MESSAGE] = ("success", f"Training {how} in {job.seconds:.0f} s. {desc}")
    return True


def collect_pending() -> None:
    """Take a run that ended while this session was on another page (the sidebar calls this on every
    page, so the result is listed everywhere at once)."""
    job = current_job()
    if job is not None:
        collect(job)


def use_result() -> None:
    st.session_state["model"] = st.session_state[RESULT]


def progress_view() -> None:
    """The live part: progress, loss, stop. Reruns every POLL_S while training (a fragment)."""
    job = current_job()
    if job is None:
        return
    if collect(job):
        st.rerun()
    frac = job.step / job.cfg.steps
    st.progress(min(frac, 1.0), text=f"Step {job.step} of {job.cfg.steps} · {job.status}")
    if job.history:
        df = pd.DataFrame(job.history[-2000:], columns=["step", "loss"])
        st.line_chart(df, x="step", y="loss", height=220)
        st.caption(f"Loss now {df['loss'].iloc[-1]:.3f} nats/token (a uniform guess over bytes: 5.55).")
    if job.running:
        st.button("Stop", icon=":material/stop:", key="train_stop", on_click=job.stop,
                  help="Stop now: the run keeps its last step as a checkpoint and its model.")  # fmt: skip


def result_panel(cap: Caps) -> None:
    """The last outcome, Resume, and the current result: use it everywhere, download it."""
    kind, text = st.session_state.get(MESSAGE, (None, None))
    if kind:
        getattr(st, kind)(text)
    job = current_job()
    if job is not None and job.status == "stopped" and job.step < job.cfg.steps:
        st.button("Resume", icon=":material/resume:", key="train_resume", on_click=start,
                  args=(job.cfg, job.label, cap, job), help="Continue the stopped run exactly, with its own settings.")  # fmt: skip
    name = st.session_state.get(RESULT)
    entry = session_models().get(name)
    if entry is None:
        return
    c1, c2 = st.columns(2)
    c1.button(f"Use **{name}** on every page", key="train_use", on_click=use_result, icon=":material/check:")
    c2.download_button("Download the checkpoint (.zip)", lambda: checkpoint_zip(entry.model, entry.meta),
                       f"{name.removeprefix('yours: ').split(' (')[0]}.zip", "application/zip", on_click="ignore",
                       key="train_download", icon=":material/download:")  # fmt: skip
    st.caption(f"Every page lists it in the sidebar's model picker (this session only; at most "
               f"{MAX_SESSION_MODELS} kept). The zip holds a `nested.load`-able checkpoint directory; "
               f"{MAX_CONCURRENT} trainings at most run at once in this app.")  # fmt: skip
