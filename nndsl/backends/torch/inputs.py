"""Drawing model inputs: example inputs, and random inputs (``~ normal()``) when none is given.

Without a declared distribution, floats are N(0, 1), booleans fair coins and integers uniform
over the input's valid id range (``[0, 10)`` when nothing bounds it). A declared distribution
(``graph.meta["input_dists"]``, see :mod:`nndsl.ir.dists`) takes precedence.

Nothing is allocated before its size is checked against ``max_input_bytes``
(:mod:`nndsl.limits`): ``input x: f32[N, 1000000000000]`` is a clear error, not an attempt to
allocate 8 TB.
"""

from __future__ import annotations

import torch

from nndsl.backends.torch.lowering import DTYPES
from nndsl.errors import LimitError
from nndsl.ir.types import BITS
from nndsl.limits import active, raise_hint, show_bytes


def check_size(shape, dtype: str, name: str | None = None, limit: int | None = None,
               span=None) -> int:
    """The bytes a tensor of ``shape`` and nndsl ``dtype`` takes; a :class:`LimitError` when
    that is more than ``limit`` (the active limits' ``max_input_bytes`` when None)."""
    cap = active().max_input_bytes if limit is None else limit
    numel = 1
    for d in shape:
        numel *= max(int(d), 0)
    size = numel * BITS[dtype] // 8
    if size > cap:
        what = f"input `{name}`" if name else "an input"
        dims = ", ".join(str(int(d)) for d in shape)
        raise LimitError(f"{what} of shape [{dims}] ({dtype}) would take {show_bytes(size)} "
                         f"to draw, more than {show_bytes(cap)}", span=span, code="E0609",
                         hint=raise_hint("max_input_bytes", cap,
                                         "give a smaller batch (`--batch`) or smaller dims, or "
                                         "pass the input yourself"))
    return size


# How torch draws each distribution of nndsl.ir.dists.DISTRIBUTIONS (a test keeps the keys
# equal): (shape, the declared arguments, the torch dtype, generator/device keywords) -> tensor.
SAMPLERS = {
    "normal": lambda shape, d, tdtype, kw: (torch.randn(shape, **kw) * d["std"]
                                            + d["mean"]).to(tdtype),
    "uniform": lambda shape, d, tdtype, kw: (torch.rand(shape, **kw) * (d["high"] - d["low"])
                                             + d["low"]).to(tdtype),
    "randint": lambda shape, d, tdtype, kw: torch.randint(int(d["low"]), int(d["high"]), shape,
                                                          dtype=tdtype, **kw),
    "bernoulli": lambda shape, d, tdtype, kw: (torch.rand(shape, **kw) < d["p"]).to(tdtype),
}


def draw(shape, dtype: str, dist: dict | None = None, id_range=None, generator=None,
         device=None, *, name: str | None = None, limit: int | None = None,
         span=None) -> torch.Tensor:
    """One input of ``shape`` and nndsl ``dtype``, drawn from ``generator`` (torch's global
    generator when None). Its size is checked first (:func:`check_size`: ``name`` and ``span``
    say which input, for the message; ``limit`` is in bytes)."""
    tdtype = DTYPES[dtype]
    shape = [int(d) for d in shape]
    check_size(shape, dtype, name, limit, span)
    kw = {"generator": generator, "device": device}
    if dist:
        return SAMPLERS[dist["dist"]](shape, dist, tdtype, kw)
    if dtype == "bool":
        return SAMPLERS["bernoulli"](shape, {"p": 0.5}, tdtype, kw)
    if tdtype.is_floating_point:
        return torch.randn(shape, **kw).to(tdtype)
    low, high = id_range or (0, 10)
    return SAMPLERS["randint"](shape, {"low": low, "high": high}, tdtype, kw)


def draw_missing(types: dict, dists: dict, given: dict, generator=None, device=None,
                 batch: int | None = None, limit: int | None = None) -> dict:
    """The random inputs (``dists``: name -> distribution) that ``given`` lacks, drawn with
    ``generator`` (torch's global one when None). Their dims are sized by the symbols the given
    tensors bind (``types``: name -> TensorType); ``batch`` sizes a leading symbolic dim that
    nothing binds. Raises ``ValueError`` naming an input whose size nothing determines."""
    from nndsl.ir.types import SymDim, evaluate_dim
    env = {}
    for name, x in given.items():
        t = types.get(name)
        if t is None or not isinstance(x, torch.Tensor):
            continue
        for ax, d in enumerate(t.shape[:x.dim()]):
            if isinstance(d, SymDim) and d.symbols() == {str(d)}:
                env.setdefault(str(d), int(x.shape[ax]))
        device = device or x.device
    out = {}
    for name, dist in dists.items():
        if name in given:
            continue
        t = types[name]
        try:
            shape = [batch if ax == 0 and batch is not None and str(d) not in env
                     and isinstance(d, SymDim) else evaluate_dim(d, env)
                     for ax, d in enumerate(t.shape)]
        except Exception:
            raise ValueError(name) from None
        if generator is None:
            out[name] = draw(shape, t.dtype, dist, device=device, name=name, limit=limit)
        else:   # a CPU generator draws on the CPU
            out[name] = draw(shape, t.dtype, dist, generator=generator, name=name,
                             limit=limit).to(device or "cpu")
    return out
