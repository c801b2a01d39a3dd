"""The imported weights as a ``.safetensors`` file, in the spec's parameter names.

The file holds exactly the spec's parameters (``nndsl inspect --params`` lists them), so it
loads with ``--weights`` and ``--init`` and ``train``'s ``init = "..."`` as any checkpoint of
the spec. Its bytes depend only on the weights: safetensors orders tensors by dtype and name,
and no metadata (no time, no path) is written, so one ONNX file always gives the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def to_bytes(weights: dict) -> bytes:
    from safetensors.numpy import save
    return save({k: np.ascontiguousarray(v) for k, v in sorted(weights.items())})


def write(path: str | Path, weights: dict) -> None:
    from nndsl.fsutil import atomic_write_bytes
    atomic_write_bytes(path, to_bytes(weights))


def as_torch(weights: dict) -> dict:
    """The weights as torch tensors (what ``nndsl.compile(weights=...)`` takes)."""
    import torch
    return {k: torch.from_numpy(np.array(v, copy=True)) for k, v in weights.items()}
