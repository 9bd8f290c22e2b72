"""Recording a Trace while a model streams (DESIGN.md §2): what happened at each token and level.

The model calls `record_token` after each streamed token and `record_level_steps` after each CMS
update; the mixers describe themselves (`components`, `snapshot`), so nothing here knows their types.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from nested.trace import Trace, UpdateEvent


def record_token(trace: Trace, model, tok: Tensor, logits: Tensor, state, records: list[dict]):
    """Append token `state.pos - 1` of batch item 0; returns the state with this prediction kept (the
    next token is its target: the loss is filled in then)."""
    pos, H = state.pos - 1, model.cfg.n_heads
    with torch.no_grad():
        probs = torch.softmax(logits[0, -1].float(), -1)
        if state.last_probs is not None:  # the previous prediction's target is this token
            loss_prev = float(-torch.log(state.last_probs[int(tok[0, 0])].clamp_min(1e-30)))
            if trace.loss:
                trace.loss[-1] = loss_prev
            else:
                trace.meta["prev_loss"] = loss_prev
        k = min(trace.top_k, probs.numel())
        p, ids = probs.topk(k)
        if "gates" not in trace.meta:  # what each layer's eta / alpha rows hold (Titans: theta_t, 1 - alpha_t)
            trace.meta["gates"] = [{k: list(v) for k, v in blk.mixer.trace_rows.items()} for blk in model.blocks]
        trace.tokens.append(int(tok[0, 0]))
        trace.topk_ids.append(ids.cpu().numpy())
        trace.topk_probs.append(p.cpu().numpy())
        trace.loss.append(float("nan"))
        for name in ("eta", "alpha", "surprise"):
            row = torch.full((model.cfg.n_layers, H), float("nan"))
            for i, rec in enumerate(records):
                if name in rec:
                    row[i] = rec[name][0, -1].float().cpu()
            getattr(trace, name).append(row.numpy())
        width = max(len(blk.mixer.components()) for blk in model.blocks)
        row = torch.full((model.cfg.n_layers, width), float("nan"))
        for i, rec in enumerate(records):
            if "clipped" in rec:
                c = rec["clipped"][0, -1].float().cpu()
                row[i, : c.numel()] = c
        trace.inner_clipped.append(row.numpy())
        for i, blk in enumerate(model.blocks):
            for comp in blk.mixer.components():
                trace.updates.append(UpdateEvent(pos, i, comp, 1))
            snap = blk.mixer.snapshot(state.mixers[i])
            if snap is not None:
                buf = trace.snapshots.setdefault(i, [])
                buf.append((pos, snap))
                if len(buf) > trace.max_snapshots:
                    del buf[0]
    return replace(state, last_probs=probs)


def record_level_steps(trace: Trace, model, steps: list, pos: int) -> None:
    """CMS updates taken before token `pos` (they cover tokens up to pos - 1), from nested.cms.LevelStep."""
    periods = model.blocks[0].ffn.periods
    for s in steps:
        if s.reset:
            parent = model.blocks[s.layer].ffn.parent(s.level)
            trace.updates.append(UpdateEvent(pos - 1, s.layer, f"cms[{s.level}].init", periods[parent]))
        else:
            norm, clipped = float(s.norm), bool(s.clipped)
            trace.updates.append(UpdateEvent(pos - 1, s.layer, f"cms[{s.level}]", periods[s.level], norm, clipped))
