"""The continual-learning page's session logic: which models stream, the live lab kept per session, the
shipped first-second run, and actions that never lose the earlier run (pages/continual.py draws).

A lab is keyed by its setup (models, regime, seed, frozen level). The stream itself is in the URL as the
schedule streamed so far (`cl_run`, e.g. "A128 B64"), so a copied link replays the same run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import streamlit as st

import nested
from app.models import build_frozen
from app.presets import PRESET_DIR
from app.session import frozen_model
from nested.continual import ContinualLab, Learner
from nested.schedule import MAX_TOKENS, TEXT_TASK, Schedule
from nested.tasks import SuccessorLanguages

# page label -> the app model (app/models.py APP_MODELS) it runs
LAB_MODELS = {
    "Hope": "hope-languages",
    "Titans": "titans-languages",
    "Transformer, window 64": "swa-languages",
    "Transformer": "transformer-languages",
}
FROZEN_HOPE = "Hope, level frozen"
DEFAULT_MODELS = ["Hope", "Titans", "Transformer, window 64"]
N_TASKS = 4
DEFAULT_SCHEDULE = "ABAC"
DEFAULT_SEGMENT = 128
REGIMES = {"own alphabets (no conflict)": False, "one shared alphabet (rules conflict)": True}
PRESET_FILE = PRESET_DIR / "continual-default.json"
EXPLAINER = (
    "- **Curves**: for each model and language, the accuracy of its answer to *what comes after this fragment?* "
    "over every symbol s (the fragment: the four symbols of the language that end in s), read from the state "
    "after each step (the argmax over that language's symbols). Dotted: chance, 1 in 4 (the answer is none of "
    "the fragment's symbols). "
    "Tinted spans are the segments, with their language on top.\n"
    "- **Forgetting matrix**: row j is the end of segment j, column i a language: how much of language i the "
    "model still knows then.\n"
    "- **What if a level forgot now?** Hope probed with one level reset to its learned initial value. If "
    "resetting a level loses a language, that level is carrying it.\n"
    "- **How much each level moved**: the size of each memory's and each CMS level's change during each segment.\n"
    "- **Own alphabets**: learning B never contradicts A, so losing A is forgetting (decay, capacity, a window "
    "that moved on). **Shared alphabet**: B's rule overwrites A's answers (interference).\n"
    "- **Hope, level frozen**: the same Hope with one level's writes (a memory) or learning rate (a CMS level) "
    "at 0, from the start or from a chosen token ('Freeze now': from where the stream is; a dashed line marks it). "
    "Until then it is Hope exactly; after, that level holds what it had.\n"
    "- The sliding-window Transformer sees only its last 64 tokens: once a language leaves the window it is gone."
)


@dataclass(frozen=True)
class Setup:
    models: tuple[str, ...]
    shared: bool = False
    seed: int = 0
    frozen: str = ""  # the level the "Hope, level frozen" learner freezes
    frozen_at: int = 0  # from this stream position (0: from the start)

    @property
    def task(self) -> SuccessorLanguages:
        return SuccessorLanguages(n_tasks=N_TASKS, shared=self.shared)


DEFAULT_SETUP = Setup(tuple(DEFAULT_MODELS))


def learners(setup: Setup, model_for=None) -> list[Learner]:
    """One Learner per chosen model; Hope probes with each level reset too."""
    model_for = model_for or (lambda name: frozen_model(name, 0))
    out = []
    for label in setup.models:
        if label == FROZEN_HOPE:
            since = f" from token {setup.frozen_at:,}" if setup.frozen_at else ""
            out.append(Learner(f"Hope, {setup.frozen} frozen{since}", model_for(LAB_MODELS["Hope"]),
                               freeze=setup.frozen, freeze_at=setup.frozen_at))  # fmt: skip
        else:
            out.append(Learner(label, model_for(LAB_MODELS.get(label, label)), resets=label == "Hope"))  # or yours
    return out


LEARNED_BAR = 0.9  # each language alone, the probe gets 90% of the answers (an exact solver: all); below: "partly"


def unlearned(setup: Setup) -> dict[str, float]:
    """The chosen models whose card says they learned the languages only partly, or not at all (label ->
    mean probe alone, None when untrained): their curves are shown with that said."""
    out = {}
    for label in setup.models:
        if label not in LAB_MODELS and label != FROZEN_HOPE:  # a model trained in this session: its own run
            continue
        model = frozen_model(LAB_MODELS["Hope" if label == FROZEN_HOPE else label], 0)
        ev = (getattr(model, "checkpoint_meta", None) or {}).get("continual_eval")
        score = ev["probe_mean"] if ev else None
        if score is None or score < LEARNED_BAR:
            out[label] = score
    return out


def new_lab(setup: Setup, model_for=None) -> ContinualLab:
    return ContinualLab(setup.task, learners(setup, model_for), seed=setup.seed)


@st.cache_resource(max_entries=8, show_spinner="Streaming the schedule through every model…")
def replayed(setup: Setup, schedule: str) -> ContinualLab:
    """A run shared by every session that opens the same setup and schedule (forked before use: the
    states are immutable, so sessions never touch each other's run)."""
    lab = new_lab(setup)
    lab.replay(Schedule.parse(schedule, lab.tasks))
    return lab


def shipped_summary() -> dict | None:
    """The default run, precomputed (drawn in the first second); None when missing or unreadable."""
    try:
        data = json.loads(PRESET_FILE.read_text())
        return data if isinstance(data, dict) and "models" in data else None
    except (OSError, ValueError):
        return None


def build_preset() -> dict:
    """Run the default setup and schedule on CPU and write the shipped summary."""
    lab = new_lab(DEFAULT_SETUP, model_for=lambda name: build_frozen(name, 0, device="cpu"))
    lab.replay(Schedule.parse(DEFAULT_SCHEDULE, lab.tasks, DEFAULT_SEGMENT))
    summary = lab.summary() | {"schedule": run_string(lab)}
    PRESET_DIR.mkdir(parents=True, exist_ok=True)
    PRESET_FILE.write_text(json.dumps(summary))
    return summary


def run_string(lab: ContinualLab) -> str:
    """The schedule streamed so far, e.g. "A128 B64": what the URL keeps."""
    return str(Schedule(tuple((t, b - a) for t, a, b in lab.segments))) if lab.segments else ""


def kept(setup: Setup) -> ContinualLab | None:
    """The session's live lab if it was made for `setup`."""
    return st.session_state.get("cl_lab") if st.session_state.get("cl_setup") == setup else None


def freeze_now() -> None:
    """The "Freeze now" button: the frozen learner's level stops learning from where the session's stream is
    now (the page replays the run with the freeze at that token)."""
    lab = st.session_state.get("cl_lab")
    st.session_state["cl_frozen_at"] = lab.pos if lab is not None else 0


def current_lab(setup: Setup, text: str) -> ContinualLab | None:
    """The session's live lab for `setup`, restored from the URL's run on a fresh session; None while
    the default setup still shows its shipped run (nothing streamed live yet)."""
    if (lab := kept(setup)) is not None:
        lab.text = text
        return lab
    lab = st.session_state.get("cl_lab")
    if lab is not None and lab.segments:  # a new setup streams the same schedule (a new seed: a new stream)
        fresh = new_lab(setup)
        fresh.text = text
        try:
            with st.spinner("Streaming the same schedule through the new setup…"):
                fresh.replay(Schedule.parse(run_string(lab), fresh.tasks, allow_text=True))
        except ValueError as exc:
            st.warning(f"The run could not be carried over ({exc}); starting fresh.")
            fresh = new_lab(setup)
        return _keep(setup, fresh, text)
    url_run = st.query_params.get("cl_run", "")
    if lab is None and url_run and not st.session_state.get("_cl_url_read"):
        st.session_state["_cl_url_read"] = True
        try:
            sched = Schedule.parse(url_run, setup.task.task_names, allow_text=bool(text))
            if sched.segments and not any(t == TEXT_TASK for t, _ in sched.segments):
                return _keep(setup, replayed(setup, str(sched)).fork(), text)
        except ValueError as exc:
            st.warning(f"The link's run could not be restored ({exc}); starting fresh.")
    if lab is None and setup == DEFAULT_SETUP and shipped_summary() is not None:
        return None
    return _keep(setup, new_lab(setup), text)


def _keep(setup: Setup, lab: ContinualLab, text: str) -> ContinualLab:
    lab.text = text
    st.session_state["cl_lab"], st.session_state["cl_setup"] = lab, setup
    return lab


def materialise(setup: Setup, text: str) -> ContinualLab:
    """The live lab, starting from the shipped default run when the page still shows it."""
    if (lab := kept(setup)) is not None:
        return lab
    shipped = shipped_summary()
    lab = replayed(setup, shipped["schedule"]).fork() if setup == DEFAULT_SETUP and shipped else new_lab(setup)
    return _keep(setup, lab, text)


def feed(lab: ContinualLab, task: str, n: int) -> ContinualLab | None:
    """Stream n tokens of `task` into a copy; the copy replaces the run only if every model got through
    (a refused or diverging feed keeps the earlier run). Returns the new lab, or None with a message."""
    n = min(n, MAX_TOKENS - lab.pos)
    if n <= 0:
        st.warning(f"This run has streamed its {MAX_TOKENS:,} tokens: run a new schedule to start again.")
        return None
    trial = lab.fork()
    try:
        trial.feed(task, n)
    except (ValueError, nested.NonFiniteMemoryError, FloatingPointError) as exc:
        st.error(f"Could not stream {n} tokens of {task}: {exc}. The earlier run is kept.")
        return None
    st.session_state["cl_lab"] = trial
    st.query_params["cl_run"] = run_string(trial)
    return trial


def run_schedule(setup: Setup, schedule: str, segment_len: int, text: str) -> ContinualLab | None:
    """Start over with a typed schedule; a bad schedule is explained and the earlier run kept."""
    try:
        sched = Schedule.parse(schedule, setup.task.task_names, segment_len, allow_text=True)
        if any(t == TEXT_TASK for t, _ in sched.segments) and not text:
            raise ValueError("the schedule has T (your text) but there is no text: type or paste some below")
        lab = new_lab(setup)
        lab.text = text
        bar = st.progress(0.0, text="Streaming…")
        total, done = sum(n for _, n in sched.segments), 0
        for t, n in sched.segments:
            lab.feed(t, n, on_probe=lambda d, _n, base=done: bar.progress((base + d) / total, text=f"Streaming… {base + d}/{total} tokens"))  # fmt: skip
            done += n
        bar.empty()
    except (ValueError, nested.NonFiniteMemoryError, FloatingPointError) as exc:
        st.error(f"Cannot run that schedule: {exc}. The earlier run is kept.")
        return None
    _keep(setup, lab, text)
    st.query_params["cl_run"] = run_string(lab)
    return lab
