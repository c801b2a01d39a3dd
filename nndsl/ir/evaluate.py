"""Constant tensors computed in NumPy: the programs of folded constant subgraphs.

A *program* is a tuple of steps ``(op, operands, attrs)``: ``op`` an IR op, ``operands`` the
indices of earlier steps it reads, ``attrs`` the node's attributes that differ from the op's
defaults. :func:`run` replays it and returns the last step's value. Each step's type comes from
the op's own shape rule (:func:`nndsl.ir.ops.infer`), so dtypes follow the IR's promotion, and
every result is checked against it.

The steps are the ops' exact NumPy references (``SIGNATURES[op].reference`` where
``SIGNATURES[op].exact``; :mod:`nndsl.ir.ops.reference` says how they round): integer, boolean,
layout and basic float arithmetic results are the backends' bit for bit, transcendental
functions correctly rounded. A step the backends would fail or disagree on raises
:class:`Unfoldable`, and the subgraph is left to run. ``bf16`` and ``i4`` have no NumPy type and
are not evaluated.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from nndsl.ir.ops import SIGNATURES, infer
from nndsl.ir.ops.reference import NP_DTYPES, Unfoldable, as_dtype
from nndsl.ir.types import FLOAT_DTYPES, SymDim, TensorType

EVALUATORS = {op: sig.reference for op, sig in SIGNATURES.items() if sig.exact}

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
                v = as_dtype(v, out.dtype)
                if v.shape != tuple(out.shape):
                    raise AssertionError(f"step {i} (`{op}`) gave shape {list(v.shape)}, "
                                         f"the IR says {out}")
            vals[i] = v
            types.append(out)
            for r in set(refs):
                if last.get(r) == i:
                    del vals[r]     # no later step reads it
    return np.ascontiguousarray(as_dtype(vals[len(program) - 1], types[-1].dtype))


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
