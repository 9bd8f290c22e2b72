"""The language model every registry entry builds: embed -> n_layers x Block -> norm -> head.

One function, several schedules (DESIGN.md §2): the loop below runs the same blocks on pieces of any
length — one token (`stream`), a CMS segment or a whole call (`run`, `model(tokens)`) — and they
compute the same logits. Block wiring (PAPER.md §6 [INFERENCE], modelled on Titans): h = x +
Mixer(Norm(x)), then the FFN (pre-norm residual MLP) or the CMS chain, then a final norm and the head.

CMS levels learn inside the sequence from the next-token loss (Eq. 71; the rule is nested.cms). The
stream is cut into segments of G = gcd(C_l) tokens; a segment's losses wait for the token after it (its
last target); then every level whose period ends there is differentiated and steps before that token
is read. Training differentiates the forward's own graph; inference replays the needed segments
chunk-parallel from their stored start states with a graph to the level weights. Partial segments and
level chunks carry over in the state to the next call.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nested.cms import CMS, MLP, level_grads
from nested.config import ModelConfig
from nested.freeze import Freeze
from nested.layers import RMSNorm, split_points
from nested.mixers import make_mixer
from nested.recorder import record_level_steps, record_token
from nested.state import Segment, StreamResult, StreamState
from nested.trace import Trace


class Block(nn.Module):
    """x + Mixer(Norm(x)), then the FFN or the CMS chain with the given level weights."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm = RMSNorm(cfg.d_model)
        self.mixer = make_mixer(cfg)
        self.ffn = CMS(cfg) if cfg.ffn == "cms" else MLP(cfg)

    def forward(self, x: Tensor, state, level_weights, stepwise: bool = False, layer: int = 0, core=None,
                uses: list | None = None):  # fmt: skip
        """`uses`: a list that records the CMS levels' uses (nested.cms.LevelUse) for their gradients."""
        h, state, record = self.mixer(self.norm(x), state, stepwise, layer=layer, core=core)
        x = x + h
        x = self.ffn(x, level_weights, uses) if level_weights is not None else self.ffn(x)
        return x, state, record


