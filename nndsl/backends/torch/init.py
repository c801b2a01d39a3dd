"""Initial values of parameters, from the ``init`` attribute of each ``param`` node.

The elaborator records PyTorch's default initialisation for each layer (``nn.Linear``:
uniform in ±1/√fan_in for weight and bias; ``nn.Embedding``: N(0, 1); norms: ones and zeros);
here those records become tensors, drawn in spec order from one seeded generator.

:data:`INITIALIZERS` is the one table of initializers: for each kind, how to fill a tensor
(the module nndsl builds) and the PyTorch expression that does the same (the generated
``model.py``, which draws from torch's global generator).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from nndsl.errors import LoweringError


@dataclass(frozen=True)
class Initializer:
    fill: Callable      # (empty tensor, args, generator) -> the tensor, filled
    source: Callable    # (args, shape, dtype text, literal) -> a PyTorch expression


def _dims(shape) -> str:
    return ", ".join(str(d) for d in shape) if shape else "()"


def _empty(shape, dt: str) -> str:
    return f"torch.empty({_dims(shape)}{dt})"


def _uniform_bounds(args):
    return (-args[0], args[0]) if len(args) == 1 else tuple(args[:2])


def _normal_pad(t, args, gen):
    t.normal_(args[0], args[1], generator=gen)
    t[int(args[2])].zero_()
    return t


def _trunc_bounds(args):
    mean, std = args[:2]
    return mean, std, mean - 2 * std, mean + 2 * std


INITIALIZERS = {
    "zeros": Initializer(lambda t, a, g: t.zero_(),
                         lambda a, shape, dt, lit: f"torch.zeros({_dims(shape)}{dt})"),
    "ones": Initializer(lambda t, a, g: t.fill_(1),
                        lambda a, shape, dt, lit: f"torch.ones({_dims(shape)}{dt})"),
    "constant": Initializer(lambda t, a, g: t.fill_(a[0]), lambda a, shape, dt, lit:
                            f"torch.full({lit(tuple(shape))}, {lit(a[0])}{dt})"),
    "uniform": Initializer(lambda t, a, g: t.uniform_(*_uniform_bounds(a), generator=g),
                           lambda a, shape, dt, lit: "{}.uniform_({}, {})".format(
                               _empty(shape, dt), *map(lit, _uniform_bounds(a)))),
    "normal": Initializer(lambda t, a, g: t.normal_(a[0], a[1], generator=g),
                          lambda a, shape, dt, lit:
                          f"{_empty(shape, dt)}.normal_({lit(a[0])}, {lit(a[1])})"),
    "normal_pad": Initializer(_normal_pad, lambda a, shape, dt, lit: (
        f"{_empty(shape, dt)}.normal_({lit(a[0])}, {lit(a[1])})"
        f".index_fill_(0, torch.tensor([{int(a[2])}]), 0.0)")),
    "trunc_normal": Initializer(
        lambda t, a, g: torch.nn.init.trunc_normal_(t, *_trunc_bounds(a), generator=g),
        lambda a, shape, dt, lit: "nn.init.trunc_normal_({}, {}, {}, {}, {})".format(
            _empty(shape, dt), *map(lit, _trunc_bounds(a)))),
}


def initial_value(init: tuple, shape: tuple, dtype: torch.dtype, gen: torch.Generator):
    kind, *args = init
    if kind not in INITIALIZERS:
        raise LoweringError(f"unknown initializer `{kind}`", code="E0901")
    return INITIALIZERS[kind].fill(torch.empty(shape, dtype=dtype), args, gen)


def initial_state(params, seed: int) -> dict:
    """Default initial values of ``params`` (``param`` nodes), drawn in order from one seeded
    generator — the same values a freshly built module gets."""
    from nndsl.backends.torch.lowering import DTYPES
    gen = torch.Generator().manual_seed(seed)
    return {n.name: initial_value(n.attr["init"], n.type.shape, DTYPES[n.attr["dtype"]], gen)
            for n in params}
