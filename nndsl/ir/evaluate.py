"""Constant tensors computed in NumPy: the programs of folded constant subgraphs.

A *program* is a tuple of steps ``(op, operands, attrs)``: ``op`` an IR op, ``operands`` the
indices of earlier steps it reads, ``attrs`` the node's attributes that differ from the op's
defaults. :func:`run` replays it and returns the last step's value. Each step's type comes from
the op's own shape rule (:func:`nndsl.ir.ops.infer`), so dtypes follow the IR's promotion, and
every result is checked against it.

Arithmetic runs in the step's IR dtype, as the backends run it: the operands are converted to
the result's dtype first (an ``i64`` tensor times ``0.5`` is computed in ``f32``), a number
(``scalar``) keeps its exact Python value until then, comparisons convert both sides to the
dtype the IR promotes them to; so integer, boolean, layout and basic float arithmetic results
are the backends' bit for bit. Transcendental functions (``exp``, ``log``, ``sin``, ``cos``,
...), ``pow``, ``matmul`` and sums of half and single floats are computed in double precision
and rounded once: the correctly rounded value (nearly always), the same on every machine,
within an ulp or so of what torch's and onnxruntime's own kernels give. Integer division by zero, negative integer powers, casts of
non-finite or out-of-range floats to integers and out-of-range indices raise
:class:`Unfoldable`: the backends would fail or disagree on them, so such a subgraph is left to
run. ``bf16`` and ``i4`` have no NumPy type and are not evaluated.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from nndsl.ir.ops import SIGNATURES, infer
from nndsl.ir.ops.shapes import promote
from nndsl.ir.types import FLOAT_DTYPES, SymDim, TensorType

NP_DTYPES = {"f16": np.float16, "f32": np.float32, "f64": np.float64, "i64": np.int64,
             "i32": np.int32, "i8": np.int8, "u8": np.uint8, "bool": np.bool_}


class Unfoldable(Exception):
    """The program has no value both backends agree on; it is left to run."""


def _as(x, dtype: str):
    return np.asarray(x).astype(NP_DTYPES[dtype], copy=False)


def _wide(x, dtype: str):
    """``x`` for a computation whose result is rounded to ``dtype``: half and single floats in
    double precision, so that the rounded result is (almost always) the correctly rounded one
    whatever kernels this NumPy build and CPU use."""
    return _as(x, "f64" if dtype in ("f16", "f32") else dtype)


def _unary(fn, wide: bool = False):
    cast = _wide if wide else _as
    return lambda a, ins, ts, out: fn(cast(ins[0], out.dtype))


def _arith(fn, wide: bool = False):
    cast = _wide if wide else _as
    return lambda a, ins, ts, out: fn(cast(ins[0], out.dtype), cast(ins[1], out.dtype))


def _int_divisor(b, out):
    if out.dtype not in FLOAT_DTYPES and np.any(b == 0):
        raise Unfoldable("integer division by zero")
    return b


def _floor_div(a, ins, ts, out):
    x, y = _as(ins[0], out.dtype), _as(ins[1], out.dtype)
    return np.floor_divide(x, _int_divisor(y, out))


def _mod(a, ins, ts, out):
    x, y = _as(ins[0], out.dtype), _as(ins[1], out.dtype)
    return np.remainder(x, _int_divisor(y, out))


def _pow(a, ins, ts, out):
    x, y = _wide(ins[0], out.dtype), _wide(ins[1], out.dtype)
    if out.dtype not in FLOAT_DTYPES and out.dtype != "bool" and np.any(y < 0):
        raise Unfoldable("integer to a negative power")
    return np.power(x, y)


def _compare(fn):
    def ev(a, ins, ts, out):
        dt = promote(ts[0], ts[1])
        return fn(_as(ins[0], dt), _as(ins[1], dt))
    return ev


def _logical(fn):
    return lambda a, ins, ts, out: fn(np.asarray(ins[0]).astype(bool),
                                      np.asarray(ins[1]).astype(bool))


def _value(v, dtype: str):
    """A number as an element of ``dtype`` (refused where the backends would round it or
    refuse it)."""
    if dtype not in FLOAT_DTYPES and dtype != "bool":
        info = np.iinfo(NP_DTYPES[dtype])
        if not (math.isfinite(float(v)) and float(v) == int(v) and info.min <= int(v) <= info.max):
            raise Unfoldable(f"{v} is no {dtype}")
        return _as(int(v), dtype)
    return _as(v, dtype)


def _full(a, ins, ts, out):
    return np.full(out.shape, _value(a["value"], out.dtype))


def _cast(a, ins, ts, out):
    x = np.asarray(ins[0])
    if out.dtype not in FLOAT_DTYPES and out.dtype != "bool" and x.dtype.kind == "f":
        info = np.iinfo(NP_DTYPES[out.dtype])
        if not np.all(np.isfinite(x)) or x.size and (x.min() <= info.min - 1 or
                                                       x.max() >= info.max + 1):
            raise Unfoldable("a float cast to an integer it does not fit")
    return _as(x, out.dtype)


def _where(a, ins, ts, out):
    return np.where(np.asarray(ins[0]).astype(bool), _as(ins[1], out.dtype),
                    _as(ins[2], out.dtype))


def _masked_fill(a, ins, ts, out):
    return np.where(np.asarray(ins[1]), _value(a["value"], out.dtype), _as(ins[0], out.dtype))


def _layout(a, ins, ts, out):
    """Ops that keep the elements in order (reshape, flatten, squeeze, unsqueeze)."""
    return np.reshape(ins[0], out.shape)


def _axes(dims, rank: int) -> tuple:
    return tuple(d % rank for d in dims)


def _slice(a, ins, ts, out):
    x = ins[0]
    idx = [slice(None)] * x.ndim
    for ax, st, en, sp in zip(a["axes"], a["starts"], a["ends"], a["steps"]):
        idx[ax] = slice(st, en, sp)
    return x[tuple(idx)]


def _reduce(fn):
    def ev(a, ins, ts, out):
        x = _wide(ins[0], out.dtype)
        dims = None if a["dims"] is None else _axes(a["dims"], x.ndim)
        return fn(x, axis=dims, keepdims=a["keepdim"])
    return ev


def _index_select(a, ins, ts, out):
    x, index = ins
    d = a["dim"] % x.ndim
    if index.size and (index.min() < 0 or index.max() >= x.shape[d]):
        raise Unfoldable("an index out of range")
    return np.take(x, index, axis=d)


def _one_hot(a, ins, ts, out):
    x = np.asarray(ins[0])
    if x.size and (x.min() < 0 or x.max() >= a["n"]):
        raise Unfoldable("a class index out of range")
    return x[..., None] == np.arange(a["n"])


def _rsqrt(x):
    return 1 / np.sqrt(x)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


EVALUATORS = {
    # sources
    "scalar": lambda a, ins, ts, out: np.asarray(a["value"]),   # the exact Python number
    "full": _full,
    "arange": lambda a, ins, ts, out: _as(np.arange(a["n"], dtype=np.int64), out.dtype),
    # elementwise
    **{op: _unary(fn, wide=True) for op, fn in (
        ("exp", np.exp), ("log", np.log), ("sqrt", np.sqrt), ("rsqrt", _rsqrt), ("sin", np.sin),
        ("cos", np.cos), ("tanh", np.tanh), ("sigmoid", _sigmoid))},
    "relu": _unary(lambda x: np.maximum(x, 0)),
    "abs": _unary(np.abs), "neg": _unary(np.negative),
    "logical_not": lambda a, ins, ts, out: np.logical_not(ins[0]),
    "cast": _cast,
    "clamp": lambda a, ins, ts, out: np.clip(_as(ins[0], out.dtype),
                                             None if a["min"] is None else _value(a["min"], out.dtype),
                                             None if a["max"] is None else _value(a["max"], out.dtype)),
    "add": _arith(np.add), "sub": _arith(np.subtract), "mul": _arith(np.multiply),
    "div": _arith(np.true_divide), "pow": _pow, "floor_div": _floor_div, "mod": _mod,
    "maximum": _arith(np.maximum), "minimum": _arith(np.minimum),
    "eq": _compare(np.equal), "ne": _compare(np.not_equal), "lt": _compare(np.less),
    "le": _compare(np.less_equal), "gt": _compare(np.greater), "ge": _compare(np.greater_equal),
    "logical_and": _logical(np.logical_and), "logical_or": _logical(np.logical_or),
    "where": _where, "masked_fill": _masked_fill,
    "tril": lambda a, ins, ts, out: np.tril(ins[0], a["k"]),
    "triu": lambda a, ins, ts, out: np.triu(ins[0], a["k"]),
    "matmul": _arith(np.matmul, wide=True),
    # shapes
    "reshape": _layout, "flatten": _layout, "squeeze": _layout, "unsqueeze": _layout,
    "expand": lambda a, ins, ts, out: np.broadcast_to(ins[0], out.shape),
    "transpose": lambda a, ins, ts, out: np.swapaxes(ins[0], a["dim0"], a["dim1"]),
    "permute": lambda a, ins, ts, out: np.transpose(ins[0], _axes(a["dims"], ins[0].ndim)),
    "concat": lambda a, ins, ts, out: np.concatenate([_as(x, out.dtype) for x in ins], a["dim"]),
    "stack": lambda a, ins, ts, out: np.stack([_as(x, out.dtype) for x in ins], a["dim"]),
    "slice": _slice,
    "flip": lambda a, ins, ts, out: np.flip(ins[0], _axes(a["dims"], ins[0].ndim)),
    "roll": lambda a, ins, ts, out: np.roll(ins[0], tuple(a["shifts"]),
                                            _axes(a["dims"], ins[0].ndim)),
    "repeat_interleave": lambda a, ins, ts, out: np.repeat(ins[0], a["repeats"], a["dim"]),
    # reductions and indexing
    "sum": _reduce(np.sum), "mean": _reduce(np.mean), "max": _reduce(np.amax),
    "min": _reduce(np.amin), "prod": _reduce(np.prod),
    "cumsum": lambda a, ins, ts, out: np.cumsum(_as(ins[0], out.dtype), axis=a["dim"]),
    "index_select": _index_select, "one_hot": _one_hot,
}

# sums and products of booleans and integers are i64 in torch: floats only
FLOAT_ONLY = ("mean", "prod", "sum")


def symbolic(x) -> bool:
    """Whether an attribute value holds a symbolic dim."""
    if isinstance(x, SymDim):
        return True
    return isinstance(x, tuple) and any(symbolic(v) for v in x)


def step_type(op: str, in_types: list, attrs: dict) -> TensorType:
    """The type of one step, from the op's shape rule."""
    return infer(op, in_types, {**SIGNATURES[op].attrs, **dict(attrs)})[0]


