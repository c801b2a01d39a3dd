"""Constants and shapes known at import: Constant, ConstantOfShape, Shape, Size."""

from __future__ import annotations

import numpy as np

from nndsl.importer.values import ShapeVec, Unsupported
from nndsl.importer.ops import op
from nndsl.importer.program import dims_text, number
from nndsl.ir.types import SymDim


@op("Constant")
def constant(cx, node, ins, a):
    import onnx.numpy_helper as nh
    if "value" in a:
        return [nh.to_array(a["value"]).copy()]
    for k, dt in (("value_float", np.float32), ("value_int", np.int64)):
        if k in a:
            return [np.array(a[k], dtype=dt)]
    for k, dt in (("value_floats", np.float32), ("value_ints", np.int64)):
        if k in a:
            return [np.array(list(a[k]), dtype=dt)]
    raise Unsupported("a Constant with a sparse or string value")


@op("ConstantOfShape")
def constant_of_shape(cx, node, ins, a):
    import onnx.numpy_helper as nh
    value = nh.to_array(a["value"]).reshape(-1) if "value" in a else np.zeros(1, np.float32)
    shape = ins[0]
    if isinstance(shape, ShapeVec):
        dtype = cx.dtype(value)
        kw = "" if dtype == "f32" else f", dtype={dtype}"
        fill = int(value[0]) if dtype == "bool" else value[0]
        return [cx.emit(f"full({dims_text(shape.dims)}, {number(fill, dtype)}{kw})", dtype,
                        shape.dims)]
    raise Unsupported("ConstantOfShape of a computed shape")


@op("Shape")
def shape(cx, node, ins, a):
    dims = cx.shape_of(ins[0])
    start, end = a.get("start", 0), a.get("end", None)
    r = len(dims)
    start = max(0, min(r, start + r if start < 0 else start))
    end = r if end is None else max(0, min(r, end + r if end < 0 else end))
    return [_vec(dims[start:end])]


def _vec(dims, scalar=False):
    v = ShapeVec(tuple(dims), scalar)
    s = v.static()
    return s if s is not None else v


@op("Size")
def size(cx, node, ins, a):
    n = 1
    for d in cx.shape_of(ins[0]):
        n = n * d
    if isinstance(n, SymDim):
        n = n.simplify()
    return [_vec((n,), scalar=True)]


def _shape_vec(cx, v):
    """A constant or symbolic int vector as a ShapeVec (or None)."""
    if isinstance(v, ShapeVec):
        return v
    c = cx.const(v)
    if c is not None and c.dtype.kind in "iu":
        return ShapeVec(tuple(int(x) for x in c.reshape(-1)), c.ndim == 0)
    return None



