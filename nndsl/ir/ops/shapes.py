"""Shape rules: ``rule(operand types, attrs) -> output types``, one per op.

A rule raises :class:`~nndsl.errors.ShapeError` with a message that names the shapes; the
elaborator adds the source location and where each operand came from.
"""

from __future__ import annotations

import difflib
from typing import Callable

from nndsl.errors import ShapeError
from nndsl.ir.ops.signatures import BINARY, COMPARE, REDUCE, SEGMENT, UNARY
from nndsl.ir.types import FLOAT_DTYPES, INT_DTYPES, Dim, SymDim, TensorType, equal_if_exact

MAX_DIM = 2**40  # no real tensor dimension is larger; bigger ones are typos


def _T(dtype: str, shape) -> TensorType:
    for d in shape:
        if isinstance(d, int) and d > MAX_DIM:
            raise ShapeError(f"dimension {d} is absurdly large (limit {MAX_DIM})", code="E0601")
        if isinstance(d, int) and d < 0:
            raise ShapeError(f"a dimension cannot be negative, got {d} in "
                             f"[{', '.join(map(str, shape))}]", code="E0315")
    return TensorType(dtype, tuple(shape))


def _same(a: Dim, b: Dim) -> bool:
    return a == b if type(a) is type(b) else False


def norm_axis(axis: int, rank: int, what: str = "dim") -> int:
    if not -rank <= axis < max(rank, 1):
        raise ShapeError(f"{what} {axis} is out of range for a tensor of rank {rank}",
                         code="E0302", hint=f"use a {what} in [{-rank}, {rank - 1}]")
    return axis % rank if rank else 0


def broadcast_shapes(a: tuple, b: tuple) -> tuple:
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        da = a[-i] if i <= len(a) else 1
        db = b[-i] if i <= len(b) else 1
        if _same(da, db) or db == 1:
            out.append(da)
        elif da == 1:
            out.append(db)
        else:
            raise ShapeError(f"shapes [{', '.join(map(str, a))}] and [{', '.join(map(str, b))}] "
                             f"do not broadcast: dim -{i} is {da} vs {db}", code="E0303",
                             hint="broadcasting needs equal dims or a dim of 1")
    return tuple(reversed(out))


def promote(a: TensorType, b: TensorType) -> str:
    if a.dtype == b.dtype:
        return a.dtype
    if b.rank == 0 and (a.dtype in FLOAT_DTYPES or b.dtype not in FLOAT_DTYPES):
        return a.dtype
    if a.rank == 0 and (b.dtype in FLOAT_DTYPES or a.dtype not in FLOAT_DTYPES):
        return b.dtype
    if a.dtype in FLOAT_DTYPES and b.dtype in INT_DTYPES + ("bool",):
        return a.dtype
    if b.dtype in FLOAT_DTYPES and a.dtype in INT_DTYPES + ("bool",):
        return b.dtype
    raise ShapeError(f"dtypes {a.dtype} and {b.dtype} do not mix", code="E0325",
                     hint=f"convert one side with cast(x, {a.dtype})")


def _float(t: TensorType, op: str) -> None:
    if t.dtype not in FLOAT_DTYPES:
        raise ShapeError(f"{op} needs a floating-point tensor, got {t}", code="E0304",
                         hint="convert it with cast(x, f32)")


def _unary(ins, a):
    return (ins[0],)


def _float_unary(op):
    def rule(ins, a):
        _float(ins[0], op)
        return (ins[0],)
    return rule


def _binary(ins, a):
    x, y = ins
    return (_T(promote(x, y), broadcast_shapes(x.shape, y.shape)),)


def _compare(ins, a):
    x, y = ins
    promote(x, y)
    return (_T("bool", broadcast_shapes(x.shape, y.shape)),)


def _where(ins, a):
    c, x, y = ins
    shape = broadcast_shapes(broadcast_shapes(c.shape, x.shape), y.shape)
    return (_T(promote(x, y), shape),)


def _masked_fill(ins, a):
    x, m = ins
    if m.dtype != "bool":
        raise ShapeError(f"masked_fill needs a bool mask, got {m}", code="E0304")
    if broadcast_shapes(x.shape, m.shape) != x.shape:
        raise ShapeError(f"mask {m} does not broadcast to {x}", code="E0303")
    return (x,)


def _tri(ins, a):
    if ins[0].rank < 2:
        raise ShapeError(f"tril/triu need a tensor of rank >= 2, got {ins[0]}", code="E0330")
    return (ins[0],)


def _full(ins, a):
    return (_T(a["dtype"], a["shape"]),)


def _arange(ins, a):
    return (_T(a["dtype"], (a["n"],)),)


def _matmul(ins, a):
    x, y = ins
    if x.rank < 1 or y.rank < 1:
        raise ShapeError("matmul needs tensors of rank >= 1", code="E0305")
    xs = x.shape if x.rank > 1 else (1,) + x.shape
    ys = y.shape if y.rank > 1 else y.shape + (1,)
    if not _same(xs[-1], ys[-2]):
        raise ShapeError(f"matmul inner dims differ: {x} @ {y} ({xs[-1]} vs {ys[-2]})",
                         code="E0305", hint="the last dim of the left operand must equal the "
                                             "second-to-last dim of the right one; transpose one?")
    batch = broadcast_shapes(xs[:-2], ys[:-2])
    shape = batch + (xs[-2], ys[-1])
    if x.rank == 1:
        shape = shape[:-2] + shape[-1:]
    if y.rank == 1:
        shape = shape[:-1]
    return (_T(promote(x, y), shape),)


def _same_dtype(x: TensorType, params, op: str) -> None:
    """A layer computes in its input's dtype: its weights must have it too."""
    for t in params:
        if t is not None and t.dtype != x.dtype:
            raise ShapeError(f"{op} input is {x.dtype} but a weight is {t}", code="E0325",
                             hint=f"cast the input with cast(x, {t.dtype}), or the weight")


def linear_input(x: TensorType) -> None:
    """A linear layer's input has features in its last dim (the builder reads them first)."""
    if x.rank < 1:
        raise ShapeError(f"linear needs an input of rank >= 1, got {x}", code="E0306",
                         hint="the last dim of the input holds its features; `unsqueeze` a "
                              "scalar first")


def _linear(ins, a):
    x, w, b = ins
    _float(x, "linear")
    _same_dtype(x, (w, b), "linear")
    linear_input(x)
    if not _same(x.shape[-1], w.shape[1]):
        raise ShapeError(f"linear expects input features {w.shape[1]} (weight {w}) "
                         f"but the input is {x}", code="E0306",
                         hint="the last dim of the input must equal the layer's in_features")
    return (_T(x.dtype, x.shape[:-1] + (w.shape[0],)),)


