"""Layers with their weights: convolutions, normalizations, linear layers, tied embeddings."""

from __future__ import annotations

import numpy as np

from nndsl.importer.values import FLOATS, Sym, Unsupported, layer_hint
from nndsl.importer.ops import op
from nndsl.importer.ops.common import _broadcast, _norm_axis, _x, windowed
from nndsl.importer.ops.elementwise import binary_handler
from nndsl.importer.program import dims_text, number
from nndsl.ir.types import SymDim


def _weight_name(node, i: int) -> str | None:
    return node.input[i] if len(node.input) > i and node.input[i] else None


def _layer_name(cx, node, i: int = 1) -> str:
    return cx.layer(layer_hint(_weight_name(node, i), node.name) or node.op_type.lower())


def _pads(cx, node, a, x: Sym, kernel, strides, dilations):
    """ONNX pads (begins..., ends...) for the spatial dims, auto_pad resolved."""
    nd = len(kernel)
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("NOTSET", ""):
        pads = list(a.get("pads", [0] * (2 * nd)))
    elif auto == "VALID":
        pads = [0] * (2 * nd)
    else:
        pads = [0] * (2 * nd)
        for i in range(nd):
            size = x.shape[2 + i]
            if not isinstance(size, int):
                raise Unsupported(f"auto_pad={auto} over a symbolic size")
            out = -(-size // strides[i])
            total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - size)
            lo = total // 2 if auto == "SAME_UPPER" else total - total // 2
            pads[i], pads[nd + i] = lo, total - lo
    return pads[:nd], pads[nd:]


def _explicit_pad(cx, x: Sym, begins, ends, value: str | None = None) -> Sym:
    widths = []
    for b, e in reversed(list(zip(begins, ends))):
        widths += [b, e]
    shape = list(x.shape)
    for i, (b, e) in enumerate(zip(begins, ends)):
        shape[2 + i] = shape[2 + i] + b + e
    kw = "" if value is None else f", value={value}"
    return cx.emit(f"pad({dims_text(widths)}{kw})", x.dtype, shape, head=x)


def _one_or_list(vals) -> str:
    vals = list(vals)
    return str(vals[0]) if len(set(vals)) == 1 else dims_text(vals)


@op("Conv")
def conv(cx, node, ins, a):
    x = _x(cx, ins)
    w = cx.const(ins[1])
    if w is None:
        raise Unsupported("a Conv whose filters are computed at run time")
    nd = w.ndim - 2
    if nd not in (1, 2, 3) or x.rank != nd + 2:
        raise Unsupported(f"a {nd}-d Conv")
    kernel = list(w.shape[2:])
    if "kernel_shape" in a and list(a["kernel_shape"]) != kernel:
        raise Unsupported("kernel_shape differs from the filters' shape")
    strides = list(a.get("strides", [1] * nd))
    dil = list(a.get("dilations", [1] * nd))
    groups = a.get("group", 1)
    begins, ends = _pads(cx, node, a, x, kernel, strides, dil)
    if begins != ends:
        x = _explicit_pad(cx, x, begins, ends)
        begins = [0] * nd
    bias = ins[2] if len(ins) > 2 else None
    b = cx.const(bias) if bias is not None else None
    if bias is not None and b is None:
        raise Unsupported("a Conv whose bias is computed at run time")
    if b is not None and b.shape != (w.shape[0],):
        raise Unsupported(f"a Conv with {w.shape[0]} filters and a bias of shape "
                          f"{list(b.shape)}")
    if x.shape[1] != w.shape[1] * groups:
        raise Unsupported(f"a Conv of {x.shape[1]} channels with filters for "
                          f"{w.shape[1] * groups}")
    name = _layer_name(cx, node)
    args = [str(w.shape[0]), _one_or_list(kernel)]
    if any(s != 1 for s in strides):
        args.append(f"stride={_one_or_list(strides)}")
    if any(begins):
        args.append(f"padding={_one_or_list(begins)}")
    if any(d != 1 for d in dil):
        args.append(f"dilation={_one_or_list(dil)}")
    if groups != 1:
        args.append(f"groups={groups}")
    if b is None:
        args.append("bias=false")
    shape = cx.out_shape() or windowed(x, w.shape[0], kernel, strides, begins, dil)
    call = f"conv{nd}d({', '.join(args)})"
    again = _shared(cx, ("Conv", id(w), id(b)), call, name, x, shape)
    if again is not None:
        return [again]
    cx.prog.weights[f"{name}.weight"] = w
    if b is not None:
        cx.prog.weights[f"{name}.bias"] = b
    return [cx.emit(f"{call} as {name}", x.dtype, shape, head=x, kind="conv",
                    info={"layer": name})]


