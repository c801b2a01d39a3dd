"""Timing the paths against each other on a shared, noisy machine.

Every round runs each path once, in an order rotated by one every round, so no path always
follows the same neighbour. A path's speed is the median over rounds of
``time(reference) / time(path)`` *within the round*: drift of the machine's load touches both
sides of each ratio alike. The spread is the middle half of those per-round ratios; the fastest
path is named only when the lower end of its middle half clears the upper end of every other
path's, and otherwise the paths it cannot be told from are listed with it.
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass, field

import numpy as np

NOISY = 0.15        # a middle half wider than 15% of the median ratio: say the machine is noisy
MIN_ROUNDS = 5      # fewer rounds than this: no spread worth the name, so no winner


@dataclass
class Result:
    name: str
    command: str
    times: list = field(default_factory=list)      # seconds per round
    build_s: float = 0.0
    compile_s: float | None = None
    deviation: float | None = None                 # max |out - ref| / max |ref|
    peak_bytes: int | None = None
    unavailable: str | None = None                 # why the path did not run
    memory_note: str | None = None                 # why its peak memory was not measured
    speedup: float | None = None                   # median of per-round ref/path
    low: float | None = None                       # 25th percentile of the ratios
    high: float | None = None                      # 75th percentile

    @property
    def median_s(self) -> float | None:
        return statistics.median(self.times) if self.times else None

    @property
    def spread(self) -> float | None:
        """The middle half of the per-round ratios, relative to their median."""
        if self.speedup is None:
            return None
        return (self.high - self.low) / self.speedup

    def to_json(self) -> dict:
        def finite(v):
            return v if v is None or np.isfinite(v) else None    # JSON has no inf or NaN
        return {"path": self.name, "command": self.command, "median_ms":
                None if self.median_s is None else self.median_s * 1e3,
                "speedup": self.speedup, "speedup_p25": self.low, "speedup_p75": self.high,
                "build_s": self.build_s, "compile_s": self.compile_s,
                "deviation": finite(self.deviation), "peak_bytes": self.peak_bytes,
                "rounds": len(self.times), "unavailable": self.unavailable}


def deviation(out: list, ref: list) -> float:
    """The largest difference between two paths' outputs, relative to the reference's finite
    scale; ``inf`` when they differ in number or shape, or where one is NaN or infinite and the
    other is not the same."""
    if len(out) != len(ref):
        return float("inf")
    worst = 0.0
    for a, b in zip(out, ref):
        a = np.asarray(a, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        if a.shape != b.shape:
            return float("inf")
        if not a.size:
            continue
        fa, fb = np.isfinite(a), np.isfinite(b)
        if not np.array_equal(fa, fb) or not np.array_equal(a[~fa], b[~fb], equal_nan=True):
            return float("inf")
        if not fb.any():
            continue
        scale = max(float(np.max(np.abs(b[fb]))), 1e-12)
        worst = max(worst, float(np.max(np.abs(a[fa] - b[fb]))) / scale)
    return worst


def time_rounds(calls: list, syncs: list, rounds: int | None, budget_s: float,
                min_rounds: int = 5, max_rounds: int = 200,
                sample_s: float = 0.002) -> list[list[float]]:
    """Seconds per call of each path in each round: ``out[path][round]``. Two warm-up calls
    each first; a call shorter than ``sample_s`` is repeated within its sample so the clock
    measures the model rather than itself; with ``rounds=None`` as many rounds as fit in
    ``budget_s`` (at least ``min_rounds``)."""
    n = len(calls)
    cost, inner = 0.0, []
    for call, sync in zip(calls, syncs):
        call()
        sync()
        t = time.perf_counter()
        call()
        sync()
        one = time.perf_counter() - t
        inner.append(max(1, min(1000, int(sample_s / max(one, 1e-9)))))
        cost += one * inner[-1]
    if rounds is None:
        rounds = int(min(max_rounds, max(min_rounds, budget_s / max(cost, 1e-9))))
    out = [[] for _ in range(n)]
    gc_was = gc.isenabled()
    gc.disable()             # a collection inside one path's call would land on that path alone
    try:
        for r in range(rounds):
            for k in range(n):
                i = (k + r) % n
                call, sync, m = calls[i], syncs[i], inner[i]
                t = time.perf_counter()
                for _ in range(m):
                    call()
                sync()
                out[i].append((time.perf_counter() - t) / m)
    finally:
        if gc_was:
            gc.enable()
    return out


def ratios(results: list[Result], ref: Result) -> None:
    """Fill each result's speedup over ``ref`` from the per-round ratios."""
    for r in results:
        if not r.times:
            continue
        per = sorted(a / b for a, b in zip(ref.times, r.times))
        r.speedup = statistics.median(per)
        q = statistics.quantiles(per, n=4, method="inclusive") if len(per) > 1 else [per[0]] * 3
        r.low, r.high = q[0], q[2]


def verdict(results: list[Result]) -> tuple[Result | None, list[Result], bool]:
    """The fastest path, the paths within the noise of it, and whether the machine was noisy
    (some path's middle half wider than :data:`NOISY`). Below :data:`MIN_ROUNDS` rounds no
    path is fastest."""
    ran = [r for r in results if r.speedup is not None]
    if not ran or min(len(r.times) for r in ran) < MIN_ROUNDS:
        return None, [], False
    best = max(ran, key=lambda r: r.speedup)
    ties = [r for r in ran if r is not best and r.high >= best.low]
    noisy = any(r.spread > NOISY for r in ran)
    return best, ties, noisy


def most_exact(best: Result, ties: list) -> Result:
    """Of paths that cannot be told apart in speed, the one whose outputs are closest to the
    reference (ties: the fastest)."""
    return min([best] + list(ties), key=lambda r: (r.deviation or 0.0, -r.speedup))
