"""Named presets (a page plus the controls that make its first second useful) and their precomputed runs.

A preset is opened with `?preset=NAME` on its page (lessons link to them). Presets of the token stepper
ship a precomputed run in assets/presets/NAME.npz (a Trace: every per-token value for the whole text, and
the memory snapshots around the preset's token index), so the page draws at once while the live model
loads; `python -m app.presets` rebuilds them and tests/test_workshop.py checks them against a live run.
The continual page's first view is a precomputed summary too (assets/presets/continual-default.json).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import nested
from app.registry import ROOT

PRESET_DIR = ROOT / "assets" / "presets"
SNAPSHOT_WINDOW = 16  # a shipped run keeps the memory snapshots this close to its token index (and the initial)


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    page: str  # url_path of the page it opens
    params: dict = field(default_factory=dict)  # control key -> value
    precomputed: bool = False  # ships a stepper run in assets/presets

    @property
    def run_key(self) -> tuple | None:
        """The stepper run this preset's shipped trace stands for (model, seed, sample, frozen)."""
        if not self.precomputed:
            return None
        p = self.params
        return (p.get("model", "hope"), p.get("seed", 0), "sample", p.get("stepper_sample", FIRST_SAMPLE),
                tuple(p.get("stepper_frozen", ())))  # fmt: skip


FIRST_SAMPLE = "The for statement"

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset("nest-hope", "Hope's nest", "nest", {"model": "hope"}),
        Preset("nest-transformer", "A Transformer's nest", "nest", {"model": "transformer"}),
        Preset(
            "stepper-first-look",
            "Watch Hope read",
            "stepper",
            {"model": "hope", "stepper_sample": FIRST_SAMPLE, "stepper_index": 20, "stepper_memory": "M_memory"},
            precomputed=True,
        ),
        Preset(
            "stepper-learning-rates",
            "Self-generated learning rates",
            "stepper",
            {
                "model": "hope",
                "stepper_sample": FIRST_SAMPLE,
                "stepper_index": 40,
                "stepper_colour": "eta",
                "stepper_memory": "M_eta",
            },
            precomputed=True,
        ),
        Preset(
            "stepper-freeze-cms",
            "Freeze the CMS",
            "stepper",
            {
                "model": "hope",
                "stepper_sample": FIRST_SAMPLE,
                "stepper_index": 400,
                "stepper_compare": "hope",
                "stepper_frozen": ["layer 0 cms[0]", "layer 0 cms[1]", "layer 1 cms[0]", "layer 1 cms[1]"],
            },
            precomputed=True,
        ),
        Preset(
            "continual-forgetting",
            "Who still knows A?",
            "continual",
            {"cl_models": ["Hope", "Titans", "Transformer, window 64"], "cl_detail": "Hope"},
        ),
        Preset(
            "optimizers-momentum",
            "Momentum remembers",
            "optimizers",
            {"opt_surface": "quadratic", "opt_optimizers": ["sgd", "momentum", "adam"], "opt_lr": 0.03},
        ),
        Preset(
            "optimizers-m3",
            "M3 against Muon and Adam",
            "optimizers",
            {"opt_surface": "rosenbrock", "opt_optimizers": ["adam", "muon", "m3"], "opt_lr": 0.1},
        ),
        Preset(
            "race-m3",
            "M3 trains a network",
            "race",
            {"race_task": "digits", "race_optimizers": ["adamw", "muon", "m3"], "race_detail": "m3"},
        ),
        Preset(
            "recall-memory-off",
            "Switch the memories off",
            "recall",
            {
                "recall_family": "mqar",
                "recall_models": ["Hope", "Titans", "Transformer"],
                "recall_switches": ["on", "off", "ascent"],
            },
        ),
        Preset(
            "attribution-recall",
            "Where was the needle read?",
            "attribution",
            {
                "model": "titans-recall",
                "attr_source": "your text",
                "attr_text": "kq7ab3xd9cd4ef5gh6mn2|ab3",
                "attr_position": 23,
                "attr_method": "occlusion",
            },
        ),
    ]  # fmt: skip
}


def preset_params() -> dict[str, dict]:
    """name -> control values, what app.urlstate.apply_preset consumes."""
    return {name: p.params for name, p in PRESETS.items()}


def preset_path(name: str):
    return PRESET_DIR / f"{name}.npz"


@lru_cache(maxsize=16)
def shipped_run(run_key: tuple):
    """The precomputed Trace for a stepper run key, or None (never raises: a bad file means live)."""
    from nested.trace import Trace

    for p in PRESETS.values():
        if p.run_key == run_key and preset_path(p.name).is_file():
            try:
                return Trace.load(preset_path(p.name))
            except ValueError:
                return None
    return None


# the front door's 60-second tour: (page, preset, what to look at), each opening on a view where its effect shows
TOUR = [
    ("stepper", "stepper-first-look", "Step through a text token by token and watch a memory being written"),
    ("continual", "continual-forgetting", "Switch tasks mid-stream and see which models forget"),
    ("recall", "recall-memory-off", "Turn test-time learning off: the recall of the memory models falls to chance"),
    ("race", "race-m3", "Race M3 against AdamW and Muon on real networks, live"),
    ("optimizers", "optimizers-momentum", "See an optimizer as a memory of its gradients"),
    ("claims", None, "Which of the paper's claims hold at this scale"),
]


def build(names: list[str] | None = None) -> list[str]:
    """Stream each precomputed preset's text through its model and write assets/presets/NAME.npz."""
    from app.models import build_frozen
    from app.runstate import StepperRun
    from app.samples import sample_texts
    from app.textinput import clean_text

    PRESET_DIR.mkdir(parents=True, exist_ok=True)
    written, seen = [], set()
    for p in PRESETS.values():
        if not p.precomputed or (names and p.name not in names) or p.run_key in seen:
            continue  # presets that share a run share its file
        seen.add(p.run_key)
        model_name, seed, _, sample, frozen = p.run_key
        text, _ = clean_text(sample_texts()[sample])
        run = StepperRun(p.run_key, nested.encode_bytes(text), frozen)
        model = build_frozen(model_name, seed, device="cpu")
        run.ensure(model, len(run.tokens))
        tr = run.trace
        indices = [q.params.get("stepper_index", 0) for q in PRESETS.values() if q.run_key == p.run_key]
        wanted = sorted({-1} | {t for i in indices for t in range(i - SNAPSHOT_WINDOW, i + SNAPSHOT_WINDOW + 1)
                                if 0 <= t < len(run.tokens)})  # fmt: skip
        for layer in range(tr.n_layers):  # the live run keeps only its latest matrices: the rest recomputed
            tr.snapshots[layer] = [(t, m) for t in wanted if (m := run.snapshot(layer, t, model)) is not None]
        tr.max_snapshots = len(wanted) + 1
        tr.meta.update({"model": model_name, "seed": seed, "sample": sample, "frozen": list(frozen)})
        tr.save(preset_path(p.name))  # float32: float16 cannot resolve late, tiny changes
        written.append(p.name)
    return written


if __name__ == "__main__":
    from app.threads import use_app_threads

    use_app_threads()  # the thread count the app runs with: a preset equals a live run bit for bit
    for name in build():
        print("wrote", preset_path(name))
    from app.continual_ui import PRESET_FILE, build_preset

    build_preset()
    print("wrote", PRESET_FILE)
