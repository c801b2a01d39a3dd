"""The Pareto front of a search and its picture.

A trial ``a`` dominates ``b`` when ``a`` is at least as good in every objective and better in
one; the front is the trials no other trial dominates (equal trials are all on it). The picture
shows every trained trial as a point, metric against size (parameters or FLOPs, on a log scale),
with the front of those two as a staircase; it is written atomically and deterministically (no
timestamp in the PNG)."""

from __future__ import annotations

import io
from pathlib import Path

from nndsl.fsutil import atomic_write_bytes


def dominates(a, b, directions) -> bool:
    better = False
    for x, y, d in zip(a, b, directions):
        if d == "minimize":
            x, y = -x, -y
        if x < y:
            return False
        better = better or x > y
    return better


def pareto_front(points: list, directions: list[str]) -> list[int]:
    """The indices of ``points`` (tuples of objective values) that no other point dominates,
    in order."""
    return [i for i, p in enumerate(points)
            if not any(dominates(q, p, directions) for j, q in enumerate(points) if j != i)]


def best_of_front(points: list, front: list[int], directions: list[str]) -> int:
    """The front's trial that is best in the first objective (ties: the next ones, then the
    earlier trial)."""
    def key(i):
        return tuple(-v if d == "maximize" else v for v, d in zip(points[i], directions)) + (i,)
    return min(front, key=key)


def plot_front(path: Path, rows: list[dict], metric: str, size: str, metric_dir: str,
               title: str) -> None:
    """``rows``: ``{"number", "metric", "size", "front"}`` of the trained trials; ``front`` marks
    those on the front of (metric, size)."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    fig = Figure(figsize=(6.4, 4.4), dpi=100)
    ax = fig.add_subplot()
    xs = [r["size"] for r in rows]
    ys = [r["metric"] for r in rows]
    ax.scatter(xs, ys, s=22, color="#9aa5b1", label="trials", zorder=2)
    front = sorted((r for r in rows if r["front"]), key=lambda r: (r["size"], r["metric"]))
    if front:
        fx = [r["size"] for r in front]
        fy = [r["metric"] for r in front]
        ax.step(fx, fy, where="post", color="#d1495b", lw=1.5, zorder=3)
        ax.scatter(fx, fy, s=36, color="#d1495b", label="Pareto front", zorder=4)
        labels: dict = {}
        for r in front:    # trials at one point share one label
            labels.setdefault((r["size"], r["metric"]), []).append(f"#{r['number']}")
        for (x, y), names in labels.items():
            ax.annotate(", ".join(names), (x, y), textcoords="offset points", xytext=(4, 4),
                        fontsize=8)
    if xs and min(xs) > 0 and max(xs) > 100 * min(xs):
        from matplotlib.ticker import FuncFormatter, NullFormatter
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("parameters" if size == "params" else "FLOPs (batch 1)")
    ax.set_ylabel(metric + (" (higher is better)" if metric_dir == "maximize"
                            else " (lower is better)"))
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if rows:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    atomic_write_bytes(path, buf.getvalue())
