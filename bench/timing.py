"""What the benches share: the median wall time of a call."""

from __future__ import annotations

import statistics
import time


def median_ms(fn, n: int = 3) -> float:
    """Median over `n` calls of `fn()`, in milliseconds."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(out)