class NestedLM(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layers)])
        self.norm_f = RMSNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.segment = self.blocks[0].ffn.segment if cfg.ffn == "cms" else None

    @property
    def device(self) -> torch.device:
        return self.embed.weight.device

    def _trainable(self) -> bool:
        """Whether any weight requires grad. The parameters are listed once (walking the module tree on
        every streamed token cost 14 % of a compiled stream step); a model's parameters are fixed objects
        after construction (load, .to() and optimizers change their values, not which tensors they are)."""
        params = self.__dict__.get("_param_list")
        if params is None:
            params = self.__dict__["_param_list"] = tuple(self.parameters())
        return any(p.requires_grad for p in params)

    # -- state -----------------------------------------------------------------------------------
    def init_state(self, batch: int, freeze: Freeze | str | None = None) -> StreamState:
        """Fresh state from the meta-learned initial memories, one per batch item, nothing shared.
        `freeze` (a nested.Freeze or its string) scales or freezes any level's writes for this run."""
        dev, dt = self.device, self.embed.weight.dtype
        mixers = tuple(blk.mixer.init_state(batch, dev, dt) for blk in self.blocks)
        cms = tuple(blk.ffn.init_state(batch) for blk in self.blocks) if self.segment else None
        return self.with_freeze(StreamState(pos=0, batch=batch, mixers=mixers, cms=cms), freeze)

    def with_freeze(self, state: StreamState, freeze: Freeze | str | None) -> StreamState:
        """`state` with the levels `freeze` names scaled or frozen from its position on (a memory's write
        strength, a CMS level's learning rate; the levels it does not name keep theirs). Mid-stream, a CMS
        level frozen inside its period never takes that period's step: it stays bit-for-bit where it is."""
        spec = Freeze.parse(freeze, self)
        if not spec:
            return state
        named = dict(spec.gains)
        mixers = tuple(
            blk.mixer.with_write_gain(st, named[f"layer {i} memories"]) if f"layer {i} memories" in named else st
            for i, (blk, st) in enumerate(zip(self.blocks, state.mixers, strict=True))
        )
        cms = state.cms
        if cms is not None:
            cms = tuple(
                replace(c, gain=tuple(named.get(f"layer {i} cms[{lv}]", g) for lv, g in enumerate(c.gain)))
                for i, c in enumerate(cms)
            )
        return replace(state, mixers=mixers, cms=cms)

    def freeze_options(self) -> list[str]:
        """Every level a run can freeze, as nested.Freeze names ("layer 0 memories", "layer 1 cms[0]")."""
        return Freeze.options(self)

    # -- public API ------------------------------------------------------------------------------
    def forward(self, tokens: Tensor) -> Tensor:
        """(B, T) int64 -> (B, T, V) logits; the chunk-parallel schedule from a fresh state."""
        return self._run(tokens, None, stepwise=False, trace=None)[0]

    def run(self, tokens: Tensor, state: StreamState | None = None) -> StreamResult:
        """The chunk-parallel schedule with explicit state in and out (streaming in large pieces)."""
        logits, state = self._run(tokens, state, stepwise=False, trace=None)
        return StreamResult(logits, state, None)

    @property
    def exact_input_grad(self) -> bool:
        """Whether `from_embeddings(..., exact_cms=True)` can run: no CMS, or no softmax attention under it."""
        return not self.segment or self.cfg.mixer != "attention"

    def from_embeddings(self, embeds: Tensor, tokens: Tensor, exact_cms: bool = True) -> Tensor:
        """Logits of `tokens` (B, T) from a fresh state, their embeddings (B, T, d) given instead of looked
        up: the entry point for attribution (nested.attribution). The tokens are still the CMS levels'
        next-token targets. When `embeds` requires grad the forward keeps a graph (training schedule),
        even if no parameter requires grad; `exact_cms` keeps the graph through every CMS update too
        (second order, as `cms_second_order`), so the gradient to the inputs is the function's own."""
        if embeds.shape[:2] != tokens.shape or embeds.shape[-1] != self.cfg.d_model:
            raise ValueError(f"embeddings {tuple(embeds.shape)} do not match tokens {tuple(tokens.shape)}")
        if exact_cms and not self.exact_input_grad:
            raise ValueError("the exact CMS gradient needs a double backward through softmax attention, which "
                             "PyTorch's attention kernel lacks: use exact_cms=False (first order)")  # fmt: skip
        return self._run(self._check_tokens(tokens), None, stepwise=False, trace=None, embeds=embeds,
                         exact_cms=exact_cms)[0]  # fmt: skip

    @torch.no_grad()
    def probe(self, tokens: Tensor, state: StreamState) -> Tensor:
        """Logits of `tokens` (B, T) read from `state` as it stands, which is neither changed nor returned:
        the probe's own tokens pass through the memories as in `run`, but no CMS level learns (at a
        segment boundary the pending update waits for the stream's next token, its last target).
        `state` must have batch B (nested.state.repeat_state makes B copies of a batch-1 state)."""
        return self._run(tokens, state, stepwise=False, trace=None, learn=False)[0]

    def stream(self, tokens: Tensor, state: StreamState | None = None, trace: bool = True, top_k: int = 5,
               kernels=None) -> StreamResult:  # fmt: skip
        """The same function one token at a time; records a Trace of batch item 0 when `trace`."""
        tr = Trace(n_layers=self.cfg.n_layers, top_k=top_k) if trace else None
        logits, state = self._run(tokens, state, stepwise=True, trace=tr, kernels=kernels)
        return StreamResult(logits, state, tr)

    # -- the loop --------------------------------------------------------------------------------
    def _check_tokens(self, tokens: Tensor) -> Tensor:
        if tokens.dim() == 1:
            tokens = tokens[None]
        if tokens.dim() != 2 or tokens.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"tokens must be a (B, T) integer tensor, got {tuple(tokens.shape)} {tokens.dtype}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.cfg.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.cfg.vocab_size})")
        return tokens.long().to(self.device)

    def _run(self, tokens: Tensor, state: StreamState | None, stepwise: bool, trace: Trace | None, kernels=None,
             learn: bool = True, embeds: Tensor | None = None, exact_cms: bool = False):  # fmt: skip
        tokens = self._check_tokens(tokens)
        B, T = tokens.shape
        state = self.init_state(B) if state is None else state
        if state.batch != B:
            raise ValueError(f"state is for batch {state.batch}, tokens have batch {B}")
        # Training (an outer graph is wanted) vs inference: frozen or no-grad weights keep no graph.
        outer = torch.is_grad_enabled() and (self._trainable() or (embeds is not None and embeds.requires_grad))
        pos0, outs = state.pos, []
        if stepwise:
            pieces = [(t, t + 1) for t in range(T)]
        elif self.segment:
            pieces = split_points(pos0, T, [self.segment])
        else:
            pieces = [(0, T)] if T else []
        with nullcontext() if outer else torch.no_grad():
            for a, b in pieces:
                tok = tokens[:, a:b]
                if (
                    learn
                    and self.segment
                    and state.window
                    and state.window[-1].end == state.pos
                    and state.pos % self.segment == 0
                ):
                    state = self._learn(state, tok[:, :1], outer, trace, exact_cms)
                if kernels is not None and kernels.takes(self, state, tok, outer, have_next=b < T):
                    logits, state = kernels.piece(self, state, tok, tokens[:, a + 1 : b + 1], trace)
                else:
                    emb = embeds[:, a:b] if embeds is not None else None
                    logits, state = self._piece(tok, state, outer, stepwise, trace, kernels, emb)
                outs.append(logits if outer else logits.detach())
        if trace is not None and T:
            trace.meta["start"] = pos0
        return torch.cat(outs, 1) if outs else tokens.new_zeros(B, 0, self.cfg.vocab_size).float(), state

    def _piece(self, tok: Tensor, state: StreamState, outer: bool, stepwise: bool, trace: Trace | None, kernels=None,
               emb: Tensor | None = None):  # fmt: skip
        """One piece (it crosses no CMS segment boundary) through every block; the window records it."""
        if self.segment:
            state = self._open_segment(state, outer)
            weights = state.window[-1].weights
            if outer:
                weights = tuple(blk.ffn.forward_weights(w) for blk, w in zip(self.blocks, weights, strict=True))
        else:
            weights = [None] * len(self.blocks)
        if kernels is not None and kernels.mode == "stream" and tok.shape[1] == 1 and not outer:
            logits, mixers, records = kernels.token(self, tok, state.mixers, weights)
        else:
            cores = kernels.cores if kernels is not None else None
            uses = [[] for _ in self.blocks] if outer and self.segment else None
            logits, mixers, records = self.forward_piece(tok, state.mixers, weights, stepwise, cores, emb, uses)
        window = state.window
        if self.segment:
            window = window[:-1] + (window[-1].add(tok, logits if outer else None, uses if outer else None),)
        state = replace(state, pos=state.pos + tok.shape[1], mixers=mixers, window=window)
        if trace is not None:
            state = record_token(trace, self, tok, logits, state, records)
        return logits, state

    def forward_piece(
        self, tok: Tensor, mixers, weights, stepwise: bool = False, cores=None, emb: Tensor | None = None,
        uses: list | None = None,
    ):  # fmt: skip
        """Tokens (B, n) through embed -> blocks -> head from the given mixer states and CMS level
        weights: (logits, new mixer states, per-layer records). The one wiring of the model. `cores`:
        per layer, compiled replacements of a mixer's kernels (nested.compile). `emb`: the tokens'
        embeddings given instead of looked up (attribution). `uses`: per layer, a list that records
        the CMS levels' uses."""
        x = self.embed(tok) if emb is None else emb
        new, records = [], []
        for i, blk in enumerate(self.blocks):
            core, use = cores[i] if cores else None, uses[i] if uses is not None else None
            x, st, rec = blk(x, mixers[i], weights[i], stepwise, layer=i, core=core, uses=use)
            new.append(st)
            records.append(rec)
        return self.head(self.norm_f(x)), tuple(new), records

    # -- CMS learning (the rule itself is nested.cms) ---------------------------------------------
    def _open_segment(self, state: StreamState, outer: bool) -> StreamState:
        """At a segment start: the weights the segment uses and, in inference, the mixer states a replay
        starts from."""
        if state.pos % self.segment:
            return state  # inside a segment: it is already open (pieces never cross a boundary)
        weights = tuple(c.weights for c in state.cms)
        seg = Segment(start=state.pos, weights=weights, mixers=None if outer else state.mixers)
        return replace(state, window=state.window + (seg,))

    def _learn(self, state: StreamState, next_tok: Tensor, outer: bool, trace: Trace | None,
               exact_cms: bool = False) -> StreamState:  # fmt: skip
        """The window's last segment is complete and its last target `next_tok` (B, 1) has arrived:
        differentiate the summed next-token loss over the span the ending levels need, step them."""
        pos, first = state.pos, self.blocks[0].ffn
        wanted = [(i, lv) for i, (blk, c) in enumerate(zip(self.blocks, state.cms, strict=True))
                  for lv in blk.ffn.learning(c, pos)]  # fmt: skip
        grads = {}
        if wanted:
            segs = [s for s in state.window if s.start >= pos - first.span(pos)]
            with torch.enable_grad():
                if outer and all(len(s.logits) == len(s.tokens) for s in segs):
                    logits = torch.cat([t for s in segs for t in s.logits], 1)
                else:
                    logits, segs = self._replay(state, segs, wanted)
                # each level's uses in its own chunk (or segment): earlier ones belong to other weights
                tensors = [(i, lv, [u for s in segs if s.start >= pos - first.level_span(lv)
                                    for u in s.uses[i] if u.level == lv]) for i, lv in wanted]  # fmt: skip
                targets = torch.cat([t for s in segs for t in s.tokens] + [next_tok], 1)[:, 1:]
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum")
                create = (self.cfg.cms_second_order or exact_cms) and outer
                grads = level_grads(loss, tensors, retain=outer, create=create)
        per_layer = [{lv: g for (layer, lv), g in grads.items() if layer == i} for i in range(len(self.blocks))]
        cms = self.step_levels(state.cms, per_layer, pos, trace)
        keep = min(pos - pos % p for p in first.periods) if self.cfg.cms_grad == "exact" else pos
        return replace(state, cms=cms, window=tuple(s for s in state.window if s.start >= keep))

    def step_levels(self, cms: tuple, grads: list[dict], pos: int, trace: Trace | None) -> tuple:
        """Every layer's CMS step before token `pos` from its gradients (level -> pair), traced."""
        new, steps = [], []
        for i, (blk, c) in enumerate(zip(self.blocks, cms, strict=True)):
            state, done = blk.ffn.step(c, grads[i], pos, i)
            new.append(state)
            steps += done
        if trace is not None:
            record_level_steps(trace, self, steps, pos)
        return tuple(new)

    def _replay(self, state: StreamState, segs: list[Segment], wanted: list[tuple[int, int]]):
        """When a segment of the span has no training graph (inference, or a training call that continues an
        inference state): run the segments again chunk-parallel from the first one's start state, the wanted
        levels' weights as leaves (so their uses have a graph); returns the logits and the segments with their
        uses recorded."""
        leaves = {(i, lv): tuple(w.detach().requires_grad_(True) for w in segs[-1].weights[i][lv]) for i, lv in wanted}
        first = self.blocks[0].ffn
        mixers, outs, replayed = segs[0].mixers, [], []
        for s in segs:
            weights = [
                    tuple(leaves[(i, lv)] if (i, lv) in leaves and s.start >= state.pos - first.level_span(lv)
                          else pair for lv, pair in enumerate(layer))
                    for i, layer in enumerate(s.weights)
                ]  # fmt: skip
            uses = [[] for _ in self.blocks]
            logits, mixers, _ = self.forward_piece(torch.cat(s.tokens, 1), mixers, weights, uses=uses)
            outs.append(logits)
            replayed.append(replace(s, uses=tuple(map(tuple, uses))))
        return torch.cat(outs, 1), replayed