def _window(what: str, k: int, s: int, p: int, d: int) -> None:
    """Kernel, stride and dilation must be positive ints, padding a non-negative one."""
    for name, v, low in (("kernel", k, 1), ("stride", s, 1), ("dilation", d, 1),
                         ("padding", p, 0)):
        if not isinstance(v, int) or isinstance(v, bool) or v < low:
            raise ShapeError(f"{what} {name} must be {'a positive' if low else 'a non-negative'} "
                             f"int, got {v}", code="E0307")


def conv_out(size: Dim, k: int, s: int, p: int, d: int, what: str) -> Dim:
    _window(what, k, s, p, d)
    out = (size + 2 * p - d * (k - 1) - 1) // s + 1
    if isinstance(out, int) and out <= 0:
        raise ShapeError(f"{what} output size would be {out} (input size {size}, kernel {k}, "
                         f"stride {s}, padding {p}, dilation {d})", code="E0307",
                         hint="the input is too small for this kernel; pad it or use a smaller "
                              "kernel/stride")
    return out


def _tup(v, n: int) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


_LAYOUTS = {1: "[N, C, L]", 2: "[N, C, H, W]", 3: "[N, C, D, H, W]"}


def conv_input(x: TensorType, nd: int, op: str) -> None:
    """A convolution's input is [N, C, spatial dims] (the builder reads C first)."""
    if x.rank != nd + 2:
        raise ShapeError(f"{op} expects a rank-{nd + 2} input {_LAYOUTS.get(nd, '[N, C, ...]')}, "
                         f"got {x}", code="E0308")


def conv_groups(cin: Dim, out: Dim, g: int, op: str) -> None:
    """``groups`` must divide the input and the output channels (the builder sizes the weight
    by them)."""
    if isinstance(cin, int) and cin % g or isinstance(out, int) and out % g:
        raise ShapeError(f"{op} groups={g} must divide both input channels {cin} and output "
                         f"channels {out}", code="E0327",
                         hint="pick a `groups` that divides both channel counts")


def _same_padding(a: dict, nd: int) -> None:
    if a["padding"] == "same" and any(s != 1 for s in _tup(a["stride"], nd)):
        raise ShapeError("padding=\"same\" needs stride 1", code="E0328",
                         hint="use stride=1, or give the padding as numbers")


def _conv(nd: int):
    def rule(ins, a):
        x, w, b = ins
        op = f"conv{nd}d"
        _float(x, op)
        _same_dtype(x, (w, b), op)
        conv_input(x, nd, op)
        g = a["groups"]
        conv_groups(x.shape[1], w.shape[0], g, op)
        _same_padding(a, nd)
        if not _same(x.shape[1], w.shape[1] * g):
            raise ShapeError(f"{op} expects {w.shape[1] * g} input channels (weight {w}, groups "
                             f"{g}) but the input is {x}", code="E0308")
        k, s, d = w.shape[2:], _tup(a["stride"], nd), _tup(a["dilation"], nd)
        if a["padding"] == "same":
            spatial = x.shape[2:]
        else:
            p = _tup(a["padding"], nd)
            spatial = tuple(conv_out(x.shape[2 + i], k[i], s[i], p[i], d[i], op) for i in range(nd))
        return (_T(x.dtype, (x.shape[0], w.shape[0]) + tuple(spatial)),)
    return rule


def _conv_transpose2d(ins, a):
    x, w, b = ins
    _float(x, "conv_transpose2d")
    conv_input(x, 2, "conv_transpose2d")
    conv_groups(x.shape[1], w.shape[1] * a["groups"], a["groups"], "conv_transpose2d")
    if not _same(x.shape[1], w.shape[0]):
        raise ShapeError(f"conv_transpose2d expects {w.shape[0]} input channels (weight {w}) but "
                         f"the input is {x}", code="E0308")
    s, p, op_, d = (_tup(a[k], 2) for k in ("stride", "padding", "output_padding", "dilation"))
    for i in range(2):
        if op_[i] >= max(s[i], d[i]):
            raise ShapeError(f"conv_transpose2d output_padding {op_[i]} must be smaller than the "
                             f"stride ({s[i]}) or the dilation ({d[i]})", code="E0307",
                             hint="output_padding picks among the sizes a stride allows; lower it")
    spatial = []
    for i in range(2):
        o = (x.shape[2 + i] - 1) * s[i] - 2 * p[i] + d[i] * (w.shape[2 + i] - 1) + op_[i] + 1
        if isinstance(o, int) and o <= 0:
            raise ShapeError(f"conv_transpose2d output size would be {o}", code="E0307")
        spatial.append(o)
    return (_T(x.dtype, (x.shape[0], w.shape[1] * a["groups"]) + tuple(spatial)),)


def pool_out(size, k, s, p, d, ceil_mode, what):
    _window(what, k, s, p, d)
    if p * 2 > k:
        raise ShapeError(f"{what} padding {p} must be at most half the kernel size {k}",
                         code="E0307")
    num = size + 2 * p - d * (k - 1) - 1
    if ceil_mode:
        out = (num + s - 1) // s + 1
        if isinstance(out, int) and (out - 1) * s >= size + p:
            out -= 1
    else:
        out = num // s + 1
    if isinstance(out, int) and out <= 0:
        raise ShapeError(f"{what} output size would be {out} (input size {size}, kernel {k}, "
                         f"stride {s}, padding {p})", code="E0307",
                         hint="the input is too small for this pooling window")
    return out


def _pool(nd: int, kind: str):
    def rule(ins, a):
        x = ins[0]
        op = f"{kind}_pool{nd}d"
        if x.rank != nd + 2:
            raise ShapeError(f"{op} expects a rank-{nd + 2} input, got {x}", code="E0308")
        k = _tup(a["kernel"], nd)
        s = _tup(a["stride"] if a["stride"] is not None else a["kernel"], nd)
        p = _tup(a["padding"], nd)
        d = _tup(a.get("dilation", 1), nd)
        spatial = tuple(pool_out(x.shape[2 + i], k[i], s[i], p[i], d[i], a["ceil_mode"], op)
                        for i in range(nd))
        return (_T(x.dtype, x.shape[:2] + spatial),)
    return rule


def _adaptive(nd: int):
    def rule(ins, a):
        x = ins[0]
        if x.rank != nd + 2:
            raise ShapeError(f"adaptive_avg_pool{nd}d expects a rank-{nd + 2} input, got {x}",
                             code="E0308")
        return (_T(x.dtype, x.shape[:2] + _tup(a["output_size"], nd)),)
    return rule


def _channels_param(x: TensorType, t: TensorType | None, op: str, axis: int = 1):
    if t is not None and not _same(t.shape[0], x.shape[axis]):
        raise ShapeError(f"{op} has {t.shape[0]} channels but the input is {x}", code="E0309")


