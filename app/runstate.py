"""The stepper's run-state: one per session (st.session_state), never shared. It streams tokens lazily
as the user steps or plays, keeps the whole trace so back and scrub are instant, and rebuilds itself when
the model, text or frozen levels change. No Streamlit here: pytest drives it directly."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

import nested
from nested.trace import Trace

CHUNK = 16  # tokens streamed per refill when the index runs past what is computed


def frozen_options(model: nested.NestedLM) -> list[str]:
    """What can be frozen (eta -> 0): each layer's in-context memories and each CMS level."""
    out = []
    for i, blk in enumerate(model.blocks):
        if "eta_gain" in blk.mixer.init_state(1, "cpu", torch.float32):
            out.append(f"layer {i} memories")
        for lv in range(getattr(blk.ffn, "n_levels", 0)):
            out.append(f"layer {i} cms[{lv}]")
    return out


def apply_frozen(state: dict, frozen: tuple[str, ...]) -> dict:
    for spec in frozen:
        _, layer, what = spec.split(" ", 2)
        i = int(layer)
        if what == "memories":
            state["mixer"][i] = {**state["mixer"][i], "eta_gain": 0.0}
        else:
            lv = int(what[4:-1])
            scales = list(state["cms"][i]["lr_scale"])
            scales[lv] = 0.0
            state["cms"][i] = {**state["cms"][i], "lr_scale": scales}
    return state


@dataclass
class StepperRun:
    key: tuple  # (model name, seed, text, frozen): a change of key means a new run
    tokens: list[int]
    frozen: tuple[str, ...] = ()
    trace: Trace | None = None
    state: dict | None = None
    initial: dict = field(default_factory=dict)  # memory matrices before the first token, per layer

    @property
    def computed(self) -> int:
        return 0 if self.trace is None else len(self.trace)

    def ensure(self, model: nested.NestedLM, upto: int) -> None:
        """Stream tokens until `upto` of them are computed (bounded by the text)."""
        upto = min(upto, len(self.tokens))
        if self.state is None:
            self.state = apply_frozen(model.init_state(1), self.frozen)
            from nested.model import memory_snapshot

            self.initial = {i: memory_snapshot(blk.mixer, self.state["mixer"][i]) for i, blk in enumerate(model.blocks)}
        if upto <= self.computed:
            return
        chunk = torch.tensor([self.tokens[self.computed : upto]], dtype=torch.long)
        with torch.no_grad():
            run = model.stream(chunk, state=self.state, trace=True)
        self.state = run.state
        if self.trace is None:
            run.trace.max_snapshots = len(self.tokens)  # keep every token: back and scrub are lookups
            self.trace = run.trace
        else:
            self.trace.extend(run.trace)

    def matrices(self, layer: int, index: int) -> tuple[dict | None, dict | None]:
        """(matrices after token `index`, matrices before it) for a layer."""
        now = self.trace.snapshot_at(layer, index)
        before = self.initial.get(layer) if index == 0 else self.trace.snapshot_at(layer, index - 1)
        return now, before


def downsample(m: np.ndarray, max_side: int = 256) -> np.ndarray:
    """Average-pool a matrix so neither side exceeds max_side (heatmaps stay light)."""
    r, c = m.shape
    fr, fc = -(-r // max_side), -(-c // max_side)
    if fr == 1 and fc == 1:
        return m
    pr, pc = (-r) % fr, (-c) % fc
    p = np.pad(m, ((0, pr), (0, pc)), mode="edge")
    return p.reshape(p.shape[0] // fr, fr, p.shape[1] // fc, fc).mean(axis=(1, 3))
