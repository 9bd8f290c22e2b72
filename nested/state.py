"""The named state of a stream (DESIGN.md §2: explicit, per batch item, written out of place).

A `StreamState` is what `model.run` / `model.stream` take and return: the position, each layer's
mixer state (owned by the mixer: its memories, conv window, attention cache), each layer's CMS levels
(nested.cms.CMSState), and the window of recent `Segment`s the CMS rule still has to learn from.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import TYPE_CHECKING

from torch import Tensor

from nested.cms import CMSState

if TYPE_CHECKING:
    from nested.trace import Trace


@dataclass(frozen=True)
class Segment:
    """One CMS segment (gcd of the periods) of the stream, kept until every level that covers it has
    learned from it. Training keeps its logits (the outer graph is alive); inference keeps the mixer
    states at its start so the segment can be replayed chunk-parallel with a graph to the weights."""

    start: int
    tokens: tuple[Tensor, ...] = ()  # the pieces' tokens (B, n), in order
    logits: tuple[Tensor, ...] = ()  # training only: the pieces' logits, with graph
    weights: tuple = ()  # per layer: the CMS level weights the segment used
    mixers: tuple | None = None  # inference only: the mixer states at `start`
    uses: tuple = ()  # training only: per layer, the CMS levels' uses (nested.cms.LevelUse), with graph

    @property
    def end(self) -> int:
        return self.start + sum(t.shape[1] for t in self.tokens)

    def add(self, tok: Tensor, logits: Tensor | None, uses: list | None = None) -> Segment:
        """The segment with one more piece: its tokens and, in training, its logits and per-layer uses."""
        if uses is not None:
            uses = tuple(a + tuple(b) for a, b in zip(self.uses or ((),) * len(uses), uses, strict=True))
        return replace(self, tokens=self.tokens + (tok,),
                       logits=self.logits + ((logits,) if logits is not None else ()),
                       uses=self.uses if uses is None else uses)  # fmt: skip


@dataclass(frozen=True)
class StreamState:
    pos: int
    batch: int
    mixers: tuple  # per layer: the mixer's own state
    cms: tuple[CMSState, ...] | None  # per layer (None: the model has MLP FFNs)
    window: tuple[Segment, ...] = ()  # oldest first; the last one may still be open
    last_probs: Tensor | None = field(default=None, repr=False)  # traces: the previous prediction


@dataclass
class StreamResult:
    """What `model.run` / `model.stream` return."""

    logits: Tensor  # (B, T, V)
    state: StreamState  # pass back in to continue the stream
    trace: Trace | None = None


def map_tensors(fn, obj):
    """`obj` with `fn` applied to every tensor inside it (dataclasses, dicts, tuples, lists), out of place."""
    if isinstance(obj, Tensor):
        return fn(obj)
    if is_dataclass(obj) and not isinstance(obj, type):
        return replace(obj, **{f.name: map_tensors(fn, getattr(obj, f.name)) for f in fields(obj)})
    if isinstance(obj, dict):
        return {k: map_tensors(fn, v) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(map_tensors(fn, v) for v in obj)
    return obj


def repeat_state(state: StreamState, n: int) -> StreamState:
    """n independent copies of a batch-1 stream state, as one batch-n state (for batched probes).
    Every per-item tensor is batch-major (item i owns rows [i*k, (i+1)*k)), so repeating whole rows
    is exact; a leading dim of 1 becomes a broadcast view (no copy of the CMS weights)."""
    if state.batch != 1:
        raise ValueError(f"repeat_state takes a batch-1 state, got batch {state.batch}")

    def rep(x: Tensor) -> Tensor:
        if x.dim() == 0:
            return x
        if x.shape[0] == 1:
            return x.expand(n, *x.shape[1:])
        return x.repeat(n, *([1] * (x.dim() - 1)))

    return replace(map_tensors(rep, state), batch=n)


def probe_view(state: StreamState) -> StreamState:
    """What a probe needs of a state: the open segment's weights, without the window's tokens, logits
    and replay states (a probe learns nothing, so it never replays)."""
    if not state.window:
        return state
    last = replace(state.window[-1], tokens=(), logits=(), mixers=None, uses=())
    return replace(state, window=(last,), last_probs=None)
