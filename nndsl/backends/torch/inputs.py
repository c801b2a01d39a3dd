"""Drawing model inputs: example inputs, and random inputs (``~ normal()``) when none is given.

Without a declared distribution, floats are N(0, 1), booleans fair coins and integers uniform
over the input's valid id range (``[0, 10)`` when nothing bounds it). A declared distribution
(``graph.meta["input_dists"]``, see :mod:`nndsl.ir.dists`) takes precedence.
"""

from __future__ import annotations

import torch

from nndsl.backends.torch.lowering import DTYPES


def draw(shape, dtype: str, dist: dict | None = None, id_range=None, generator=None,
         device=None) -> torch.Tensor:
    """One input of ``shape`` and nndsl ``dtype``, drawn from ``generator`` (torch's global
    generator when None)."""
    tdtype = DTYPES[dtype]
    shape = [int(d) for d in shape]
    kw = {"generator": generator, "device": device}
    name = dist["dist"] if dist else None
    if name == "normal":
        x = torch.randn(shape, **kw) * dist["std"] + dist["mean"]
    elif name == "uniform":
        x = torch.rand(shape, **kw) * (dist["high"] - dist["low"]) + dist["low"]
    elif name == "randint":
        return torch.randint(int(dist["low"]), int(dist["high"]), shape, dtype=tdtype, **kw)
    elif name == "bernoulli":
        x = torch.rand(shape, **kw) < dist["p"]
    elif dtype == "bool":
        x = torch.rand(shape, **kw) < 0.5
    elif tdtype.is_floating_point:
        x = torch.randn(shape, **kw)
    else:
        low, high = id_range or (0, 10)
        return torch.randint(int(low), int(high), shape, dtype=tdtype, **kw)
    return x.to(tdtype)
