"""NumPy references of the IR ops: what each op computes, written from its definition.

Each reference is ``fn(attrs, inputs, in_types, out_type) -> array``: ``attrs`` the node's
attributes over the op's defaults, ``inputs`` NumPy arrays (a ``scalar``'s exact Python number
stays one), ``in_types`` and ``out_type`` the IR types. The op records carry them
(``SIGNATURES[op].reference``), and tests compare every backend with them.

Two kinds:

- :data:`EXACT`: references that run in the step's IR dtype as the backends run it: operands
  converted to the result's dtype first (an ``i64`` tensor times ``0.5`` is computed in
  ``f32``), a number keeping its exact value until then, comparisons converting both sides to
  the dtype the IR promotes them to; so integer, boolean, layout and basic float arithmetic
  results are the backends' bit for bit. Transcendental functions (``exp``, ``log``, ``sin``,
  ``cos``, ...), ``pow``, ``matmul`` and sums of half and single floats are computed in double
  precision and rounded once: the correctly rounded value (nearly always), the same on every
  machine, within an ulp or so of what torch's and onnxruntime's own kernels give. Integer
  division by zero, negative integer powers, casts of non-finite or out-of-range floats to
  integers and out-of-range indices raise :class:`Unfoldable`: the backends would fail or
  disagree on them. Constant folding replays these (:mod:`nndsl.ir.evaluate`); the record says
  so with ``exact``.
- :data:`APPROXIMATE`: the rest of the activations, normalizers and layers, computed in double
  precision from the formula (the result stays f64: the comparison rounds). Kernels differ from them by rounding (a fused
  softmax, a blocked matrix product): tests compare within a tolerance scaled to the values,
  and folding never uses them.
"""

from __future__ import annotations

import math

import numpy as np

from nndsl.ir.ops.shapes import promote
from nndsl.ir.types import FLOAT_DTYPES


NP_DTYPES = {"f16": np.float16, "f32": np.float32, "f64": np.float64, "i64": np.int64,
             "i32": np.int32, "i8": np.int8, "u8": np.uint8, "bool": np.bool_}


class Unfoldable(Exception):
    """The program has no value both backends agree on; it is left to run."""


def as_dtype(x, dtype: str):
    return np.asarray(x).astype(NP_DTYPES[dtype], copy=False)


def _wide(x, dtype: str):
    """``x`` for a computation whose result is rounded to ``dtype``: half and single floats in
    double precision, so that the rounded result is (almost always) the correctly rounded one
    whatever kernels this NumPy build and CPU use."""
    return as_dtype(x, "f64" if dtype in ("f16", "f32") else dtype)


def _unary(fn, wide: bool = False):
    cast = _wide if wide else as_dtype
    return lambda a, ins, ts, out: fn(cast(ins[0], out.dtype))


def _arith(fn, wide: bool = False):
    cast = _wide if wide else as_dtype
    return lambda a, ins, ts, out: fn(cast(ins[0], out.dtype), cast(ins[1], out.dtype))


def _int_divisor(b, out):
    if out.dtype not in FLOAT_DTYPES and np.any(b == 0):
        raise Unfoldable("integer division by zero")
    return b


def _floor_div(a, ins, ts, out):
    x, y = as_dtype(ins[0], out.dtype), as_dtype(ins[1], out.dtype)
    return np.floor_divide(x, _int_divisor(y, out))


def _mod(a, ins, ts, out):
    x, y = as_dtype(ins[0], out.dtype), as_dtype(ins[1], out.dtype)
    return np.remainder(x, _int_divisor(y, out))


def _pow(a, ins, ts, out):
    x, y = _wide(ins[0], out.dtype), _wide(ins[1], out.dtype)
    if out.dtype not in FLOAT_DTYPES and out.dtype != "bool" and np.any(y < 0):
        raise Unfoldable("integer to a negative power")
    return np.power(x, y)


def _compare(fn):
    def ev(a, ins, ts, out):
        dt = promote(ts[0], ts[1])
        return fn(as_dtype(ins[0], dt), as_dtype(ins[1], dt))
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
        return as_dtype(int(v), dtype)
    return as_dtype(v, dtype)


def _full(a, ins, ts, out):
    return np.full(out.shape, _value(a["value"], out.dtype))


