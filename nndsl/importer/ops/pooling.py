"""Pools (max, average, global) and LRN."""

from __future__ import annotations

from nndsl.importer.values import Sym, Unsupported
from nndsl.importer.ops import OPS, op
from nndsl.importer.ops.common import _x, windowed
from nndsl.importer.ops.layers import _explicit_pad, _one_or_list, _pads
from nndsl.importer.program import dims_text, number


def _pool(kind: str):
    def handler(cx, node, ins, a):
        x = _x(cx, ins)
        if len(node.output) > 1 and node.output[1]:
            raise Unsupported("MaxPool's indices output")
        kernel = list(a["kernel_shape"])
        nd = len(kernel)
        if nd not in (1, 2) or x.rank != nd + 2:
            raise Unsupported(f"{nd}-d pooling")
        strides = list(a.get("strides", [1] * nd))
        dil = list(a.get("dilations", [1] * nd))
        begins, ends = _pads(cx, node, a, x, kernel, strides, dil)
        include = a.get("count_include_pad", 0)
        count = None
        if begins != ends or any(2 * p > k for p, k in zip(begins, kernel)):
            if kind == "avg" and not include and any(begins + ends):
                count = _pad_count(cx, x, begins, ends)
            x = _explicit_pad(cx, x, begins, ends, value="-inf" if kind == "max" else None)
            begins = [0] * nd
        args = [_one_or_list(kernel)]
        if strides != kernel:
            args.append(f"stride={_one_or_list(strides)}")
        if any(begins):
            args.append(f"padding={_one_or_list(begins)}")
        if kind == "max" and any(d != 1 for d in dil):
            args.append(f"dilation={_one_or_list(dil)}")
        elif kind == "avg" and any(d != 1 for d in dil):
            raise Unsupported("AveragePool with dilations")
        if a.get("ceil_mode", 0):
            args.append("ceil_mode=true")
        if kind == "avg" and any(begins) and not include:
            args.append("count_include_pad=false")
        call = f"{kind}_pool{nd}d({', '.join(args)})"
        shape = cx.out_shape() or windowed(x, x.shape[1], kernel, strides, begins, dil,
                                           bool(a.get("ceil_mode", 0)))
        if count is None:
            return [cx.emit(call, x.dtype, shape, head=x)]
        # the pads excluded from the mean: the window sums over the zero-padded input,
        # divided by each window's share of real elements (the same pooling over ones)
        counts = cx.emit(f"{count.var} |> {call}", x.dtype, (1, 1) + shape[2:], reads=[count],
                         hint="pad_share")
        y = cx.emit(call, x.dtype, shape, head=x)
        return [cx.emit(f"{y.var} / {counts.var}", x.dtype, shape, reads=[y, counts])]
    return handler


def _pad_count(cx, x: Sym, begins, ends) -> Sym:
    """``ones`` of ``x``'s spatial size, zero-padded as ``x`` is (an AveragePool that leaves
    asymmetric pads out of its mean divides by this pooled)."""
    spatial = list(x.shape[2:])
    if not all(isinstance(d, int) for d in spatial):
        raise Unsupported("an AveragePool excluding asymmetric pads over a symbolic size")
    ones = cx.emit(f"ones({dims_text([1, 1] + spatial)})", x.dtype, [1, 1] + spatial,
                   hint="ones")
    return _explicit_pad(cx, ones, begins, ends)


OPS["MaxPool"] = _pool("max")
OPS["AveragePool"] = _pool("avg")


def _global(fn: str):
    def handler(cx, node, ins, a):
        x = _x(cx, ins)
        dims = list(range(2, x.rank))
        shape = tuple(x.shape[:2]) + (1,) * len(dims)
        return [cx.emit(f"{fn}(dim={dims_text(dims)}, keepdim=true)", x.dtype, shape, head=x)]
    return handler


OPS["GlobalAveragePool"] = _global("mean")
OPS["GlobalMaxPool"] = _global("max")


@op("LRN")
def lrn(cx, node, ins, a):
    x = _x(cx, ins)
    if x.rank != 4:
        raise Unsupported("LRN of a tensor that is not [N, C, H, W]")
    if "lrn" not in cx.prog.blocks:
        cx.prog.blocks.append("lrn")
    args = [str(a["size"])]
    for key, default in (("alpha", 0.0001), ("beta", 0.75), ("bias", 1.0)):
        v = a.get(key, default)
        if number(v) != number(default):
            args.append(f"{key}={number(v)}")
    return [cx.emit(f"lrn({', '.join(args)})", x.dtype, x.shape, head=x)]
