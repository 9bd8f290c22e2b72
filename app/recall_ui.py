"""The recall lab's state and work (pages/recall.py): precomputed curves, live curves, cached examples.

The shipped curves (assets/presets/recall-curves.json, `python -m app.recall_ui [--all]`) cover every recall model
on every family with each switch, so the page draws at once. Other seeds are computed live, one size at a
time, each finished size kept in the session: a rerun (any click, "Stop") interrupts the run and keeps what
it has. Examples are cached per (model, family, size, seed, switch) for every session (they are pure
functions of those and the read-only weights).
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import streamlit as st

from app.models import build_frozen, is_trained
from app.session import frozen_model, session_models
from nested.errors import NonFiniteMemoryError
from nested.recall_lab import FAMILIES, SWITCHES, example, recall_curve

PRESET_FILE = Path(__file__).resolve().parent.parent / "assets" / "presets" / "recall-curves.json"
RECALL_MODELS = {"Hope": "hope-recall", "Titans": "titans-recall", "Transformer": "transformer-recall",
                 "Transformer, window 24": "swa-recall"}  # fmt: skip
DEFAULT_MODELS = list(RECALL_MODELS)
SAMPLES = 64  # sequences per size: the curve's accuracy rests on SAMPLES x queries answers
SWITCH_LABELS = {"on": "on (as trained)", "off": "off (memories frozen)", "ascent": "sign flipped (ascent)",
                 "steps x4": "4 inner steps per token"}  # fmt: skip
SWITCH_STATUS = {
    "on": "Test-time learning is **ON**: every memory and CMS level learns from the context as it streams.",
    "off": "Test-time learning is **OFF**: no memory is written and no CMS level learns (memories keep their "
    "trained initial values, decaying); the outer weights are the same. The drop from ON is what the "
    "memories learned in context.",
    "ascent": "The inner update's **sign is flipped**: every memory write climbs its inner loss instead of "
    "descending it (CMS unchanged). A model that memorises by gradient descent should lose its recall.",
    "steps x4": "Every memory takes **4 inner steps per token** instead of 1 (each with that token's gradient; "
    "CMS unchanged). A memory that fits its pairs by gradient descent should keep its recall or gain.",
}
EXAMPLE_SIZES = {"mqar": [4, 8, 16, 24, 32], "niah-single": [64, 128, 256], "niah-multikey-2": [64, 128, 256],
                 "niah-multikey": [64, 128, 256], "niah-multikey-8": [128, 256], "niah-passkey": [64, 128, 256]}  # fmt: skip
# the example each family opens on (shipped precomputed): MQAR 16 pairs, 8 asked, so the other 8 are the haystack
EXAMPLE_DEFAULT = {"mqar": 16, "niah-single": 128, "niah-multikey-2": 128, "niah-multikey": 128, "niah-multikey-8": 128,
                   "niah-passkey": 128}  # fmt: skip

EXPLAINER = """
- **Accuracy vs context**: the fraction of answer symbols each model gets right (its most likely answer
  symbol: a digit), over 64 sequences per size. MQAR: pairs like `ab3` then queries `ab` → `3`; the
  context grows with the number of pairs. Needle in a haystack: a needle such as `#QX=1234.` (a 2-letter key)
  hidden in Python's docs (or in repeated filler for the passkey), then ` #QX=` asked at the end; each of the
  4 digits (5 for the passkey) is one scored answer. Multi-key: 2, 4 (`niah-multikey`) or 8 needles, one asked. Chance is 1 in 10. The window Transformer sees 24 bytes
  back per layer, so its 2 layers reach about 48 bytes: needles further back are out of its reach. The models trained on
  MQAR with 4–32 pairs, then on MQAR and needles in haystacks of up to 128 bytes: longer haystacks test how
  far what they learned carries.
- **Test-time learning switch**: the same trained weights with every inner update off, with its sign
  flipped, or with 4 inner steps per token. For a Transformer the runs are identical (it has no inner
  learner): its line is the control.
- **One example**: the sequence as a strip; needles (or the pairs that will be asked) are shaded orange, each
  answer is marked green when the model got it, red otherwise; the table gives, per query (for a needle: per
  digit of its value), the probability the model's read returned for the stored answer (among the 10 digits).
  Below, where each memory model wrote, at every token (layer by layer), with the needles shaded: `memory_change`
  is the size of its memory's change, `surprise` its inner loss at that token (how badly the memory predicted the
  token's value before writing it), `eta` the learning rate it gave itself. "Write ratio" is the mean change on the needle
  tokens over the mean change on the rest of the context before the question.