def batch_norm_input(x: TensorType) -> None:
    """batch_norm normalizes the channels of dim 1 (the builder reads them first)."""
    if x.rank < 2:
        raise ShapeError(f"batch_norm expects [N, C, ...], got {x}", code="E0309")


def _batch_norm(ins, a):
    x, w, b, rm, rv, nbt = ins
    _float(x, "batch_norm")
    batch_norm_input(x)
    for t in (w, b, rm, rv):
        _channels_param(x, t, "batch_norm")
    return (x,)


def _layer_norm(ins, a):
    x, w, b = ins
    _float(x, "layer_norm")
    ns = tuple(a["normalized_shape"])
    if x.shape[len(x.shape) - len(ns):] != ns or len(ns) > x.rank:
        raise ShapeError(f"layer_norm over [{', '.join(map(str, ns))}] does not fit the last dims "
                         f"of {x}", code="E0309")
    return (x,)


def _group_norm(ins, a):
    x, w, b = ins
    _float(x, "group_norm")
    g = a["groups"]
    c = x.shape[1]
    if isinstance(c, int) and c % g:
        raise ShapeError(f"group_norm: {c} channels do not split into {g} groups", code="E0309",
                         hint=f"use a number of groups that divides {c}")
    _channels_param(x, w, "group_norm")
    return (x,)


def _embedding(ins, a):
    idx, w = ins
    if idx.dtype not in ("i64", "i32"):
        raise ShapeError(f"embedding indices must be i64 or i32, got {idx}", code="E0304",
                         hint="declare the input as i64[...]")
    return (_T(w.dtype, idx.shape + (w.shape[1],)),)


def recurrent_input(x: TensorType, op: str) -> None:
    """A recurrent layer's input is [N, T, features], batch first (the builder reads the
    features first)."""
    if x.rank != 3:
        raise ShapeError(f"{op} expects [N, T, features] input (batch first), got {x}",
                         code="E0310")


def _recurrent(op: str, gates: int, has_c: bool):
    def rule(ins, a):
        x = ins[0]
        _float(x, op)
        recurrent_input(x, op)
        h, layers = a["hidden"], a["layers"]
        dirs = 2 if a["bidirectional"] else 1
        w_ih = ins[3 if has_c else 2]
        if not _same(w_ih.shape[1], x.shape[2]):
            raise ShapeError(f"{op} expects {w_ih.shape[1]} input features but the "
                             f"input is {x}", code="E0310")
        if a["batch_first"]:
            n, t = x.shape[0], x.shape[1]
            out = _T(x.dtype, (n, t, dirs * h))
        else:
            t, n = x.shape[0], x.shape[1]
            out = _T(x.dtype, (t, n, dirs * h))
        state = _T(x.dtype, (layers * dirs, n, h))
        return (out, state, state) if has_c else (out, state)
    return rule


def _attention(ins, a):
    q, k, v, m = ins
    for t in (q, k, v):
        _float(t, "attention")
    if q.rank < 2 or k.rank != q.rank or v.rank != q.rank:
        raise ShapeError(f"attention needs q, k, v of one rank >= 2, got {q}, {k}, {v}",
                         code="E0305")
    if not _same(q.shape[-1], k.shape[-1]) or not _same(k.shape[-2], v.shape[-2]):
        raise ShapeError(f"attention: q {q}, k {k}, v {v} do not fit", code="E0305")
    batch = broadcast_shapes(broadcast_shapes(q.shape[:-2], k.shape[:-2]), v.shape[:-2])
    return (_T(q.dtype, batch + (q.shape[-2], v.shape[-1])),)


def _flatten(ins, a):
    x = ins[0]
    if x.rank == 0:
        return (_T(x.dtype, (1,)),)
    s, e = norm_axis(a["start"], x.rank), norm_axis(a["end"], x.rank)
    if s > e:
        raise ShapeError(f"flatten start {a['start']} comes after end {a['end']}", code="E0331")
    n: Dim = 1
    for d in x.shape[s:e + 1]:
        n = n * d
    return (_T(x.dtype, x.shape[:s] + (n,) + x.shape[e + 1:]),)


def _reshape(ins, a):
    x = ins[0]
    shape = tuple(a["shape"])
    total = x.numel()
    if sum(1 for d in shape if isinstance(d, int) and d == -1) > 1:
        raise ShapeError("reshape may infer at most one dim (-1)", code="E0311")
    if -1 in [d for d in shape if isinstance(d, int)]:
        known: Dim = 1
        for d in shape:
            if not (isinstance(d, int) and d == -1):
                known = known * d
        if isinstance(known, int) and known == 0:
            raise ShapeError("reshape with a zero-sized dim cannot infer -1", code="E0311")
        if isinstance(total, int) and isinstance(known, int):
            if total % known:
                raise ShapeError(f"cannot reshape {x} ({total} elements) into "
                                 f"[{', '.join(map(str, shape))}]", code="E0311")
            inferred: Dim = total // known
        else:
            inferred = _sym_div(total, known, x, shape)
        shape = tuple(inferred if isinstance(d, int) and d == -1 else d for d in shape)
    n: Dim = 1
    for d in shape:
        n = n * d
    if not _same(n, total) and not equal_if_exact(n, total):
        raise ShapeError(f"cannot reshape {x} ({total} elements) into "
                         f"[{', '.join(map(str, shape))}] ({n} elements)", code="E0311",
                         hint="the element counts must match; use -1 for one dim to infer it")
    return (_T(x.dtype, shape),)


def _sym_div(total: Dim, known: Dim, x, shape) -> Dim:
    """``total / known`` for symbolic polynomials when it divides as monomials."""
    t, k = SymDim.lift(total), SymDim.lift(known)
    if len(k.terms) == 1:
        (mono, coef), = k.terms
        out = {}
        for m, c in t.terms:
            rest = list(m)
            for atom in mono:
                if atom in rest:
                    rest.remove(atom)
                else:
                    break
            else:
                if c % coef == 0:
                    out[tuple(rest)] = c // coef
                    continue
            break
        else:
            return SymDim(out).simplify()
    raise ShapeError(f"cannot infer -1 when reshaping {x} into [{', '.join(map(str, shape))}]",
                     code="E0311", hint="spell the dims out instead of -1")


def _transpose(ins, a):
    x = ins[0]
    d0, d1 = norm_axis(a["dim0"], x.rank), norm_axis(a["dim1"], x.rank)
    s = list(x.shape)
    s[d0], s[d1] = s[d1], s[d0]
    return (_T(x.dtype, s),)


def _permute(ins, a):
    x = ins[0]
    dims = [norm_axis(d, x.rank) for d in a["dims"]]
    if sorted(dims) != list(range(x.rank)):
        raise ShapeError(f"permute dims {list(a['dims'])} are not a permutation of the "
                         f"{x.rank} dims of {x}", code="E0331")
    return (_T(x.dtype, [x.shape[d] for d in dims]),)


