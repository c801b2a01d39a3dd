"""ONNX lowering table: one function per IR op, built directly from the IR (opset 21).

Each function is ``fn(b, a, ins, n) -> None``: ``b`` is the :class:`Builder`, ``a`` the node's
attributes (defaults filled in), ``ins`` the ONNX names of its operands (``None`` for absent
optional ones) and ``n`` the :class:`Site` with the operand/output types and the output names
the lowering must write. Lowerings describe inference: dropout is the identity and batch norm uses
its running statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

from onnx import TensorProto

from nndsl.backends.onnx.builder import INT64_MAX, ONNX_DTYPES, OPSET, Builder
from nndsl.errors import LoweringError
from nndsl.ir.ops.shapes import promote
from nndsl.ir.types import FLOAT_DTYPES


@dataclass
class Site:
    in_types: list
    out_types: tuple
    outs: list   # the names the lowering must produce, one per IR output

    @property
    def out(self) -> str:
        return self.outs[0]


def _simple(op_type: str, **fixed):
    def low(b: Builder, a, ins, n: Site):
        b.op1(op_type, list(ins), out=n.out, **fixed)
    return low


def _scalar(b, a, ins, n):
    b.op1("Constant", [], out=n.out, value=_tensor(a["value"], a["dtype"]))


def _tensor(value, dtype):
    import numpy as np
    from onnx import numpy_helper

    from nndsl.backends.onnx.builder import NUMPY_DTYPES
    if dtype == "bf16":
        raise LoweringError("bf16 constants are not supported in the ONNX export", code="E0905")
    return numpy_helper.from_array(np.asarray(value, dtype=NUMPY_DTYPES[dtype]))


def _full(b, a, ins, n):
    shape = b.shape(a["shape"])
    b.op1("ConstantOfShape", [shape], out=n.out, value=_tensor([a["value"]], a["dtype"]))


def _arange(b, a, ins, n):
    end = b.op1("Squeeze", [b.dim(a["n"]), b.const([0])])
    r = b.op1("Range", [b.const(0), end, b.const(1)])
    b.op1("Cast", [r], out=n.out, to=ONNX_DTYPES[a["dtype"]])


def _silu(b, a, ins, n):
    b.op1("Mul", [ins[0], b.op1("Sigmoid", [ins[0]])], out=n.out)


def _rsqrt(b, a, ins, n):
    b.op1("Reciprocal", [b.op1("Sqrt", [ins[0]])], out=n.out)


def _softplus(b, a, ins, n):
    """``x`` where ``z = beta·x > threshold`` (torch's linear region), else ``softplus(z) /
    beta``. ``Softplus`` is f32-only in onnxruntime: other dtypes get the stable
    ``max(z, 0) + log(1 + e^-|z|)``. An f32 threshold of 20 or more needs no ``Where``: there
    ``softplus(z) = z + log(1 + e^-z)`` rounds to ``z``."""
    x = ins[0]
    dtype = n.in_types[0].dtype
    beta, threshold = a["beta"], a["threshold"]
    direct = dtype == "f32" and threshold >= 20.0
    c = b.const(beta, dtype)
    z = x if beta == 1.0 else b.op1("Mul", [x, c])
    last = n.out if direct and beta == 1.0 else None
    if dtype == "f32":
        sp = b.op1("Softplus", [z], out=last)
    else:
        tail = b.op1("Log", [b.op1("Add", [b.const(1.0, dtype), b.op1("Exp", [
            b.op1("Neg", [b.op1("Abs", [z])])])])])
        sp = b.op1("Add", [b.op1("Max", [z, b.const(0.0, dtype)]), tail], out=last)
    y = sp if beta == 1.0 else b.op1("Div", [sp, c], out=n.out if direct else None)
    if direct:
        return
    above = b.op1("Greater", [z, b.const(threshold, dtype)])
    b.op1("Where", [above, x, y], out=n.out)


def _identity(b, a, ins, n):
    b.op1("Identity", [ins[0]], out=n.out)


def _promoted(op_type: str):
    """A binary op whose operands the IR promotes to one dtype (an integer tensor and a float
    number give a float): ONNX wants both of that dtype, so the other is cast first."""
    def low(b: Builder, a, ins, n: Site):
        dt = promote(n.in_types[0], n.in_types[1])
        ins = [x if t.dtype == dt else b.op1("Cast", [x], to=ONNX_DTYPES[dt])
               for x, t in zip(ins, n.in_types)]
        b.op1(op_type, ins, out=n.out)
    return low


def _cast(b, a, ins, n):
    b.op1("Cast", [ins[0]], out=n.out, to=ONNX_DTYPES[a["dtype"]])


def _ne(b, a, ins, n):
    dt = promote(n.in_types[0], n.in_types[1])
    ins = [x if t.dtype == dt else b.op1("Cast", [x], to=ONNX_DTYPES[dt])
           for x, t in zip(ins, n.in_types)]
    b.op1("Not", [b.op1("Equal", ins)], out=n.out)


def _floor_div(b, a, ins, n):
    t = n.out_types[0]
    if t.dtype in FLOAT_DTYPES:
        b.op1("Floor", [b.op1("Div", list(ins))], out=n.out)
        return
    x, y = (b.op1("Cast", [i], to=TensorProto.DOUBLE) for i in ins)
    b.op1("Cast", [b.op1("Floor", [b.op1("Div", [x, y])])], out=n.out, to=ONNX_DTYPES[t.dtype])


def _mod(b, a, ins, n):
    t = n.out_types[0]
    if t.dtype not in FLOAT_DTYPES:
        b.op1("Mod", list(ins), out=n.out, fmod=0)
        return
    x, y = ins          # python-style remainder: x - floor(x / y) * y
    q = b.op1("Floor", [b.op1("Div", [x, y])])
    b.op1("Sub", [x, b.op1("Mul", [q, y])], out=n.out)


def _masked_fill(b, a, ins, n):
    """``Where(mask, value, x)``; for booleans (onnxruntime has no boolean ``Where``)
    ``x or mask`` when the value is true, ``x and not mask`` when it is false."""
    x, mask = ins
    if n.in_types[0].dtype == "bool":
        if a["value"]:
            b.op1("Or", [x, mask], out=n.out)
        else:
            b.op1("And", [x, b.op1("Not", [mask])], out=n.out)
        return
    value = b.const(a["value"], n.in_types[0].dtype)
    b.op1("Where", [mask, value, x], out=n.out)


def _where(b, a, ins, n):
    """``Where(cond, a, b)``; for booleans (onnxruntime has no boolean ``Where``)
    ``(cond and a) or (not cond and b)``."""
    cond, x, y = ins
    dt = n.out_types[0].dtype
    if dt != "bool":        # a number beside a half-precision tensor is cast to its dtype
        x, y = (v if t.dtype == dt else b.op1("Cast", [v], to=ONNX_DTYPES[dt])
                for v, t in zip((x, y), n.in_types[1:]))
        b.op1("Where", [cond, x, y], out=n.out)
        return
    b.op1("Or", [b.op1("And", [cond, x]), b.op1("And", [b.op1("Not", [cond]), y])], out=n.out)


def _tri(upper: int):
    def low(b, a, ins, n):
        b.op1("Trilu", [ins[0], b.const(a["k"])], out=n.out, upper=upper)
    return low


def _onnx_unary(op_type: str):
    return lambda b, x, out: b.op1(op_type, [x], out=out)


# The epilogue activations (ops_with("epilogue")), each as ONNX nodes from `x` to `out`.
ONNX_ACTIVATIONS = {
    "relu": _onnx_unary("Relu"), "sigmoid": _onnx_unary("Sigmoid"), "tanh": _onnx_unary("Tanh"),
    "gelu": _onnx_unary("Gelu"),
    "silu": lambda b, x, out: b.op1("Mul", [x, b.op1("Sigmoid", [x])], out=out),
}


def _act(low):
    """Lower an op with a fused epilogue activation (``act``): the op, then the activation."""
    def fused(b, a, ins, n):
        act = a.get("act")
        if act is None:
            return low(b, a, ins, n)
        pre = b.fresh(f"{n.out}/pre_act")
        low(b, a, ins, Site(n.in_types, n.out_types, [pre]))
        ONNX_ACTIVATIONS[act](b, pre, n.out)
    return fused


def _attention(b, a, ins, n):
    """softmax(q kᵀ · scale [masked]) v, written out in opset-21 ops."""
    q, k, v, mask = ins
    qt = n.in_types[0]
    r = qt.rank
    perm = list(range(r))
    perm[-1], perm[-2] = perm[-2], perm[-1]
    scale = a["scale"]
    if scale is None:
        scale = 1.0 / float(qt.shape[-1]) ** 0.5
    scores = b.op1("MatMul", [q, b.op1("Transpose", [k], perm=perm)])
    scores = b.op1("Mul", [scores, b.const(scale, qt.dtype)])
    # Masks are added, as -inf where a score is dropped and 0 where it is kept: a mask is
    # [T, S] where the scores are [..., T, S], and onnxruntime's Add broadcasts it several
    # times faster than Where picks between the scores and -inf.
    if a["causal"]:
        # -inf strictly above the diagonal (Trilu keeps j - i >= 1 and zeroes the rest)
        size = b.shape((qt.shape[-2], n.in_types[1].shape[-2]))
        full = b.op1("ConstantOfShape", [size], value=_tensor([float("-inf")], qt.dtype))
        scores = b.op1("Add", [scores, b.op1("Trilu", [full, b.const(1)], upper=1)])
    if mask is not None:
        if n.in_types[3].dtype == "bool":
            mask = b.op1("Where", [mask, b.const(0.0, qt.dtype),
                                   b.const(float("-inf"), qt.dtype)])
        scores = b.op1("Add", [scores, mask])
    att = b.op1("Softmax", [scores], axis=-1)
    b.op1("MatMul", [att, v], out=n.out)


def _linear(b, a, ins, n):
    x, w, bias = ins
    if n.in_types[0].rank == 2:
        b.op1("Gemm", [x, w] + ([bias] if bias else []), out=n.out, transB=1)
        return
    y = b.op1("MatMul", [x, b.op1("Transpose", [w], perm=[1, 0])])
    if bias:
        b.op1("Add", [y, bias], out=n.out)
    else:
        b.op1("Identity", [y], out=n.out)


def _dequantize(b, a, ins, n):
    """DequantizeLinear with a zero zero-point: per axis 0 (one scale a row) or blocked along
    the last axis (opset 21's ``block_size``: one scale per row and group)."""
    q, s = ins
    qt, st = n.in_types
    zp_dtype = "i8"
    if a["group"] is None:
        zp = b.const([0] * qt.shape[0], zp_dtype) if qt.dtype == "i8" else None
        b.op1("DequantizeLinear", [q, s] + ([zp] if zp else []), out=n.out, axis=0)
        return
    attrs = {"axis": qt.rank - 1, "block_size": a["group"]}
    if qt.dtype == "i8":
        zp = b.const([[0] * st.shape[1]] * st.shape[0], zp_dtype)
        b.op1("DequantizeLinear", [q, s, zp], out=n.out, **attrs)
    else:
        b.op1("DequantizeLinear", [q, s], out=n.out, **attrs)


def _qparams(b, scale: float, zp: int):
    return b.const(float(scale), "f32"), b.const(int(zp), "u8")


def _quantize(b, a, ins, n):
    s, z = _qparams(b, a["scale"], a["zero_point"])
    b.op1("QuantizeLinear", [ins[0], s, z], out=n.out)


def _dequantize_act(b, a, ins, n):
    s, z = _qparams(b, a["scale"], a["zero_point"])
    b.op1("DequantizeLinear", [ins[0], s, z], out=n.out)


def _qlayer(float_lowering):
    """QDQ form, which onnxruntime fuses into its int8 kernels (QLinearConv, QLinearMatMul):
    ``Q(act(layer(DQ(x), DQ(W), DQ(b))))``, the int32 bias at scale ``x_scale · w_scale``."""
    def low(b, a, ins, n):
        x, w, ws, bias = ins
        wt = n.in_types[1]
        xs, xz = _qparams(b, a["x_scale"], a["x_zp"])
        xf = b.op1("DequantizeLinear", [x, xs, xz])
        zw = b.const([0] * wt.shape[0], "i8")
        wf = b.op1("DequantizeLinear", [w, ws, zw], axis=0)
        bf = None
        if bias:
            bs = b.op1("Mul", [ws, b.const(float(a["x_scale"]), "f32")])
            bf = b.op1("DequantizeLinear", [bias, bs, b.const([0] * wt.shape[0], "i32")],
                       axis=0)
        y = b.fresh(f"{n.out}/float")
        f32 = [t.with_dtype("f32") if t is not None else None for t in n.in_types]
        site = Site([f32[0], f32[1], f32[3]], tuple(t.with_dtype("f32") for t in n.out_types),
                    [y])
        float_lowering(b, {**a, "act": None}, [xf, wf, bf], site)
        if a["act"] == "relu":
            y = b.op1("Relu", [y])
        os_, oz = _qparams(b, a["out_scale"], a["out_zp"])
        b.op1("QuantizeLinear", [y, os_, oz], out=n.out)
    return low


def _qclamp(b, a, ins, n):
    """``Clip`` of the u8 values, the bounds rounded to their grid: ``round(v / s) + z``."""
    def bound(v):
        if v is None:
            return None
        return b.const(int(min(255, max(0, round(v / a["scale"]) + a["zero_point"]))), "u8")
    b.op1("Clip", [ins[0], bound(a["min"]), bound(a["max"])], out=n.out)


def _qadd(b, a, ins, n):
    fs = []
    for v, k in zip(ins, "ab"):
        s, z = _qparams(b, a[f"{k}_scale"], a[f"{k}_zp"])
        fs.append(b.op1("DequantizeLinear", [v, s, z]))
    y = b.op1("Add", fs)
    if a["act"] == "relu":
        y = b.op1("Relu", [y])
    s, z = _qparams(b, a["out_scale"], a["out_zp"])
    b.op1("QuantizeLinear", [y, s, z], out=n.out)


def _fake_quantize(b, a, ins, n):
    """``clip(round(w / s), -q, q) · s`` with ``s = max|row| / q`` (1 for an all-zero row)."""
    t = n.in_types[0]
    qmax = 2 ** (a["bits"] - 1) - 1
    cols = 1
    for d in t.shape[1:]:
        cols *= d
    g = cols if a["group"] is None else a["group"]
    rows = b.op1("Reshape", [ins[0], b.const([t.shape[0], cols // g, g])])
    amax = b.op1("ReduceMax", [b.op1("Abs", [rows]), b.const([-1])], keepdims=1)
    zero = b.op1("Equal", [amax, b.const(0.0, t.dtype)])
    s = b.op1("Where", [zero, b.const(1.0, t.dtype), b.op1("Div", [amax, b.const(float(qmax), t.dtype)])])
    q = b.op1("Clip", [b.op1("Round", [b.op1("Div", [rows, s])]), b.const(float(-qmax), t.dtype),
                       b.const(float(qmax), t.dtype)])
    b.op1("Reshape", [b.op1("Mul", [q, s]), b.const(list(t.shape))], out=n.out)


# How int8-dynamic's matrix products run in onnxruntime: ``u8u8`` (uint8 activations and
# weights) is exact on every CPU; ``u8s8`` (int8 weights, as onnxruntime's own quantize_dynamic
# writes them) runs faster kernels, exact on CPUs with VNNI dot products (AVX512-VNNI, AVX-VNNI,
# AMX) and on ARM, but on x86 CPUs with AVX2 and no VNNI their 16-bit pair sums can saturate.
INT8_FORMS = ("u8u8", "u8s8")


def _linear_int8(b, a, ins, n):
    """Dynamic int8: ``(xq, sx, zx) = DynamicQuantizeLinear(x)``, then
    ``y = float(MatMulInteger(xq, Wᵀ, zx, z_w)) · (sx · s_w) + b`` (onnxruntime fuses the chain
    into one int8 kernel). The weights go in as int8 (``b.int8 == "u8s8"``) or shifted to uint8
    (``"u8u8"``): see ``INT8_FORMS``."""
    x, w, s, bias = ins
    xt = n.in_types[0]
    if xt.dtype != "f32":
        x = b.op1("Cast", [x], to=TensorProto.FLOAT)
    xq, sx, zx = b.op("DynamicQuantizeLinear", [x], 3)
    wt = b.op1("Transpose", [w], perm=[1, 0])
    if b.int8 == "u8u8":
        # uint8 weights with zero point 128 (constant-folded when the model loads): exact on
        # every CPU, where u8·s8 kernels saturate 16-bit pair sums on x86 without VNNI
        wt = b.op1("Cast", [b.op1("Add", [b.op1("Cast", [wt], to=TensorProto.INT32),
                                          b.const(128, "i32")])], to=TensorProto.UINT8)
        acc = b.op1("MatMulInteger", [xq, wt, zx, b.const([128] * n.in_types[1].shape[0], "u8")])
    else:
        acc = b.op1("MatMulInteger", [xq, wt, zx])      # u8·s8, weights' zero point 0
    y = b.op1("Mul", [b.op1("Cast", [acc], to=TensorProto.FLOAT), b.op1("Mul", [sx, s])])
    if bias:
        y = b.op1("Add", [y, bias])
    if n.out_types[0].dtype != "f32":
        y = b.op1("Cast", [y], to=ONNX_DTYPES[n.out_types[0].dtype])
    b.op1("Identity", [y], out=n.out)


def _pads(p, k, d) -> list:
    if p == "same":
        total = [di * (ki - 1) for ki, di in zip(k, d)]
        return [t // 2 for t in total] + [t - t // 2 for t in total]
    return list(p) + list(p)


def _conv(b, a, ins, n):
    x, w, bias = ins
    k = list(n.in_types[1].shape[2:])
    b.op1("Conv", [x, w] + ([bias] if bias else []), out=n.out, kernel_shape=k,
          strides=list(a["stride"]), dilations=list(a["dilation"]), group=a["groups"],
          pads=_pads(a["padding"], k, a["dilation"]))


def _conv_t(b, a, ins, n):
    """``ConvTranspose``; an output padding must be smaller than the stride or the dilation
    (torch refuses the others: the extra rows would lie outside every window)."""
    x, w, bias = ins
    for op_, s_, d_ in zip(a["output_padding"], a["stride"], a["dilation"]):
        if op_ >= max(s_, d_):
            raise LoweringError(f"conv_transpose2d output_padding={list(a['output_padding'])} "
                                f"must be smaller than the stride {list(a['stride'])} or the "
                                f"dilation {list(a['dilation'])} in each dim", code="E0906",
                                hint="use an output_padding below the stride (0 for stride 1)")
    k = list(n.in_types[1].shape[2:])
    b.op1("ConvTranspose", [x, w] + ([bias] if bias else []), out=n.out, kernel_shape=k,
          strides=list(a["stride"]), dilations=list(a["dilation"]), group=a["groups"],
          pads=list(a["padding"]) * 2, output_padding=list(a["output_padding"]))


def _max_pool(b, a, ins, n):
    b.op1("MaxPool", [ins[0]], out=n.out, kernel_shape=list(a["kernel"]),
          strides=list(a["stride"]), pads=list(a["padding"]) * 2,
          dilations=list(a["dilation"]), ceil_mode=int(a["ceil_mode"]))


def _avg_pool(b, a, ins, n):
    b.op1("AveragePool", [ins[0]], out=n.out, kernel_shape=list(a["kernel"]),
          strides=list(a["stride"]), pads=list(a["padding"]) * 2,
          ceil_mode=int(a["ceil_mode"]), count_include_pad=int(a["count_include_pad"]))


def _adaptive(b, a, ins, n):
    x = n.in_types[0]
    out = a["output_size"]
    if all(o == 1 for o in out):
        b.op1("GlobalAveragePool", [ins[0]], out=n.out)
        return
    spatial = x.shape[2:]
    if not all(isinstance(s, int) and s % o == 0 for s, o in zip(spatial, out)):
        raise LoweringError(f"adaptive_avg_pool to {list(out)} from {x} has no ONNX form unless "
                            f"each input size is a known multiple of the output size",
                            code="E0906", hint="use global_avg_pool or a fixed avg_pool")
    k = [s // o for s, o in zip(spatial, out)]
    b.op1("AveragePool", [ins[0]], out=n.out, kernel_shape=k, strides=k)


def _ones_like_channels(b, t, channels, value):
    return b.const([value] * channels, t.dtype)


def _batch_norm(b, a, ins, n):
    x, w, bias, rm, rv, _ = ins
    c = n.in_types[0].shape[1]
    w = w or _ones_like_channels(b, n.in_types[0], c, 1.0)
    bias = bias or _ones_like_channels(b, n.in_types[0], c, 0.0)
    b.op1("BatchNormalization", [x, w, bias, rm, rv], out=n.out, epsilon=a["eps"],
          momentum=1.0 - a["momentum"])


def _layer_norm(b, a, ins, n):
    x, w, bias = ins
    shape = list(a["normalized_shape"])
    t = n.in_types[0]
    if w is None:
        w = b.op1("ConstantOfShape", [b.const(shape)], value=_tensor([1.0], t.dtype))
    b.op1("LayerNormalization", [x, w] + ([bias] if bias else []), out=n.out,
          axis=-len(shape), epsilon=a["eps"])


def _group_norm(b, a, ins, n):
    x, w, bias = ins
    t = n.in_types[0]
    c = t.shape[1]
    w = w or _ones_like_channels(b, t, c, 1.0)
    bias = bias or _ones_like_channels(b, t, c, 0.0)
    b.op1("GroupNormalization", [x, w, bias], out=n.out, num_groups=a["groups"],
          epsilon=a["eps"])
    # onnx's shape inference leaves GroupNormalization's output untyped: state it
    from nndsl.backends.onnx.builder import value_info
    b.value_infos.append(value_info(n.out, n.out_types[0]))


def _embedding(b, a, ins, n):
    b.op1("Gather", [ins[1], ins[0]], out=n.out, axis=0)


# torch packs gates (i, f, g, o) for LSTM and (r, z, n) for GRU; ONNX wants (i, o, f, c) and
# (z, r, h). Each entry lists, in ONNX order, which torch gate block goes there.
GATE_ORDER = {"lstm": (0, 3, 1, 2), "gru": (1, 0, 2), "rnn": (0,)}


def _reorder(b, w: str, kind: str, hidden: int) -> str:
    order = GATE_ORDER[kind]
    if order == tuple(range(len(order))):
        return w
    parts = b.op("Split", [w, b.const([hidden] * len(order))], n_out=len(order), axis=0)
    return b.op1("Concat", [parts[i] for i in order], axis=0)


def _recurrent(kind: str):
    onnx_op = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}[kind]

    def low(b, a, ins, n):
        x_t = n.in_types[0]
        has_c = kind == "lstm"
        h0, c0 = ins[1], ins[2] if has_c else None
        weights = list(ins[3 if has_c else 2:])
        h, layers = a["hidden"], a["layers"]
        dirs = 2 if a["bidirectional"] else 1
        per = 4 if a["bias"] else 2
        x = b.op1("Transpose", [ins[0]], perm=[1, 0, 2])       # ONNX runs time-major
        hs, cs = [], []
        for layer in range(layers):
            ws, rs, bs = [], [], []
            for d in range(dirs):
                base = (layer * dirs + d) * per
                w_ih, w_hh = weights[base], weights[base + 1]
                ws.append(b.op1("Unsqueeze", [_reorder(b, w_ih, kind, h), b.const([0])]))
                rs.append(b.op1("Unsqueeze", [_reorder(b, w_hh, kind, h), b.const([0])]))
                if a["bias"]:
                    bb = b.op1("Concat", [_reorder(b, weights[base + 2], kind, h),
                                          _reorder(b, weights[base + 3], kind, h)], axis=0)
                    bs.append(b.op1("Unsqueeze", [bb, b.const([0])]))
            W = ws[0] if dirs == 1 else b.op1("Concat", ws, axis=0)
            R = rs[0] if dirs == 1 else b.op1("Concat", rs, axis=0)
            B = (bs[0] if dirs == 1 else b.op1("Concat", bs, axis=0)) if bs else None
            states = []
            for s0 in ([h0, c0] if has_c else [h0]):   # torch [layers*dirs, N, H] -> [dirs, N, H]
                states.append(None if s0 is None else b.op1(
                    "Slice", [s0, b.const([layer * dirs]), b.const([(layer + 1) * dirs]),
                              b.const([0])]))
            attrs = {"hidden_size": h, "direction": "bidirectional" if dirs == 2 else "forward"}
            if kind == "gru":
                attrs["linear_before_reset"] = 1
            if kind == "rnn":
                attrs["activations"] = ["Tanh" if a["nonlinearity"] == "tanh" else "Relu"] * dirs
            inputs = [x, W, R, B, None] + states
            while inputs and inputs[-1] is None:
                inputs.pop()
            outs = b.op(onnx_op, inputs, n_out=3 if has_c else 2, **attrs)
            # Y: [T, dirs, N, H] -> [T, N, dirs*H] (the next layer's input, time-major)
            y = b.op1("Transpose", [outs[0]], perm=[0, 2, 1, 3])
            x = b.op1("Reshape", [y, b.shape((x_t.shape[1], x_t.shape[0], dirs * h))])
            hs.append(outs[1])
            if has_c:
                cs.append(outs[2])
        b.op1("Transpose", [x], out=n.outs[0], perm=[1, 0, 2])
        b.op1("Concat", hs, out=n.outs[1], axis=0)
        if has_c:
            b.op1("Concat", cs, out=n.outs[2], axis=0)
    return low


def _reshape_to_output(b, a, ins, n):
    b.op1("Reshape", [ins[0], b.shape(n.out_types[0].shape)], out=n.out)


def _transpose(b, a, ins, n):
    r = n.in_types[0].rank
    perm = list(range(r))
    d0, d1 = a["dim0"] % r, a["dim1"] % r
    perm[d0], perm[d1] = perm[d1], perm[d0]
    b.op1("Transpose", [ins[0]], out=n.out, perm=perm)


def _permute(b, a, ins, n):
    r = n.in_types[0].rank
    b.op1("Transpose", [ins[0]], out=n.out, perm=[d % r for d in a["dims"]])


def _squeeze(b, a, ins, n):
    t = n.in_types[0]
    dims = a["dims"]
    if dims is None:
        dims = [i for i, d in enumerate(t.shape) if d == 1]
    b.op1("Squeeze", [ins[0], b.const([d % t.rank for d in dims])], out=n.out)


def _unsqueeze(b, a, ins, n):
    b.op1("Unsqueeze", [ins[0], b.const([a["dim"] % n.out_types[0].rank])], out=n.out)


def _expand(b, a, ins, n):
    b.op1("Expand", [ins[0], b.shape(n.out_types[0].shape)], out=n.out)


def _concat(b, a, ins, n):
    b.op1("Concat", list(ins), out=n.out, axis=a["dim"] % n.in_types[0].rank)


def _split(b, a, ins, n):
    sizes = b.shape(a["sizes"])
    b.op("Split", [ins[0], sizes], n_out=len(n.outs), out_names=n.outs,
         axis=a["dim"] % n.in_types[0].rank)


def _slice(b, a, ins, n):
    starts = [b.dim(0 if s is None else s) for s in a["starts"]]
    ends = [b.const([INT64_MAX]) if e is None else b.dim(e) for e in a["ends"]]
    cat = (lambda xs: xs[0] if len(xs) == 1 else b.op1("Concat", xs, axis=0))
    b.op1("Slice", [ins[0], cat(starts), cat(ends), b.const(list(a["axes"])),
                    b.const(list(a["steps"]))], out=n.out)


def _reduce(op_type: str):
    def low(b, a, ins, n):
        """The reduction over the dims, in the output's dtype. ``ReduceSum`` and ``ReduceProd``
        take no booleans or 8-bit integers: those reduce in i64, cast to the output's dtype
        (as torch's i64 sum converted to it)."""
        t, out_t = n.in_types[0], n.out_types[0]
        dims = a["dims"]
        axes = list(range(t.rank)) if dims is None else [d % t.rank for d in dims]
        x = ins[0]
        if t.dtype != out_t.dtype:
            x = b.op1("Cast", [x], to=ONNX_DTYPES[out_t.dtype])
        if op_type in ("ReduceSum", "ReduceProd") and out_t.dtype in ("bool", "i8", "u8"):
            x = b.op1("Cast", [x], to=TensorProto.INT64)
            y = b.op1(op_type, [x, b.const(axes)], keepdims=int(a["keepdim"]))
            b.op1("Cast", [y], out=n.out, to=ONNX_DTYPES[out_t.dtype])
            return
        b.op1(op_type, [x, b.const(axes)], out=n.out, keepdims=int(a["keepdim"]))
    return low


def _softmax(op_type: str):
    def low(b, a, ins, n):
        b.op1(op_type, [ins[0]], out=n.out, axis=a["dim"])
    return low


def _argmax(b, a, ins, n):
    b.op1("ArgMax", [ins[0]], out=n.out, axis=a["dim"] % n.in_types[0].rank,
          keepdims=int(a["keepdim"]), select_last_index=0)


def _argsort(b, a, ins, n):
    """TopK with k the whole dim, sorted; its indices. Ties: the lower index first (as torch's
    stable sort)."""
    t = n.in_types[0]
    d = a["dim"] % t.rank
    b.op("TopK", [ins[0], b.dim(t.shape[d])], n_out=2,
         out_names=[b.fresh(f"{n.out}/values"), n.out], axis=d,
         largest=int(a["descending"]), sorted=1)


def _cumsum(b, a, ins, n):
    x = ins[0]
    if n.in_types[0].dtype != n.out_types[0].dtype:    # integers and booleans sum in i64
        x = b.op1("Cast", [x], to=ONNX_DTYPES[n.out_types[0].dtype])
    b.op1("CumSum", [x, b.const(a["dim"] % n.in_types[0].rank)], out=n.out)


def _gather(b, a, ins, n):
    b.op1("GatherElements", list(ins), out=n.out, axis=a["dim"] % n.in_types[0].rank)


def _index_select(b, a, ins, n):
    b.op1("Gather", list(ins), out=n.out, axis=a["dim"] % n.in_types[0].rank)


def _scatter_add(b, a, ins, n):
    b.op1("ScatterElements", list(ins), out=n.out, axis=a["dim"] % n.in_types[0].rank,
          reduction="add")


def _segment_fill(b, a, t, value):
    """A [num_segments, ...] tensor of ``value``, shaped like one segment row of ``t``."""
    shape = b.shape((a["num_segments"],) + tuple(t.shape[1:]))
    return b.op1("ConstantOfShape", [shape], value=_tensor([value], t.dtype))


def _segment_scatter(b, a, data, ids, t, reduction, init=0.0, out=None):
    """ScatterND of the rows of ``data`` into row ``ids[e]`` of a filled [num_segments, ...]."""
    rows = b.op1("Unsqueeze", [ids, b.const([1])])          # [E, 1]: whole rows
    return b.op1("ScatterND", [_segment_fill(b, a, t, init), rows, data], out=out,
                 reduction=reduction)


def _lowest(dtype: str) -> float:
    import numpy as np

    from nndsl.backends.onnx.builder import NUMPY_DTYPES
    np_t = NUMPY_DTYPES[dtype]
    return float("-inf") if dtype in FLOAT_DTYPES else int(np.iinfo(np_t).min)


def _segment_counts(b, a, ids, t):
    """Rows per segment, in the data's dtype, shaped [num_segments, 1, ...] to broadcast."""
    from nndsl.ir.types import TensorType
    ones = b.op1("ConstantOfShape", [b.op1("Shape", [ids])], value=_tensor([1], t.dtype))
    counts = _segment_scatter(b, a, ones, ids, TensorType(t.dtype, t.shape[:1]), "add")
    if t.rank > 1:
        counts = b.op1("Unsqueeze", [counts, b.const(list(range(1, t.rank)))])
    return counts


def _segment_sum(b, a, ins, n):
    _segment_scatter(b, a, ins[0], ins[1], n.in_types[0], "add", out=n.out)


def _segment_mean(b, a, ins, n):
    t = n.in_types[0]
    sums = _segment_scatter(b, a, ins[0], ins[1], t, "add")
    counts = b.op1("Max", [_segment_counts(b, a, ins[1], t), b.const(1.0, t.dtype)])
    b.op1("Div", [sums, counts], out=n.out)


def _segment_max(b, a, ins, n):
    t = n.in_types[0]
    m = _segment_scatter(b, a, ins[0], ins[1], t, "max", init=_lowest(t.dtype))
    filled = b.op1("Greater", [_segment_counts(b, a, ins[1], t), b.const(0, t.dtype)])
    b.op1("Where", [filled, m, b.const(0, t.dtype)], out=n.out)     # empty segments: 0


def _segment_softmax(b, a, ins, n):
    s, ids = ins
    t = n.in_types[0]
    m = _segment_scatter(b, a, s, ids, t, "max", init=_lowest(t.dtype))
    e = b.op1("Exp", [b.op1("Sub", [s, b.op1("Gather", [m, ids], axis=0)])])
    z = _segment_scatter(b, a, e, ids, t, "add")
    b.op1("Div", [e, b.op1("Gather", [z, ids], axis=0)], out=n.out)


def lower_graph(b: Builder, graph, names: dict) -> None:
    """Lower every op node of ``graph`` into ``b``; ``names`` maps the graph's input values (and
    then every value lowered) to ONNX names. Inputs and parameters keep their own names."""
    from nndsl.errors import NndslError
    from nndsl.ir.ops import SIGNATURES
    for node in graph:
        if node.op in ("input", "param"):
            names.setdefault(node.out(), node.name)
            continue
        low = ONNX_LOWERINGS.get(node.op)
        if low is None:
            raise LoweringError(f"op `{node.op}` cannot be lowered to ONNX opset {OPSET}",
                                span=node.span, code="E0907")
        outs = [b.fresh(node.name if i == 0 else f"{node.name}:{i}")
                for i in range(len(node.types))]
        in_types = [graph.type_of(v) if v is not None else None for v in node.inputs]
        ins = [names[v] if v is not None else None for v in node.inputs]
        b.scope, b.span = node.name, node.span
        try:
            low(b, {**SIGNATURES[node.op].attrs, **node.attr}, ins, Site(in_types, node.types, outs))
        except NndslError as e:
            raise e.with_span(node.span)
        for i, o in enumerate(outs):
            names[node.out(i)] = o


def _scan(b, a, ins, n):
    """A ``Loop`` whose body is the scan's body: step t reads slice t of each sequence (a
    Gather on the loop counter), the carried state is the loop-carried values, the outer values
    the body reads are outer-scope names, and the per-step outputs are the loop's scan outputs
    (stacked on a new first axis, then moved to ``dim``)."""
    from onnx import helper

    from nndsl.backends.onnx.builder import value_info
    from nndsl.ir.graph import Value
    from nndsl.ir.types import TensorType
    body = a["body"].graph
    n_over, n_state, dim = a["n_over"], a["n_state"], a["dim"]
    scope = b.scope
    if n_over:
        x_t = n.in_types[0]
        d0 = dim % x_t.rank
        count = b.op1("Shape", [ins[0]], start=d0, end=d0 + 1)
    else:
        count = b.dim(a["steps"])
    trips = b.op1("Squeeze", [count, b.const([0])])
    sub = b.sub()
    it, cond = sub.fresh(f"{scope}/step"), sub.fresh(f"{scope}/cond")
    states = [sub.fresh(f"{scope}/{name}") for name in body.inputs[n_over:n_over + n_state]]
    names: dict = {}
    sub.scope = scope
    for i, name in enumerate(body.inputs):
        if i < n_over:
            d = dim % n.in_types[i].rank
            names[Value(name)] = sub.op1("Gather", [ins[i], it], axis=d)
        elif i < n_over + n_state:
            names[Value(name)] = states[i - n_over]
        else:
            names[Value(name)] = ins[i]      # an outer value, read from the enclosing graph
    lower_graph(sub, body, names)
    sub.scope = scope
    outs = [sub.op1("Identity", [cond])]
    out_types = [TensorType("bool", ())]
    for k, (_, v) in enumerate(body.outputs):
        outs.append(sub.op1("Identity", [names[v]]))
        out_types.append(body.type_of(v))
    in_infos = [value_info(it, TensorType("i64", ())), value_info(cond, TensorType("bool", ()))]
    in_infos += [value_info(s, body.node(nm).type)
                 for s, nm in zip(states, body.inputs[n_over:n_over + n_state])]
    graph = helper.make_graph(sub.nodes, f"{scope}/body", in_infos,
                              [value_info(o, t) for o, t in zip(outs, out_types)],
                              value_info=sub.value_infos)
    n_scan = len(body.outputs) - n_state
    results = b.op("Loop", [trips, ""] + list(ins[n_over:n_over + n_state]),
                   n_out=n_state + n_scan, body=graph)
    # ONNX infers no shape for a loop-carried value (it may change from step to step); here it
    # cannot, so say it, and the stacked outputs' step count
    length = n.in_types[0].shape[dim % n.in_types[0].rank] if n_over else a["steps"]
    for j, r in enumerate(results):
        t = n.out_types[j] if j < n_state else body.type_of(body.outputs[j][1])
        if j >= n_state:
            t = TensorType(t.dtype, (length,) + tuple(t.shape))
        b.value_infos.append(value_info(r, t))
    for j in range(n_state):
        b.op1("Identity", [results[j]], out=n.outs[j])
    for k in range(n_scan):
        t = n.out_types[n_state + k]
        d = dim % t.rank
        perm = list(range(1, d + 1)) + [0] + list(range(d + 1, t.rank))
        if perm == list(range(t.rank)):
            b.op1("Identity", [results[n_state + k]], out=n.outs[n_state + k])
        else:
            b.op1("Transpose", [results[n_state + k]], out=n.outs[n_state + k], perm=perm)


# ---- tensor ops: padding, stacking, reordering, resizing ----

INT64_MIN = -(2 ** 63)
EPS = {"f32": 1.1920928955078125e-07, "f64": 2.220446049250313e-16, "f16": 0.0009765625,
       "bf16": 0.0078125}     # machine epsilon (torch.finfo(dtype).eps)


def _clamp(b, a, ins, n):
    t = n.in_types[0]

    def bound(v):
        if v is None:
            return None
        return b.const(v if t.dtype in FLOAT_DTYPES else int(v), t.dtype)
    b.op1("Clip", [ins[0], bound(a["min"]), bound(a["max"])], out=n.out)


def _rms_norm(b, a, ins, n):
    """x · 1/√(mean(x²) + eps) · γ, over the normalized dims (opset 21 has no RMSNormalization)."""
    x, w = ins
    t = n.in_types[0]
    axes = list(range(t.rank - len(a["normalized_shape"]), t.rank))
    eps = a["eps"] if a["eps"] is not None else EPS[t.dtype]
    ms = b.op1("ReduceMean", [b.op1("Mul", [x, x]), b.const(axes)], keepdims=1)
    inv = b.op1("Reciprocal", [b.op1("Sqrt", [b.op1("Add", [ms, b.const(eps, t.dtype)])])])
    if w is None:
        b.op1("Mul", [x, inv], out=n.out)
    else:
        b.op1("Mul", [b.op1("Mul", [x, inv]), w], out=n.out)


def _one_hot(b, a, ins, n):
    """``index == arange(n)`` over a new last dim, as the output dtype."""
    x = ins[0]
    if n.in_types[0].dtype != "i64":
        x = b.op1("Cast", [x], to=TensorProto.INT64)
    classes = b.op1("Range", [b.const(0), b.op1("Squeeze", [b.dim(a["n"]), b.const([0])]),
                              b.const(1)])
    hit = b.op1("Equal", [b.op1("Unsqueeze", [x, b.const([-1])]), classes])
    b.op1("Cast", [hit], out=n.out, to=ONNX_DTYPES[a["dtype"]])


def _einsum(b, a, ins, n):
    b.op1("Einsum", list(ins), out=n.out, equation=a["equation"])


def _stack(b, a, ins, n):
    d = a["dim"] % n.out_types[0].rank
    parts = [b.op1("Unsqueeze", [x, b.const([d])]) for x in ins]
    b.op1("Concat", parts, out=n.out, axis=d)


def _flip(b, a, ins, n):
    t = n.in_types[0]
    axes = [d % t.rank for d in a["dims"]]
    k = len(axes)
    b.op1("Slice", [ins[0], b.const([-1] * k), b.const([INT64_MIN] * k), b.const(axes),
                    b.const([-1] * k)], out=n.out)


def _roll(b, a, ins, n):
    """``concat(x[size - s:], x[:size - s])`` along each dim, with ``s`` the shift modulo the
    size (computed in the graph when the size is symbolic)."""
    t = n.in_types[0]
    x = ins[0]
    pairs = list(zip(a["shifts"], a["dims"]))
    for i, (shift, d) in enumerate(pairs):
        d %= t.rank
        size = t.shape[d]
        if isinstance(size, int):
            cut = b.const([size - shift % size if size else 0])
        else:
            dim = b.dim(size)
            cut = b.op1("Sub", [dim, b.op1("Mod", [b.const([shift]), dim])])
        tail = b.op1("Slice", [x, cut, b.const([INT64_MAX]), b.const([d])])
        head = b.op1("Slice", [x, b.const([0]), cut, b.const([d])])
        last = i == len(pairs) - 1
        x = b.op1("Concat", [tail, head], out=n.out if last else None, axis=d)
    if not pairs:
        b.op1("Identity", [x], out=n.out)


def _repeat_interleave(b, a, ins, n):
    """Each element repeated: unsqueeze after dim, expand that new dim to ``repeats``, merge."""
    t = n.in_types[0]
    x, r, d = ins[0], a["repeats"], a["dim"]
    shape = tuple(t.shape)
    if d is None:
        x = b.op1("Reshape", [x, b.const([-1])])
        shape, d = (t.numel(),), 0
    d %= len(shape)
    wide = shape[:d + 1] + (r,) + shape[d + 1:]
    y = b.op1("Expand", [b.op1("Unsqueeze", [x, b.const([d + 1])]), b.shape(wide)])
    b.op1("Reshape", [y, b.shape(n.out_types[0].shape)], out=n.out)


PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge",
             "circular": "wrap"}


def _pad(b, a, ins, n):
    """torch's widths (last dim first, before/after pairs) as ONNX's pads on explicit axes."""
    t = n.in_types[0]
    w = list(a["widths"])
    k = len(w) // 2
    axes = [t.rank - 1 - i for i in range(k)]
    pads = [w[2 * i] for i in range(k)] + [w[2 * i + 1] for i in range(k)]
    value = None
    if a["mode"] == "constant":
        v = a["value"]
        value = b.const(v if t.dtype in FLOAT_DTYPES else (bool(v) if t.dtype == "bool"
                                                             else int(v)), t.dtype)
    b.op1("Pad", [ins[0], b.const(pads), value, b.const(axes)], out=n.out,
          mode=PAD_MODES[a["mode"]])


def _upsample(b, a, ins, n):
    """Resize by the scale factors. Nearest: torch's ``floor(out · in/out)`` source index
    (asymmetric coordinates, floor); linear: half-pixel centres, or the corners aligned."""
    t = n.in_types[0]
    scale = a["scale"]
    scale = tuple(scale) if isinstance(scale, (tuple, list)) else (scale,) * (t.rank - 2)
    scales = b.const([1.0, 1.0] + [float(f) for f in scale], "f32")
    if a["mode"] == "nearest":
        b.op1("Resize", [ins[0], None, scales], out=n.out, mode="nearest",
              coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    else:
        b.op1("Resize", [ins[0], None, scales], out=n.out, mode="linear",
              coordinate_transformation_mode="align_corners" if a["align_corners"]
              else "pytorch_half_pixel")


def _cumprod(b, a, ins, n):
    """A log-step scan (Hillis–Steele): ⌈log₂ n⌉ rounds of ``y ← y · shift(y, 2^i)``, the
    shifted-in elements 1 (opset 21 has no CumProd); over a symbolic dim, a ``Loop``."""
    t, out_t = n.in_types[0], n.out_types[0]
    d = a["dim"] % t.rank
    size = t.shape[d]
    y = ins[0]
    if t.dtype != out_t.dtype:
        y = b.op1("Cast", [y], to=ONNX_DTYPES[out_t.dtype])
    if not isinstance(size, int):
        _cumprod_loop(b, y, d, out_t, n.out)
        return
    one = b.const(1.0 if out_t.dtype in FLOAT_DTYPES else 1, out_t.dtype)
    shift = 1
    while shift < size:
        head = b.op1("Slice", [y, b.const([0]), b.const([size - shift]), b.const([d])])
        shifted = b.op1("Pad", [head, b.const([shift, 0]), one, b.const([d])])
        y = b.op1("Mul", [y, shifted])
        shift *= 2
    b.op1("Identity", [y], out=n.out)


def _cumprod_loop(b, y, d, t, out):
    """Over a symbolic dim: a ``Loop`` carrying the running product ``p ← p · y[i]`` (from
    ones), its per-step values stacked on a new first axis, then moved to ``d``."""
    from onnx import helper

    from nndsl.backends.onnx.builder import value_info
    from nndsl.ir.types import TensorType
    rest = tuple(t.shape[:d]) + tuple(t.shape[d + 1:])
    one = _tensor([1.0 if t.dtype in FLOAT_DTYPES else 1], t.dtype)
    init = b.op1("ConstantOfShape", [b.shape(rest)], value=one) if rest else \
        b.const(1.0 if t.dtype in FLOAT_DTYPES else 1, t.dtype)
    trips = b.op1("Squeeze", [b.op1("Shape", [y], start=d, end=d + 1), b.const([0])])
    sub = b.sub()
    it, cond, p = (sub.fresh(f"{b.scope}/{k}") for k in ("step", "cond", "prod"))
    nxt = sub.op1("Mul", [p, sub.op1("Gather", [y, it], axis=d)])
    outs = [sub.op1("Identity", [cond]), nxt, sub.op1("Identity", [nxt])]
    state_t = TensorType(t.dtype, rest)
    graph = helper.make_graph(
        sub.nodes, f"{b.scope}/cumprod", [value_info(it, TensorType("i64", ())),
                                          value_info(cond, TensorType("bool", ())),
                                          value_info(p, state_t)],
        [value_info(outs[0], TensorType("bool", ())), value_info(outs[1], state_t),
         value_info(outs[2], state_t)], value_info=sub.value_infos)
    _, stacked = b.op("Loop", [trips, "", init], n_out=2, body=graph)
    b.value_infos.append(value_info(stacked, TensorType(t.dtype, (t.shape[d],) + rest)))
    perm = list(range(1, d + 1)) + [0] + list(range(d + 1, t.rank))
    b.op1("Transpose", [stacked], out=out, perm=perm)


def _logsumexp(b, a, ins, n):
    """``m + log Σ e^(x - m)`` with ``m`` the max over the dims (stable for large x)."""
    t = n.in_types[0]
    axes = b.const(list(range(t.rank)) if a["dims"] is None else [d % t.rank for d in a["dims"]])
    m = b.op1("ReduceMax", [ins[0], axes], keepdims=1)
    s = b.op1("ReduceSum", [b.op1("Exp", [b.op1("Sub", [ins[0], m])]), axes],
              keepdims=int(a["keepdim"]))
    if not a["keepdim"]:
        m = b.op1("Squeeze", [m, axes])
    b.op1("Add", [b.op1("Log", [s]), m], out=n.out)


def _var(sqrt: bool):
    def low(b, a, ins, n):
        """``Σ (x - mean)² / max(count - correction, 0)`` over the dims (then its square root):
        a correction of the count or more divides by 0, as torch does."""
        t = n.in_types[0]
        dims = list(range(t.rank)) if a["dims"] is None else [d % t.rank for d in a["dims"]]
        axes = b.const(dims)
        x = ins[0]
        centred = b.op1("Sub", [x, b.op1("ReduceMean", [x, axes], keepdims=1)])
        ss = b.op1("ReduceSum", [b.op1("Mul", [centred, centred]), axes],
                   keepdims=int(a["keepdim"]))
        count = 1
        for d in dims:
            count = count * t.shape[d]
        denom = b.op1("Max", [b.op1("Sub", [b.dim(count), b.const([a["correction"]])]),
                              b.const([0])])     # torch: max(0, count - correction)
        denom = b.op1("Cast", [b.op1("Squeeze", [denom, b.const([0])])], to=ONNX_DTYPES[t.dtype])
        if sqrt:
            b.op1("Sqrt", [b.op1("Div", [ss, denom])], out=n.out)
        else:
            b.op1("Div", [ss, denom], out=n.out)
    return low


def _topk(b, a, ins, n):
    t = n.in_types[0]
    b.op("TopK", [ins[0], b.const([a["k"]])], n_out=2, out_names=list(n.outs),
         axis=a["dim"] % t.rank, largest=int(a["largest"]), sorted=1)


ONNX_LOWERINGS = {
    "scalar": _scalar, "full": _full, "arange": _arange,
    "relu": _simple("Relu"), "sigmoid": _simple("Sigmoid"), "tanh": _simple("Tanh"),
    "silu": _silu, "selu": _simple("Selu"), "exp": _simple("Exp"), "log": _simple("Log"),
    "sqrt": _simple("Sqrt"), "rsqrt": _rsqrt, "abs": _simple("Abs"), "neg": _simple("Neg"),
    "erf": _simple("Erf"), "sin": _simple("Sin"), "cos": _simple("Cos"),
    "logical_not": _simple("Not"),
    "leaky_relu": lambda b, a, ins, n: b.op1("LeakyRelu", [ins[0]], out=n.out, alpha=a["slope"]),
    "gelu": lambda b, a, ins, n: b.op1("Gelu", [ins[0]], out=n.out,
                                       approximate=a["approximate"]),
    "elu": lambda b, a, ins, n: b.op1("Elu", [ins[0]], out=n.out, alpha=a["alpha"]),
    "softplus": _softplus, "dropout": _identity, "cast": _cast,
    "drop_path": _identity, "hardswish": _simple("HardSwish"),
    "hardsigmoid": _simple("HardSigmoid", alpha=1 / 6, beta=0.5), "mish": _simple("Mish"),
    "clamp": _clamp,
    "add": _promoted("Add"), "sub": _promoted("Sub"), "mul": _promoted("Mul"),
    "div": _promoted("Div"), "pow": _simple("Pow"), "maximum": _promoted("Max"),
    "minimum": _promoted("Min"), "floor_div": _floor_div, "mod": _mod,
    "eq": _promoted("Equal"), "ne": _ne, "lt": _promoted("Less"),
    "le": _promoted("LessOrEqual"), "gt": _promoted("Greater"),
    "ge": _promoted("GreaterOrEqual"), "logical_and": _simple("And"),
    "logical_or": _simple("Or"),
    "where": _where, "masked_fill": _masked_fill, "tril": _tri(0), "triu": _tri(1),
    "matmul": _simple("MatMul"), "linear": _act(_linear),
    "linear_int8": _act(_linear_int8), "dequantize": _dequantize,
    "fake_quantize": _fake_quantize,
    "quantize": _quantize, "dequantize_act": _dequantize_act, "qconv2d": _qlayer(_conv),
    "qlinear": _qlayer(_linear), "qadd": _qadd, "qclamp": _qclamp,
    "conv1d": _act(_conv), "conv2d": _act(_conv), "conv3d": _act(_conv),
    "conv_transpose2d": _act(_conv_t),
    "attention": _attention, "memory_format": _identity,
    "max_pool1d": _max_pool, "max_pool2d": _max_pool,
    "avg_pool1d": _avg_pool, "avg_pool2d": _avg_pool,
    "adaptive_avg_pool1d": _adaptive, "adaptive_avg_pool2d": _adaptive,
    "batch_norm": _batch_norm, "layer_norm": _layer_norm, "group_norm": _group_norm,
    "embedding": _embedding, "rms_norm": _rms_norm, "one_hot": _one_hot, "einsum": _einsum,
    "lstm": _recurrent("lstm"), "gru": _recurrent("gru"), "rnn": _recurrent("rnn"),
    "flatten": _reshape_to_output, "reshape": _reshape_to_output, "transpose": _transpose,
    "permute": _permute, "squeeze": _squeeze, "unsqueeze": _unsqueeze, "expand": _expand,
    "concat": _concat, "split": _split, "slice": _slice,
    "stack": _stack, "flip": _flip, "roll": _roll, "repeat_interleave": _repeat_interleave,
    "pad": _pad, "upsample": _upsample,
    "pixel_shuffle": lambda b, a, ins, n: b.op1("DepthToSpace", [ins[0]], out=n.out,
                                                blocksize=a["r"], mode="CRD"),
    "sum": _reduce("ReduceSum"), "mean": _reduce("ReduceMean"), "max": _reduce("ReduceMax"),
    "min": _reduce("ReduceMin"), "prod": _reduce("ReduceProd"),
    "softmax": _softmax("Softmax"), "log_softmax": _softmax("LogSoftmax"),
    "argmax": _argmax, "argsort": _argsort, "cumsum": _cumsum,
    "cumprod": _cumprod, "logsumexp": _logsumexp, "var": _var(False), "std": _var(True),
    "topk": _topk,
    "gather": _gather, "index_select": _index_select, "scatter_add": _scatter_add,
    "segment_sum": _segment_sum, "segment_mean": _segment_mean, "segment_max": _segment_max,
    "segment_softmax": _segment_softmax,
    "scan": _scan,
}
