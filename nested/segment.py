"""One CMS segment of Hope's training as one compiled graph (`NestedLM.compile_segments`).

The eager schedule of nested.model takes three passes over every segment of G = gcd(C_l) tokens: the
forward of each layer (self-modifying Titans piece, CMS levels), then a backward of the segment's summed
next-token loss to every CMS matmul output (the level weights' gradients of Eq. 71), then, at the end of
the sequence, the outer backward. Here the first two are one pure function of tensors, `segment_core`:
the forward of every layer and the head, the segment's loss, and its gradient with respect to each
level's per-item weights by `torch.func.vjp`. Compiled whole, the segment pass keeps only the paths
from the level weights to the loss (with `compile_chunks` alone, each compiled chunk's backward forms
every state and parameter gradient in the segment pass too), and the per-layer Python glue and host
syncs are gone.

Same function as the eager schedule (`_forward_piece` + `_segment_grads` + `_resolve`), first-order CMS
only: the level matmuls send the outer gradient of every use to the meta-learned initial weights
(`nested.cms.TracedItemLinear`, the first-order reading of docs/FIDELITY.md), and torch.func takes the
segment's gradient with respect to the per-item weights themselves. Tests (tests/test_segment.py)
compare logits, every parameter gradient and the carried state.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from nested.selfmod import SelfModifyingTitans, memories_finite, split_points


def supports_segments(model) -> bool:
    """Every mixer self-modifying, every FFN a first-order CMS: what `segment_core` is written for."""
    cfg = model.cfg
    return (
        bool(model.segment)
        and not cfg.cms_second_order
        and all(isinstance(b.mixer, SelfModifyingTitans) for b in model.blocks)
    )


def segment_core(model, tok: Tensor, targets: Tensor, layer_args: list[list], cms_weights: list[list[Tensor]]):
    """One segment, tokens `tok` (B, G) with next-token `targets` (B, G), from each layer's `core_args`
    and its CMS level weights [up_0.., down_0..] (per-item values). Returns the logits (B, G, V), each
    layer's `_chunk_core` outputs, the gradients d(sum of the segment's losses)/d(level weights) in the
    same layout, and one flag: every new memory is finite."""

    absent = []  # which `_chunk_core` outputs are None (momentum off): vjp's aux holds tensors only

    def forward(weights):
        x, outs = model.embed(tok), []
        for i, blk in enumerate(model.blocks):
            y, out = blk.mixer.piece_core(blk.norm(x), layer_args[i])
            x = x + y
            L = blk.ffn.n_levels
            x = blk.ffn(x, weights[i][:L], weights[i][L:], traced=True)
            absent.append([t is None for t in out])
            outs.append([t for t in out if t is not None])
        logits = model.head(model.norm_f(x))
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum")
        return loss, (logits, outs)

    loss, vjp_fn, (logits, outs) = torch.func.vjp(forward, cms_weights, has_aux=True)
    (grads,) = vjp_fn(torch.ones_like(loss))
    outs = [[None if gone else next(ts) for gone in mask] for mask, ts in zip(absent, map(iter, outs), strict=True)]
    return logits, outs, [[g.detach() for g in layer] for layer in grads], memories_finite(outs)


def fits_segment(model, pos: int, n: int, have_next: bool) -> bool:
    """Whether the piece [pos, pos + n) can take the compiled segment step: one whole segment, its last
    target in the same call, and no chunk boundary of any layer inside it."""
    cfg = model.cfg
    return (
        n == model.segment
        and pos % model.segment == 0
        and have_next
        and len(split_points(pos, n, [cfg.chunk_size, cfg.proj_chunk])) == 1
    )


def run_segment(model, tok: Tensor, targets: Tensor, state: dict, trace) -> Tensor:
    """The compiled segment step on `state` (updated in place like `_forward_piece` + `_resolve`):
    every layer's memories advance, each CMS level accumulates the segment's gradient and steps when its
    period ends. Returns the logits."""
    layer_args = []
    for blk, st in zip(model.blocks, state["mixer"], strict=True):
        args = blk.mixer.core_args(st)
        if not args[6].requires_grad:  # the first conv state: one graph for every segment
            args[6] = args[6].detach().requires_grad_(True)
        layer_args.append(args)
    weights = [c["up"] + c["down"] for c in state["cms"]]
    logits, outs, grads, finite = model._segment_compiled(tok, targets, layer_args, weights)
    n = tok.shape[1]
    state["mixer"], _ = model._advance_mixers(state["mixer"], n, layer_args, outs, finite)
    state["pos"] += n
    new_cms = []
    for layer, (c, blk, g) in enumerate(zip(state["cms"], model.blocks, grads, strict=True)):
        L = blk.ffn.n_levels
        new_cms.append(model._step_levels(blk.ffn, c, g[:L], g[L:], state["pos"], layer, trace))
    state["cms"] = new_cms
    return logits
