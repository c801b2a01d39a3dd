"""Parameters computed from other parameters (the O2 passes restructure weights).

A ``param`` node with a ``derive`` attribute ``(fn, sources, options)`` holds
``DERIVATIONS[fn](*source values, **options)``. A source is a parameter name of the unoptimized
graph (``graph.meta["source_params"]``), ``None`` for an absent one, or itself a derivation
``(fn, sources, options)``: passes compose (a pruned, folded, then quantized weight is
``quantize(take(fold_bn_weight(W, γ, σ²)))``). Weights are always given in the spec's names;
:func:`derive_state` turns them into the optimized graph's parameters. NumPy only, so both
backends use the same arithmetic.

A derivation without sources is a constant: ``constant(program=...)`` is a tensor computed
from nothing but the graph (a mask, a position table) by a NumPy program
(:mod:`nndsl.ir.evaluate`) that the ``fold_constant_tensors`` pass recorded; it is a buffer that the
spec's checkpoints need not hold, and that loading ignores (:func:`is_constant`).

Quantization is symmetric: ``q = clamp(round(w / s), -qmax, qmax)`` with ``s = max|w| / qmax``
per output channel (``qmax`` 127 for int8, 7 for int4) or per group of ``group`` input
columns; ``w ≈ q · s``. Int4 values are packed two a byte along the last dim, the even element in
the low nibble (ONNX's INT4 layout).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from nndsl.errors import WeightsError
from nndsl.ir.evaluate import constant as run_program
from nndsl.ir.graph import Graph


def _bn_scale(gamma, var, eps):
    s = 1.0 / np.sqrt(var.astype(np.float64) + eps)
    return s if gamma is None else s * gamma


def fold_bn_weight(w, gamma, var, *, eps: float, axis: int = 0):
    """``W' = W · γ/√(σ² + ε)``, scaling output channel ``axis`` of the layer's weight."""
    scale = _bn_scale(gamma, var, eps)
    shape = [1] * w.ndim
    shape[axis] = -1
    return (w.astype(np.float64) * scale.reshape(shape)).astype(w.dtype)


def fold_bn_bias(b, gamma, beta, mean, var, *, eps: float):
    """``b' = (b − μ) · γ/√(σ² + ε) + β``."""
    scale = _bn_scale(gamma, var, eps)
    out = ((0.0 if b is None else b.astype(np.float64)) - mean) * scale
    if beta is not None:
        out = out + beta
    return out.astype(mean.dtype)


def scale(w, *, by: float):
    """``w · by``: a constant factor after a layer, folded into its weight and bias."""
    return (w * np.asarray(by, dtype=w.dtype)).astype(w.dtype)


def concat(*arrays, axis: int = 0):
    """Parallel layers merged into one: their weights stacked along ``axis``."""
    return np.concatenate(arrays, axis=axis)


QMAX = {"i8": 127, "i4": 7}


