"""The nest page's raster run: the first tokens of the first sample streamed through a model, streamed in
pieces so the page can show progress (and a click, which reruns the page, stops it between pieces), kept
in a small process-wide cache of read-only traces (no memory snapshots: the raster needs none)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import torch

import nested
from app.models import encode_text
from app.presets import FIRST_SAMPLE, shipped_run
from app.samples import sample_texts

PIECE = 128  # tokens streamed between two progress reports
_CACHE: OrderedDict[tuple, nested.Trace] = OrderedDict()
_CACHE_SIZE = 32
_LOCK = threading.Lock()


def nest_trace(name: str, seed: int, n_tokens: int, model: Callable[[], nested.NestedLM],
               progress: Callable[[int, int], None] | None = None) -> nested.Trace:  # fmt: skip
    """The trace of the first `n_tokens` bytes of the first sample through `name`: from the shipped
    precomputed run when there is one, else streamed `PIECE` tokens at a time (`progress(done, total)`
    after each). Callers must not change the returned trace (it is shared)."""
    key = (name, seed, n_tokens)
    with _LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    shipped = shipped_run((name, seed, "sample", FIRST_SAMPLE, ()))
    if shipped is not None and len(shipped) >= n_tokens:
        trace = shipped.head(n_tokens)
    else:
        tokens = encode_text(sample_texts()[FIRST_SAMPLE], limit=n_tokens)
        m, state, trace = model(), None, None
        for a in range(0, tokens.shape[1], PIECE):
            with torch.no_grad():
                out = m.stream(tokens[:, a : a + PIECE], state=state, trace=True)
            state, trace = out.state, out.trace if trace is None else trace.extend(out.trace)
            if progress is not None:
                progress(min(a + PIECE, tokens.shape[1]), tokens.shape[1])
    trace.snapshots = {}
    with _LOCK:
        _CACHE[key] = trace
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return trace
