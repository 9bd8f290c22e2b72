"""The language model every registry entry builds: embed -> n_layers x [mixer, FFN or CMS] -> head.

One function, two schedules (DESIGN.md §2): `model(tokens)` runs chunk-parallel matmuls,
`model.stream(tokens, state)` runs the literal per-token recurrences; both compute the same logits.

Block wiring (PAPER.md §6 [INFERENCE], modelled on Titans): h = x + Mixer(Norm(x)), then the FFN
(pre-norm residual MLP) or the CMS chain (each level pre-norm residual), then a final norm and the head.

CMS levels learn inside the sequence from the next-token loss (Eq. 71). The run is cut into segments of
G = gcd(C_l) tokens. A segment's logits wait until the token after it arrives (the target of its last
position); then the summed loss of the segment is differentiated with respect to the level weights used
in that segment, the gradients are added to each level's accumulator, and a level whose period ends
there takes its step before the next token is read. A partial segment and partial level chunks carry
over in the state to the next call. Generated tokens never reach this path (they are not targets).
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch._functorch.config as functorch_config
import torch.nn.functional as F
from torch import Tensor, nn

from nested.attention import Attention
from nested.cms import CMS, MLP, segment_pass, weight_grads
from nested.config import ModelConfig
from nested.deltanet import DeltaNetMixer
from nested.layers import RMSNorm, check_finite
from nested.segment import fits_segment, run_segment, segment_core, supports_segments
from nested.selfmod import SelfModifyingTitans, memories_finite, split_points
from nested.titans import TitansMemory
from nested.trace import Trace, UpdateEvent


def make_mixer(cfg: ModelConfig) -> nn.Module:
    if cfg.mixer == "selfmod":
        return SelfModifyingTitans(cfg)
    if cfg.mixer == "attention":
        return Attention(cfg)
    if cfg.mixer == "titans":
        return TitansMemory(cfg)
    if cfg.mixer == "deltanet":
        return DeltaNetMixer(cfg, rule=cfg.extra.get("rule", "delta"))
    if cfg.mixer == "linear":
        return DeltaNetMixer(cfg, rule="hebbian")
    raise ValueError(f"unknown mixer {cfg.mixer!r}")


@dataclass
class StreamResult:
    logits: Tensor  # (B, T, V)
    state: dict  # pass back in to continue the stream
    trace: Trace | None = None


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm = RMSNorm(cfg.d_model)
        self.mixer = make_mixer(cfg)
        self.ffn = CMS(cfg) if cfg.ffn == "cms" else MLP(cfg)


class NestedLM(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layers)])
        self.norm_f = RMSNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.segment = math.gcd(*cfg.cms_periods) if cfg.ffn == "cms" else None
        self._token_compiled = None  # set by compile_streaming
        self._segment_compiled = None  # set by compile_segments

    @property
    def device(self) -> torch.device:
        return self.embed.weight.device

    # -- state -----------------------------------------------------------------------------------
    def init_state(self, batch: int) -> dict:
        """Fresh state from the meta-learned initial memories: one per batch item, nothing shared."""
        dev, dt = self.device, self.embed.weight.dtype
        return {
            "pos": 0,
            "mixer": [b.mixer.init_state(batch, dev, dt) for b in self.blocks],
            "cms": [b.ffn.init_state(batch) if self.segment else None for b in self.blocks],
            "pending": None,
            "batch": batch,
        }

    # -- public API ------------------------------------------------------------------------------
    def forward(self, tokens: Tensor) -> Tensor:
        """(B, T) int64 -> (B, T, V) logits; the chunk-parallel schedule from a fresh state."""
        return self._run(tokens, None, stepwise=False, trace=None)[0]

    def run(self, tokens: Tensor, state: dict | None = None) -> StreamResult:
        """The chunk-parallel schedule with explicit state in and out (streaming in large pieces)."""
        logits, state = self._run(tokens, state, stepwise=False, trace=None)
        return StreamResult(logits, state, None)

    def stream(self, tokens: Tensor, state: dict | None = None, trace: bool = True, top_k: int = 5) -> StreamResult:
        """The same function one token at a time; records a Trace of batch item 0 when `trace`."""
        tr = Trace(n_layers=self.cfg.n_layers, top_k=top_k) if trace else None
        logits, state = self._run(tokens, state, stepwise=True, trace=tr)
        return StreamResult(logits, state, tr)

    def compile_streaming(self) -> NestedLM:
        """Opt in to torch.compile for the one-token step. Hope (every mixer self-modifying): the whole
        token through every layer, CMS levels and head (`_token_all`), one graph; other models: the
        one-token core of each self-modifying layer. Positions and chunk boundaries stay in eager
        Python, so nothing recompiles as the stream advances; the first streamed token pays the
        compilation (about 20 s on a 2-core CPU). Same function: tests compare it with eager."""
        if all(isinstance(b.mixer, SelfModifyingTitans) for b in self.blocks):
            if self._token_compiled is None:
                self._token_compiled = torch.compile(self._token_all, dynamic=False)
            return self
        for blk in self.blocks:
            if isinstance(blk.mixer, SelfModifyingTitans) and not hasattr(
                blk.mixer._token_core, "_torchdynamo_orig_callable"
            ):
                blk.mixer._token_core = torch.compile(blk.mixer._token_core, dynamic=False)
        return self

    def _token_all(self, tok: Tensor, layer_args: list[tuple], cms: list | None):
        """One token through every self-modifying layer, its CMS levels (or FFN) and the head: a pure
        function of tensors, what `compile_streaming` compiles for Hope. Returns the logits, each layer's
        `_token_core` outputs, and one flag: every new memory is finite."""
        x = self.embed(tok)
        outs = []
        for i, blk in enumerate(self.blocks):
            # the class's function, not the attribute: a layer may hold its own compiled copy
            out = SelfModifyingTitans._token_core(blk.mixer, blk.norm(x), *layer_args[i])
            x = x + out[0]
            x = blk.ffn(x, *cms[i]) if cms is not None else blk.ffn(x)
            outs.append(out)
        return self.head(self.norm_f(x)), outs, memories_finite(outs)

    def _token_fused(self, tok: Tensor, state: dict) -> tuple[Tensor, list[dict]]:
        """`_forward_piece`'s layer loop for one token through the compiled `_token_all`."""
        mixers = list(state["mixer"])
        args = [blk.mixer.core_args(st) for blk, st in zip(self.blocks, mixers, strict=True)]
        cms = [(c["up"], c["down"]) for c in state["cms"]] if self.segment else None
        logits, outs, finite = self._token_compiled(tok, args, cms)
        state["mixer"], records = self._advance_mixers(mixers, 1, args, outs, finite)
        return logits, records

    def _advance_mixers(self, mixers: list[dict], n: int, args: list, outs: list, finite: Tensor):
        """Every self-modifying layer's state after n tokens, and its records, from its compiled core's
        inputs and outputs. `finite` is `memories_finite` (one host sync); when it is false the slow
        check names the layer and the memory."""
        all_finite, new, records = bool(finite), [], []
        for i, blk in enumerate(self.blocks):
            st, rec = blk.mixer.next_state(mixers[i], n, args[i], outs[i])
            if not all_finite:
                check_finite({k: st[k] for k in ("W1", "W2")}, i, "selfmod")
            new.append(st)
            records.append(rec)
        return new, records

    def compile_chunks(self) -> NestedLM:
        """Opt in to torch.compile for the chunk-parallel step of every self-modifying layer (its pure
        tensor function `_chunk_core`: forward and, through AOTAutograd, its backward), what training
        and `run` spend most of their time in. One compilation per piece length and grad mode (full
        chunks in training: one); about 30 s on a 2-core CPU, then fused kernels. Same function: tests
        compare logits and every parameter gradient with eager."""
        # the CMS segment pass retains the graph it differentiates: no buffer may be donated to the backward
        functorch_config.donated_buffer = False
        for blk in self.blocks:
            if isinstance(blk.mixer, SelfModifyingTitans) and blk.mixer._chunk_compiled is None:
                blk.mixer._chunk_compiled = torch.compile(blk.mixer._chunk_core, dynamic=False)
        return self

    def compile_segments(self) -> NestedLM:
        """Opt in to torch.compile of Hope's training: each whole CMS segment (every layer's forward, the
        head, the segment's loss and its level-weight gradients) is one graph, forward and backward
        (nested.segment); pieces that are not a whole segment take `compile_chunks`' path. Same
        function: tests compare logits and every parameter gradient with eager. Other models: only
        `compile_chunks`."""
        self.compile_chunks()
        if supports_segments(self) and self._segment_compiled is None:
            self._segment_compiled = torch.compile(self._segment_core, fullgraph=True, dynamic=False)
        return self

    def _segment_core(self, tok, targets, layer_args, weights):
        """nested.segment.segment_core as a bound method: what `compile_segments` compiles."""
        return segment_core(self, tok, targets, layer_args, weights)

    # -- the loop --------------------------------------------------------------------------------
    def _check_tokens(self, tokens: Tensor) -> Tensor:
        if tokens.dim() == 1:
            tokens = tokens[None]
        if tokens.dim() != 2 or tokens.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"tokens must be a (B, T) integer tensor, got {tuple(tokens.shape)} {tokens.dtype}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.cfg.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.cfg.vocab_size})")
        return tokens.long().to(self.device)

    def _run(self, tokens: Tensor, state: dict | None, stepwise: bool, trace: Trace | None):
        tokens = self._check_tokens(tokens)
        B, T = tokens.shape
        state = self.init_state(B) if state is None else dict(state)
        if state["pending"] is not None:  # never mutate the caller's state: it may be reused
            state["pending"] = {k: list(v) if isinstance(v, list) else v for k, v in state["pending"].items()}
        if state["batch"] != B:
            raise ValueError(f"state is for batch {state['batch']}, tokens have batch {B}")
        # Training (an outer graph is wanted) vs inference: frozen or no-grad weights keep no graph.
        outer_grad = torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters())
        pos0 = state["pos"]
        if stepwise:
            pieces = [(t, t + 1) for t in range(T)]
        elif self.segment:
            pieces = split_points(pos0, T, [self.segment])
        else:
            pieces = [(0, T)]
        outs = []
        # Inference runs without a graph; a finished CMS segment is replayed chunk-parallel with a graph
        # (same function, far fewer autograd nodes than the per-token steps) to take its gradients.
        with nullcontext() if outer_grad else torch.no_grad():
            for a, b in pieces:
                tok = tokens[:, a:b]
                if self.segment and state["pos"] % self.segment == 0:
                    if state["pending"] is not None:
                        self._resolve(state, tok[:, 0], outer_grad, trace)
                    if (self._segment_compiled is not None and outer_grad and not stepwise
                            and fits_segment(self, state["pos"], b - a, b < T)):  # fmt: skip
                        outs.append(run_segment(self, tok, tokens[:, a + 1 : b + 1], state, trace))
                        continue
                    self._open_segment(state, outer_grad)
                io = state["pending"]["io"] if self.segment and outer_grad else None
                logits = self._forward_piece(tok, state, stepwise, trace, io)
                if self.segment:
                    if outer_grad:
                        state["pending"]["logits"].append(logits)
                    state["pending"]["tokens"].append(tok)
                outs.append(logits if outer_grad else logits.detach())
        if trace is not None and T:
            trace.meta["start"] = pos0
        return torch.cat(outs, 1) if outs else tokens.new_zeros(B, 0, self.cfg.vocab_size).float(), state

    def _forward_piece(self, tok: Tensor, state: dict, stepwise: bool, trace: Trace | None,
                       io: list | None = None, bases: list | None = None) -> Tensor:  # fmt: skip
        """One piece through every layer. `io` collects each CMS level's matmul inputs and outputs per
        layer (for the segment's weight gradients); `bases` are the replay's outer-gradient anchors."""
        if self._token_compiled is not None and tok.shape[1] == 1 and io is None and not torch.is_grad_enabled():
            logits, records = self._token_fused(tok, state)
            state["pos"] += 1
            if trace is not None:
                self._record_token(trace, tok, logits, state, records)
            return logits
        x = self.embed(tok)
        mixers, records = list(state["mixer"]), []
        if io is not None:
            io.append([[] for _ in self.blocks])
        for i, blk in enumerate(self.blocks):
            h, mixers[i], rec = blk.mixer(blk.norm(x), mixers[i], stepwise, layer=i)
            records.append(rec)
            x = x + h
            if self.segment:
                cms = state["cms"][i]
                record = io[-1][i] if io is not None else None
                x = blk.ffn(x, cms["up"], cms["down"], record, bases[i] if bases is not None else None)
            else:
                x = blk.ffn(x)
        logits = self.head(self.norm_f(x))
        state["mixer"] = mixers
        state["pos"] += tok.shape[1]
        if trace is not None:
            self._record_token(trace, tok, logits, state, records)
        return logits

    # -- CMS segments ----------------------------------------------------------------------------
    def _open_segment(self, state: dict, outer_grad: bool) -> None:
        """Start collecting a segment: its logits and CMS matmul records (training), or its start
        state for the replay in `_segment_grads` (inference)."""
        state["pending"] = {"logits": [], "tokens": [], "io": [], "start": state["pos"]}
        if not outer_grad:
            state["pending"]["start_state"] = {"mixer": _detach(state["mixer"]), "cms": state["cms"]}

    def _segment_grads(self, state: dict, next_token: Tensor, outer_grad: bool) -> list[Tensor]:
        """d(summed next-token loss of the segment) / d(level weights used in it), per tensor: the
        cotangents of every CMS matmul output in the segment, turned into per-item weight gradients."""
        pend = state["pending"]
        toks = torch.cat(pend["tokens"] + [next_token[:, None]], 1)
        second = self.cfg.cms_second_order and outer_grad
        if outer_grad:
            logits, io = torch.cat(pend["logits"], 1), pend["io"]
        else:  # replay the segment from its start state, chunk-parallel, with a graph to the weights
            start, io = pend["start_state"], []
            bases = [
                [(u.detach().requires_grad_(True), w.detach().requires_grad_(True))
                 for u, w in zip(blk.ffn.up0, blk.ffn.down0, strict=True)]
                for blk in self.blocks
            ]  # fmt: skip
            replay = {"pos": pend["start"], "mixer": start["mixer"], "cms": start["cms"], "pending": None,
                      "batch": toks.shape[0]}  # fmt: skip
            with torch.enable_grad():
                logits = self._forward_piece(toks[:, :-1], replay, stepwise=False, trace=None, io=io, bases=bases)
        outputs = [y for piece in io for layer in piece for rec in layer for y in (rec[1], rec[3])]
        with torch.enable_grad():
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), toks[:, 1:].reshape(-1), reduction="sum")
            # retain in training: the outer backward and a branch resumed from the same state need it
            with segment_pass():
                cot = torch.autograd.grad(
                    loss, outputs, retain_graph=outer_grad, create_graph=second, allow_unused=True
                )
        grads, k = {}, 0  # (layer, level) -> (g_up, g_down), summed over the segment's pieces
        for piece in io:
            for layer, recs in enumerate(piece):
                for lv, rec in enumerate(recs):
                    g = weight_grads(rec, cot[k], cot[k + 1])
                    k += 2
                    old = grads.get((layer, lv))
                    grads[(layer, lv)] = g if old is None else (old[0] + g[0], old[1] + g[1])
        out = []
        for layer, blk in enumerate(self.blocks):
            L = blk.ffn.n_levels
            pairs = [grads[(layer, lv)] for lv in range(L)]
            out += [p[0] if second else p[0].detach() for p in pairs] + [
                p[1] if second else p[1].detach() for p in pairs
            ]
        return out

    def _resolve(self, state: dict, next_token: Tensor, outer_grad: bool, trace: Trace | None) -> None:
        """The segment's last target has arrived: sum its next-token losses, take the gradients with
        respect to its level weights, accumulate them, and step every level whose period ends here."""
        grads = self._segment_grads(state, next_token, outer_grad)
        end = state["pos"]
        new_cms = []
        gi = 0
        for layer, (c, blk) in enumerate(zip(state["cms"], self.blocks, strict=True)):
            L = blk.ffn.n_levels
            g_up, g_down = grads[gi : gi + L], grads[gi + L : gi + 2 * L]
            gi += 2 * L
            new_cms.append(self._step_levels(blk.ffn, c, g_up, g_down, end, layer, trace))
        state["cms"] = new_cms
        state["pending"] = None

    def _step_levels(self, cms: CMS, c: dict, g_up, g_down, end: int, layer: int, trace: Trace | None) -> dict:
        """Accumulate one segment's gradients; step each level whose period ends at token `end`.
        Empty accumulators are None (a level whose period is one segment never copies its gradient)."""
        c = {k: (list(v) if isinstance(v, list) else v) for k, v in c.items()}
        nested = self.cfg.cms_variant == "nested"
        for lv in range(cms.n_levels):
            c["acc_up"][lv] = _add(c["acc_up"][lv], g_up[lv])
            c["acc_down"][lv] = _add(c["acc_down"][lv], g_down[lv])
            if nested:
                c["meta_acc_up"][lv] = _add(c["meta_acc_up"][lv], g_up[lv])
                c["meta_acc_down"][lv] = _add(c["meta_acc_down"][lv], g_down[lv])
        for lv, period in enumerate(cms.periods):
            if end % period:
                continue
            lr = self.cfg.cms_lr * c["lr_scale"][lv]
            g_u, g_d = c["acc_up"][lv], c["acc_down"][lv]
            coeff = -lr * _clip_coeff(g_u, g_d, self.cfg.cms_clip)  # (B, 1, 1): one fused pass per tensor
            c["acc_up"][lv] = c["acc_down"][lv] = None
            if lr:
                c["up"][lv] = torch.addcmul(c["up"][lv], coeff, g_u)
                c["down"][lv] = torch.addcmul(c["down"][lv], coeff, g_d)
                check_finite({f"level{lv}.up": c["up"][lv], f"level{lv}.down": c["down"][lv]}, layer, "cms")
            if trace is not None:
                norm = float(coeff[0].abs().squeeze()) * float(torch.hypot(g_u[0].norm(), g_d[0].norm()))
                trace.updates.append(UpdateEvent(end - 1, layer, f"cms[{lv}]", period, norm))
        if nested:
            for lv in range(cms.n_levels):
                parent = cms.parent(lv)
                if parent is None or end % cms.periods[parent]:
                    continue
                lr = self.cfg.cms_lr * c["lr_scale"][parent]
                g_u, g_d = c["meta_acc_up"][lv], c["meta_acc_down"][lv]
                coeff = -lr * _clip_coeff(g_u, g_d, self.cfg.cms_clip)
                c["meta_up"][lv] = torch.addcmul(c["meta_up"][lv], coeff, g_u)
                c["meta_down"][lv] = torch.addcmul(c["meta_down"][lv], coeff, g_d)
                c["up"][lv], c["down"][lv] = c["meta_up"][lv], c["meta_down"][lv]
                c["meta_acc_up"][lv] = c["meta_acc_down"][lv] = None
                if trace is not None:
                    trace.updates.append(UpdateEvent(end - 1, layer, f"cms[{lv}].init", cms.periods[parent]))
        return c

    # -- tracing ---------------------------------------------------------------------------------
    def _record_token(self, trace: Trace, tok: Tensor, logits: Tensor, state: dict, records: list) -> None:
        H = self.cfg.n_heads
        pos = state["pos"] - 1
        with torch.no_grad():
            probs = torch.softmax(logits[0, -1].float(), -1)
            prev = state.get("last_probs")
            if prev is not None:  # the previous prediction's target is this token
                loss_prev = float(-torch.log(prev[int(tok[0, 0])].clamp_min(1e-30)))
                if trace.loss:
                    trace.loss[-1] = loss_prev
                else:
                    trace.meta["prev_loss"] = loss_prev
            state["last_probs"] = probs
            k = min(trace.top_k, probs.numel())
            p, ids = probs.topk(k)
            trace.tokens.append(int(tok[0, 0]))
            trace.topk_ids.append(ids.cpu().numpy())
            trace.topk_probs.append(p.cpu().numpy())
            trace.loss.append(float("nan"))
            for name in ("eta", "alpha", "surprise"):
                row = torch.full((self.cfg.n_layers, H), float("nan"))
                for i, rec in enumerate(records):
                    if name in rec:
                        row[i] = rec[name][0, -1].float().cpu()
                getattr(trace, name).append(row.numpy())
            for i, blk in enumerate(self.blocks):
                for comp in mixer_components(blk.mixer):
                    trace.updates.append(UpdateEvent(pos, i, comp, 1))
                snap = memory_snapshot(blk.mixer, state["mixer"][i])
                if snap is not None:
                    buf = trace.snapshots.setdefault(i, [])
                    buf.append((pos, snap))
                    if len(buf) > trace.max_snapshots:
                        del buf[0]