def run(program: tuple) -> np.ndarray:
    """The value of ``program`` (its last step), a C-contiguous array of its IR dtype."""
    last: dict[int, int] = {}
    for i, (_, refs, _) in enumerate(program):
        for r in refs:
            last[r] = i
    vals: dict[int, object] = {}
    types: list[TensorType] = []
    with np.errstate(all="ignore"):
        for i, (op, refs, attrs) in enumerate(program):
            if op not in EVALUATORS:
                raise Unfoldable(f"no evaluator for `{op}`")
            if symbolic(attrs):
                raise Unfoldable(f"`{op}` has symbolic attributes")
            ts = [types[r] for r in refs]
            out = step_type(op, ts, attrs)
            if op in FLOAT_ONLY and out.dtype not in FLOAT_DTYPES or \
                    out.dtype not in NP_DTYPES or not all(isinstance(d, int) for d in out.shape):
                raise Unfoldable(f"`{op}` to {out}")
            a = {**SIGNATURES[op].attrs, **dict(attrs)}
            try:
                v = EVALUATORS[op](a, [vals[r] for r in refs], ts, out)
            except (TypeError, ValueError, OverflowError, IndexError) as e:
                raise Unfoldable(f"`{op}`: {e}") from None
            if op != "scalar":
                v = _as(v, out.dtype)
                if v.shape != tuple(out.shape):
                    raise AssertionError(f"step {i} (`{op}`) gave shape {list(v.shape)}, "
                                         f"the IR says {out}")
            vals[i] = v
            types.append(out)
            for r in set(refs):
                if last.get(r) == i:
                    del vals[r]     # no later step reads it
    return np.ascontiguousarray(_as(vals[len(program) - 1], types[-1].dtype))


_CACHE: OrderedDict = OrderedDict()
_CACHE_SIZE = 8


def constant(program: tuple) -> np.ndarray:
    """``run(program)``, remembered for the last few programs (a compile evaluates each folded
    constant once, then both backends ask for it again). Returns a fresh copy each time."""
    hit = _CACHE.get(program)
    if hit is None:
        hit = _CACHE[program] = run(program)
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(program)
    return hit.copy()
