"""The stepper's run-state: one per session (st.session_state), never shared. It streams tokens lazily
as the user steps or plays, keeps the whole trace (per-token rates, losses, predictions: small) so back
and scrub are instant, and rebuilds itself when the model, text or frozen levels change. No Streamlit
here: pytest drives it directly.

Memory snapshots are the large part (the default model: ~200 KB a token), so a session's memory stays
bounded: the live trace keeps the latest LIVE_SNAPSHOTS tokens' matrices, the stream state is kept every
CHECKPOINT_EVERY tokens, and the matrices of any other token are recomputed on demand from the
checkpoint before it (exactly: the same one-token steps from the same state), keeping a window around it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

import nested
from nested.trace import Trace

LIVE_SNAPSHOTS = 64  # tokens whose memory matrices the live trace keeps (the latest)
CHECKPOINT_EVERY = 256  # a stream state is kept at every multiple of this (what a recompute starts from)
RECOMPUTE_KEEP = 48  # a recompute keeps the matrices of this many tokens either side of the one asked for


def frozen_options(model: nested.NestedLM) -> list[str]:
    """What can be frozen (eta -> 0): each layer's in-context memories and each CMS level."""
    return model.freeze_options()


@dataclass
class StepperRun:
    """A stream the stepper shows. Live runs compute lazily from the model; a replayed run (a saved
    trace) or a preset (a precomputed trace shipped in assets/presets) needs no model for the tokens it
    covers. The memories before the first token are stored as snapshot token -1, so "change since the
    previous token" works at token 0 and survives export."""

    key: tuple  # what the run is of: a change of key means a new run
    tokens: list[int]
    frozen: tuple[str, ...] = ()
    trace: Trace | None = None
    state: nested.StreamState | None = None
    preset: Trace | None = None  # shown while the live run has not reached a token
    replay: bool = False  # a loaded trace: nothing more can be computed
    checkpoints: dict = field(default_factory=dict)  # position -> StreamState before that token
    recomputed: dict = field(default_factory=dict)  # layer -> {token: matrices}, around the last token asked

    @classmethod
    def from_trace(cls, key: tuple, trace: Trace) -> StepperRun:
        frozen = trace.meta.get("frozen", ())
        frozen = tuple(f for f in frozen if isinstance(f, str)) if isinstance(frozen, list | tuple) else ()
        return cls(key, list(trace.tokens), frozen, trace=trace, replay=True)

    @property
    def label(self) -> str:
        """The run's model as the page names it (a replay: the model the trace recorded)."""
        if self.replay:
            return f"{self.trace.meta.get('model', 'unknown model')} (saved trace)"
        return str(self.key[0])

    @property
    def computed(self) -> int:
        return 0 if self.trace is None else len(self.trace)

    def layers(self) -> int:
        return (self.trace if self.trace is not None else self.preset).n_layers

    def memory_names(self, layer: int) -> list[str]:
        src = self.trace if self.trace is not None else self.preset
        snaps = src.snapshots.get(layer) if src is not None else None
        return list(snaps[0][1]) if snaps else []

    def _preset_covers(self, index: int, snapshots: bool) -> bool:
        p = self.preset
        if p is None or index >= len(p):
            return False
        return not snapshots or p.snapshot_at(0, index) is not None or not p.snapshots

    def view(self, index: int, snapshots: bool = True) -> Trace:
        """The trace that covers token `index` (and its memory snapshots when `snapshots`): the live one,
        else the preset."""
        if self.replay or self.computed > index + 1 or self.computed == len(self.tokens):
            return self.trace
        return self.preset if self._preset_covers(index, snapshots) else self.trace

    def ensure(self, model: nested.NestedLM | None, upto: int, snapshots: bool = True) -> None:
        """Make token `upto - 1` viewable with its loss known: stream live until `upto + 1` tokens are
        computed, unless the preset already covers it. A replayed run computes nothing."""
        if self.replay or self._preset_covers(upto - 1, snapshots):
            return
        upto = min(upto + 1, len(self.tokens))
        if self.state is None:
            self.state = model.init_state(1, freeze=nested.Freeze.parse(self.frozen, model))
            initial = _layer_snapshots(model, self.state)
            self.trace = Trace(n_layers=len(model.blocks), max_snapshots=LIVE_SNAPSHOTS,
                               snapshots={i: [(-1, m)] for i, m in initial.items() if m}, meta={"start": 0})  # fmt: skip
        while self.computed < upto:  # pieces end at checkpoints, so every multiple of CHECKPOINT_EVERY is one
            if self.computed % CHECKPOINT_EVERY == 0:
                self.checkpoints[self.computed] = self.state
            end = min(upto, (self.computed // CHECKPOINT_EVERY + 1) * CHECKPOINT_EVERY)
            piece = self.tokens[self.computed : end]
            with torch.no_grad():
                run = model.stream(torch.tensor([piece], dtype=torch.long), state=self.state, trace=True)
            self.state = run.state
            self.trace.extend(run.trace)

    def needs_upto(self, start: int, end: int, snapshots: bool = True) -> int:
        """How far the live run must have streamed for [start, end) to be viewable (ensure_window's
        target); 0 when nothing is left to stream."""
        if self.replay:
            return 0
        lacking = [t for t in range(max(start - 1, 0), end) if not self._preset_covers(t, snapshots)]
        target = min(lacking[-1] + 2, len(self.tokens)) if lacking else 0
        return target if target > self.computed else 0

    def ensure_window(self, model: nested.NestedLM | None, start: int, end: int, snapshots: bool = True) -> None:
        """Make every token of [start, end) viewable, and token start - 1's matrices (the first change's
        base): a preset covers only a window of matrices, so the live run streams past the last it lacks."""
        target = self.needs_upto(start, end, snapshots)
        if target:
            self.ensure(model, target - 1, snapshots)  # ensure(upto) streams to upto + 1

    def export_trace(self) -> Trace:
        """The most complete trace of this run: the live one, or, while a shipped run covers more tokens,
        that run with every live memory snapshot merged in."""
        if self.preset is None or self.computed >= len(self.preset):
            return self.trace
        p = self.preset
        merged = p.head(len(p))  # a copy: the whole preset (its last token has no target either way)
        merged.max_snapshots = len(p) + 1
        for layer in set(p.snapshots) | set(self.trace.snapshots if self.trace is not None else {}):
            by_token = dict(p.snapshots.get(layer, []))
            by_token.update(dict(self.trace.snapshots.get(layer, [])) if self.trace is not None else {})
            merged.snapshots[layer] = sorted(by_token.items(), key=lambda tm: tm[0])
        return merged

    def matrices(self, layer: int, index: int, model=None) -> tuple[dict | None, dict | None]:
        """(matrices after token `index`, matrices before it) for a layer; with `model`, a live run's
        token outside the kept snapshots is recomputed from its checkpoint."""
        return self.snapshot(layer, index, model), self.snapshot(layer, index - 1, model)

    def snapshot(self, layer: int, token: int, model=None) -> dict | None:
        """The matrices of `layer` after `token` (-1: before the first): kept, or recomputed with `model`."""
        tr = self.view(max(token, 0))
        if tr is None:
            return None
        got = tr.snapshot_at(layer, token)
        if got is None and model is not None and tr is self.trace and not self.replay and token < self.computed:
            got = self._recompute(model, layer, token)
        return got

    def _recompute(self, model, layer: int, token: int) -> dict | None:
        """The matrices of `layer` after `token` (-1: the initial memories), streamed again from the
        checkpoint before it; the tokens within RECOMPUTE_KEEP of it are kept for the next steps."""
        if token in self.recomputed.get(layer, {}):
            return self.recomputed[layer][token]
        start = max(token, 0) // CHECKPOINT_EVERY * CHECKPOINT_EVERY
        state = self.checkpoints.get(start)
        if state is None:
            return None
        initial = _layer_snapshots(model, state) if start == 0 else {}
        end = min(self.computed, start + CHECKPOINT_EVERY)
        with torch.no_grad():
            trace = model.stream(torch.tensor([self.tokens[start:end]], dtype=torch.long), state=state,
                                 trace=True).trace  # fmt: skip
        keep = range(token - RECOMPUTE_KEEP, token + RECOMPUTE_KEEP + 1)
        # the window just left stays while it is near (stepping back across a checkpoint needs both sides)
        self.recomputed = {
            i: {t: m for t, m in self.recomputed.get(i, {}).items() if abs(t - token) <= 2 * RECOMPUTE_KEEP}
            | {
                t: m
                for t, m in ([(-1, initial[i])] if initial.get(i) else []) + trace.snapshots.get(i, [])
                if t in keep
            }
            for i in range(len(model.blocks))
        }
        return self.recomputed.get(layer, {}).get(token)


def _layer_snapshots(model, state) -> dict:
    """Every layer's memory matrices as `state` holds them (the stepper's token -1)."""
    return {i: blk.mixer.snapshot(state.mixers[i]) for i, blk in enumerate(model.blocks)}


def downsample(m: np.ndarray, max_side: int = 256) -> np.ndarray:
    """Average-pool a matrix so neither side exceeds max_side (heatmaps stay light)."""
    r, c = m.shape
    fr, fc = -(-r // max_side), -(-c // max_side)
    if fr == 1 and fc == 1:
        return m
    pr, pc = (-r) % fr, (-c) % fc
    p = np.pad(m, ((0, pr), (0, pc)), mode="edge")
    return p.reshape(p.shape[0] // fr, fr, p.shape[1] // fc, fc).mean(axis=(1, 3))
