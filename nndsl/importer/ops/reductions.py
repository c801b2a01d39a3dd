"""Reductions, softmax, arg-max, and the other whole-tensor ops: pad, resize, top-k."""

from __future__ import annotations

from nndsl.importer.values import Unsupported
from nndsl.importer.ops import OPS, op
from nndsl.importer.ops.common import _norm_axis, _x
from nndsl.importer.ops.layers import _one_or_list
from nndsl.importer.ops.shapes import _axes
from nndsl.importer.program import dims_text, number


def _reduce(fn: str, pre: str | None = None, post: str | None = None):
    def handler(cx, node, ins, a):
        x = _x(cx, ins)
        axes = _axes(cx, ins, a)
        keep = bool(a.get("keepdims", 1))
        if axes is None or not axes:
            if a.get("noop_with_empty_axes", 0):
                return [x]
            axes = list(range(x.rank))
        axes = sorted(_norm_axis(ax, x.rank) for ax in axes)
        shape = tuple((1 if keep else None) if i in axes else d for i, d in enumerate(x.shape))
        shape = tuple(d for d in shape if d is not None)
        src = x
        if pre == "square":
            src = cx.emit(f"{x.var} * {x.var}", x.dtype, x.shape, reads=[x])
        elif pre == "abs":
            src = cx.emit("abs", x.dtype, x.shape, head=x)
        dim = str(axes[0]) if len(axes) == 1 else dims_text(axes)
        kw = ", keepdim=true" if keep else ""
        y = cx.emit(f"{fn}(dim={dim}{kw})", x.dtype, shape, head=src)
        if post:
            y = cx.emit(post, y.dtype, shape, head=y)
        return [y]
    return handler


for _o, _f in (("ReduceMean", "mean"), ("ReduceSum", "sum"), ("ReduceMax", "max"),
               ("ReduceMin", "min"), ("ReduceProd", "prod"), ("ReduceLogSumExp", "logsumexp")):
    OPS[_o] = _reduce(_f)
OPS["ReduceSumSquare"] = _reduce("sum", pre="square")
OPS["ReduceL2"] = _reduce("sum", pre="square", post="sqrt")
OPS["ReduceL1"] = _reduce("sum", pre="abs")


def _softmax(fn: str):
    def handler(cx, node, ins, a):
        x = _x(cx, ins)
        axis = a.get("axis", -1)
        axis = axis - x.rank if axis >= 0 else axis
        call = fn if axis == -1 else f"{fn}(dim={axis})"
        return [cx.emit(call, x.dtype, x.shape, head=x)]
    return handler


OPS["Softmax"] = _softmax("softmax")
OPS["LogSoftmax"] = _softmax("log_softmax")


@op("ArgMax", "ArgMin")
def argmax(cx, node, ins, a):
    """ArgMin is the argmax of ``-x`` (the first of equal minima either way); the last index
    of equal values (``select_last_index``) is ``size - 1 -`` the first of the flipped."""
    x = _x(cx, ins)
    axis = _norm_axis(a.get("axis", 0), x.rank)
    keep = bool(a.get("keepdims", 1))
    last = bool(a.get("select_last_index", 0))
    size = x.shape[axis]
    if last and not isinstance(size, int):
        raise Unsupported("select_last_index over a symbolic dim")
    shape = tuple(1 if i == axis else d for i, d in enumerate(x.shape)) if keep else \
        tuple(d for i, d in enumerate(x.shape) if i != axis)
    src = x
    if node.op_type == "ArgMin":
        src = cx.emit(f"-{x.var}", x.dtype, x.shape, reads=[x])
    if last:
        src = cx.emit(f"flip([{axis}])", x.dtype, x.shape, head=src)
    kw = ", keepdim=true" if keep else ""
    y = cx.emit(f"argmax(dim={axis}{kw})", "i64", shape, head=src)
    if last:
        y = cx.emit(f"{size - 1} - {y.var}", "i64", shape, reads=[y])
    return [y]


@op("CumSum")
def cumsum(cx, node, ins, a):
    x = _x(cx, ins)
    if a.get("exclusive", 0) or a.get("reverse", 0):
        raise Unsupported("CumSum exclusive or reverse")
    axis = _norm_axis(cx.const_ints(ins[1], "CumSum's axis")[0], x.rank)
    return [cx.emit(f"cumsum(dim={axis})", x.dtype, x.shape, head=x)]


@op("Pad")
def pad(cx, node, ins, a):
    x = _x(cx, ins)
    pads = cx.const_ints(ins[1], "Pad's pads")
    mode = a.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    mode = {"edge": "replicate", "wrap": "circular"}.get(mode, mode)
    value = 0.0
    if len(ins) > 2 and ins[2] is not None:
        c = cx.const(ins[2])
        if c is None:
            raise Unsupported("Pad's value computed at run time")
        value = c.reshape(-1)[0].item() if c.size else 0.0
    axes = cx.const_ints(ins[3], "Pad's axes") if len(ins) > 3 and ins[3] is not None \
        else list(range(x.rank))
    axes = [_norm_axis(ax, x.rank) for ax in axes]
    n = len(axes)
    per = {ax: (pads[i], pads[n + i]) for i, ax in enumerate(axes)}
    last = max((ax for ax, p in per.items() if p != (0, 0)), default=None)
    if last is None:
        return [x]
    first = min(ax for ax, p in per.items() if p != (0, 0))
    widths = []
    shape = list(x.shape)
    for ax in range(x.rank - 1, first - 1, -1):
        b, e = per.get(ax, (0, 0))
        widths += [b, e]
        shape[ax] = shape[ax] + b + e
    kw = "" if mode == "constant" else f", mode=\"{mode}\""
    if mode == "constant" and value != 0:
        kw += f", value={number(value, x.dtype)}"
    return [cx.emit(f"pad({dims_text(widths)}{kw})", x.dtype, shape, head=x)]