@op("ConvTranspose")
def conv_transpose(cx, node, ins, a):
    x = _x(cx, ins)
    w = cx.const(ins[1])
    if w is None or w.ndim != 4:
        raise Unsupported("a ConvTranspose that is not 2-d with constant filters")
    groups = a.get("group", 1)
    kernel = list(w.shape[2:])
    strides = list(a.get("strides", [1, 1]))
    dil = list(a.get("dilations", [1, 1]))
    opad = list(a.get("output_padding", [0, 0]))
    if "output_shape" in a:
        raise Unsupported("ConvTranspose with output_shape")
    auto = a.get("auto_pad", b"NOTSET")
    if (auto.decode() if isinstance(auto, bytes) else auto) not in ("NOTSET", "", "VALID"):
        raise Unsupported("ConvTranspose with auto_pad SAME")
    pads = list(a.get("pads", [0] * 4))
    if pads[:2] != pads[2:]:
        raise Unsupported("ConvTranspose with asymmetric pads")
    bias = ins[2] if len(ins) > 2 else None
    b = cx.const(bias) if bias is not None else None
    name = _layer_name(cx, node)
    args = [str(w.shape[1] * groups), _one_or_list(kernel)]
    for key, vals, default in (("stride", strides, 1), ("padding", pads[:2], 0),
                               ("output_padding", opad, 0), ("dilation", dil, 1)):
        if any(v != default for v in vals):
            args.append(f"{key}={_one_or_list(vals)}")
    if groups != 1:
        args.append(f"groups={groups}")
    if b is None:
        args.append("bias=false")
    cx.prog.weights[f"{name}.weight"] = w
    if b is not None:
        cx.prog.weights[f"{name}.bias"] = b
    shape = cx.out_shape()
    if shape is None:   # (n − 1)·s − 2p + d(k − 1) + output_padding + 1
        shape = (x.shape[0], w.shape[1] * groups) + tuple(
            (n - 1) * s - 2 * p + d * (k - 1) + o + 1
            for n, s, p, d, k, o in zip(x.shape[2:], strides, pads[:2], dil, kernel, opad))
        shape = tuple(v.simplify() if isinstance(v, SymDim) else v for v in shape)
    return [cx.emit(f"conv_transpose2d({', '.join(args)}) as {name}", x.dtype, shape,
                    head=x)]


@op("BatchNormalization")
def batch_norm(cx, node, ins, a):
    x = _x(cx, ins)
    if a.get("training_mode", 0):
        raise Unsupported("BatchNormalization in training mode")
    arrays = [cx.const(v) for v in ins[1:5]]
    if any(v is None for v in arrays):
        raise Unsupported("BatchNormalization statistics computed at run time")
    name = _layer_name(cx, node)
    args = []
    eps = a.get("epsilon", 1e-5)
    if number(eps) != "0.00001":
        args.append(f"eps={number(eps)}")
    mom = round(1.0 - float(a.get("momentum", 0.9)), 6)    # ONNX keeps 1 - torch's momentum
    if number(mom) != "0.1":
        args.append(f"momentum={number(mom)}")
    call = f"batch_norm({', '.join(args)})" if args else "batch_norm"
    again = _shared(cx, ("BatchNormalization",) + tuple(id(v) for v in arrays), call, name,
                    x, x.shape)
    if again is not None:
        return [again]
    for key, arr in zip(("weight", "bias", "running_mean", "running_var"), arrays):
        cx.prog.weights[f"{name}.{key}"] = arr.astype(np.float32)
    cx.prog.weights[f"{name}.num_batches_tracked"] = np.zeros((), np.int64)
    return [cx.emit(f"{call} as {name}", x.dtype, x.shape, head=x, kind="batch_norm",
                    info={"layer": name, "onnx_out": node.output[0]})]