def mixer_components(mixer: nn.Module) -> list[str]:
    """The mixer's per-token writers, as named in traces and in nested.levels."""
    if isinstance(mixer, SelfModifyingTitans):
        return list(mixer.names)
    if isinstance(mixer, TitansMemory):
        return ["titans_memory"]
    if isinstance(mixer, DeltaNetMixer):
        return [f"{mixer.rule}_memory"]
    return ["attention_cache"]


def memory_snapshot(mixer: nn.Module, st: dict) -> dict | None:
    """The matrices the app draws for a layer (batch item 0, head 0), float32 numpy: each memory's first
    layer W2 (the one the DGD preconditioner acts on), or the matrix memory itself."""
    if isinstance(mixer, SelfModifyingTitans):
        W2 = st["W2"][0].detach().float().cpu().numpy()
        return {name: W2[m] for m, name in enumerate(mixer.names)}
    if isinstance(mixer, TitansMemory):
        return {"titans_memory": st["W2"][0, 0].detach().float().cpu().numpy()}
    if isinstance(mixer, DeltaNetMixer):
        return {f"{mixer.rule}_memory": st["S"][0].detach().float().cpu().numpy()}
    return None


def _add(acc: Tensor | None, g: Tensor) -> Tensor:
    return g if acc is None else acc + g


def _clip_coeff(a: Tensor, b: Tensor, max_norm: float) -> Tensor:
    """Per-batch-item factor (B, 1, ..., 1) that clips the joint norm of two (B, ...) updates."""
    dims = tuple(range(1, a.dim()))
    norm = torch.hypot(torch.linalg.vector_norm(a, dim=dims), torch.linalg.vector_norm(b, dim=dims))
    return (max_norm / norm.clamp_min(1e-12)).clamp(max=1.0).view((-1,) + (1,) * (a.dim() - 1))


def _detach(obj):
    if isinstance(obj, Tensor):
        return obj.detach()
    if isinstance(obj, dict):
        return {k: _detach(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_detach(v) for v in obj]
    return obj
