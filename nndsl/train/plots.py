"""Loss, metric and learning-rate curves as PNG files (matplotlib, Agg backend)."""

from __future__ import annotations

import io
from pathlib import Path

from nndsl.fsutil import atomic_write_bytes


def write_plots(folder: Path, history: list, lrs: list | None = None) -> list[Path]:
    """One PNG per quantity: ``loss.png``, one per metric (train and validation curves), and
    ``lr.png``. Returns the files written."""
    if not history:
        return []
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    keys = []
    for r in history:
        for k in r:
            for split in ("train_", "val_", "test_"):
                if k.startswith(split) and k[len(split):] not in keys:
                    keys.append(k[len(split):])
    written = []
    epochs = [r["epoch"] for r in history]
    for key in keys:
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        for split, style in (("train", "-o"), ("val", "-s")):
            ys = [r.get(f"{split}_{key}") for r in history]
            pts = [(e, y) for e, y in zip(epochs, ys) if isinstance(y, (int, float))]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=split,
                        markersize=3)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.set_title(key)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
        written.append(_save(fig, folder / f"{key}.png"))
        plt.close(fig)
    if lrs:
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        ax.plot(range(len(lrs)), lrs)
        ax.set_xlabel("step")
        ax.set_ylabel("learning rate")
        ax.set_title("learning rate")
        ax.grid(alpha=0.3)
        written.append(_save(fig, folder / "lr.png"))
        plt.close(fig)
    return written


def _save(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())
    return path