def _cast(a, ins, ts, out):
    x = np.asarray(ins[0])
    if out.dtype not in FLOAT_DTYPES and out.dtype != "bool" and x.dtype.kind == "f":
        info = np.iinfo(NP_DTYPES[out.dtype])
        if not np.all(np.isfinite(x)) or x.size and (x.min() <= info.min - 1 or
                                                       x.max() >= info.max + 1):
            raise Unfoldable("a float cast to an integer it does not fit")
    return as_dtype(x, out.dtype)


def _where(a, ins, ts, out):
    return np.where(np.asarray(ins[0]).astype(bool), as_dtype(ins[1], out.dtype),
                    as_dtype(ins[2], out.dtype))


def _masked_fill(a, ins, ts, out):
    return np.where(np.asarray(ins[1]), _value(a["value"], out.dtype), as_dtype(ins[0], out.dtype))


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


EXACT = {
    # sources
    "scalar": lambda a, ins, ts, out: np.asarray(a["value"]),   # the exact Python number
    "full": _full,
    "arange": lambda a, ins, ts, out: as_dtype(np.arange(a["n"], dtype=np.int64), out.dtype),
    # elementwise
    **{op: _unary(fn, wide=True) for op, fn in (
        ("exp", np.exp), ("log", np.log), ("sqrt", np.sqrt), ("rsqrt", _rsqrt), ("sin", np.sin),
        ("cos", np.cos), ("tanh", np.tanh), ("sigmoid", _sigmoid))},
    "relu": _unary(lambda x: np.maximum(x, 0)),
    "abs": _unary(np.abs), "neg": _unary(np.negative),
    "logical_not": lambda a, ins, ts, out: np.logical_not(ins[0]),
    "cast": _cast,
    "clamp": lambda a, ins, ts, out: np.clip(as_dtype(ins[0], out.dtype),
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
    "concat": lambda a, ins, ts, out: np.concatenate([as_dtype(x, out.dtype) for x in ins], a["dim"]),
    "stack": lambda a, ins, ts, out: np.stack([as_dtype(x, out.dtype) for x in ins], a["dim"]),
    "slice": _slice,
    "flip": lambda a, ins, ts, out: np.flip(ins[0], _axes(a["dims"], ins[0].ndim)),
    "roll": lambda a, ins, ts, out: np.roll(ins[0], tuple(a["shifts"]),
                                            _axes(a["dims"], ins[0].ndim)),
    "repeat_interleave": lambda a, ins, ts, out: np.repeat(ins[0], a["repeats"], a["dim"]),
    # reductions and indexing
    "sum": _reduce(np.sum), "mean": _reduce(np.mean), "max": _reduce(np.amax),
    "min": _reduce(np.amin), "prod": _reduce(np.prod),
    "cumsum": lambda a, ins, ts, out: np.cumsum(as_dtype(ins[0], out.dtype), axis=a["dim"]),
    "index_select": _index_select, "one_hot": _one_hot,
}



# ---- approximate references (f64, from the formula) ----

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _f(fn):
    """An elementwise float op, computed in f64 and rounded to the result's dtype."""
    return lambda a, ins, ts, out: fn(as_dtype(ins[0], "f64"), a)


def _gelu(x, a):
    if a["approximate"] == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1 + _erf(x / math.sqrt(2)))


def _softplus(x, a):
    bx = a["beta"] * x
    return np.where(bx > a["threshold"], x, np.log1p(np.exp(np.minimum(bx, 50.0))) / a["beta"])


_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772, 1.0507009873554805


def _elu(x, alpha):
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def _softmax(a, ins, ts, out):
    x = as_dtype(ins[0], "f64")
    e = np.exp(x - x.max(axis=a["dim"], keepdims=True))
    return e / e.sum(axis=a["dim"], keepdims=True)


def _log_softmax(a, ins, ts, out):
    x = as_dtype(ins[0], "f64")
    m = x.max(axis=a["dim"], keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=a["dim"], keepdims=True))


def _last_dims(a, x) -> tuple:
    n = len(a["normalized_shape"])
    return tuple(range(x.ndim - n, x.ndim))


def _affine(y, ins):
    if len(ins) > 1 and ins[1] is not None:
        y = y * as_dtype(ins[1], "f64")
    if len(ins) > 2 and ins[2] is not None:
        y = y + as_dtype(ins[2], "f64")
    return y


def _layer_norm(a, ins, ts, out):
    x = as_dtype(ins[0], "f64")
    dims = _last_dims(a, x)
    mu = x.mean(axis=dims, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=dims, keepdims=True)
    return _affine((x - mu) / np.sqrt(var + a["eps"]), ins)


