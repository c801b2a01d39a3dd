"""Calibration for static quantization: the range of every float value on sample inputs.

The float graph runs on each batch (``GraphModule.run_all``) and an *observer* turns what each
value held into a range ``(lo, hi)``:

- ``minmax``: the smallest and largest value over all batches;
- ``moving_average``: per-batch minimum and maximum, averaged with weight 0.1 for each new batch
  (outliers in one batch move the range less);
- ``percentile``: per batch the 0.01st and 99.99th percentiles (of at most 2¹⁶ evenly spaced
  samples of the tensor), averaged over batches: clips rare outliers.
"""

from __future__ import annotations

import torch

from nndsl.backends.torch.module import GraphModule
from nndsl.ir.graph import Graph

OBSERVERS = ("minmax", "moving_average", "percentile")


def _batch_range(x: torch.Tensor, observer: str) -> tuple[float, float]:
    x = x.detach().float().reshape(-1)
    if observer != "percentile":
        return float(x.min()), float(x.max())
    if x.numel() > 65536:
        x = x[torch.linspace(0, x.numel() - 1, 65536).long()]
    return float(torch.quantile(x, 0.0001)), float(torch.quantile(x, 0.9999))


def calibrate(graph: Graph, state: dict, batches, observer: str = "minmax") -> dict:
    """``(node, output) -> (lo, hi)`` for the float values of ``graph`` (weights ``state``, in
    the graph's parameter names) over ``batches`` (dicts of input tensors)."""
    module = GraphModule(graph, seed=None)
    module.load_weights(state)
    module.eval()
    ranges: dict = {}
    seen = 0
    with torch.no_grad():
        for xs in batches:
            values = module.run_all(**xs)
            for node in graph:
                if node.op in ("param",) or node.name not in values:
                    continue
                v = values[node.name]
                outs = v if isinstance(v, tuple) else (v,)
                for i, t in enumerate(outs):
                    if not isinstance(t, torch.Tensor) or not t.is_floating_point() or \
                            t.numel() == 0:
                        continue
                    lo, hi = _batch_range(t, observer)
                    key = (node.name, i)
                    if key not in ranges:
                        ranges[key] = (lo, hi)
                    elif observer == "minmax":
                        ranges[key] = (min(ranges[key][0], lo), max(ranges[key][1], hi))
                    elif observer == "moving_average":
                        a, b = ranges[key]
                        ranges[key] = (a + 0.1 * (lo - a), b + 0.1 * (hi - b))
                    else:
                        a, b = ranges[key]
                        ranges[key] = (a + (lo - a) / (seen + 1), b + (hi - b) / (seen + 1))
            seen += 1
    return ranges