def _squeeze(ins, a):
    x = ins[0]
    dims = a["dims"]
    if dims is None:
        dims = [i for i, d in enumerate(x.shape) if d == 1]
    dims = {norm_axis(d, x.rank) for d in dims}
    for d in dims:
        if x.shape[d] != 1:
            raise ShapeError(f"cannot squeeze dim {d} of size {x.shape[d]} in {x}", code="E0332")
    return (_T(x.dtype, [s for i, s in enumerate(x.shape) if i not in dims]),)


def _unsqueeze(ins, a):
    x = ins[0]
    d = norm_axis(a["dim"], x.rank + 1)
    s = list(x.shape)
    s.insert(d, 1)
    return (_T(x.dtype, s),)


def _expand(ins, a):
    x = ins[0]
    shape = tuple(a["shape"])
    if len(shape) < x.rank:
        raise ShapeError(f"cannot expand {x} to fewer dims", code="E0303")
    target = tuple(xd if (isinstance(t, int) and t == -1) else t
                   for t, xd in zip(shape, (None,) * (len(shape) - x.rank) + x.shape))
    if broadcast_shapes(x.shape, target) != target:
        raise ShapeError(f"cannot expand {x} to [{', '.join(map(str, target))}]", code="E0303")
    return (_T(x.dtype, target),)


def _concat(ins, a):
    if not ins:
        raise ShapeError("concat needs at least one tensor", code="E0312")
    first = ins[0]
    d = norm_axis(a["dim"], first.rank)
    total: Dim = 0
    for t in ins:
        if t.rank != first.rank or any(not _same(p, q) for i, (p, q) in
                                       enumerate(zip(t.shape, first.shape)) if i != d):
            raise ShapeError(f"concat along dim {a['dim']}: {t} does not match {first} in the "
                             f"other dims", code="E0312")
        if t.dtype != first.dtype:
            raise ShapeError(f"concat of {first.dtype} and {t.dtype}", code="E0325")
        total = total + t.shape[d]
    s = list(first.shape)
    s[d] = total
    return (_T(first.dtype, s),)


def split_axis(x: TensorType, dim: int, what: str = "dim") -> int:
    """The dim a split cuts (the split and chunk functions read its size first)."""
    if x.rank == 0:
        raise ShapeError(f"{what} {dim} is out of range: {x} has no dims to split", code="E0302",
                         hint="split a tensor of rank >= 1")
    return norm_axis(dim, x.rank, what)


def _split(ins, a):
    x = ins[0]
    d = split_axis(x, a["dim"])
    sizes = tuple(a["sizes"])
    total: Dim = 0
    for s in sizes:
        if isinstance(s, int) and s < 0:
            raise ShapeError(f"split sizes cannot be negative, got {list(sizes)}", code="E0312")
        total = total + s
    if not _same(total, x.shape[d]):
        raise ShapeError(f"split sizes {list(sizes)} add up to {total}, but dim {a['dim']} of "
                         f"{x} is {x.shape[d]}", code="E0312")
    outs = []
    for s in sizes:
        sh = list(x.shape)
        sh[d] = s
        outs.append(_T(x.dtype, sh))
    return tuple(outs)


def slice_len(size: Dim, start, end, step: int) -> Dim:
    """Length of ``range(size)[start:end:step]`` (start/end may be negative or None)."""
    if step <= 0:
        raise ShapeError("slice step must be positive", code="E0313")
    if isinstance(size, int) and all(isinstance(v, int) or v is None for v in (start, end)):
        return len(range(size)[slice(start, end, step)])

    def clamp(v, default):
        if v is None:
            return default
        if isinstance(v, int) and v < 0:
            return size + v
        return v
    lo, hi = clamp(start, 0), clamp(end, size)
    n = hi - lo
    return n if step == 1 else (n + step - 1) // step


def _slice(ins, a):
    x = ins[0]
    s = list(x.shape)
    for ax, st, en, sp in zip(a["axes"], a["starts"], a["ends"], a["steps"]):
        ax = norm_axis(ax, x.rank, "axis")
        n = slice_len(x.shape[ax], st, en, sp)
        if isinstance(n, int) and n < 0:
            n = 0
        s[ax] = n
    return (_T(x.dtype, s),)


def _reduce(ins, a):
    x = ins[0]
    dims = a["dims"]
    dims = range(x.rank) if dims is None else [norm_axis(d, x.rank) for d in dims]
    dims = set(dims)
    if a["keepdim"]:
        s = [1 if i in dims else d for i, d in enumerate(x.shape)]
    else:
        s = [d for i, d in enumerate(x.shape) if i not in dims]
    return (_T(x.dtype, s),)


def _reduction(op: str):
    """sum/prod of integers and booleans accumulate in i64 (as torch); mean needs floats."""
    def rule(ins, a):
        (out,) = _reduce(ins, a)
        x = ins[0]
        if op == "mean" and x.dtype not in FLOAT_DTYPES:
            raise ShapeError(f"mean needs a floating-point tensor, got {x}", code="E0304",
                             hint="convert it with cast(x, f32)")
        if op in ("sum", "prod") and x.dtype not in FLOAT_DTYPES:
            return (_T("i64", out.shape),)
        return (out,)
    return rule


def _softmax(ins, a):
    _float(ins[0], "softmax")
    norm_axis(a["dim"], ins[0].rank)
    return (ins[0],)


def _argmax(ins, a):
    x = ins[0]
    if x.dtype == "bool":
        raise ShapeError(f"argmax needs a numeric tensor, got {x}", code="E0304",
                         hint="convert booleans with cast(x, i64)")
    d = norm_axis(a["dim"], x.rank)
    s = [1 if i == d else n for i, n in enumerate(x.shape)] if a["keepdim"] else \
        [n for i, n in enumerate(x.shape) if i != d]
    return (_T("i64", s),)


def _argsort(ins, a):
    x = ins[0]
    if x.rank == 0 or x.dtype == "bool":
        raise ShapeError(f"argsort needs a numeric tensor of rank >= 1, got {x}", code="E0304",
                         hint="convert booleans with cast(x, i64)")
    norm_axis(a["dim"], x.rank)
    return (_T("i64", x.shape),)


def _cumulative(op: str):
    def rule(ins, a):
        x = ins[0]
        if x.rank == 0:
            raise ShapeError(f"{op} needs a tensor of rank >= 1, got {x}", code="E0330",
                             hint="unsqueeze a scalar first")
        norm_axis(a["dim"], x.rank)
        # as torch: integer and boolean tensors accumulate in i64
        return (_T(x.dtype if x.dtype in FLOAT_DTYPES else "i64", x.shape),)
    return rule


