"""torch.compile from outside the model: `compiled = nested.compile_model(model, "stream" | "train")`.

The wrapper has the model's API (`compiled(tokens)`, `.run`, `.stream`) and computes the same function
(tests compare it with eager); the graphs live in the wrapper, never on the model, and no method is
patched nor global flag flipped. What each mode compiles:

- "stream": one token's step. Hope (every mixer self-modifying): the whole token (embedding, every
  layer's `_chunk_core` on one token, its CMS levels, the head, one "all memories finite" flag) as one
  graph; other models: each self-modifying layer's `_chunk_core`. ~20 s cold on a 2-core CPU.
- "chunks": each self-modifying layer's chunk step `_chunk_core`, forward and (AOTAutograd) backward.
- "train": "chunks", plus, where the CMS gradient is per segment (`cms_grad="segment"`, or one period),
  each whole CMS segment of Hope as one graph: every layer's forward, the head, the segment's summed
  loss and its gradient with respect to every level's weights by `torch.func.vjp` (the segment pass
  keeps only the paths from the level weights to the loss). Minutes cold.

Positions, chunk boundaries and the CMS steps stay in eager Python, so nothing recompiles as a stream
advances. The CMS segment pass keeps the outer graph it differentiates (it is retained for the outer
backward), so AOTAutograd may donate no buffer: every compiled call runs under
`functorch_config.patch(donated_buffer=False)`.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch._functorch.config as functorch_config
import torch.nn.functional as F
from torch import Tensor

from nested.cms import Anchored
from nested.layers import check_finite, split_points
from nested.selfmod import SelfModifyingTitans, memories_finite
from nested.selfmod_state import ChunkOut

MODES = ("stream", "chunks", "train")


def compile_model(model, mode: str = "stream") -> CompiledModel:
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}; choose one of {MODES}")
    return CompiledModel(model, mode)


def _no_donation(fn):
    def call(*args):
        with functorch_config.patch(donated_buffer=False):
            return fn(*args)

    return call


class CompiledModel:
    """A NestedLM with compiled kernels: same calls, same results."""

    def __init__(self, model, mode: str):
        self.model, self.mode = model, mode
        selfmod = [isinstance(b.mixer, SelfModifyingTitans) for b in model.blocks]
        self.whole_token = None
        self.cores: list[dict | None] = [None] * len(model.blocks)
        if mode == "stream" and all(selfmod):
            self.whole_token = torch.compile(self._token_all, dynamic=False)
        for i, blk in enumerate(model.blocks):
            if not selfmod[i]:
                continue
            if mode in ("chunks", "train") or not all(selfmod):
                self.cores[i] = {"chunk": _no_donation(torch.compile(blk.mixer._chunk_core, dynamic=False))}
        self.segment_graph = None
        if mode == "train" and supports_segments(model):
            self.segment_graph = _no_donation(torch.compile(self._segment_core, fullgraph=True, dynamic=False))

    # -- the model's API -------------------------------------------------------------------------
    def __call__(self, tokens: Tensor) -> Tensor:
        return self.model._run(tokens, None, stepwise=False, trace=None, kernels=self)[0]

    def run(self, tokens: Tensor, state=None):
        from nested.state import StreamResult

        logits, state = self.model._run(tokens, state, stepwise=False, trace=None, kernels=self)
        return StreamResult(logits, state, None)

    def stream(self, tokens: Tensor, state=None, trace: bool = True, top_k: int = 5):
        return self.model.stream(tokens, state, trace=trace, top_k=top_k, kernels=self)

    def __getattr__(self, name):  # init_state, cfg, blocks, parameters, ...: the model's
        return getattr(self.model, name)

    # -- what the loop asks ----------------------------------------------------------------------
    def token(self, model, tok: Tensor, mixers, weights):
        """One token without a graph: (logits, mixer states, records)."""
        if self.whole_token is None:
            return model.forward_piece(tok, mixers, weights, cores=self.cores)
        args = [blk.mixer.core_args(st) for blk, st in zip(model.blocks, mixers, strict=True)]
        logits, outs, finite = self.whole_token(tok, args, list(weights))
        new, records = advance_mixers(model, mixers, 1, args, outs, finite)
        return logits, new, records

    def takes(self, model, state, tok: Tensor, outer: bool, have_next: bool) -> bool:
        """Whether the piece at `state.pos` is one whole segment the segment graph computes."""
        cfg, n = model.cfg, tok.shape[1]
        return (
            self.segment_graph is not None
            and outer
            and n == model.segment
            and state.pos % model.segment == 0
            and have_next
            and len(split_points(state.pos, n, [cfg.chunk_size, cfg.proj_chunk])) == 1
        )

    def piece(self, model, state, tok: Tensor, targets: Tensor, trace):
        """The segment graph on `state`: every layer advances, every CMS level takes this segment's
        gradient (segment reading) and those whose period ends here step. Returns (logits, state)."""
        args = []
        for blk, st in zip(model.blocks, state.mixers, strict=True):
            a = blk.mixer.core_args(st)
            if not a.conv.requires_grad:  # the first conv state: one graph for every segment
                a = a._replace(conv=a.conv.detach().requires_grad_(True))
            args.append(a)
        # the levels' current values; the graph anchors them to the initial weights itself (first order)
        values = [tuple((u.detach(), w.detach()) for u, w in c.weights) for c in state.cms]
        logits, outs, grads, finite = self.segment_graph(tok, targets, args, values)
        n, end = tok.shape[1], state.pos + tok.shape[1]
        mixers, _ = advance_mixers(model, state.mixers, n, args, outs, finite)
        cms = model.step_levels(state.cms, [dict(enumerate(g)) for g in grads], end, trace)
        return logits, replace(state, pos=end, mixers=mixers, cms=cms, window=())

    # -- the compiled functions ------------------------------------------------------------------
    def _token_all(self, tok: Tensor, layer_args: list, weights: list):
        """One token through every self-modifying layer, its CMS levels (or FFN) and the head."""
        model = self.model
        x, outs = model.embed(tok), []
        for i, blk in enumerate(model.blocks):
            y, out = blk.mixer.piece_core(blk.norm(x), layer_args[i], stepwise=True)
            x = x + y
            x = blk.ffn(x, weights[i]) if weights[i] is not None else blk.ffn(x)
            outs.append(out)
        return model.head(model.norm_f(x)), outs, memories_finite(outs)

    def _segment_core(self, tok: Tensor, targets: Tensor, layer_args: list, values: list):
        """One segment (B, G) with next-token `targets`: logits, each layer's `_chunk_core` outputs,
        d(summed segment loss)/d(each level's weights) per layer, and the finite flag. `values` are the
        levels' current per-item weights (no graph), the primals of the vjp, `Anchored` to the initial
        weights inside the graph (once per segment or once per level chunk gives the initial weights the
        same summed gradient)."""
        model = self.model
        absent = []  # which `_chunk_core` outputs are None (momentum off): vjp's aux holds tensors only

        def forward(ws):
            x, outs = model.embed(tok), []
            for i, blk in enumerate(model.blocks):
                y, out = blk.mixer.piece_core(blk.norm(x), layer_args[i])
                x = blk.ffn(x + y, [(Anchored(u, blk.ffn.up0[lv], True), Anchored(w, blk.ffn.down0[lv], True))
                                    for lv, (u, w) in enumerate(ws[i])])  # fmt: skip
                absent.append([t is None for t in out])
                outs.append([t for t in out if t is not None])
            logits = model.head(model.norm_f(x))
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum")
            return loss, (logits, outs)

        loss, vjp_fn, (logits, outs) = torch.func.vjp(forward, values, has_aux=True)
        (grads,) = vjp_fn(torch.ones_like(loss))
        outs = [ChunkOut._make(None if gone else next(ts) for gone in mask)
                for mask, ts in zip(absent, map(iter, outs), strict=True)]  # fmt: skip
        grads = [[(u.detach(), w.detach()) for u, w in layer] for layer in grads]
        return logits, outs, grads, memories_finite(outs)


def supports_segments(model) -> bool:
    """Every mixer self-modifying, every FFN a first-order CMS whose gradient is per segment."""
    cfg = model.cfg
    per_segment = cfg.cms_grad == "segment" or len(set(cfg.cms_periods)) == 1
    return (
        bool(model.segment)
        and per_segment
        and not cfg.cms_second_order
        and all(isinstance(b.mixer, SelfModifyingTitans) for b in model.blocks)
    )


def advance_mixers(model, mixers, n: int, args: list, outs: list, finite: Tensor):
    """Every self-modifying layer's state after n tokens and its records, from its compiled core's
    inputs and outputs; `finite` is `memories_finite` (one host sync). When it is false the slow check
    names the layer and the memory."""
    all_finite, new, records = bool(finite), [], []
    for i, blk in enumerate(model.blocks):
        st, rec = blk.mixer.next_state(mixers[i], n, args[i], outs[i])
        if not all_finite:
            check_finite({"W1": st.W1, "W2": st.W2}, i, "selfmod")
        new.append(st)
        records.append(rec)
    return tuple(new), records