def _group_norm(cx, node, x, scale, bias, groups, a):
    """A ``group_norm(groups)`` layer with per-channel ``scale`` and ``bias`` as its weights
    (instance norm: one group per channel)."""
    name = _layer_name(cx, node)
    cx.prog.weights[f"{name}.weight"] = scale
    cx.prog.weights[f"{name}.bias"] = bias
    return [cx.emit(f"group_norm({groups}, eps={number(a.get('epsilon', 1e-5))}) as {name}",
                    x.dtype, x.shape, head=x)]


@op("InstanceNormalization")
def instance_norm(cx, node, ins, a):
    x = _x(cx, ins)
    scale, bias = cx.const(ins[1]), cx.const(ins[2])
    if scale is None or bias is None:
        raise Unsupported("InstanceNormalization's scale or bias computed at run time")
    return _group_norm(cx, node, x, scale, bias, scale.shape[0], a)


@op("GroupNormalization")
def group_norm(cx, node, ins, a):
    x = _x(cx, ins)
    scale, bias = cx.const(ins[1]), cx.const(ins[2])
    c = x.shape[1]
    if scale is None or bias is None or scale.shape != (c,):
        raise Unsupported("GroupNormalization needs constant per-channel scale and bias")
    return _group_norm(cx, node, x, scale, bias, a["num_groups"], a)


@op("LayerNormalization")
def layer_norm(cx, node, ins, a):
    x = _x(cx, ins)
    axis = _norm_axis(a.get("axis", -1), x.rank)
    if "__stats" not in a and len(node.output) > 1 and any(
            cx.uses[o] for o in node.output[1:] if o):
        if a.get("stash_type", 1) != 1 or x.dtype != "f32":
            raise Unsupported("LayerNormalization's statistics outputs other than in f32")
        return [layer_norm(cx, node, ins, {**a, "__stats": False})[0]] + \
            _ln_stats(cx, x, axis, a.get("epsilon", 1e-5))
    shape = list(x.shape[axis:])
    scale = cx.const(ins[1])
    bias = cx.const(ins[2]) if len(ins) > 2 and ins[2] is not None else None
    if scale is None or (len(ins) > 2 and ins[2] is not None and bias is None):
        raise Unsupported("LayerNormalization's scale or bias computed at run time")
    name = _layer_name(cx, node)
    cx.prog.weights[f"{name}.weight"] = np.broadcast_to(scale, shape).copy()
    args = []
    if len(shape) > 1:
        args.append(f"shape={dims_text(shape)}")
    eps = a.get("epsilon", 1e-5)
    if number(eps) != "0.00001":
        args.append(f"eps={number(eps)}")
    if bias is None:
        args.append("bias=false")
    else:
        cx.prog.weights[f"{name}.bias"] = np.broadcast_to(bias, shape).copy()
    call = f"layer_norm({', '.join(args)})" if args else "layer_norm"
    return [cx.emit(f"{call} as {name}", x.dtype, x.shape, head=x)]


def _ln_stats(cx, x: Sym, axis: int, eps: float) -> list:
    """LayerNormalization's second and third outputs: the mean and 1 / sqrt(variance + eps)
    over the normalized dims, kept as dims of size 1."""
    dims = list(range(axis, x.rank))
    shape = tuple(d if i < axis else 1 for i, d in enumerate(x.shape))
    dim = str(dims[0]) if len(dims) == 1 else dims_text(dims)
    m = cx.emit(f"mean(dim={dim}, keepdim=true)", x.dtype, shape, head=x, hint="mean")
    d = cx.emit(f"{x.var} - {m.var}", x.dtype, x.shape, reads=[x, m], hint="centred")
    v = cx.emit(f"{d.var} * {d.var} |> mean(dim={dim}, keepdim=true)", x.dtype, shape,
                reads=[d], hint="var")
    inv = cx.emit(f"1.0 / sqrt({v.var} + {number(eps)})", x.dtype, shape, reads=[v],
                  hint="inv_std")
    return [m, inv]