def _grouped(w, group: int | None):
    """``w`` as ``[rows, groups, group]`` (a group is a run of ``group`` input columns; ``None``:
    one group per row, i.e. per output channel)."""
    rows = w.reshape(w.shape[0], -1).astype(np.float64)
    g = rows.shape[1] if group is None else group
    return rows.reshape(rows.shape[0], rows.shape[1] // g, g)


def quant_scale(w, *, to: str, group: int | None = None):
    """``s = max|w| / qmax`` per output channel, or per group: shape ``[out]`` or
    ``[out, in/group]``. An all-zero row gets scale 1 (any scale represents it exactly)."""
    amax = np.abs(_grouped(w, group)).max(axis=2)
    s = np.where(amax > 0, amax / QMAX[to], 1.0).astype(np.float32)
    return s[:, 0] if group is None else s


def quantize_weight(w, *, to: str, group: int | None = None):
    """``q = clamp(round(w / s), -qmax, qmax)`` with :func:`quant_scale`'s ``s``; int4 packed."""
    s = quant_scale(w, to=to, group=group).astype(np.float64)
    s = s.reshape(s.shape[0], -1, 1)
    q = np.clip(np.rint(_grouped(w, group) / s), -QMAX[to], QMAX[to]).astype(np.int8)
    q = q.reshape(w.shape)
    return pack_int4(q) if to == "i4" else q


class BiasOverflow(ValueError):
    """A bias too large for int32 at the scale of its layer's products."""


def quantize_bias(b, w, *, x_scale: float):
    """A layer's bias in int32 at the scale of its products, ``s_x · s_w`` per output. A bias
    that does not fit (its layer's calibrated inputs are nearly zero: ``s_x`` is tiny) raises
    :class:`BiasOverflow` rather than being clipped to a wrong value."""
    s = quant_scale(w, to="i8").astype(np.float64) * x_scale
    q = np.rint(b.astype(np.float64) / s)
    if np.abs(q).max(initial=0) > 2**31 - 1:
        raise BiasOverflow(f"its bias needs {np.abs(q).max():.3g} steps of s_x · s_w "
                           f"(s_x = {x_scale:.3g}); int32 holds 2^31 - 1")
    return q.astype(np.int32)


def pack_int4(q):
    """Signed 4-bit values (int8 in [-8, 7]) packed two a byte along the last dim."""
    if q.shape[-1] % 2:
        q = np.concatenate([q, np.zeros(q.shape[:-1] + (1,), np.int8)], axis=-1)
    nib = (q.astype(np.int16) & 0xF).astype(np.uint8)
    return (nib[..., 0::2] | (nib[..., 1::2] << 4)).astype(np.uint8)


def unpack_int4(p, n: int):
    """The ``n`` signed 4-bit values per row of packed ``p``."""
    lo = (p & 0xF).astype(np.int8)
    hi = (p >> 4).astype(np.int8)
    out = np.stack([lo, hi], axis=-1).reshape(p.shape[:-1] + (-1,))[..., :n]
    return np.where(out > 7, out - 16, out).astype(np.int8)


def cast(w, *, to: str):
    """The same values in another float type. NumPy has no bfloat16: ``bf16`` values are
    rounded to bfloat16 (round to nearest even) and held in float32, which the backends store
    in bf16 without further rounding."""
    if to == "bf16":
        bits = np.array(w, dtype=np.float32).reshape(-1).view(np.uint32).astype(np.uint64)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        return bits.astype(np.uint32).view(np.float32).reshape(np.shape(w))
    return w.astype({"f16": np.float16, "f32": np.float32, "f64": np.float64}[to])


def magnitude_mask(w, *, sparsity: float):
    """``w`` with its ``round(sparsity · numel)`` smallest-magnitude entries zeroed (ties broken
    by position, so the count is exact)."""
    flat = w.reshape(-1)
    k = int(round(sparsity * flat.size))
    out = flat.copy()
    if k:
        out[np.argsort(np.abs(flat), kind="stable")[:k]] = 0
    return out.reshape(w.shape)


def n_m_mask(w, *, n: int, m: int):
    """N:M sparsity: in every run of ``m`` consecutive input weights of a row, only the ``n``
    largest in magnitude are kept (2:4 keeps two of every four)."""
    rows = w.reshape(w.shape[0], -1, m)
    drop = np.argsort(np.abs(rows), axis=2, kind="stable")[:, :, : m - n]
    out = rows.copy()
    np.put_along_axis(out, drop, 0, axis=2)
    return out.reshape(w.shape)


def take(w, *, axis: int, index: tuple):
    """The slices ``index`` of ``w`` along ``axis`` (channels kept by structured pruning)."""
    return np.take(w, np.asarray(index, dtype=np.int64), axis=axis)


def constant(*, program: tuple):
    """The value of a folded constant subgraph: ``program`` replayed in NumPy."""
    return run_program(program)


DERIVATIONS = {"fold_bn_weight": fold_bn_weight, "fold_bn_bias": fold_bn_bias, "concat": concat,
               "scale": scale,
               "quant_scale": quant_scale, "quantize_weight": quantize_weight, "cast": cast,
               "quantize_bias": quantize_bias,
               "magnitude_mask": magnitude_mask, "n_m_mask": n_m_mask, "take": take,
               "constant": constant}


def evaluate(expr, source: Mapping[str, np.ndarray]):
    """The value of a derivation expression: a spec name, ``None``, or ``(fn, sources, opts)``."""
    if expr is None:
        return None
    if isinstance(expr, str):
        return source[expr]
    fn, sources, options = expr
    return DERIVATIONS[fn](*[evaluate(s, source) for s in sources], **dict(options))


def expression(node) -> object:
    """What a ``param`` node holds, as an expression over the spec's parameters."""
    return node.attr.get("derive") or node.name


def sources(expr) -> set[str]:
    """The spec parameters an expression reads."""
    if expr is None:
        return set()
    if isinstance(expr, str):
        return {expr}
    return set().union(*(sources(s) for s in expr[1])) if expr[1] else set()


def functions(expr) -> list[str]:
    """The derivations an expression applies, outermost first."""
    if not isinstance(expr, tuple):
        return []
    return [expr[0]] + [f for s in expr[1] for f in functions(s)]


def find(expr, fns: tuple):
    """The outermost sub-expression of ``expr`` that applies one of ``fns``, or ``None``."""
    if not isinstance(expr, tuple):
        return None
    if expr[0] in fns:
        return expr
    for s in expr[1]:
        hit = find(s, fns)
        if hit is not None:
            return hit
    return None


def derive_state(graph: Graph, source: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The optimized graph's parameter values from the spec-named ``source`` values."""
    cache: dict = {}
    out = {}
    overflow = []            # (layer, why): int8-static biases that do not fit int32
    for node in graph.params():
        expr = expression(node)
        if expr not in cache:
            try:
                cache[expr] = evaluate(expr, source)
            except BiasOverflow as e:
                overflow.append((node.name.removesuffix(".bias_q"), str(e)))
                continue
        out[node.name] = cache[expr]
    if overflow:
        layers = [layer for layer, _ in overflow]
        raise WeightsError("int8-static cannot quantize " + ", ".join(f"`{n}`" for n in layers)
                           + f": {overflow[0][1]}", code="E1006",
                           notes=[("the inputs of these layers were nearly zero on the "
                                   "calibration data, so their int8 scale is too small for "
                                   "their biases", None)],
                           hint="keep them in float (" + " ".join(f"--keep {n}" for n in layers)
                                + "), or calibrate on data like the model's real inputs")
    return out


def is_constant(node) -> bool:
    """Whether a ``param`` node is derived from no parameter at all (a folded constant, perhaps
    cast or quantized since): its value is the graph's own, never read from a checkpoint."""
    expr = node.attr.get("derive")
    return node.op == "param" and expr is not None and not sources(expr)


def constant_value(node):
    """The value of a constant ``param`` node (:func:`is_constant`)."""
    return evaluate(expression(node), {})


def has_derived(graph: Graph) -> bool:
    return any(n.attr.get("derive") for n in graph.params())
