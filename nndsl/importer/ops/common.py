"""What the op modules share: axes, broadcasting, literals, shape vectors, layer names."""

from __future__ import annotations

import numpy as np

from nndsl.importer.values import Sym, Unsupported


def _norm_axis(axis: int, rank: int) -> int:
    if not -rank <= axis < max(rank, 1):
        raise Unsupported(f"axis {axis} out of range for rank {rank}")
    return axis % rank if rank else 0


def _broadcast(a: tuple, b: tuple) -> tuple:
    out = []
    for i in range(max(len(a), len(b))):
        x = a[len(a) - 1 - i] if i < len(a) else 1
        y = b[len(b) - 1 - i] if i < len(b) else 1
        if isinstance(x, int) and x == 1:
            out.append(y)
        elif isinstance(y, int) and y == 1 or x == y:
            out.append(x)
        else:
            raise Unsupported(f"cannot broadcast {list(a)} with {list(b)}")
    return tuple(reversed(out))


def _literal(cx, v, other_rank: int):
    """A constant of one element that does not raise the other operand's rank, as a number."""
    c = cx.const(v)
    if c is not None and np.asarray(c).size == 1 and np.asarray(c).ndim <= other_rank:
        c = np.asarray(c)
        if c.dtype == np.bool_:
            return None
        return c.reshape(()).item(), np.asarray(c).dtype
    return None


def _elementwise_type(cx, vals):
    shapes = [cx.shape_of(v) for v in vals]
    out = shapes[0]
    for s in shapes[1:]:
        out = _broadcast(out, s)
    return out


def _x(cx, ins, i: int = 0) -> Sym:
    return cx.tensor(ins[i])


def _ints(v) -> list:
    return [int(x) for x in v]


def windowed(x: Sym, channels, kernel, strides, pads, dilations, ceil: bool = False) -> tuple:
    """The shape of a convolution or pooling of ``x`` (pads on both sides of each spatial
    dim): ``⌊(n + 2p − d(k − 1) − 1) / s⌋ + 1``, rounded up with ``ceil``; symbolic sizes
    stay symbolic."""
    from nndsl.ir.types import SymDim
    out = [x.shape[0], channels]
    for n, k, s, p, d in zip(x.shape[2:], kernel, strides, pads, dilations):
        span = n + 2 * p - d * (k - 1) - 1 + ((s - 1) if ceil else 0)
        size = span // s + 1
        out.append(size.simplify() if isinstance(size, SymDim) else size)
    return tuple(out)