def _drop_path(ins, a):
    x = ins[0]
    _float(x, "drop_path")
    if x.rank < 1:
        raise ShapeError(f"drop_path drops whole samples along dim 0, but {x} has no dims",
                         code="E0330")
    return (x,)


def _clamp(ins, a):
    x = ins[0]
    lo, hi = a["min"], a["max"]
    if lo is None and hi is None:
        raise ShapeError("clamp needs a min or a max", code="E0324",
                         hint="write clamp(x, min=0.0), clamp(x, max=6.0) or both")
    if x.dtype == "bool":
        raise ShapeError(f"clamp needs a numeric tensor, got {x}", code="E0304",
                         hint="convert it with cast(x, i64)")
    if x.dtype not in FLOAT_DTYPES and any(v is not None and float(v) != int(v)
                                           for v in (lo, hi)):
        raise ShapeError(f"clamp of the integer tensor {x} needs integer bounds, got "
                         f"min={lo}, max={hi}", code="E0304",
                         hint="round the bounds, or cast(x, f32) first")
    if lo is not None and hi is not None and lo > hi:
        raise ShapeError(f"clamp min {lo} is larger than max {hi}", code="E0324",
                         hint="swap them")
    return (x,)


def _rms_norm(ins, a):
    x, w = ins
    _float(x, "rms_norm")
    ns = tuple(a["normalized_shape"])
    if len(ns) > x.rank or x.shape[len(x.shape) - len(ns):] != ns:
        raise ShapeError(f"rms_norm over [{', '.join(map(str, ns))}] does not fit the last dims "
                         f"of {x}", code="E0309")
    if w is not None and w.shape != ns:
        raise ShapeError(f"rms_norm weight {w} must have shape [{', '.join(map(str, ns))}]",
                         code="E0309")
    return (x,)


def _one_hot(ins, a):
    x = ins[0]
    if x.dtype not in INT_DTYPES:
        raise ShapeError(f"one_hot needs integer class indices, got {x}", code="E0304",
                         hint="convert them with cast(x, i64)")
    return (_T(a["dtype"], x.shape + (a["n"],)),)


def parse_einsum(equation: str, ranks: list) -> tuple:
    """``(operand subscripts, output subscripts)``, each a string of letters in which ``.``
    stands for the dims an ellipsis covers (as many as the operand needs). Without ``->`` the
    output is the ellipsis, then the letters used once, in alphabetical order (NumPy's rule)."""
    eq = equation.replace(" ", "")
    if not eq or any(not (c.isalpha() or c in ",.->") for c in eq):
        raise ShapeError(f"einsum equation \"{equation}\" may hold only letters, `,`, `...` "
                         f"and `->`", code="E0321", hint='e.g. einsum("bij,bjk->bik", a, b)')
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise ShapeError(f"einsum equation \"{equation}\" has {len(terms)} operand term(s) but "
                         f"{len(ranks)} tensor(s) are given", code="E0321")

    def ellipsis_ok(term):
        return term.count("...") <= 1 and term.replace("...", "").find(".") < 0
    for term in terms + ([rhs] if arrow else []):
        if not ellipsis_ok(term) or "-" in term or ">" in term:
            raise ShapeError(f"einsum term \"{term}\" is malformed", code="E0321",
                             hint="an ellipsis is written `...`, at most once per term")
    n_ell = 0
    out_terms = []
    for term, r in zip(terms, ranks):
        letters = term.replace("...", "")
        if "..." in term:
            k = r - len(letters)
            if k < 0:
                raise ShapeError(f"einsum term \"{term}\" has more letters than its operand has "
                                 f"dims ({r})", code="E0321")
            n_ell = max(n_ell, k)
            out_terms.append(term.replace("...", "." * k))
        else:
            if len(term) != r:
                raise ShapeError(f"einsum term \"{term}\" names {len(term)} dims but its operand "
                                 f"has rank {r}", code="E0321",
                                 hint="one letter per dim, or `...` for the leading ones")
            out_terms.append(term)
    if arrow:
        if len(set(rhs.replace("...", ""))) != len(rhs.replace("...", "")):
            raise ShapeError(f"einsum output \"{rhs}\" repeats a letter", code="E0321")
        used = set(lhs.replace(",", "").replace(".", ""))
        for c in rhs.replace("...", ""):
            if c not in used:
                raise ShapeError(f"einsum output letter `{c}` is not in any operand", code="E0321")
        if n_ell and "..." not in rhs and any("..." in t for t in terms):
            raise ShapeError("einsum: the operands' `...` dims must appear in the output",
                             code="E0321", hint="add `...` to the output term")
        out = rhs.replace("...", "." * n_ell)
    else:
        letters = lhs.replace(",", "").replace(".", "")
        out = "." * n_ell + "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    return out_terms, out


def _einsum(ins, a):
    if not ins:
        raise ShapeError("einsum needs at least one tensor", code="E0321")
    eq = a["equation"]
    terms, out = parse_einsum(eq, [t.rank for t in ins])
    dtype = ins[0].dtype
    for t in ins:
        if t.dtype != dtype or dtype not in FLOAT_DTYPES:
            raise ShapeError(f"einsum needs floating-point tensors of one dtype, got "
                             f"{', '.join(str(t) for t in ins)}", code="E0325",
                             hint="convert them with cast(x, f32)")
    sizes: dict = {}
    ell: tuple = ()
    for term, t in zip(terms, ins):
        k = term.count(".")
        if k:
            start = term.index(".")
            ell = broadcast_shapes(ell, t.shape[start:start + k])
        for c, d in zip(term, t.shape):
            if c == ".":
                continue
            if c in sizes and not _same(sizes[c], d):
                raise ShapeError(f"einsum \"{eq}\": index `{c}` is {sizes[c]} in one operand "
                                 f"and {d} in another", code="E0321",
                                 hint="an index names one size in every operand")
            sizes[c] = d
    letters = [sizes[c] for c in out if c != "."]
    i = out.find(".")
    shape = letters if i < 0 else letters[:i] + list(ell) + letters[i:]
    return (_T(dtype, shape),)


def _stack(ins, a):
    if not ins:
        raise ShapeError("stack needs at least one tensor", code="E0312")
    first = ins[0]
    for t in ins:
        if t.rank != first.rank or any(not _same(p, q) for p, q in zip(t.shape, first.shape)):
            raise ShapeError(f"stack needs tensors of one shape: {t} vs {first}", code="E0312")
        if t.dtype != first.dtype:
            raise ShapeError(f"stack of {first.dtype} and {t.dtype}", code="E0325")
    d = norm_axis(a["dim"], first.rank + 1)
    s = list(first.shape)
    s.insert(d, len(ins))
    return (_T(first.dtype, s),)


