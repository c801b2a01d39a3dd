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


def write_image_grid(path: Path, samples) -> Path:
    """Samples as a PNG grid: [n, C, H, W] images (1 or 3 channels), or [n, F] with a square
    number of features shown as F = H × H gray images; values are scaled to their range."""
    import math

    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from nndsl.errors import ArgumentError
    x = samples.detach().float().cpu()
    if x.dim() == 2 and math.isqrt(x.shape[1]) ** 2 == x.shape[1]:
        s = math.isqrt(x.shape[1])
        x = x.reshape(-1, 1, s, s)
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ArgumentError(f"samples of shape {list(samples.shape)} are not images",
                            code="E1224", hint="write them to an .npz file instead (-o X.npz)")
    lo, hi = float(x.min()), float(x.max())
    x = (x - lo) / max(hi - lo, 1e-8)
    n = x.shape[0]
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols, rows), dpi=80, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            img = x[i].permute(1, 2, 0).numpy()
            ax.imshow(img[..., 0] if img.shape[2] == 1 else img, cmap="gray", vmin=0, vmax=1)
    fig.tight_layout(pad=0.1)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    try:
        atomic_write_bytes(path, buf.getvalue())
    except (OSError, ValueError) as e:
        from nndsl.fsutil import write_error
        raise write_error(path, e) from None
    return Path(path)
