"""Initial values of parameters, from the ``init`` attribute of each ``param`` node.

The elaborator records PyTorch's default initialisation for each layer (``nn.Linear``:
uniform in ±1/√fan_in for weight and bias; ``nn.Embedding``: N(0, 1); norms: ones and zeros);
here those records become tensors, drawn in spec order from one seeded generator.
"""

from __future__ import annotations

import torch

from nndsl.errors import LoweringError


def initial_value(init: tuple, shape: tuple, dtype: torch.dtype, gen: torch.Generator):
    kind, *args = init
    t = torch.empty(shape, dtype=dtype)
    if kind == "zeros":
        return t.zero_()
    if kind == "ones":
        return t.fill_(1)
    if kind == "constant":
        return t.fill_(args[0])
    if kind == "uniform":
        low, high = (-args[0], args[0]) if len(args) == 1 else args
        return t.uniform_(low, high, generator=gen)
    if kind in ("normal", "normal_pad"):
        t.normal_(args[0], args[1], generator=gen)
        if kind == "normal_pad":
            t[int(args[2])].zero_()
        return t
    if kind == "trunc_normal":
        mean, std = args
        return torch.nn.init.trunc_normal_(t, mean, std, mean - 2 * std, mean + 2 * std,
                                           generator=gen)
    raise LoweringError(f"unknown initializer `{kind}`", code="E0901")


def initial_state(params, seed: int) -> dict:
    """Default initial values of ``params`` (``param`` nodes), drawn in order from one seeded
    generator — the same values a freshly built module gets."""
    from nndsl.backends.torch.lowering import DTYPES
    gen = torch.Generator().manual_seed(seed)
    return {n.name: initial_value(n.attr["init"], n.type.shape, DTYPES[n.attr["dtype"]], gen)
            for n in params}