"""


def ratio_text(ratio: float) -> str:
    return "n/a (no haystack: every pair is asked)" if math.isnan(ratio) else f"{ratio:.2f}"


def lab_models() -> dict[str, str]:
    """Picker label -> model name: the shipped recall models, then the ones this session trained (Train page)."""
    return RECALL_MODELS | {name: name for name in session_models()}


def untrained(labels: list[str]) -> list[str]:
    return [lb for lb in labels if lb in RECALL_MODELS and not is_trained(RECALL_MODELS[lb])]


@functools.lru_cache(maxsize=1)
def shipped_curves() -> dict | None:
    """The shipped curves and examples (read once per process; never mutated)."""
    try:
        data = json.loads(PRESET_FILE.read_text())
        return data if isinstance(data, dict) and "curves" in data else None
    except (OSError, ValueError):
        return None


def build_presets(keep: bool = True) -> dict:
    """Compute the shipped curves and examples; with `keep`, the entries the file already has stay as they
    are and only the missing ones (a new switch, model or family) are computed."""
    old = (shipped_curves() or {}) if keep else {}
    old_curves, examples = old.get("curves", {}), dict(old.get("examples", {}))
    models = {name: build_frozen(name, 0, device="cpu") for name in RECALL_MODELS.values()}  # each loaded once
    curves: dict = {}
    for family in FAMILIES:
        for label, name in RECALL_MODELS.items():
            for switch in SWITCHES:
                have = old_curves.get(family, {}).get(label, {}).get(switch)
                curves.setdefault(family, {}).setdefault(label, {})[switch] = have or recall_curve(
                    models[name], family, n=SAMPLES, seed=0, switch=switch
                )
    for family in FAMILIES:
        for name, model in models.items():
            for switch in SWITCHES:
                key = f"{name}|{family}|{EXAMPLE_DEFAULT[family]}|0|{switch}"
                if key in examples:
                    continue
                try:
                    examples[key] = example(model, family, EXAMPLE_DEFAULT[family], seed=0, switch=switch)
                except NonFiniteMemoryError:  # left out: the page computes it live and says it diverged
                    continue
    data = {"seed": 0, "samples": SAMPLES, "curves": curves, "examples": examples}
    PRESET_FILE.write_text(json.dumps(data))
    return data


def curves_for(family: str, labels: list[str], switches: list[str], seed: int) -> dict:
    """{label: {switch: rows}} from the shipped file (seed 0) and this session's live runs; missing ones
    are absent (the page offers to compute them)."""
    shipped = (shipped_curves() or {"curves": {}})["curves"].get(family, {}) if seed == 0 else {}
    live = st.session_state.setdefault("recall_live", {})
    out = {}
    for lb in labels:
        for sw in switches:
            rows = shipped.get(lb, {}).get(sw) or live.get((family, lb, sw, seed))
            if rows and len(rows) == len(FAMILIES[family].sizes):
                out.setdefault(lb, {})[sw] = rows
    return out


def run_live(family: str, jobs: list[tuple[str, str]], seed: int, bar) -> None:
    """Compute the missing (label, switch) curves, one size at a time, each kept as soon as it is done."""
    live = st.session_state.setdefault("recall_live", {})
    sizes = FAMILIES[family].sizes
    for j, (lb, sw) in enumerate(jobs):
        rows = live.setdefault((family, lb, sw, seed), [])
        model = frozen_model(lab_models()[lb], 0)
        for size in sizes[len(rows) :]:
            rows += recall_curve(model, family, sizes=[size], n=SAMPLES, seed=seed, switch=sw)
            bar.progress((j * len(sizes) + len(rows)) / (len(jobs) * len(sizes)),
                         text=f"{lb}, inner updates {sw}: size {size} done")  # fmt: skip


def cached_example(model_name: str, family: str, size: int, seed: int, switch: str) -> dict:
    """The shipped example (each family's EXAMPLE_DEFAULT size, seed 0) or a live one, cached."""
    shipped = (shipped_curves() or {}).get("examples", {}).get(f"{model_name}|{family}|{size}|{seed}|{switch}")
    return shipped or _live_example(model_name, family, size, seed, switch)


@st.cache_data(max_entries=64, show_spinner="Streaming the example through the model…")
def _live_example(model_name: str, family: str, size: int, seed: int, switch: str) -> dict:
    return example(frozen_model(model_name, 0), family, size, seed=seed, switch=switch)


if __name__ == "__main__":
    import sys

    from app.threads import use_app_threads

    use_app_threads()  # the thread count the app runs with: a preset equals a live run bit for bit
    build_presets(keep="--all" not in sys.argv)  # --all: recompute every entry (after re-shipping a model)
    print("wrote", PRESET_FILE)