def _distinct_dims(op: str, x: TensorType, dims) -> list:
    ds = [norm_axis(d, x.rank) for d in dims]
    if len(set(ds)) != len(ds):
        raise ShapeError(f"{op} dims {list(dims)} name a dim twice", code="E0331")
    return ds


def _flip(ins, a):
    _distinct_dims("flip", ins[0], a["dims"])
    return (ins[0],)


def _roll(ins, a):
    x = ins[0]
    if len(a["shifts"]) != len(a["dims"]):
        raise ShapeError(f"roll needs one shift per dim, got shifts {list(a['shifts'])} for dims "
                         f"{list(a['dims'])}", code="E0331")
    _distinct_dims("roll", x, a["dims"])
    return (x,)


def _repeat_interleave(ins, a):
    x, r, d = ins[0], a["repeats"], a["dim"]
    if d is None:
        return (_T(x.dtype, (x.numel() * r,)),)
    d = norm_axis(d, x.rank)
    s = list(x.shape)
    s[d] = s[d] * r
    return (_T(x.dtype, s),)


PAD_MODES = ("constant", "reflect", "replicate", "circular")


def _close_choice(word: str, choices: tuple) -> str:
    """A hint for a misspelt choice: the close one, or the list."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.75)
    return f"did you mean \"{close[0]}\"?" if close else \
        "choose one of " + ", ".join(f"\"{c}\"" for c in choices)


def _pad(ins, a):
    x, w, mode = ins[0], tuple(a["widths"]), a["mode"]
    if mode not in PAD_MODES:
        raise ShapeError(f"pad mode \"{mode}\" is not one of {', '.join(PAD_MODES)}", code="E0322",
                         hint=_close_choice(mode, PAD_MODES))
    if len(w) % 2 or not w or len(w) > 2 * x.rank:
        raise ShapeError(f"pad widths {list(w)} must be (before, after) pairs for at most the "
                         f"{x.rank} dims of {x}, last dim first", code="E0322",
                         hint="e.g. pad(x, [1, 1, 2, 2]) pads the last dim by 1 and the one "
                              "before it by 2")
    k = len(w) // 2
    if mode != "constant":
        _float(x, f"{mode} padding")
        if k > 3 or x.rank not in (k + 1, k + 2):
            wide = list(w) + [0, 0] * (x.rank - 2 - k)
            raise ShapeError(f"{mode} padding of {k} dim(s) needs an input of rank {k + 1} or "
                             f"{k + 2} ([C, ...] or [N, C, ...]), got {x}", code="E0322",
                             hint=f"give widths for the {x.rank - 2} dims after N and C: "
                                  f"pad(x, {wide}, mode=\"{mode}\")"
                             if 0 < k < x.rank - 2 <= 3 else
                             "pad at most the 3 last dims; constant padding has no limit")
        if any(v < 0 for v in w):
            raise ShapeError(f"{mode} padding widths cannot be negative, got {list(w)}",
                             code="E0322", hint="crop with a slice instead")
    s = list(x.shape)
    for i in range(k):
        d = x.rank - 1 - i
        before, after = w[2 * i], w[2 * i + 1]
        size = s[d]
        if isinstance(size, int):
            limit = {"reflect": size - 1, "circular": size}.get(mode)
            if limit is not None and max(before, after) > limit:
                raise ShapeError(f"{mode} padding of {max(before, after)} on dim {d} of {x} is "
                                 f"more than its size allows ({limit})", code="E0322")
        s[d] = size + before + after
    return (_T(x.dtype, s),)


UPSAMPLE_MODES = {"nearest": (3, 4, 5), "linear": (3,), "bilinear": (4,)}


def _upsample(ins, a):
    x, mode, scale = ins[0], a["mode"], a["scale"]
    if mode not in UPSAMPLE_MODES:
        raise ShapeError(f"upsample mode \"{mode}\" is not one of nearest, linear, bilinear",
                         code="E0323", hint=_close_choice(mode, tuple(UPSAMPLE_MODES)))
    if x.rank not in UPSAMPLE_MODES[mode]:
        want = {3: "[N, C, L]", 4: "[N, C, H, W]", 5: "[N, C, D, H, W]"}
        raise ShapeError(f"upsample mode \"{mode}\" needs an input "
                         f"{' or '.join(want[r] for r in UPSAMPLE_MODES[mode])}, got {x}",
                         code="E0323", hint="linear is for [N, C, L], bilinear for [N, C, H, W]")
    _float(x, "upsample")
    nd = x.rank - 2
    scale = tuple(scale) if isinstance(scale, (tuple, list)) else (scale,) * nd
    if len(scale) != nd or any(not isinstance(f, int) or f < 1 for f in scale):
        raise ShapeError(f"upsample scale must be a positive int or one per spatial dim ({nd}), "
                         f"got {a['scale']}", code="E0323")
    return (_T(x.dtype, tuple(x.shape[:2]) + tuple(d * f for d, f in zip(x.shape[2:], scale))),)


def _pixel_shuffle(ins, a):
    x, r = ins[0], a["r"]
    if x.rank != 4:
        raise ShapeError(f"pixel_shuffle needs [N, C·r², H, W], got {x}", code="E0323")
    c = x.shape[1]
    if isinstance(c, int) and c % (r * r) or isinstance(c, SymDim) and not c.divisible_by(r * r):
        raise ShapeError(f"pixel_shuffle({r}) needs channels divisible by {r * r}, got {c}",
                         code="E0323")
    return (_T(x.dtype, (x.shape[0], c // (r * r), x.shape[2] * r, x.shape[3] * r)),)


def _float_reduce(op: str):
    def rule(ins, a):
        _float(ins[0], op)
        if a.get("correction", 0) < 0:
            raise ShapeError(f"{op} correction cannot be negative", code="E0324")
        return _reduce(ins, {"dims": a["dims"], "keepdim": a["keepdim"]})
    return rule


def _topk(ins, a):
    x, k = ins[0], a["k"]
    if x.rank == 0 or x.dtype == "bool":
        raise ShapeError(f"topk needs a numeric tensor of rank >= 1, got {x}", code="E0304",
                         hint="convert booleans with cast(x, i64)")
    d = norm_axis(a["dim"], x.rank)
    n = x.shape[d]
    if k < 0 or isinstance(n, int) and k > n:
        raise ShapeError(f"topk k={k} is more than the {n} values along dim {a['dim']} of {x}",
                         code="E0324", hint=f"use k in [0, {n}]")
    s = list(x.shape)
    s[d] = k
    return (_T(x.dtype, s), _T("i64", s))


def _index_operand(op: str, t: TensorType, what: str = "index") -> None:
    if t.dtype != "i64":
        raise ShapeError(f"{op} needs an i64 {what}, got {t}", code="E0304",
                         hint=f"convert it with cast({what}, i64)")


def _fits(i: Dim, n: Dim) -> bool:
    """Whether an index dim ``i`` fits in a data dim ``n``: equal, or both known and i <= n."""
    return _same(i, n) or isinstance(i, int) and isinstance(n, int) and i <= n


def _elementwise_index(op: str, x: TensorType, index: TensorType, d: int) -> None:
    """gather/scatter_add: an index of x's rank, no larger than x outside dim ``d``."""
    if index.rank != x.rank:
        raise ShapeError(f"{op} needs an index of the same rank as x: x is {x}, the index "
                         f"{index}", code="E0320",
                         hint="unsqueeze/expand the index to x's rank; for a 1-d index of "
                              "whole slices use index_select")
    for i, (m, n) in enumerate(zip(index.shape, x.shape)):
        if i != d and not _fits(m, n):
            raise ShapeError(f"{op} along dim {d}: dim {i} of the index is {m} but dim {i} of "
                             f"x is {n}", code="E0320",
                             hint=f"outside dim {d} the index must be no larger than x "
                                  f"(equal when symbolic)")