@op("Resize", "Upsample")
def resize(cx, node, ins, a):
    x = _x(cx, ins)
    mode = a.get("mode", b"nearest")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    ctm = a.get("coordinate_transformation_mode", b"half_pixel")
    ctm = ctm.decode() if isinstance(ctm, bytes) else ctm
    scales = None
    if len(ins) > 2 and ins[2] is not None and cx.const(ins[2]) is not None and \
            cx.const(ins[2]).size:
        scales = [float(s) for s in cx.const(ins[2]).reshape(-1)]
    elif len(ins) > 3 and ins[3] is not None:
        sizes = cx.const_ints(ins[3], "Resize's sizes")
        scales = []
        for s, d in zip(sizes, x.shape):
            if not isinstance(d, int) or s % d:
                raise Unsupported("Resize to sizes that are not integer multiples")
            scales.append(float(s // d))
    if scales is None or scales[:2] != [1.0, 1.0] or any(s != int(s) for s in scales[2:]):
        raise Unsupported("Resize by scales that are not integers on the spatial dims")
    factors = [int(s) for s in scales[2:]]
    shape = tuple(x.shape[:2]) + tuple(d * f for d, f in zip(x.shape[2:], factors))
    if mode == "nearest":
        nm = a.get("nearest_mode", b"round_prefer_floor")
        nm = nm.decode() if isinstance(nm, bytes) else nm
        # upsample(f) reads input floor(o / f). So does asymmetric floor, o / f; and so do
        # half-pixel centres rounded either way, (o + ½) / f − ½, which is never a tie
        if ctm == "asymmetric" and nm == "floor" or ctm in (
                "half_pixel", "pytorch_half_pixel") and nm in ("round_prefer_floor",
                                                                "round_prefer_ceil"):
            call = f"upsample({_one_or_list(factors)})"
        else:
            raise Unsupported(f"nearest Resize with {ctm} coordinates and {nm} rounding")
    elif mode == "linear":
        name = {3: "linear", 4: "bilinear"}.get(x.rank)
        if name is None or ctm not in ("half_pixel", "pytorch_half_pixel", "align_corners"):
            raise Unsupported(f"linear Resize of rank {x.rank} with {ctm} coordinates")
        ac = ", align_corners=true" if ctm == "align_corners" else ""
        call = f"upsample({_one_or_list(factors)}, mode=\"{name}\"{ac})"
    else:
        raise Unsupported(f"Resize mode {mode}")
    return [cx.emit(call, x.dtype, shape, head=x)]


@op("DepthToSpace")
def depth_to_space(cx, node, ins, a):
    x = _x(cx, ins)
    mode = a.get("mode", b"DCR")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    r = a["blocksize"]
    n, c, h, w = x.shape
    out = (n, c // (r * r), h * r, w * r)
    if mode == "CRD":
        return [cx.emit(f"pixel_shuffle({r})", x.dtype, out, head=x)]
    # DCR: the channels are (r, r, C/r²): [N, r, r, C', H, W] -> [N, C', H, r, W, r]
    split = (n, r, r, c // (r * r), h, w)
    y = cx.emit(f"reshape({dims_text(split)})", x.dtype, split, head=x)
    perm = (n, c // (r * r), h, r, w, r)
    y = cx.emit("permute([0, 3, 4, 1, 5, 2])", x.dtype, perm, head=y)
    return [cx.emit(f"reshape({dims_text(out)})", x.dtype, out, head=y)]


@op("TopK")
def topk(cx, node, ins, a):
    x = _x(cx, ins)
    k = cx.const_ints(ins[1], "TopK's k")[0]
    axis = _norm_axis(a.get("axis", -1), x.rank)
    largest = bool(a.get("largest", 1))
    shape = list(x.shape)
    shape[axis] = k
    kw = "" if largest else ", largest=false"
    outs = cx.emit(f"topk({k}, dim={axis}{kw})", [x.dtype, "i64"], [shape, shape], head=x,
                   targets=2)
    return outs



@op("Trilu")
def trilu(cx, node, ins, a):
    x = _x(cx, ins)
    k = cx.const_ints(ins[1], "Trilu's k")[0] if len(ins) > 1 and ins[1] is not None else 0
    fn = "triu" if a.get("upper", 1) else "tril"
    return [cx.emit(f"{fn}({k})" if k else fn, x.dtype, x.shape, head=x)]


@op("Swish")
def swish(cx, node, ins, a):
    x = _x(cx, ins)
    alpha = float(a.get("alpha", 1.0))
    if alpha == 1.0:
        return [cx.emit("silu", x.dtype, x.shape, head=x)]
    return [cx.emit(f"{x.var} * sigmoid({x.var} * {number(alpha)})", x.dtype, x.shape,
                    reads=[x])]