def _rms_norm(a, ins, ts, out):
    x = as_dtype(ins[0], "f64")
    eps = a["eps"] if a["eps"] is not None else float(np.finfo(NP_DTYPES[out.dtype]).eps)
    ms = (x ** 2).mean(axis=_last_dims(a, x), keepdims=True)
    return _affine(x / np.sqrt(ms + eps), ins)


def _group_norm(a, ins, ts, out):
    x = as_dtype(ins[0], "f64")
    n, c = x.shape[:2]
    g = x.reshape(n, a["groups"], -1)
    mu = g.mean(axis=2, keepdims=True)
    var = ((g - mu) ** 2).mean(axis=2, keepdims=True)
    y = ((g - mu) / np.sqrt(var + a["eps"])).reshape(x.shape)
    per_channel = (1, c) + (1,) * (x.ndim - 2)
    if ins[1] is not None:
        y = y * as_dtype(ins[1], "f64").reshape(per_channel)
    if ins[2] is not None:
        y = y + as_dtype(ins[2], "f64").reshape(per_channel)
    return y


ACTIVATIONS = {
    "relu": lambda x, a: np.maximum(x, 0), "sigmoid": lambda x, a: 1 / (1 + np.exp(-x)),
    "tanh": lambda x, a: np.tanh(x), "silu": lambda x, a: x / (1 + np.exp(-x)),
    "gelu": _gelu,
}


def _linear(a, ins, ts, out):
    x, w = as_dtype(ins[0], "f64"), as_dtype(ins[1], "f64")
    y = x @ w.T
    if ins[2] is not None:
        y = y + as_dtype(ins[2], "f64")
    return ACTIVATIONS[a["act"]](y, {"approximate": "none"}) if a["act"] else y


def _moments(a, ins, out):
    x = as_dtype(ins[0], "f64")
    dims = None if a["dims"] is None else _axes(a["dims"], x.ndim)
    n = x.size if dims is None else math.prod(x.shape[d] for d in dims)
    mu = x.mean(axis=dims, keepdims=True)
    v = ((x - mu) ** 2).sum(axis=dims, keepdims=a["keepdim"]) / (n - a["correction"])
    return v


def _logsumexp(a, ins, ts, out):
    x = as_dtype(ins[0], "f64")
    dims = None if a["dims"] is None else _axes(a["dims"], x.ndim)
    m = x.max(axis=dims, keepdims=True)
    y = np.log(np.exp(x - m).sum(axis=dims, keepdims=True)) + m
    return y if a["keepdim"] else np.squeeze(y, axis=dims)


def _pixel_shuffle(a, ins, ts, out):
    x, r = ins[0], a["r"]
    n, c, h, w = x.shape
    y = x.reshape(n, c // (r * r), r, r, h, w).transpose(0, 1, 4, 2, 5, 3)
    return y.reshape(n, c // (r * r), h * r, w * r)


APPROXIMATE = {
    "erf": _f(lambda x, a: _erf(x)),
    "silu": _f(ACTIVATIONS["silu"]),
    "gelu": _f(_gelu),
    "elu": _f(lambda x, a: _elu(x, a["alpha"])),
    "selu": _f(lambda x, a: _SELU_SCALE * _elu(x, _SELU_ALPHA)),
    "leaky_relu": _f(lambda x, a: np.where(x > 0, x, a["slope"] * x)),
    "softplus": _f(_softplus),
    "hardswish": _f(lambda x, a: x * np.clip(x + 3, 0, 6) / 6),
    "hardsigmoid": _f(lambda x, a: np.clip(x + 3, 0, 6) / 6),
    "mish": _f(lambda x, a: x * np.tanh(np.log1p(np.exp(x)))),
    "softmax": _softmax, "log_softmax": _log_softmax, "logsumexp": _logsumexp,
    "var": lambda a, ins, ts, out: _moments(a, ins, out),
    "std": lambda a, ins, ts, out: np.sqrt(_moments(a, ins, out)),
    "cumprod": lambda a, ins, ts, out: np.cumprod(as_dtype(ins[0], "f64"), axis=a["dim"]),
    "layer_norm": _layer_norm, "rms_norm": _rms_norm, "group_norm": _group_norm,
    "linear": _linear,
    "pixel_shuffle": _pixel_shuffle,
    "argmax": lambda a, ins, ts, out: (np.expand_dims if a["keepdim"] else lambda v, d: v)(
        np.argmax(ins[0], axis=a["dim"]), a["dim"]),
}

REFERENCES = {**APPROXIMATE, **EXACT}