def _gather(ins, a):
    x, index = ins
    if x.rank == 0:
        raise ShapeError(f"gather needs a tensor of rank >= 1, got {x}", code="E0320")
    _index_operand("gather", index)
    d = norm_axis(a["dim"], x.rank)
    _elementwise_index("gather", x, index, d)
    return (_T(x.dtype, index.shape),)


def _index_select(ins, a):
    x, index = ins
    if x.rank == 0:
        raise ShapeError(f"index_select needs a tensor of rank >= 1, got {x}", code="E0320")
    _index_operand("index_select", index)
    if index.rank != 1:
        raise ShapeError(f"index_select needs a 1-d index, got {index}", code="E0320",
                         hint="pick one row of the index (edge_index[0]) or flatten it; gather "
                              "takes an index of x's rank")
    d = norm_axis(a["dim"], x.rank)
    return (_T(x.dtype, x.shape[:d] + index.shape + x.shape[d + 1:]),)


def _scatter_add(ins, a):
    x, index, src = ins
    if x.rank == 0:
        raise ShapeError(f"scatter_add needs a tensor of rank >= 1, got {x}", code="E0320")
    _index_operand("scatter_add", index)
    d = norm_axis(a["dim"], x.rank)
    _elementwise_index("scatter_add", x, index, d)
    if src.rank != index.rank or any(not _same(p, q) for p, q in zip(src.shape, index.shape)):
        raise ShapeError(f"scatter_add needs src of the index's shape: the index is {index}, "
                         f"src {src}", code="E0320",
                         hint="slice src to the index's shape, or expand the index to src's")
    if src.dtype != x.dtype:
        raise ShapeError(f"scatter_add adds {src} into {x}: the dtypes differ", code="E0325",
                         hint=f"convert src with cast(src, {x.dtype})")
    return (x,)


def _segment_operands(op: str, data: TensorType, ids: TensorType, a) -> None:
    if data.rank == 0:
        raise ShapeError(f"{op} needs data of rank >= 1 (one row per segment id), got {data}",
                         code="E0320")
    if data.dtype == "bool":
        raise ShapeError(f"{op} needs numeric data, got {data}", code="E0304",
                         hint="convert it with cast(x, f32)")
    if op in ("segment_mean", "segment_softmax"):
        _float(data, op)
    _index_operand(op, ids, "segment_ids")
    if ids.rank != 1 or not _same(ids.shape[0], data.shape[0]):
        raise ShapeError(f"{op} needs one segment id per row of the data: the data is {data}, "
                         f"so segment_ids must be i64[{data.shape[0]}], got {ids}",
                         code="E0320",
                         hint="segment ids are 1-d, one per row of the data: for messages "
                              "along edges, the target nodes edge_index[1]")
    n = a["num_segments"]
    if n is None or isinstance(n, bool) or not isinstance(n, (int, SymDim)) or \
            isinstance(n, int) and n <= 0:
        raise ShapeError(f"{op} needs a positive number of segments, got {n}", code="E0320",
                         hint="pass num_segments=V, the number of nodes")


def _segment(op: str):
    def rule(ins, a):
        data, ids = ins
        _segment_operands(op, data, ids, a)
        return (_T(data.dtype, (a["num_segments"],) + data.shape[1:]),)
    return rule


def _segment_softmax(ins, a):
    scores, ids = ins
    _segment_operands("segment_softmax", scores, ids, a)
    return (scores,)


def scan_length(ins, a) -> Dim:
    """The number of steps of a ``scan``: the length of its sequences along ``dim``, else
    ``steps``."""
    if a["n_over"]:
        x = ins[0]
        return x.shape[norm_axis(a["dim"], x.rank)]
    if a["steps"] is None:
        raise ShapeError("scan needs sequences to step over or a number of steps", code="E0319")
    return a["steps"]


def _scan(ins, a):
    body = a["body"].graph
    n_over, n_state = a["n_over"], a["n_state"]
    want = [body.node(n).type for n in body.inputs]
    if len(ins) != len(want) or n_over + n_state > len(ins):
        raise ShapeError(f"scan has {len(ins)} operands but its body takes {len(want)} inputs",
                         code="E0319")
    length = scan_length(ins, a)
    given = []
    for i, t in enumerate(ins):
        if i < n_over:
            d = norm_axis(a["dim"], t.rank)
            if not _same(t.shape[d], length):
                raise ShapeError(f"scan sequences differ in length along dim {a['dim']}: "
                                 f"{ins[0]} and {t}", code="E0319")
            t = TensorType(t.dtype, t.shape[:d] + t.shape[d + 1:])
        given.append(t)
    for i, (g, w) in enumerate(zip(given, want)):
        if g != w:
            what = "a step of sequence" if i < n_over else \
                "state" if i < n_over + n_state else "outer value"
            raise ShapeError(f"scan gives its body {what} {i} as {g}, the body expects {w}",
                             code="E0319")
    outs = [body.type_of(v) for _, v in body.outputs]
    if len(outs) < n_state:
        raise ShapeError(f"the scan body returns {len(outs)} values, fewer than its "
                         f"{n_state} states", code="E0319")
    for j in range(n_state):
        if outs[j] != want[n_over + j]:
            raise ShapeError(f"state {j} of scan is {want[n_over + j]} but the body returns "
                             f"{outs[j]} for it", code="E0319")
    stacked = []
    for t in outs[n_state:]:
        d = norm_axis(a["dim"], t.rank + 1)
        stacked.append(_T(t.dtype, t.shape[:d] + (length,) + t.shape[d:]))
    return tuple(outs[:n_state]) + tuple(stacked)


