"""Summaries the study scripts print: mean ± sample standard deviation over seeds."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def mean_sd(xs: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.mean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0


def fmt_mean_sd(xs: Sequence[float], digits: int = 3, scale: float = 1.0) -> str:
    """'m ± sd' with `digits` decimals, each multiplied by `scale` (100 for percentages)."""
    m, sd = mean_sd(xs)
    return f"{scale * m:.{digits}f} ± {scale * sd:.{digits}f}"
