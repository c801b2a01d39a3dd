"""Shapes and indexing: reshape, transpose, squeeze, concat, split, slice, gather, expand."""

from __future__ import annotations

import re

import numpy as np

from nndsl.importer.values import ShapeVec, Sym, Unsupported
from nndsl.importer.ops import op
from nndsl.importer.ops.common import _broadcast, _norm_axis, _x
from nndsl.importer.ops.constants import _shape_vec, _vec
from nndsl.importer.ops.layers import _as_instance, _layer_name
from nndsl.importer.program import dims_text
from nndsl.ir.types import SymDim


def _reshape_dims(cx, x: Sym, target: list, allowzero: bool) -> tuple:
    dims = []
    for i, d in enumerate(target):
        if d == 0 and not allowzero:
            d = x.shape[i]
        dims.append(d)
    return tuple(dims)


def _numel(shape):
    n = 1
    for d in shape:
        n = n * d
    return n.simplify() if isinstance(n, SymDim) else n


def _resolve(shape: tuple, dims: tuple):
    """``dims`` with its -1 resolved against ``shape``'s element count, where that divides."""
    if -1 not in dims:
        return dims
    known = _numel([d for d in dims if not (isinstance(d, int) and d == -1)])
    total = _numel(shape)
    if isinstance(known, int) and known:
        if isinstance(total, int):
            rest = total // known
        else:
            rest = (SymDim.lift(total) // known).simplify()
            if isinstance(rest, SymDim) and rest * known != total:
                return None
        return tuple(rest if isinstance(d, int) and d == -1 else d for d in dims)
    if isinstance(known, SymDim) and isinstance(total, SymDim):
        for cand in _candidates(total, known):
            return tuple(cand if isinstance(d, int) and d == -1 else d for d in dims)
    return None


def _candidates(total: SymDim, known: SymDim):
    """``total / known`` when it is a monomial ratio with an integer coefficient."""
    if len(total.terms) == 1 and len(known.terms) == 1:
        (mt, ct), (mk, ck) = total.terms[0], known.terms[0]
        rest = list(mt)
        for atom in mk:
            if atom not in rest:
                return
            rest.remove(atom)
        if ct % ck:
            return
        q = SymDim({tuple(rest): ct // ck}).simplify()
        yield q


@op("Reshape")
def reshape(cx, node, ins, a):
    x = _x(cx, ins)
    sv = _shape_vec(cx, ins[1])
    if sv is None:
        raise Unsupported("a Reshape to a shape computed at run time from tensor values")
    dims = _reshape_dims(cx, x, list(sv.dims), bool(a.get("allowzero", 0)))
    shape = _resolve(x.shape, dims) or cx.out_shape()
    if shape is not None and tuple(shape) == tuple(x.shape):
        return [x]
    text = dims_text(shape if shape is not None and _numel(shape) == _numel(x.shape) and
                     all(isinstance(d, int) for d in shape) else dims)
    if x.rank >= 2 and shape is not None and len(shape) == 2 and shape[0] == x.shape[0] and \
            isinstance(shape[1], (int, SymDim)) and _numel(x.shape[1:]) == shape[1]:
        return [cx.emit("flatten", x.dtype, shape, head=x)]
    return [cx.emit(f"reshape({text})", x.dtype, shape, head=x)]


@op("Flatten")
def flatten(cx, node, ins, a):
    x = _x(cx, ins)
    axis = a.get("axis", 1)
    axis = axis + x.rank if axis < 0 else axis
    shape = (_numel(x.shape[:axis]), _numel(x.shape[axis:]))
    if axis == 1:
        return [cx.emit("flatten", x.dtype, shape, head=x)] if x.rank > 2 else [x]
    if axis == 0:
        return [cx.emit(f"reshape([1, {shape[1]}])", x.dtype, shape, head=x)]
    y = x if axis == x.rank - 1 else cx.emit(f"flatten(start={axis})", x.dtype,
                                             x.shape[:axis] + (shape[1],), head=x)
    if axis == 1:
        return [y]
    return [cx.emit(f"flatten(start=0, end={axis - 1})", x.dtype, shape, head=y)]


@op("Transpose")
def transpose(cx, node, ins, a):
    x = _x(cx, ins)
    perm = list(a.get("perm", list(reversed(range(x.rank)))))
    return [permute(cx, x, perm, node.input[0])]


def permute(cx, x: Sym, perm: list, onnx_in: str | None = None) -> Sym:
    """``x`` with its dims permuted. Two permutations in a row, the first read by nothing
    else, are one (``p2 ∘ p1``; none at all when they cancel, as the transposes to and from
    a recurrent layer's time-major layout do)."""
    stmt = cx.prog.stmts[-1] if cx.prog.stmts else None
    if stmt is not None and stmt.kind == "permute" and stmt.targets == [x.var] and \
            onnx_in is not None and cx.data_uses[onnx_in] == 1 and \
            stmt.info.get("onnx_out") in (onnx_in, None):
        src = stmt.info["src"]
        cx.prog.stmts.pop()
        cx.vars.taken.discard(x.var)
        return permute(cx, src, [stmt.info["perm"][p] for p in perm])
    if perm == list(range(x.rank)):
        return x
    shape = tuple(x.shape[p] for p in perm)
    moved = [i for i, p in enumerate(perm) if p != i]
    info = {"perm": list(perm), "src": x, "onnx_out": None}
    if len(moved) == 2 and x.rank >= 2:
        i, j = moved
        call = "transpose" if (i, j) == (x.rank - 2, x.rank - 1) else \
            f"transpose({i - x.rank}, {j - x.rank})"
    else:
        call = f"permute({dims_text(perm)})"
    y = cx.emit(call, x.dtype, shape, head=x, kind="permute", info=info)
    if cx.node is not None and cx.node.op_type == "Transpose":
        cx.prog.stmts[-1].info["onnx_out"] = cx.node.output[0]
    return y


def _axes(cx, ins, a, i: int = 1):
    if len(ins) > i and ins[i] is not None:
        return cx.const_ints(ins[i], "the axes")
    return list(a["axes"]) if "axes" in a else None


@op("Squeeze")
def squeeze(cx, node, ins, a):
    axes = _axes(cx, ins, a)
    sv = _shape_vec(cx, ins[0])
    if isinstance(ins[0], ShapeVec) or (sv is not None and not isinstance(ins[0], Sym)):
        return [_vec(sv.dims, scalar=True)] if len(sv.dims) == 1 else [ins[0]]
    x = _x(cx, ins)
    if axes is None:
        axes = [i for i, d in enumerate(x.shape) if d == 1]
    axes = sorted(_norm_axis(ax, x.rank) for ax in axes)
    shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
    arg = str(axes[0]) if len(axes) == 1 else dims_text(axes)
    return [cx.emit(f"squeeze({arg})", x.dtype, shape, head=x)]


@op("Unsqueeze")
def unsqueeze(cx, node, ins, a):
    axes = _axes(cx, ins, a)
    if isinstance(ins[0], ShapeVec):
        if ins[0].scalar and axes in ([0], [-1]):
            return [ShapeVec(ins[0].dims)]
        raise Unsupported("Unsqueeze of a symbolic shape")
    x = _x(cx, ins)
    rank = x.rank + len(axes)
    axes = sorted(_norm_axis(ax, rank) for ax in axes)
    shape = list(x.shape)
    y = x
    for ax in axes:
        shape.insert(ax, 1)
        y = cx.emit(f"unsqueeze({ax})", x.dtype, tuple(shape), head=y)
    return [y]


@op("Concat")
def concat(cx, node, ins, a):
    vals = [v for v in ins if v is not None]
    if all(isinstance(v, (ShapeVec, np.ndarray)) for v in vals):
        svs = [_shape_vec(cx, v) for v in vals]
        if all(s is not None for s in svs):
            return [_vec(sum((s.dims for s in svs), ()))]
    xs = [cx.tensor(v) for v in vals]
    xs = [x for x in xs if x.shape is None or all(
        not (isinstance(d, int) and d == 0) for d in x.shape)] or xs[:1]
    rank = xs[0].rank
    axis = _norm_axis(a["axis"], rank)
    if len(xs) == 1:
        return [xs[0]]
    total = 0
    for x in xs:
        total = total + x.shape[axis]
    if isinstance(total, SymDim):
        total = total.simplify()
    shape = list(xs[0].shape)
    shape[axis] = total
    return [cx.emit(f"concat([{', '.join(x.var for x in xs)}], dim={axis})", xs[0].dtype,
                    shape, reads=xs)]


@op("Split")
def split(cx, node, ins, a):
    x = _x(cx, ins)
    axis = _norm_axis(a.get("axis", 0), x.rank)
    n = len(node.output)
    if len(ins) > 1 and ins[1] is not None:
        sizes = cx.const_ints(ins[1], "Split's sizes")
    else:
        size = x.shape[axis]
        if not isinstance(size, int):
            raise Unsupported("Split of a symbolic dim without sizes")
        part = -(-size // n)
        sizes = [min(part, size - i * part) for i in range(n)]
    shapes = []
    for s in sizes:
        sh = list(x.shape)
        sh[axis] = s
        shapes.append(tuple(sh))
    outs = cx.emit(f"split({dims_text(sizes)}, dim={axis})", [x.dtype] * n, shapes, head=x,
                   targets=n)
    return outs if n > 1 else [outs]


INT_MAX = 2 ** 62


@op("Slice")
def slice_(cx, node, ins, a):
    starts = cx.const_ints(ins[1], "Slice's starts")
    end_vec = ins[2] if isinstance(ins[2], ShapeVec) and ins[2].static() is None else None
    if end_vec is not None:
        return [_slice_to_dim(cx, ins, starts, end_vec)]
    ends = cx.const_ints(ins[2], "Slice's ends")
    sv = _shape_vec(cx, ins[0]) if not isinstance(ins[0], Sym) else None
    if sv is not None and len(starts) == 1:
        n = len(sv.dims)
        axes = cx.const_ints(ins[3], "axes") if len(ins) > 3 and ins[3] is not None else [0]
        steps = cx.const_ints(ins[4], "steps") if len(ins) > 4 and ins[4] is not None else [1]
        if axes[0] in (0, -1) and steps == [1]:
            s, e = max(-n, min(starts[0], n)), max(-n - 1, min(ends[0], n))
            return [_vec(sv.dims[slice(s, e)])]
    x = _x(cx, ins)
    axes = cx.const_ints(ins[3], "Slice's axes") if len(ins) > 3 and ins[3] is not None \
        else list(range(len(starts)))
    steps = cx.const_ints(ins[4], "Slice's steps") if len(ins) > 4 and ins[4] is not None \
        else [1] * len(starts)
    subs = [":"] * x.rank
    shape = list(x.shape)
    flips = []
    for s, e, ax, st in zip(starts, ends, axes, steps):
        ax = _norm_axis(ax, x.rank)
        size = x.shape[ax]
        if st < 0:
            if not isinstance(size, int):
                raise Unsupported("a reversing Slice over a symbolic dim")
            idx = list(range(*slice(s, e, st).indices(size)))
            if not idx:
                raise Unsupported("an empty Slice")
            flips.append(ax)
            s, e, st = idx[-1], idx[0] + 1, -st
        if isinstance(size, int):
            rng = range(*slice(max(-INT_MAX, min(s, INT_MAX)), max(-INT_MAX, min(e, INT_MAX)),
                               st).indices(size))
            if len(rng) == size and st == 1:
                continue
            if not len(rng):
                raise Unsupported("an empty Slice")
            s, e = rng.start, rng.start + (len(rng) - 1) * st + 1
            shape[ax] = len(rng)
            e_text = "" if e >= size else str(e)
        else:
            if st != 1 or e < -INT_MAX // 2 or s < 0 and 0 <= e < INT_MAX // 2:
                raise Unsupported("a strided Slice, or one from the end to a position from "
                                  "the start, over a symbolic dim")
            if s < 0:       # the last -s elements, or those between two positions from the end
                e_text = "" if e >= INT_MAX // 2 or e > 2 ** 31 else str(e)
                shape[ax] = -s if not e_text else e - s
            elif e >= INT_MAX // 2 or e > 2 ** 31:
                e_text = ""
                shape[ax] = size - s
            elif e < 0:
                e_text = str(e)
                shape[ax] = size + e - s
            else:
                e_text = str(e)
                shape[ax] = e - s
        subs[ax] = (str(s) if s else "") + ":" + e_text + (f":{st}" if st != 1 else "")
    y = x
    if any(s != ":" for s in subs):
        while subs and subs[-1] == ":":
            subs.pop()
        y = cx.emit(f"{x.var}[{', '.join(subs)}]", x.dtype, shape, reads=[x])
    if flips:
        y = cx.emit(f"flip({dims_text(sorted(flips))})", y.dtype, shape, head=y)
    return [y]


def _slice_to_dim(cx, ins, starts: list, ends: ShapeVec) -> Sym:
    """``x[s:T]`` along one axis, its end a symbolic dim (``positional_embedding[:T]``, T the
    length of another input)."""
    x = _x(cx, ins)
    axes = cx.const_ints(ins[3], "Slice's axes") if len(ins) > 3 and ins[3] is not None else [0]
    steps = cx.const_ints(ins[4], "Slice's steps") if len(ins) > 4 and ins[4] is not None \
        else [1]
    if len(starts) != 1 or len(ends.dims) != 1 or len(axes) != 1 or steps != [1] or \
            starts[0] < 0 or not isinstance(ends.dims[0], SymDim):
        raise Unsupported("a Slice whose ends are computed at run time, other than one "
                          "symbolic end on one axis")
    ax = _norm_axis(axes[0], x.rank)
    s, e = starts[0], ends.dims[0]
    shape = list(x.shape)
    shape[ax] = (e - s).simplify() if s else e
    subs = [":"] * ax + [f"{s if s else ''}:{e}"]
    return cx.emit(f"{x.var}[{', '.join(subs)}]", x.dtype, tuple(shape), reads=[x])


@op("Gather")
def gather(cx, node, ins, a):
    data, idx = ins[0], ins[1]
    axis = a.get("axis", 0)
    ci = cx.const(idx)
    sv = _shape_vec(cx, data) if not isinstance(data, Sym) else None
    if sv is not None and ci is not None:
        picked = [sv.dims[int(i)] for i in ci.reshape(-1)]
        return [_vec(picked, scalar=ci.ndim == 0)]
    dc = cx.const(data)
    if dc is not None and isinstance(idx, Sym) and axis == 0 and dc.ndim == 2 and \
            dc.dtype.kind == "f":
        shared = next((layer for layer, table in cx.tables if table is dc), None)
        inst = _as_instance(cx, shared) if shared is not None else None
        if inst is not None:        # the same table read twice: one embedding applied twice
            return [cx.emit(f"{inst}({idx.var})", cx.dtype(dc), tuple(idx.shape) +
                            (dc.shape[1],), reads=[idx])]
        name = _layer_name(cx, node, 0)
        cx.prog.weights[f"{name}.weight"] = dc
        cx.tables.append((name, dc))
        shape = tuple(idx.shape) + (dc.shape[1],)
        return [cx.emit(f"embedding({dc.shape[0]}, {dc.shape[1]}) as {name}", cx.dtype(dc),
                        shape, head=idx, kind="embedding", info={"layer": name})]
    x = cx.tensor(data)
    axis = _norm_axis(axis, x.rank)
    if ci is not None and ci.ndim <= 1:
        size = x.shape[axis]
        vals = [int(i) for i in ci.reshape(-1)]
        pre = ":, " * axis
        if ci.ndim == 0:
            shape = tuple(d for i, d in enumerate(x.shape) if i != axis)
            return [cx.emit(f"{x.var}[{pre}{vals[0]}]", x.dtype, shape, reads=[x])]
        if isinstance(size, int):
            vals = [v % size for v in vals]
        if vals and vals == list(range(vals[0], vals[0] + len(vals))) and vals[0] >= 0:
            shape = list(x.shape)
            shape[axis] = len(vals)
            return [cx.emit(f"{x.var}[{pre}{vals[0]}:{vals[-1] + 1}]", x.dtype, shape,
                            reads=[x])]
    i = cx.tensor(idx)
    if i.dtype not in ("i64", "i32"):
        raise Unsupported(f"Gather indices of dtype {i.dtype}")
    if i.dtype == "i32":
        i = cx.emit("cast(i64)", "i64", i.shape, head=i)
    i = _wrap_negative(cx, i, x.shape[axis])
    shape = tuple(x.shape[:axis]) + tuple(i.shape) + tuple(x.shape[axis + 1:])
    pre = ":, " * axis
    return [cx.emit(f"{x.var}[{pre}{i.var}]", x.dtype, shape, reads=[x, i])]


@op("GatherElements")
def gather_elements(cx, node, ins, a):
    x, i = cx.tensor(ins[0]), cx.tensor(ins[1])
    axis = _norm_axis(a.get("axis", 0), x.rank)
    if i.dtype == "i32":
        i = cx.emit("cast(i64)", "i64", i.shape, head=i)
    i = _wrap_negative(cx, i, x.shape[axis])
    return [cx.emit(f"gather({x.var}, {i.var}, {axis})", x.dtype, i.shape, reads=[x, i])]


def _wrap_negative(cx, i: Sym, size) -> Sym:
    """Indices computed at run time may count from the end (ONNX allows ``-size..size-1``)."""
    c = cx.const(i) if not isinstance(i, Sym) else None
    if c is not None and (c >= 0).all():
        return i
    if not isinstance(size, int):       # a symbolic dim is no tensor: its count of ones is
        size = f"sum(ones([{size}], dtype={i.dtype}))"
    return cx.emit(f"where({i.var} < 0, {i.var} + {size}, {i.var})", i.dtype, i.shape,
                   reads=[i])


@op("ScatterElements")
def scatter_elements(cx, node, ins, a):
    red = a.get("reduction", b"none")
    red = red.decode() if isinstance(red, bytes) else red
    if red != "add":
        raise Unsupported(f"ScatterElements with reduction={red} (nndsl has scatter_add)")
    x, i, s = (cx.tensor(v) for v in ins[:3])
    axis = _norm_axis(a.get("axis", 0), x.rank)
    return [cx.emit(f"scatter_add({x.var}, {i.var}, {s.var}, {axis})", x.dtype, x.shape,
                    reads=[x, i, s])]


@op("Expand")
def expand(cx, node, ins, a):
    x = _x(cx, ins)
    sv = _shape_vec(cx, ins[1])
    if sv is None:
        raise Unsupported("an Expand to a shape computed from tensor values")
    shape = _broadcast(x.shape, sv.dims)
    if tuple(shape) == tuple(x.shape):
        return [x]
    return [cx.emit(f"expand({dims_text(shape)})", x.dtype, shape, head=x)]


@op("Range")
def range_(cx, node, ins, a):
    start, limit, delta = (_shape_vec(cx, v) for v in ins)
    if start is None or limit is None or delta is None:
        raise Unsupported("a Range of floats computed at run time")
    if start.dims != (0,) or delta.dims != (1,):
        raise Unsupported("a Range that does not start at 0 by 1")
    n = limit.dims[0]
    return [cx.emit(f"arange({n})", "i64", (n,))]


@op("Tile")
def tile(cx, node, ins, a):
    x = _x(cx, ins)
    reps = cx.const_ints(ins[1], "Tile's repeats")
    y = x
    for ax, r in enumerate(reps):
        if r != 1:
            shape = list(y.shape)
            shape[ax] = shape[ax] * r
            y = cx.emit(f"concat([{', '.join([y.var] * r)}], dim={ax})", y.dtype, shape,
                        reads=[y])
    return [y]


@op("ScatterND")
def scatter_nd(cx, node, ins, a):
    """``ScatterND(data, indices [E, 1], updates, reduction=add)``: the rows of ``updates``
    added into row ``indices[e]`` of ``data``, which is ``segment_sum(updates, ids, S)`` (plus
    ``data`` unless it is zeros), as nndsl's own export writes its segment sums and means."""
    red = a.get("reduction", b"none")
    red = red.decode() if isinstance(red, bytes) else red
    if red not in ("add", "max"):
        raise Unsupported(f"ScatterND with reduction={red} (nndsl reads the add and the max "
                          f"of whole rows)")
    x, i, u = (cx.tensor(v) for v in ins[:3])
    if i.rank != 2 or i.shape[1] != 1 or u.rank != x.rank or \
            tuple(u.shape[1:]) != tuple(x.shape[1:]):
        raise Unsupported("a ScatterND of other than whole rows (indices [E, 1])")
    c = cx.const(ins[0])
    made = next((st for st in reversed(cx.prog.stmts) if st.targets == [x.var]), None)
    zeros = c is not None and not np.any(c) or made is not None and \
        re.fullmatch(r"full\(\[[^\]]*\], 0(\.0)?\)", made.call) is not None
    ids = cx.emit(f"{i.var}[:, 0]", i.dtype, (i.shape[0],), reads=[i], hint="ids")
    if red == "max":
        # a row no update reaches keeps its data (segment_max gives 0 there)
        m = cx.emit(f"segment_max({u.var}, {ids.var}, {x.shape[0]})", x.dtype, x.shape,
                    reads=[u, ids])
        ones = dims_text((i.shape[0],) + (1,) * (x.rank - 1))
        hit = cx.emit(f"segment_sum(ones({ones}), {ids.var}, {x.shape[0]}) > 0.5", "bool",
                      (x.shape[0],) + (1,) * (x.rank - 1), reads=[ids], hint="hit")
        return [cx.emit(f"where({hit.var}, maximum({x.var}, {m.var}), {x.var})", x.dtype,
                        x.shape, reads=[hit, x, m])]
    s = cx.emit(f"segment_sum({u.var}, {ids.var}, {x.shape[0]})", x.dtype, x.shape,
                reads=[u, ids])
    if zeros:
        return [s]
    return [cx.emit(f"{x.var} + {s.var}", x.dtype, x.shape, reads=[x, s])]
