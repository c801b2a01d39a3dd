"""Matching a checkpoint against the graph's parameters, by name, shape and dtype.

Both backends load weights through :func:`match_weights`, so a checkpoint is judged the same
way everywhere: strict by name, tied weights accepted under either name, ``num_batches_tracked``
optional, and every problem listed in one error.

Dtypes: a tensor must have its parameter's dtype, with one exception, lossless widening. A
float tensor of fewer bits than the parameter's float dtype (``f16`` or ``bf16`` for an ``f32``
parameter, any of them for ``f64``) and an integer tensor of a narrower integer type that holds
every value of the narrower one (``i32`` for ``i64``, ``u8`` for ``i16``) are accepted and cast
to the parameter's dtype: every value they can hold is exactly representable after the cast,
so nothing about the weights changes but their width. Anything else is refused — narrowing
(``f64`` to ``f32`` rounds), and every change of kind (integers or booleans for float
parameters, floats for integer ones) — with the parameter, both dtypes and the conversion
to make.
"""

from __future__ import annotations

from typing import Mapping

from nndsl.errors import WeightsError
from nndsl.ir.derive import is_constant
from nndsl.ir.graph import Graph

OPTIONAL_SUFFIXES = ("num_batches_tracked",)

# The dtype names of torch and NumPy tensors, in the IR's spelling.
_DTYPE_NAMES = {"float32": "f32", "float64": "f64", "float16": "f16", "bfloat16": "bf16",
                "int64": "i64", "int32": "i32", "int16": "i16", "int8": "i8", "uint8": "u8",
                "bool": "bool"}

# found -> spec dtypes it widens to without changing any value (see the module docstring).
LOSSLESS_CASTS = {
    "f16": ("f32", "f64"), "bf16": ("f32", "f64"), "f32": ("f64",),
    "i8": ("i16", "i32", "i64"), "i16": ("i32", "i64"), "i32": ("i64",),
    "u8": ("i16", "i32", "i64"),
}

# How to convert a tensor to each dtype, for the hint.
_CONVERT = {"f32": ".float()", "f64": ".double()", "f16": ".half()", "bf16": ".bfloat16()",
            "i64": ".long()", "i32": ".int()", "i16": ".short()", "i8": ".to(torch.int8)",
            "u8": ".to(torch.uint8)", "bool": ".bool()"}


def spec_params(graph: Graph) -> list:
    """The parameters in the spec's names: the unoptimized graph's, which checkpoints hold."""
    return [n for n in graph.meta.get("source_params") or graph.params() if not is_constant(n)]


def match_weights(graph: Graph, weights: Mapping) -> dict:
    """``weights`` renamed to the spec's parameter names (aliases resolved), after checking that
    names, shapes and dtypes match the spec's parameters exactly. Values are returned untouched,
    but for the lossless widenings of :data:`LOSSLESS_CASTS`, cast to the parameter's dtype."""
    sd = dict(weights)
    for alias, name in graph.meta.get("aliases", {}).items():
        if alias in sd:
            value = sd.pop(alias)
            sd.setdefault(name, value)
    for n in graph.params():     # folded constants: buffers of a saved module, not weights
        if is_constant(n):
            sd.pop(n.name, None)
    params = spec_params(graph)
    err = mismatch_error({n.name: tuple(n.type.shape) for n in params}, sd,
                         dtypes={n.name: n.type.dtype for n in params})
    if err is not None:
        raise err
    for n in params:
        if n.name in sd and dtype_name(sd[n.name]) != n.type.dtype:
            sd[n.name] = _cast(sd[n.name], n.type.dtype)
    return sd


def dtype_name(value) -> str:
    """A tensor's (torch or NumPy) dtype in the IR's spelling (``f32``), or its own name."""
    text = str(getattr(value, "dtype", type(value).__name__))
    text = text.removeprefix("torch.")
    return _DTYPE_NAMES.get(text, text)


def dtype_problem(found: str, want: str) -> str | None:
    """Why a tensor of dtype ``found`` cannot be a parameter of dtype ``want``, with the fix."""
    if found == want or want in LOSSLESS_CASTS.get(found, ()):
        return None
    convert = _CONVERT.get(want)
    how = f"convert with `tensor{convert}`" if convert else f"store it as {want}"
    return f"expected {want}, got {found} ({how})"


def _cast(value, dtype: str):
    if hasattr(value, "detach"):           # a torch tensor
        import torch
        return value.to(getattr(torch, {v: k for k, v in _DTYPE_NAMES.items()}[dtype]))
    import numpy as np
    return np.asarray(value).astype({v: k for k, v in _DTYPE_NAMES.items()}[dtype])


def mismatch_error(own: dict, sd: Mapping, dtypes: Mapping | None = None) -> WeightsError | None:
    """One error listing every missing, unexpected, mis-shaped and (given the parameters'
    ``dtypes``) mistyped tensor, or None."""
    missing = [k for k in own if k not in sd and not k.endswith(OPTIONAL_SUFFIXES)]
    unexpected = [k for k in sd if k not in own]
    wrong = [f"{k}: expected {list(own[k])}, got {list(sd[k].shape)}"
             for k in own if k in sd and tuple(sd[k].shape) != own[k]]
    typed: dict[str, list] = {}       # one line per kind of mistake: 300 f64 tensors, one note
    for k in own:
        if k in sd and k in (dtypes or {}):
            problem = dtype_problem(dtype_name(sd[k]), dtypes[k])
            if problem:
                typed.setdefault(problem, []).append(k)
    if not (missing or unexpected or wrong or typed):
        return None
    notes = []
    if missing:
        notes.append("missing: " + ", ".join(missing))
    if unexpected:
        notes.append("unexpected: " + ", ".join(unexpected))
    if wrong:
        notes.append("wrong shape: " + "; ".join(wrong))
    for problem, names in typed.items():
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        notes.append(f"wrong dtype: {shown}: {problem}")
    hint = "weights are keyed by the spec's parameter names; see `nndsl inspect --params`"
    if typed:
        hint = ("convert each tensor to its parameter's dtype (`nndsl inspect --params` lists "
                "them) before saving, e.g. `{k: v.float() if v.is_floating_point() else v "
                "for k, v in state.items()}`; f16 and bf16 tensors are accepted for f32 "
                "parameters (they widen exactly), narrowing and other kinds are not")
    return WeightsError("the weights do not match the spec", code="E1001",
                        notes=[(n, None) for n in notes], hint=hint)