@op("RMSNormalization")
def rms_norm(cx, node, ins, a):
    x = _x(cx, ins)
    axis = _norm_axis(a.get("axis", -1), x.rank)
    shape = list(x.shape[axis:])
    scale = cx.const(ins[1])
    if scale is None:
        raise Unsupported("RMSNormalization's scale computed at run time")
    name = _layer_name(cx, node)
    cx.prog.weights[f"{name}.weight"] = np.broadcast_to(scale, shape).copy()
    args = [f"eps={number(a.get('epsilon', 1e-5))}"]
    if len(shape) > 1:
        args.insert(0, f"shape={dims_text(shape)}")
    return [cx.emit(f"rms_norm({', '.join(args)}) as {name}", x.dtype, x.shape, head=x)]


def _linear(cx, node, x: Sym, weight: np.ndarray, bias, name: str, onnx_out: str):
    """``x Wᵀ + b`` as a linear layer; ``weight`` is [out, in]."""
    out = weight.shape[0]
    # an embedding's table read again as the output layer's matrix: one tied parameter
    tied = next((layer for layer, table in cx.tables if table.shape == weight.shape and
                 np.array_equal(table, weight)), None)
    if tied is not None:
        tied = _as_instance(cx, tied)
    tie = f", weight={tied}.weight" if tied else ""
    if tied is None:
        cx.prog.weights[f"{name}.weight"] = np.ascontiguousarray(weight.astype(np.float32))
    shape = tuple(x.shape[:-1]) + (out,)
    if bias is not None:
        cx.prog.weights[f"{name}.bias"] = np.ascontiguousarray(bias.astype(np.float32))
        return cx.emit(f"linear({out}{tie}) as {name}", x.dtype, shape, head=x,
                       kind="linear" if not tie else "linear_tied", info={"layer": name})
    return cx.emit(f"linear({out}, bias=false{tie}) as {name}", x.dtype, shape, head=x,
                   kind="linear_nobias",
                   info={"out": out, "layer": name, "onnx_out": onnx_out})


INSTANCES = ("embedding", "conv", "batch_norm", "linear")


def _as_instance(cx, layer: str) -> str | None:
    """The layer ``layer`` as an instance the spec can name (``wte = embedding(V, D)``, then
    ``wte(ids)``), so that another layer can read its weight (``weight=wte.weight``) or the
    layer be applied again (``enc(a)``, ``enc(b)``: one set of weights): the instance's name
    (the layer's, or a new one where a variable has that name; its weights follow), or
    None."""
    from nndsl.importer.program import Stmt
    at = next((i for i, st in enumerate(cx.prog.stmts) if st.kind in INSTANCES and
               st.info.get("layer") == layer), None)
    if at is None:
        return None
    st = cx.prog.stmts[at]
    if st.info.get("instance"):
        return st.info["instance"]
    name = layer
    if name in cx.vars.taken:
        name = cx.vars.take(f"{layer}_table")
        if name in cx.layers.taken:
            return None
        cx.layers.taken.add(name)
        for key in [k for k in cx.prog.weights if k.startswith(f"{layer}.")]:
            cx.prog.weights[name + key[len(layer):]] = cx.prog.weights.pop(key)
    cx.vars.taken.add(name)
    call = st.call.rsplit(" as ", 1)[0]
    if not call.endswith(")"):
        call += "()"        # `batch_norm` alone names the function; `batch_norm()` a layer
    cx.prog.stmts.insert(at, Stmt([name], call, key=st.key))
    st.call, st.head = f"{name}({st.head})", None
    st.info["instance"] = name
    return name