def _scales(q: TensorType, s: TensorType, group, op: str) -> None:
    """``s`` holds one scale per row of ``q`` (``[rows]``), or per row and group of ``group``
    columns (``[rows, cols / group]``)."""
    if q.dtype not in ("i8", "i4") or q.rank < 1:
        raise ShapeError(f"{op} needs an i8 or i4 weight, got {q}", code="E0326")
    if s.dtype != "f32":
        raise ShapeError(f"{op} scales must be f32, got {s}", code="E0326")
    if group is None:
        want = (q.shape[0],)
    else:
        cols = q.shape[-1]
        if q.rank != 2 or not isinstance(cols, int) or group <= 0 or cols % group:
            raise ShapeError(f"{op}: group {group} does not divide the rows of {q}",
                             code="E0326")
        want = (q.shape[0], cols // group)
    if tuple(s.shape) != want:
        raise ShapeError(f"{op} scales {s} do not fit the weight {q} (group {group})",
                         code="E0326")


def _dequantize(ins, a):
    q, s = ins
    _scales(q, s, a["group"], "dequantize")
    return (_T("f32", q.shape),)


def _u8(t: TensorType, op: str) -> None:
    if t.dtype != "u8":
        raise ShapeError(f"{op} needs u8 (quantized) activations, got {t}", code="E0326")


def _quantize(ins, a):
    _float(ins[0], "quantize")
    return (_T("u8", ins[0].shape),)


def _dequantize_act(ins, a):
    _u8(ins[0], "dequantize_act")
    return (_T("f32", ins[0].shape),)


def _qlayer(op: str, base):
    def rule(ins, a):
        x, w, s, b = ins
        _u8(x, op)
        if w.dtype != "i8":
            raise ShapeError(f"{op} needs an i8 weight, got {w}", code="E0326")
        _scales(w, s, None, op)
        if b is not None and (b.dtype != "i32" or tuple(b.shape) != (w.shape[0],)):
            raise ShapeError(f"{op} needs an i32 bias of {w.shape[0]}, got {b}", code="E0326")
        f32 = [x.with_dtype("f32"), w.with_dtype("f32"), None if b is None else
               b.with_dtype("f32")]
        return (base(f32, a)[0].with_dtype("u8"),)
    return rule


def _qclamp(ins, a):
    _u8(ins[0], "qclamp")
    return (ins[0],)


def _qadd(ins, a):
    x, y = ins
    _u8(x, "qadd")
    _u8(y, "qadd")
    if tuple(x.shape) != tuple(y.shape):
        raise ShapeError(f"qadd needs operands of one shape, got {x} and {y}", code="E0303")
    return (x,)


def _fake_quantize(ins, a):
    x = ins[0]
    _float(x, "fake_quantize")
    g = a["group"]
    if x.rank < 1 or (g is not None and (not isinstance(x.shape[-1], int) or x.shape[-1] % g)):
        raise ShapeError(f"fake_quantize: group {g} does not divide the rows of {x}",
                         code="E0326")
    return (x,)


def _linear_int8(ins, a):
    x, w, s, b = ins
    if w.dtype != "i8" or w.rank != 2:
        raise ShapeError(f"linear_int8 needs an i8 [out, in] weight, got {w}", code="E0326")
    _scales(w, s, None, "linear_int8")
    return _linear([x, w.with_dtype("f32"), b], a)


def _input(ins, a):
    return (_T(a["dtype"], a["shape"]),)


def _scalar(ins, a):
    return (_T(a["dtype"], ()),)


def _cast(ins, a):
    return (_T(a["dtype"], ins[0].shape),)


SHAPE_RULES: dict[str, Callable] = {
    "input": _input, "param": _input, "scalar": _scalar, "full": _full, "arange": _arange,
    **{op: _unary for op in UNARY},
    **{op: _float_unary(op) for op in ("sigmoid", "tanh", "silu", "selu", "exp", "log", "sqrt",
                                       "rsqrt", "erf", "sin", "cos", "hardswish", "hardsigmoid",
                                       "mish")},
    "leaky_relu": _unary, "gelu": _float_unary("gelu"), "elu": _float_unary("elu"),
    "softplus": _float_unary("softplus"), "dropout": _unary, "cast": _cast,
    "drop_path": _drop_path, "clamp": _clamp,
    **{op: _binary for op in BINARY}, **{op: _compare for op in COMPARE},
    "where": _where, "masked_fill": _masked_fill, "tril": _tri, "triu": _tri,
    "matmul": _matmul, "linear": _linear,
    "conv1d": _conv(1), "conv2d": _conv(2), "conv3d": _conv(3),
    "conv_transpose2d": _conv_transpose2d,
    "max_pool1d": _pool(1, "max"), "max_pool2d": _pool(2, "max"),
    "avg_pool1d": _pool(1, "avg"), "avg_pool2d": _pool(2, "avg"),
    "adaptive_avg_pool1d": _adaptive(1), "adaptive_avg_pool2d": _adaptive(2),
    "batch_norm": _batch_norm, "layer_norm": _layer_norm, "group_norm": _group_norm,
    "embedding": _embedding, "rms_norm": _rms_norm, "one_hot": _one_hot, "einsum": _einsum,
    "lstm": _recurrent("lstm", 4, True), "gru": _recurrent("gru", 3, False),
    "rnn": _recurrent("rnn", 1, False),
    "attention": _attention, "memory_format": _unary,
    "dequantize": _dequantize, "linear_int8": _linear_int8, "fake_quantize": _fake_quantize,
    "quantize": _quantize, "dequantize_act": _dequantize_act, "qconv2d": _qlayer("qconv2d", _conv(2)),
    "qlinear": _qlayer("qlinear", _linear), "qadd": _qadd, "qclamp": _qclamp,
    "flatten": _flatten, "reshape": _reshape, "transpose": _transpose, "permute": _permute,
    "squeeze": _squeeze, "unsqueeze": _unsqueeze, "expand": _expand, "concat": _concat,
    "split": _split, "slice": _slice, "stack": _stack, "flip": _flip, "roll": _roll,
    "repeat_interleave": _repeat_interleave, "pad": _pad, "upsample": _upsample,
    "pixel_shuffle": _pixel_shuffle,
    **{op: _reduction(op) for op in REDUCE},
    "softmax": _softmax, "log_softmax": _softmax,
    "argmax": _argmax, "argsort": _argsort, "cumsum": _cumulative("cumsum"),
    "cumprod": _cumulative("cumprod"), "logsumexp": _float_reduce("logsumexp"),
    "var": _float_reduce("var"), "std": _float_reduce("std"), "topk": _topk,
    "gather": _gather, "index_select": _index_select, "scatter_add": _scatter_add,
    **{op: _segment(op) for op in SEGMENT}, "segment_softmax": _segment_softmax,
    "scan": _scan,
}


def infer(op: str, in_types: list, attrs: dict) -> tuple:
    """Output types of ``op`` applied to operands of ``in_types`` with ``attrs``."""
    return SHAPE_RULES[op](in_types, attrs)
