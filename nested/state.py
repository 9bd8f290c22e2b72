"""The named state of a stream (DESIGN.md §2: explicit, per batch item, written out of place).

A `StreamState` is what `model.run` / `model.stream` take and return: the position, each layer's
mixer state (owned by the mixer: its memories, conv window, attention cache), each layer's CMS levels
(nested.cms.CMSState), and the window of recent `Segment`s the CMS rule still has to learn from.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from torch import Tensor

from nested.cms import CMSState


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

    @property
    def end(self) -> int:
        return self.start + sum(t.shape[1] for t in self.tokens)

    def add(self, tok: Tensor, logits: Tensor | None) -> Segment:
        return replace(
            self, tokens=self.tokens + (tok,), logits=self.logits + ((logits,) if logits is not None else ())
        )


@dataclass(frozen=True)
class StreamState:
    pos: int
    batch: int
    mixers: tuple  # per layer: the mixer's own state
    cms: tuple[CMSState, ...] | None  # per layer (None: the model has MLP FFNs)
    window: tuple[Segment, ...] = ()  # oldest first; the last one may still be open
    last_probs: Tensor | None = field(default=None, repr=False)  # traces: the previous prediction
