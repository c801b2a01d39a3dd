"""Pictures of explanations, as PNG (matplotlib's Agg backend; no timestamps or version in the
files, so the same results give the same bytes), each written atomically:

- ``METHOD.INPUT.png``: a heatmap over each sample of an image input (the input in grey, the
  attribution over it; red raises the score, blue lowers it), or over the features of a table
  (samples x features) with a bar chart of the mean |attribution| per feature;
- ``grad_cam.LAYER.png``: the layer's map, upsampled over the input;
- ``attention.png``: one grid per sample shown: a row per attention node, a column per head;
- ``permutation.png``: a bar chart of feature importances with their spread over shuffles;
- ``robust.png``: accuracy against the radius, a line per attack.
"""

from __future__ import annotations

import io
from pathlib import Path

from nndsl.fsutil import atomic_write_bytes

MAX_PANELS = 16      # samples drawn per picture (the .npz holds them all)


def _plt():
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: Path) -> Path:
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:120]


def _image(x):
    """[C, H, W] or [H, W] as something imshow draws: grey for one channel, RGB for three."""
    import numpy as np
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 3:
        x = x[0] if x.shape[0] != 3 else x.transpose(1, 2, 0)
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def _heat(a):
    import numpy as np
    a = np.asarray(a, dtype=np.float64)
    return a.sum(0) if a.ndim == 3 else a


def image_heatmaps(path: Path, images, attrs, title: str, captions=None) -> Path:
    """One panel per sample: the image in grey, the attribution over it (diverging colours,
    symmetric about zero, scaled per panel)."""
    import numpy as np
    plt = _plt()
    n = min(len(images), MAX_PANELS)
    cols = min(n, 8)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(1.8 * cols, 1.9 * rows + 0.4), dpi=100,
                             squeeze=False)
    for i in range(rows * cols):
        ax = axes[i // cols][i % cols]
        ax.axis("off")
        if i >= n:
            continue
        heat = _heat(attrs[i])
        img = _image(images[i])
        if heat.shape != img.shape[:2]:
            heat = _resize(heat, img.shape[:2])
        m = float(np.abs(heat).max()) or 1.0
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, interpolation="nearest")
        if float(heat.min()) >= 0:     # a map of magnitudes (saliency, Grad-CAM)
            ax.imshow(heat, cmap="inferno", vmin=0, vmax=m, alpha=0.6, interpolation="nearest")
        else:
            ax.imshow(heat, cmap="bwr", vmin=-m, vmax=m, alpha=0.6, interpolation="nearest")
        if captions is not None:
            ax.set_title(captions[i], fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def _resize(a, shape):
    import numpy as np
    rows = (np.arange(shape[0]) * a.shape[0] // shape[0])
    cols = (np.arange(shape[1]) * a.shape[1] // shape[1])
    return a[rows][:, cols]


def table_heatmap(path: Path, attrs, title: str, names=None, captions=None) -> Path:
    """Samples x features (diverging colours), and the mean |attribution| of each feature."""
    import numpy as np
    plt = _plt()
    a = np.asarray(attrs, dtype=np.float64).reshape(len(attrs), -1)[:MAX_PANELS * 4]
    f = a.shape[1]
    names = names or [str(j) for j in range(f)]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(6, 0.28 * f + 2), 7), dpi=100)
    m = float(np.abs(a).max()) or 1.0
    im = top.imshow(a, cmap="bwr", vmin=-m, vmax=m, aspect="auto", interpolation="nearest")
    top.set_ylabel("sample")
    top.set_xticks(range(f))
    top.set_xticklabels(names, rotation=90, fontsize=6)
    if captions is not None and len(captions) >= a.shape[0]:
        top.set_yticks(range(a.shape[0]))
        top.set_yticklabels(captions[:a.shape[0]], fontsize=6)
    fig.colorbar(im, ax=top)
    bottom.bar(range(f), np.abs(a).mean(0), color="tab:blue")
    bottom.set_xticks(range(f))
    bottom.set_xticklabels(names, rotation=90, fontsize=6)
    bottom.set_ylabel("mean |attribution|")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def bar_chart(path: Path, values, errors, title: str, names=None, ylabel: str = "") -> Path:
    """Feature importances, largest first, with their spread."""
    import numpy as np
    plt = _plt()
    v = np.asarray(values, dtype=np.float64)
    e = np.asarray(errors, dtype=np.float64)
    order = np.argsort(-v, kind="stable")[:60]
    names = names or [str(j) for j in range(len(v))]
    fig, ax = plt.subplots(figsize=(max(6, 0.3 * len(order) + 2), 4.5), dpi=100)
    ax.bar(range(len(order)), v[order], yerr=e[order], color="tab:blue", capsize=2)
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels([names[j] for j in order], rotation=90, fontsize=7)
    ax.set_ylabel(ylabel)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def attention_grid(path: Path, maps: dict, sample: int, title: str) -> Path:
    """A row per attention node, a column per head, for one sample."""
    plt = _plt()
    keys = list(maps)
    heads = max(maps[k].shape[1] for k in keys)
    rows, cols = len(keys), heads
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols + 0.6, 1.9 * rows + 0.5),
                             dpi=100, squeeze=False)
    for r, k in enumerate(keys):
        m = maps[k][sample]
        for h in range(cols):
            ax = axes[r][h]
            ax.set_xticks([])
            ax.set_yticks([])
            if h >= m.shape[0]:
                ax.axis("off")
                continue
            ax.imshow(m[h], cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
            if r == 0:
                ax.set_title(f"head {h}", fontsize=8)
            if h == 0:
                ax.set_ylabel(k, fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def token_heatmap(path: Path, attrs, tokens, title: str) -> Path:
    """Per-token attributions: a row per sample, a column per position, token ids written
    in the cells when there are few."""
    import numpy as np
    plt = _plt()
    a = np.asarray(attrs, dtype=np.float64)[:MAX_PANELS]
    n, t = a.shape
    fig, ax = plt.subplots(figsize=(max(5, 0.45 * t + 1.5), 0.45 * n + 1.2), dpi=100)
    m = float(np.abs(a).max()) or 1.0
    ax.imshow(a, cmap="bwr", vmin=-m, vmax=m, aspect="auto", interpolation="nearest")
    if t <= 40 and tokens is not None:
        for i in range(n):
            for j in range(t):
                ax.text(j, i, str(int(tokens[i][j])), ha="center", va="center", fontsize=6)
    ax.set_xlabel("position")
    ax.set_ylabel("sample")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def robust_curve(path: Path, result, title: str) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for attack in dict.fromkeys(r["attack"] for r in result.rows):
        pts = [(0.0, result.clean_accuracy)] + [(r["eps"], r["accuracy"]) for r in result.rows
                                                if r["attack"] == attack]
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "-o", markersize=3, label=attack)
    ax.set_xlabel("eps (L∞ radius)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)
