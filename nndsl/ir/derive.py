"""Parameters computed from other parameters (the O2 passes restructure weights).

A ``param`` node with a ``derive`` attribute ``(fn, sources, options)`` holds
``DERIVATIONS[fn](*source arrays, **options)``, where ``sources`` are parameter names of the
unoptimized graph (``graph.meta["source_params"]``). Weights are always given in the spec's
names; :func:`derive_state` turns them into the optimized graph's parameters. NumPy only, so both
backends use the same arithmetic.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

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


def concat(*arrays, axis: int = 0):
    """Parallel layers merged into one: their weights stacked along ``axis``."""
    return np.concatenate(arrays, axis=axis)


DERIVATIONS = {"fold_bn_weight": fold_bn_weight, "fold_bn_bias": fold_bn_bias, "concat": concat}


def derive_state(graph: Graph, source: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The optimized graph's parameter values from the spec-named ``source`` values."""
    out = {}
    for node in graph.params():
        d = node.attr.get("derive")
        if d is None:
            out[node.name] = source[node.name]
            continue
        fn, names, options = d
        args = [None if n is None else source[n] for n in names]
        out[node.name] = DERIVATIONS[fn](*args, **dict(options))
    return out


def has_derived(graph: Graph) -> bool:
    return any(n.attr.get("derive") for n in graph.params())
