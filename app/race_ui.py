"""The live race's state and work (pages/race.py): one race per session, bounded work per tick, presets.

A race lives in the session (st.session_state), never in a cache: one user's race never moves another's.
Each play tick trains at most TICK_SECONDS of steps (a Step press STEP_SECONDS), so a playing race yields the server back quickly. The
default race of each task is shipped precomputed (assets/presets/race-<task>.json: `python -m app.race_ui`)
and drawn in the first second; pressing Step or Play starts the same race live from step 0.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from nested.race import BEST_LR, LABELS, MAX_STEPS, Race, RaceConfig

PRESET_DIR = Path(__file__).resolve().parent.parent / "assets" / "presets"
PRESET_STEPS = 300
DEFAULT_OPTIMIZERS = ("adamw", "muon", "m3")
TASKS = {"digits": "Handwritten digits (MLP)", "bytes": "Next byte of Python's docs (Transformer)"}
LR_CHOICES = [1e-5, 1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0]
# the most training one play frame does (a playing race yields the server back quickly), and one Step press
TICK_SECONDS, STEP_SECONDS = 0.3, 2.0

EXPLAINER = """
- **Same start, same data**: every optimizer trains its own copy of the same network, from the same initial
  weights, on the same batch at every step. The only difference between two curves is the optimizer.
- **Learning rates** start at each optimizer's best on this task (a grid of 5 rates × 3 seeds,
  `bench/optimizer_grid.py`, docs/RESULTS.md). Muon and M3 update the hidden matrices by their rule and the
  input layer, the output layer and the biases by AdamW at a tenth of their rate, as the paper uses them.
- **Loss / accuracy**: the training loss of each step's batch (thin) and the loss and accuracy on a held-out
  set every few steps (dots). A loss that blows up stops that optimizer and says so.
- **Memories**: an optimizer's state is an associative memory of past gradients (§3.1). The curve is each
  memory's norm over all layers. M3's slow momentum M2 moves only once every f = 10 steps (the steps it
  absorbs the last chunk's gradients are marked): a lower-frequency level of the nest.
- **Per layer**: which layer each memory is holding most for, now.
- **Spectrum**: the singular values of one hidden matrix's last update, largest = 1. Muon and M3 orthogonalise
  their momentum with 5 Newton–Schulz steps (Eq. 43): the momentum's spectrum falls steeply, after NS the
  leading directions are all near 1 (directions far below the largest stay small: 5 quintic steps lift a
  direction at most ~485×). AdamW's update keeps a steep spectrum.
"""


@dataclass(frozen=True)
class Setup:
    task: str
    optimizers: tuple[str, ...]
    lrs: tuple[tuple[str, float], ...]
    seed: int

    def config(self) -> RaceConfig:
        return RaceConfig(task=self.task, optimizers=self.optimizers, lrs=dict(self.lrs), seed=self.seed)

    @property
    def is_default(self) -> bool:
        return self == default_setup(self.task)


def default_setup(task: str) -> Setup:
    return Setup(task, DEFAULT_OPTIMIZERS, tuple((n, BEST_LR[task][n]) for n in DEFAULT_OPTIMIZERS), 0)


def live(setup: Setup) -> Race | None:
    """The session's race if it was made for `setup`."""
    return st.session_state.get("race_live") if st.session_state.get("race_setup") == setup else None


def start(setup: Setup) -> Race:
    race = Race(setup.config())
    st.session_state["race_live"], st.session_state["race_setup"] = race, setup
    return race


def reset() -> None:
    st.session_state.pop("race_live", None)
    st.session_state.pop("race_setup", None)


def advance(race: Race, steps: int, budget: float = TICK_SECONDS) -> int:
    """Up to `steps` steps of every optimizer, stopping once `budget` seconds are spent; returns steps done."""
    t0, done = time.perf_counter(), 0
    while done < steps and not race.done and time.perf_counter() - t0 < budget:
        race.advance(1)
        done += 1
    return done


def preset_file(task: str) -> Path:
    return PRESET_DIR / f"race-{task}.json"


def shipped(task: str) -> dict | None:
    """The precomputed default race of `task`; None when missing or unreadable."""
    try:
        data = json.loads(preset_file(task).read_text())
        return data if isinstance(data, dict) and "runners" in data else None
    except (OSError, ValueError):
        return None


def build_presets(steps: int = PRESET_STEPS) -> None:
    for task in TASKS:
        race = Race(default_setup(task).config())
        race.advance(steps)
        preset_file(task).write_text(json.dumps(race.record()))


def status_line(record: dict) -> str:
    steps = max((len(r["history"]) for r in record["runners"].values()), default=0)
    parts = []
    for name, r in record["runners"].items():
        score = next((h for h in reversed(r["history"]) if "test_accuracy" in h), None)
        if score is not None:
            parts.append(f"{LABELS[name]} {score['test_accuracy']:.1%}")
    cap = f" (a race stops at {MAX_STEPS:,})" if steps >= MAX_STEPS else ""
    return f"Step {steps:,}{cap}." + (" Held-out accuracy: " + ", ".join(parts) + "." if parts else "")


if __name__ == "__main__":
    from app.threads import use_app_threads

    use_app_threads()  # the thread count the app runs with: a preset equals a live run bit for bit
    build_presets()
    print("wrote", ", ".join(str(preset_file(t)) for t in TASKS))
