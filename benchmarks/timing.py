"""Timing helpers shared by the benchmark scripts.

The machines these run on are shared and noisy, so two variants are always timed alternately and
compared by the median of their per-pair ratios, never by two separate medians.
"""

from __future__ import annotations

import statistics
import time


def once(fn) -> float:
    """Seconds one call of ``fn`` takes."""
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def paired(a, b, repeat: int) -> tuple[float, float, float]:
    """Run ``a`` and ``b`` alternately ``repeat`` times; return the median time of each and the
    median of the per-pair ratios ``time(a) / time(b)`` (above 1: ``b`` is faster)."""
    ta, tb, ratios = [], [], []
    for _ in range(repeat):
        x, y = once(a), once(b)
        ta.append(x)
        tb.append(y)
        ratios.append(x / y)
    return statistics.median(ta), statistics.median(tb), statistics.median(ratios)
