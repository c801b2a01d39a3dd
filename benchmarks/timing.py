"""Timing helpers shared by the benchmark scripts.

The machines these run on are shared and noisy, so two variants are always timed alternately and
compared by the median of their per-pair ratios, never by two separate medians.
"""

from __future__ import annotations

import os
import statistics
import time

import torch


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


class OtherLoad:
    """How many cores other processes kept busy while the block ran (Linux: ``/proc/stat``
    less this process's own CPU time; None elsewhere). With torch using every core, one busy
    neighbour stalls each parallel region on its descheduled thread: small models suffer most,
    and even interleaved ratios drift, so the tables print this next to them."""

    def __enter__(self):
        self._start = self._sample()
        return self

    def __exit__(self, *exc):
        end = self._sample()
        self.cores = None
        if self._start is not None and end is not None:
            (b0, own0, t0), (b1, own1, t1) = self._start, end
            self.cores = max(0.0, ((b1 - b0) - (own1 - own0)) / max(1e-9, t1 - t0))
        return False

    @staticmethod
    def _sample():
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)   # less idle
        t = os.times()
        return busy / os.sysconf("SC_CLK_TCK"), t.user + t.system, t.elapsed

    def describe(self, consequence: str) -> str:
        """A caption line: the cores others kept busy, and ``consequence`` when that is
        enough to distort a multi-threaded torch run."""
        if self.cores is None:
            return ""
        text = (f"\nother processes kept {self.cores:.1f} of {os.cpu_count()} cores busy "
                f"during the timing")
        if self.cores >= 0.5 and torch.get_num_threads() > 1:
            text += f": [yellow]{consequence}; compare with --threads 1[/yellow]"
        return text
