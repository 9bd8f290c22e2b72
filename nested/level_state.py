"""One level of a stream state, read or reset by its nested.Freeze name ("layer 0 memories",
"layer 1 cms[0]"): how far it moved between two states, and the state with it back at its learned
initial value ("what if this level forgot now", the continual-learning page's reset probe).

A mixer names its own learned tensors (`learned`: its memories and their momentum, never the
convolution window or an attention cache, which hold the tokens themselves), so nothing here knows
a mixer's layout."""

from __future__ import annotations

import math
from dataclasses import replace

from nested.freeze import parse_level
from nested.state import StreamState


def memory_keys(mixer, mixer_state) -> list[str]:
    """The learned tensors of one mixer's state (the mixer's `learned` fields that the state holds)."""
    return [k for k in mixer.learned if getattr(mixer_state, k, None) is not None]


def reset_level(model, state: StreamState, fresh: StreamState, name: str) -> StreamState:
    """`state` with one level back at its value in `fresh` (a new init_state): "layer i memories" resets the
    layer's memory tensors; "layer i cms[l]" resets level l's weights in the stream state and in the open
    segment (and drops the level's half-summed gradient)."""
    layer, level = parse_level(name, model)
    if level is None:
        now, initial = state.mixers[layer], fresh.mixers[layer]
        mix = replace(now, **{k: getattr(initial, k) for k in memory_keys(model.blocks[layer].mixer, now)})
        return replace(state, mixers=_put(state.mixers, layer, mix))
    c, initial = state.cms[layer], fresh.cms[layer].weights[level]
    cms = replace(c, weights=_put(c.weights, level, initial), acc=_put(c.acc, level, None))
    window = state.window
    if window:
        seg = window[-1]
        weights = _put(seg.weights, layer, _put(seg.weights[layer], level, initial))
        window = window[:-1] + (replace(seg, weights=weights),)
    return replace(state, cms=_put(state.cms, layer, cms), window=window)


def level_change(model, a: StreamState, b: StreamState) -> dict[str, float]:
    """How far each level moved from state a to state b: the Frobenius norm of the change of its
    tensors (memories: every learned tensor of the layer's mixer; CMS level: both weight matrices)."""
    out = {}
    for i, (ma, mb) in enumerate(zip(a.mixers, b.mixers, strict=True)):
        keys = memory_keys(model.blocks[i].mixer, ma)
        if keys:
            moved = sum(float((getattr(mb, k) - getattr(ma, k)).pow(2).sum()) for k in keys)
            out[f"layer {i} memories"] = math.sqrt(moved)
    for i, (ca, cb) in enumerate(zip(a.cms or (), b.cms or (), strict=True)):
        for lv, (pa, pb) in enumerate(zip(ca.weights, cb.weights, strict=True)):
            out[f"layer {i} cms[{lv}]"] = math.sqrt(
                sum(float((y - x).pow(2).sum()) for x, y in zip(pa, pb, strict=True))
            )
    return out


def _put(items: tuple, i: int, value) -> tuple:
    return items[:i] + (value,) + items[i + 1 :]