def _shared(cx, key: tuple, call: str, name: str, x: Sym, shape) -> Sym | None:
    """A layer whose weights (the same constants, ``key``) and arguments an earlier node
    already has: that layer applied again (``L(x)``), or None (and ``name`` remembered)."""
    earlier = cx.shared.get(key)
    if earlier is None:
        cx.shared[key] = (name, call)
        return None
    layer, first = earlier
    if first != call:
        return None
    inst = _as_instance(cx, layer)
    if inst is None:
        return None
    return cx.emit(f"{inst}({x.var})", x.dtype, shape, reads=[x])


@op("Gemm")
def gemm(cx, node, ins, a):
    x = _x(cx, ins)
    if a.get("transA", 0):
        x = cx.emit("transpose(0, 1)", x.dtype, (x.shape[1], x.shape[0]), head=x)
    bmat = cx.const(ins[1])
    alpha, beta = a.get("alpha", 1.0), a.get("beta", 1.0)
    c = ins[2] if len(ins) > 2 else None
    if bmat is None:
        b = cx.tensor(ins[1])
        if a.get("transB", 0):
            b = cx.emit("transpose(0, 1)", b.dtype, (b.shape[1], b.shape[0]), head=b)
        y = cx.emit(f"{x.var} @ {b.var}", x.dtype, (x.shape[0], b.shape[1]), reads=[x, b])
        if alpha != 1.0:
            y = cx.emit(f"{y.var} * {number(alpha)}", y.dtype, y.shape, reads=[y])
        if c is not None:
            if beta != 1.0:
                cs = cx.tensor(c)
                c = cx.emit(f"{cs.var} * {number(beta)}", cs.dtype, cs.shape, reads=[cs])
            y = binary_handler("Add")(cx, node, [y, c], {})[0]
        return [y]
    w = bmat if a.get("transB", 0) else bmat.T
    w = w * np.float32(alpha) if alpha != 1.0 else w
    out = w.shape[0]
    bias = None
    if c is not None:
        cc = cx.const(c)
        if cc is None:
            raise Unsupported("a Gemm whose C is computed at run time")
        cc = np.asarray(cc, np.float32) * np.float32(beta)
        if cc.size == 1:
            bias = np.full((out,), cc.reshape(-1)[0], np.float32)
        elif cc.shape in ((out,), (1, out)):
            bias = cc.reshape(out)
        else:
            raise Unsupported(f"a Gemm whose C has shape {list(cc.shape)}")
    name = _layer_name(cx, node)
    key = ("Gemm", id(bmat), id(cx.const(c)) if c is not None else None,
           a.get("transB", 0), alpha, beta)
    if bias is not None:        # (without one, a later Add may still become its bias)
        shape = tuple(x.shape[:-1]) + (out,)
        again = _shared(cx, key, "gemm", name, x, shape)
        if again is not None:
            return [again]
    return [_linear(cx, node, x, w, bias, name, node.output[0])]


@op("MatMul")
def matmul(cx, node, ins, a):
    w = cx.const(ins[1])
    x0 = ins[0]
    if w is not None and w.ndim == 2 and isinstance(x0, Sym) and x0.dtype in FLOATS:
        name = _layer_name(cx, node)
        return [_linear(cx, node, x0, w.T, None, name, node.output[0])]
    x, y = cx.tensor(ins[0]), cx.tensor(ins[1])
    shape = cx.out_shape()
    if shape is None:
        sx, sy = x.shape, y.shape
        if len(sx) >= 2 and len(sy) >= 2:
            shape = _broadcast(sx[:-2], sy[:-2]) + (sx[-2], sy[-1])
    return [cx.emit(f"{x.var} @ {y.var}", x.dtype, shape, reads=[x, y])]


@op("Einsum")
def einsum(cx, node, ins, a):
    xs = [cx.tensor(v) for v in ins]
    eq = a["equation"]
    eq = eq.decode() if isinstance(eq, bytes) else eq
    eq = eq.replace(" ", "")
    return [cx.emit(f"einsum(\"{eq}\", {', '.join(x.var for x in xs)})", xs[0].dtype,
                    cx.out_shape(), reads=xs)]
