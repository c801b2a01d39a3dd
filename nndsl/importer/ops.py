"""The op table: one function per ONNX operator, writing the spec's statements for a node.

Each entry takes the converter, the node, its input values (``Sym``, a constant array, a
``ShapeVec`` or None for an absent optional input) and its attributes, and returns the values of
its outputs. It reads the operator as opset :data:`~nndsl.importer.reader.TABLE_OPSET` defines it
(older models are converted to that first); an attribute value nndsl cannot express raises
:class:`~nndsl.importer.convert.Unsupported` with the reason, which the import error lists.
"""

from __future__ import annotations

import math

import numpy as np

from nndsl.importer.convert import FLOATS, ONNX_DTYPES, ShapeVec, Sym, Unsupported, layer_hint
from nndsl.importer.program import dims_text, number
from nndsl.ir.types import SymDim

OPS: dict = {}


def op(*names):
    def register(fn):
        for n in names:
            OPS[n] = fn
        return fn
    return register


# ---- helpers ----

def _norm_axis(axis: int, rank: int) -> int:
    if not -rank <= axis < max(rank, 1):
        raise Unsupported(f"axis {axis} out of range for rank {rank}")
    return axis % rank if rank else 0


def _broadcast(a: tuple, b: tuple) -> tuple:
    out = []
    for i in range(max(len(a), len(b))):
        x = a[len(a) - 1 - i] if i < len(a) else 1
        y = b[len(b) - 1 - i] if i < len(b) else 1
        if isinstance(x, int) and x == 1:
            out.append(y)
        elif isinstance(y, int) and y == 1 or x == y:
            out.append(x)
        else:
            raise Unsupported(f"cannot broadcast {list(a)} with {list(b)}")
    return tuple(reversed(out))


def _literal(cx, v, other_rank: int):
    """A constant of one element that does not raise the other operand's rank, as a number."""
    c = cx.const(v)
    if c is not None and np.asarray(c).size == 1 and np.asarray(c).ndim <= other_rank:
        c = np.asarray(c)
        if c.dtype == np.bool_:
            return None
        return c.reshape(()).item(), np.asarray(c).dtype
    return None


def _elementwise_type(cx, vals):
    shapes = [cx.shape_of(v) for v in vals]
    out = shapes[0]
    for s in shapes[1:]:
        out = _broadcast(out, s)
    return out


def _x(cx, ins, i: int = 0) -> Sym:
    return cx.tensor(ins[i])


def _ints(v) -> list:
    return [int(x) for x in v]


# ---- sources and constants ----

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


def _dim_op(fn):
    def handler(cx, node, ins, a):
        vs = [_shape_vec(cx, v) for v in ins]
        if any(v is None for v in vs):
            return binary_handler(node.op_type)(cx, node, ins, a)
        n = max(len(v.dims) for v in vs)
        cols = [v.dims * n if len(v.dims) == 1 else v.dims for v in vs]
        out = []
        for xs in zip(*cols):
            r = fn(*xs)
            out.append(r.simplify() if isinstance(r, SymDim) else r)
        return [_vec(out, all(v.scalar for v in vs))]
    return handler


def _floordiv(a, b):
    if isinstance(b, int) and isinstance(a, SymDim):
        return a // b
    if isinstance(a, int) and isinstance(b, int):
        return int(a / b) if b else 0
    raise Unsupported("a division by a symbolic dim")


# ---- elementwise ----

BINARY_TEXT = {"Add": "+", "Sub": "-", "Mul": "*", "Div": "/", "Pow": "**"}
COMPARE_TEXT = {"Equal": "==", "Less": "<", "Greater": ">", "LessOrEqual": "<=",
                "GreaterOrEqual": ">="}
FUNC_BINARY = {"Max": "maximum", "Min": "minimum"}


def _operand(cx, v, other_rank: int, dtype: str):
    lit = _literal(cx, v, other_rank)
    if lit is not None:
        value, _ = lit
        text = number(value, dtype)
        return text, None
    t = cx.tensor(v)
    return t.var, t


def binary_handler(op_type: str):
    def handler(cx, node, ins, a):
        x, y = ins[0], ins[1]
        if op_type in ("Add", "Mul", "Sub", "Div") and all(
                _shape_vec(cx, v) is not None for v in (x, y)):
            return OPS_DIM[op_type](cx, node, ins, a)
        shape = _elementwise_type(cx, [x, y])
        for k, (v, c) in enumerate(((x, y), (y, x))):
            if op_type in ("Mul", "Add") and isinstance(v, Sym) and \
                    _fuse_channel(cx, op_type, v, c, node.input[k], node.output[0]):
                return [v]
        if op_type == "Add" and isinstance(x, Sym) and _fuse_bias(cx, x, y):
            return [cx.last_linear]
        if op_type == "Add" and isinstance(y, Sym) and _fuse_bias(cx, y, x):
            return [cx.last_linear]
        dtype = cx.dtype(x) if isinstance(x, Sym) else cx.dtype(y) if isinstance(y, Sym) \
            else cx.dtype(x)
        rx, ry = len(cx.shape_of(y)), len(cx.shape_of(x))
        tx, sx = _operand(cx, x, rx, dtype)
        ty, sy = _operand(cx, y, ry, dtype)
        if sx is None and sy is None:
            sx = cx.tensor(x)
            tx = sx.var
        reads = [s for s in (sx, sy) if s is not None]
        out_dtype = dtype
        if op_type in COMPARE_TEXT:
            text, out_dtype = f"{tx} {COMPARE_TEXT[op_type]} {ty}", "bool"
        elif op_type in FUNC_BINARY:
            text = f"{FUNC_BINARY[op_type]}({tx}, {ty})"
        elif op_type == "Div" and dtype.startswith("u"):
            text = f"{tx} // {ty}"
        elif op_type == "Div" and dtype not in FLOATS:
            # ONNX truncates toward zero; `//` floors: they differ where the signs do
            text = f"where(({tx} < 0) == ({ty} < 0), {tx} // {ty}, -((-{tx}) // {ty}))"
        elif op_type == "Pow" and sy is None and ty == "2":
            text = f"{tx} * {tx}" if sx is not None else f"{tx} ** 2"
        else:
            text = f"{_paren(tx)} {BINARY_TEXT[op_type]} {_paren(ty)}"
        if op_type == "Pow" and sx is not None and sy is not None and sx.dtype != sy.dtype:
            if sx.dtype not in FLOATS:
                raise Unsupported(f"Pow of a {sx.dtype} base by a {sy.dtype} exponent")
        return [cx.emit(text, out_dtype, shape, reads=reads)]
    return handler


def _paren(t: str) -> str:
    return f"({t})" if t.startswith("-") else t


for _name in list(BINARY_TEXT) + list(COMPARE_TEXT) + list(FUNC_BINARY):
    OPS[_name] = binary_handler(_name)


def _variadic(op_type: str):
    """Max and Min of any number of inputs: one input is itself, more fold left."""
    pair = binary_handler(op_type)

    def handler(cx, node, ins, a):
        acc = ins[0]
        for v in ins[1:]:
            acc = pair(cx, node, [acc, v], {})[0]
        return [cx.tensor(acc)]
    return handler


for _name in FUNC_BINARY:
    OPS[_name] = _variadic(_name)

OPS_DIM = {"Add": _dim_op(lambda p, q: p + q), "Sub": _dim_op(lambda p, q: p - q),
           "Mul": _dim_op(lambda p, q: p * q), "Div": _dim_op(_floordiv)}


def _fuse_bias(cx, x: Sym, b) -> bool:
    """``MatMul(x, W) + b`` with a constant ``b`` of ``out`` elements: the linear's bias."""
    stmt = cx.prog.stmts[-1] if cx.prog.stmts else None
    c = cx.const(b)
    if stmt is None or stmt.kind != "linear_nobias" or stmt.targets != [x.var] or c is None:
        return False
    out = stmt.info["out"]
    if c.ndim != 1 or c.shape[0] != out or cx.uses[stmt.info["onnx_out"]] != 1:
        return False
    stmt.call = stmt.call.replace(", bias=false", "", 1)
    stmt.kind = "linear"
    cx.prog.weights[f"{stmt.info['layer']}.bias"] = c.astype(np.float32)
    cx.last_linear = x
    return True


def _fuse_channel(cx, op_type: str, x: Sym, c, onnx_in: str, onnx_out: str) -> bool:
    """A batch norm followed by a per-channel constant ``Mul`` or ``Add`` (Caffe2's scale
    layer) is one batch norm: ``BN(x)·s = (γs)·x̂ + βs``, ``BN(x) + b = γ·x̂ + (β + b)``."""
    stmt = cx.prog.stmts[-1] if cx.prog.stmts else None
    a = cx.const(c)
    if stmt is None or stmt.kind != "batch_norm" or stmt.targets != [x.var] or a is None or \
            stmt.info["onnx_out"] != onnx_in or cx.uses[onnx_in] != 1 or x.rank < 2:
        return False
    a = np.asarray(a)
    channels = x.shape[1]
    if a.dtype != np.float32 or a.ndim > x.rank or not isinstance(channels, int):
        return False
    full = (1,) * (x.rank - a.ndim) + a.shape
    if full[1] != channels or any(d != 1 for i, d in enumerate(full) if i != 1):
        return False
    v = a.reshape(channels)
    w = cx.prog.weights
    layer = stmt.info["layer"]
    if op_type == "Mul":
        w[f"{layer}.weight"] = (w[f"{layer}.weight"] * v).astype(np.float32)
        w[f"{layer}.bias"] = (w[f"{layer}.bias"] * v).astype(np.float32)
    else:
        w[f"{layer}.bias"] = (w[f"{layer}.bias"] + v).astype(np.float32)
    stmt.info["onnx_out"] = onnx_out
    return True


@op("Sum")
def sum_(cx, node, ins, a):
    acc = ins[0]
    for v in ins[1:]:
        acc = binary_handler("Add")(cx, node, [acc, v], {})[0]
    return [cx.tensor(acc)]


@op("Mean")
def mean_(cx, node, ins, a):
    s = sum_(cx, node, ins, a)[0]
    return [cx.emit(f"{s.var} / {number(float(len(ins)))}", s.dtype, s.shape, reads=[s])]


UNARY = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Exp": "exp", "Log": "log",
         "Sqrt": "sqrt", "Abs": "abs", "Erf": "erf", "Sin": "sin", "Cos": "cos",
         "HardSwish": "hardswish", "Mish": "mish", "Softplus": "softplus"}


def _unary(fn: str):
    def handler(cx, node, ins, a):
        x = _x(cx, ins)
        return [cx.emit(fn, x.dtype, x.shape, head=x)]
    return handler


for _k, _v in UNARY.items():
    OPS[_k] = _unary(_v)


@op("Neg")
def neg(cx, node, ins, a):
    x = _x(cx, ins)
    return [cx.emit(f"-{x.var}", x.dtype, x.shape, reads=[x])]


@op("Reciprocal")
def reciprocal(cx, node, ins, a):
    x = _x(cx, ins)
    return [cx.emit(f"1.0 / {x.var}", x.dtype, x.shape, reads=[x])]


@op("Not")
def not_(cx, node, ins, a):
    x = _x(cx, ins)
    return [cx.emit(f"{x.var} == false", "bool", x.shape, reads=[x])]


@op("LeakyRelu")
def leaky_relu(cx, node, ins, a):
    x = _x(cx, ins)
    return [cx.emit(f"leaky_relu({number(a.get('alpha', 0.01))})", x.dtype, x.shape, head=x)]


@op("Elu")
def elu(cx, node, ins, a):
    x = _x(cx, ins)
    return [cx.emit(f"elu({number(a.get('alpha', 1.0))})", x.dtype, x.shape, head=x)]


@op("Selu")
def selu(cx, node, ins, a):
    x = _x(cx, ins)
    alpha, gamma = a.get("alpha", 1.67326319217681884765625), a.get("gamma",
                                                                      1.05070102214813232421875)
    if abs(alpha - 1.6732632423543772) < 1e-6 and abs(gamma - 1.0507009873554805) < 1e-6:
        return [cx.emit("selu", x.dtype, x.shape, head=x)]
    # y = γ · (x if x > 0 else α · (eˣ − 1))
    return [cx.emit(f"{number(gamma)} * where({x.var} > 0.0, {x.var}, {number(alpha)} * "
                    f"(exp({x.var}) - 1.0))", x.dtype, x.shape, reads=[x])]


@op("HardSigmoid")
def hard_sigmoid(cx, node, ins, a):
    x = _x(cx, ins)
    al, be = a.get("alpha", 0.2), a.get("beta", 0.5)
    return [cx.emit(f"clamp({x.var} * {number(al)} + {number(be)}, 0.0, 1.0)", x.dtype, x.shape,
                    reads=[x])]


@op("Gelu")
def gelu(cx, node, ins, a):
    x = _x(cx, ins)
    ap = a.get("approximate", b"none")
    ap = ap.decode() if isinstance(ap, bytes) else ap
    call = "gelu" if ap == "none" else f"gelu(approximate=\"{ap}\")"
    return [cx.emit(call, x.dtype, x.shape, head=x)]


@op("Clip")
def clip(cx, node, ins, a):
    x = _x(cx, ins)
    parts = []
    for i, key in ((1, "min"), (2, "max")):
        v = ins[i] if len(ins) > i else None
        if v is not None:
            c = cx.const(v)
            if c is None or c.size != 1:
                raise Unsupported(f"Clip's {key} is computed at run time")
            parts.append(f"{key}={number(c.item(), x.dtype)}")
    if not parts:
        return [x]
    return [cx.emit(f"clamp({', '.join(parts)})", x.dtype, x.shape, head=x)]


@op("Identity")
def identity(cx, node, ins, a):
    return [ins[0]]


@op("Dropout")
def dropout(cx, node, ins, a):
    """At inference Dropout is the identity (its ratio does not matter); its mask, all true,
    is accepted only where nothing reads it."""
    mode = cx.const(ins[2]) if len(ins) > 2 and ins[2] is not None else np.array(False)
    if mode is None or bool(np.asarray(mode).reshape(-1)[0]):
        raise Unsupported("Dropout in training mode (nndsl imports models for inference)")
    if len(node.output) > 1 and node.output[1] and cx.uses[node.output[1]]:
        raise Unsupported("Dropout's mask output is read")
    return [ins[0], None]


@op("Cast")
def cast(cx, node, ins, a):
    to = ONNX_DTYPES.get(a["to"])
    if to is None:
        raise Unsupported(f"Cast to element type {a['to']}")
    if isinstance(ins[0], ShapeVec) and to in ("i64", "i32"):
        return [ins[0]]
    x = _x(cx, ins)
    if x.dtype == to:
        return [x]
    return [cx.emit(f"cast({to})", to, x.shape, head=x)]


@op("Where")
def where(cx, node, ins, a):
    c = cx.tensor(ins[0])
    shape = _elementwise_type(cx, ins)
    rank = len(shape)
    dtype = next((cx.dtype(v) for v in ins[1:] if isinstance(v, Sym)), cx.dtype(ins[1]))
    ta, sa = _operand(cx, ins[1], rank, dtype)
    tb, sb = _operand(cx, ins[2], rank, dtype)
    reads = [s for s in (c, sa, sb) if s is not None]
    return [cx.emit(f"where({c.var}, {ta}, {tb})", dtype, shape, reads=reads)]


# ---- layers ----

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
    cx.prog.weights[f"{name}.weight"] = w
    if b is not None:
        cx.prog.weights[f"{name}.bias"] = b
    return [cx.emit(f"conv{nd}d({', '.join(args)}) as {name}", x.dtype, cx.out_shape(), head=x)]


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
    return [cx.emit(f"conv_transpose2d({', '.join(args)}) as {name}", x.dtype, cx.out_shape(),
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
    for key, arr in zip(("weight", "bias", "running_mean", "running_var"), arrays):
        cx.prog.weights[f"{name}.{key}"] = arr.astype(np.float32)
    cx.prog.weights[f"{name}.num_batches_tracked"] = np.zeros((), np.int64)
    args = []
    eps = a.get("epsilon", 1e-5)
    if number(eps) != "0.00001":
        args.append(f"eps={number(eps)}")
    mom = round(1.0 - float(a.get("momentum", 0.9)), 6)    # ONNX keeps 1 - torch's momentum
    if number(mom) != "0.1":
        args.append(f"momentum={number(mom)}")
    call = f"batch_norm({', '.join(args)})" if args else "batch_norm"
    return [cx.emit(f"{call} as {name}", x.dtype, x.shape, head=x, kind="batch_norm",
                    info={"layer": name, "onnx_out": node.output[0]})]


@op("InstanceNormalization")
def instance_norm(cx, node, ins, a):
    x = _x(cx, ins)
    scale, bias = cx.const(ins[1]), cx.const(ins[2])
    if scale is None or bias is None:
        raise Unsupported("InstanceNormalization's scale or bias computed at run time")
    name = _layer_name(cx, node)
    cx.prog.weights[f"{name}.weight"] = scale
    cx.prog.weights[f"{name}.bias"] = bias
    return [cx.emit(f"group_norm({scale.shape[0]}, eps={number(a.get('epsilon', 1e-5))}) as "
                    f"{name}", x.dtype, x.shape, head=x)]


@op("GroupNormalization")
def group_norm(cx, node, ins, a):
    x = _x(cx, ins)
    scale, bias = cx.const(ins[1]), cx.const(ins[2])
    c = x.shape[1]
    if scale is None or bias is None or scale.shape != (c,):
        raise Unsupported("GroupNormalization needs constant per-channel scale and bias")
    name = _layer_name(cx, node)
    cx.prog.weights[f"{name}.weight"] = scale
    cx.prog.weights[f"{name}.bias"] = bias
    return [cx.emit(f"group_norm({a['num_groups']}, eps={number(a.get('epsilon', 1e-5))}) as "
                    f"{name}", x.dtype, x.shape, head=x)]


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
        return cx.emit(f"linear({out}{tie}) as {name}", x.dtype, shape, head=x, kind="linear")
    return cx.emit(f"linear({out}, bias=false{tie}) as {name}", x.dtype, shape, head=x,
                   kind="linear_nobias",
                   info={"out": out, "layer": name, "onnx_out": onnx_out})


def _as_instance(cx, layer: str) -> str | None:
    """The embedding ``layer`` as an instance the spec can name (``wte = embedding(V, D)``,
    then ``wte(ids)``), so that another layer can read its weight (``weight=wte.weight``): the
    instance's name (the layer's, or a new one where a variable has that name; its weights
    follow), or None."""
    from nndsl.importer.program import Stmt
    at = next((i for i, st in enumerate(cx.prog.stmts) if st.kind == "embedding" and
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
        cx.prog.weights[f"{name}.weight"] = cx.prog.weights.pop(f"{layer}.weight")
    cx.vars.taken.add(name)
    call = st.call.rsplit(" as ", 1)[0]
    cx.prog.stmts.insert(at, Stmt([name], call))
    st.call, st.head = f"{name}({st.head})", None
    st.info["instance"] = name
    return name


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


# ---- pooling ----

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
        if count is None:
            return [cx.emit(call, x.dtype, cx.out_shape(), head=x)]
        # the pads excluded from the mean: the window sums over the zero-padded input,
        # divided by each window's share of real elements (the same pooling over ones)
        counts = cx.emit(f"{count.var} |> {call}", x.dtype, cx.out_shape(), reads=[count],
                         hint="pad_share")
        y = cx.emit(call, x.dtype, cx.out_shape(), head=x)
        return [cx.emit(f"{y.var} / {counts.var}", x.dtype, cx.out_shape(), reads=[y, counts])]
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


# ---- shapes ----

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


# ---- reductions and normalizers ----

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


# ---- recurrent layers ----

# ONNX packs the gates (i, o, f, c) for LSTM and (z, r, h) for GRU; torch, whose layout the
# spec's lstm and gru take, (i, f, g, o) and (r, z, n): torch's block k is ONNX's TORCH_GATES[k]
TORCH_GATES = {"LSTM": (0, 2, 3, 1), "GRU": (1, 0, 2), "RNN": (0,)}
RECURRENT = {"LSTM": "lstm", "GRU": "gru", "RNN": "rnn"}


def _gates(a: np.ndarray, op: str) -> np.ndarray:
    blocks = np.split(a, len(TORCH_GATES[op]), axis=0)
    return np.ascontiguousarray(np.concatenate([blocks[k] for k in TORCH_GATES[op]], axis=0))


def _recurrent(op: str):
    """One ONNX LSTM/GRU/RNN (time-major ``X [T, N, F]``) as the spec's layer (batch-first):
    ``Y [T, dirs, N, H]`` is the layer's ``[N, T, dirs·H]`` output rearranged, ``Y_h`` (and
    ``Y_c``) its final state ``[dirs, N, H]``."""
    def handler(cx, node, ins, a):
        x = _x(cx, ins)
        if a.get("layout", 0):
            raise Unsupported(f"{op} with layout=1")
        hidden = int(a["hidden_size"])
        direction = a.get("direction", b"forward")
        direction = direction.decode() if isinstance(direction, bytes) else direction
        if direction not in ("forward", "bidirectional"):
            raise Unsupported(f"{op} in {direction} direction")
        if "clip" in a or a.get("input_forget", 0):
            raise Unsupported(f"{op} with clip or input_forget")
        if op == "GRU" and not a.get("linear_before_reset", 0):
            raise Unsupported("GRU with linear_before_reset=0 (torch's GRU resets after)")
        acts = [s.decode() if isinstance(s, bytes) else s for s in a.get("activations", [])]
        default = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"],
                   "RNN": ["Tanh"]}[op]
        dirs = 2 if direction == "bidirectional" else 1
        nonlinearity = "tanh"
        if op == "RNN" and acts and acts[0] == "Relu" and len(set(acts)) == 1:
            nonlinearity, acts = "relu", []
        if acts and acts != default * dirs:
            raise Unsupported(f"{op} with activations {acts}")
        w, r = cx.const(ins[1]), cx.const(ins[2])
        b = cx.const(ins[3]) if len(ins) > 3 and ins[3] is not None else None
        if w is None or r is None or len(ins) > 3 and ins[3] is not None and b is None:
            raise Unsupported(f"{op} whose weights are computed at run time")
        if len(ins) > 7 and ins[7] is not None and (cx.const(ins[7]) is None or
                                                     np.any(cx.const(ins[7]))):
            raise Unsupported("LSTM with peepholes")
        if len(ins) > 4 and ins[4] is not None:
            lens = cx.const(ins[4])
            if lens is None or not np.all(lens == x.shape[0]):
                raise Unsupported(f"{op} with sequence lengths")
        states = []
        for i in (5, 6) if op == "LSTM" else (5,):
            s = ins[i] if len(ins) > i else None
            c = cx.const(s) if s is not None else None
            states.append(None if s is None or c is not None and not np.any(c) else s)
        if any(s is not None and not isinstance(s, Sym) for s in states):
            raise Unsupported(f"{op} with a constant non-zero initial state")
        name = _layer_name(cx, node)
        for d in range(dirs):
            sfx = "_l0" + ("_reverse" if d else "")
            cx.prog.weights[f"{name}.weight_ih{sfx}"] = _gates(w[d], op).astype(np.float32)
            cx.prog.weights[f"{name}.weight_hh{sfx}"] = _gates(r[d], op).astype(np.float32)
            if b is not None:
                wb, rb = np.split(b[d], 2)
                cx.prog.weights[f"{name}.bias_ih{sfx}"] = _gates(wb, op).astype(np.float32)
                cx.prog.weights[f"{name}.bias_hh{sfx}"] = _gates(rb, op).astype(np.float32)
        t, n = x.shape[0], x.shape[1]
        xb = permute(cx, x, [1, 0, 2], node.input[0])
        args = [str(hidden)]
        if dirs == 2:
            args.append("bidirectional=true")
        if b is None:
            args.append("bias=false")
        if op == "RNN" and nonlinearity != "tanh":
            args.append(f"nonlinearity=\"{nonlinearity}\"")
        reads = []
        for key, s in zip(("h0", "c0"), states):
            if s is not None:
                args.append(f"{key}={s.var}")
                reads.append(s)
        n_state = 2 if op == "LSTM" else 1
        want_state = any(o and cx.uses[o] for o in node.output[1:])
        call = f"{RECURRENT[op]}({', '.join(args)}{', state=true' if want_state else ''})" \
               f" as {name}"
        seq = (n, t, dirs * hidden)
        state_shape = (dirs, n, hidden)
        if want_state:
            outs = cx.emit(call, [x.dtype] * (1 + n_state), [seq] + [state_shape] * n_state,
                           head=xb, reads=reads, targets=1 + n_state)
            y, rest = outs[0], outs[1:]
        else:
            y, rest = cx.emit(call, x.dtype, seq, head=xb, reads=reads), [None] * n_state
        out = [None] * (1 + n_state)
        if node.output[0] and _sequence_read(cx, node.output[0], y, dirs, hidden):
            pass
        elif node.output[0] and cx.uses[node.output[0]]:
            y4 = cx.emit(f"reshape({dims_text([n, t, dirs, hidden])})", x.dtype,
                         (n, t, dirs, hidden), head=y)
            out[0] = cx.emit("permute([1, 2, 0, 3])", x.dtype, (t, dirs, n, hidden), head=y4)
        return out[:1] + list(rest)
    return handler


def _sequence_read(cx, name: str, y: Sym, dirs: int, hidden: int) -> bool:
    """Where ``Y [T, dirs, N, H]`` is only turned back into the sequence ``[T, N, dirs·H]``
    (torch's export: ``Squeeze(1)`` of one direction, ``Transpose(0, 2, 1, 3)`` and
    ``Reshape`` of two), that sequence is the layer's output with time first: the nodes
    between are done here, and a ``Transpose`` back to batch-first cancels it."""
    readers = cx.readers.get(name, [])
    if len(readers) != 1 or cx.uses[name] != 1:
        return False
    r = readers[0]
    from nndsl.importer.convert import _attrs
    if dirs == 1 and r.op_type == "Squeeze":
        axes = _attrs(r).get("axes")
        if axes is None and len(r.input) > 1 and r.input[1]:
            c = cx.values.get(r.input[1])
            axes = [int(v) for v in np.asarray(c).reshape(-1)] if isinstance(c, np.ndarray) \
                else None
        if axes not in ([1], [-3]):
            return False
        chain, last = [r], r
    elif r.op_type == "Transpose" and list(_attrs(r).get("perm", [])) == [0, 2, 1, 3]:
        nxt = cx.readers.get(r.output[0], [])
        if len(nxt) != 1 or nxt[0].op_type != "Reshape" or cx.uses[r.output[0]] != 1:
            return False
        t = cx.types.get(nxt[0].output[0])     # its target may be computed after the layer
        dims = list(t.tensor_type.shape.dim) if t is not None and t.HasField("tensor_type") \
            else []
        if len(dims) != 3 or dims[2].dim_value != dirs * hidden:
            return False
        chain, last = [r, nxt[0]], nxt[0]
    else:
        return False
    saved = cx.node
    cx.node = last
    cx.values[last.output[0]] = permute(cx, y, [1, 0, 2])
    cx.node = saved
    cx.done.update(id(n) for n in chain)
    return True


for _op in RECURRENT:
    OPS[_op] = _recurrent(_op)


# ---- attention ----

@op("Attention")
def attention(cx, node, ins, a):
    """ONNX's Attention (opset 23) written out: ``softmax(softcap(Q Kᵀ · scale) + mask) V``,
    with a key/value cache in front of the keys and values (``present_*`` are those), the
    key/value heads repeated for grouped queries, a causal mask aligned to the end of the
    cache, and 3-d inputs split into heads and joined back. External caches
    (``nonpad_kv_seqlen``) and sliding windows are refused."""
    q, k, v = (_x(cx, ins, i) for i in range(3))
    if len(ins) > 6 and ins[6] is not None:
        raise Unsupported("Attention with an external key/value cache (nonpad_kv_seqlen)")
    if a.get("left_window_size", -1) != -1 or a.get("right_window_size", -1) != -1:
        raise Unsupported("Attention with a sliding window")
    three = q.rank == 3
    if three:
        qh, kvh = a.get("q_num_heads"), a.get("kv_num_heads")
        if not qh or not kvh:
            raise Unsupported("3-d Attention without q_num_heads and kv_num_heads")
        q, k, v = (_heads(cx, t, h) for t, h in ((q, qh), (k, kvh), (v, kvh)))
    elif q.rank != 4:
        raise Unsupported(f"Attention of rank {q.rank}")
    past = [ins[i] if len(ins) > i else None for i in (4, 5)]
    if (past[0] is None) != (past[1] is None):
        raise Unsupported("Attention with a key cache and no value cache")
    cached = 0
    if past[0] is not None:
        pk, pv = cx.tensor(past[0]), cx.tensor(past[1])
        cached = pk.shape[2]
        k = _cat(cx, pk, k, "present_key")
        v = _cat(cx, pv, v, "present_value")
    present = [k, v]
    qh, kvh = q.shape[1], k.shape[1]
    hd, s_len, l_len = q.shape[3], q.shape[2], k.shape[2]
    if not all(isinstance(d, int) for d in (qh, kvh, hd)) or qh % kvh:
        raise Unsupported("Attention with heads that do not group")
    if qh != kvh:
        k = cx.emit(f"repeat_interleave({qh // kvh}, dim=1)", k.dtype,
                    (k.shape[0], qh) + tuple(k.shape[2:]), head=k)
        v = cx.emit(f"repeat_interleave({qh // kvh}, dim=1)", v.dtype,
                    (v.shape[0], qh) + tuple(v.shape[2:]), head=v)
    scale = a.get("scale", 1.0 / math.sqrt(hd))
    shape = (q.shape[0], qh, s_len, l_len)
    kt = cx.emit("transpose", k.dtype, k.shape[:2] + (k.shape[3], l_len), head=k, hint="kt")
    s = cx.emit(f"{q.var} @ {kt.var} * {number(scale)}", q.dtype, shape, reads=[q, kt],
                hint="scores")
    softcap = float(a.get("softcap", 0.0))
    if softcap > 0:
        s = cx.emit(f"{number(softcap)} * tanh({s.var} / {number(softcap)})", q.dtype, shape,
                    reads=[s], hint="scores")
    qk = {0: s, 1: s}           # the QK output: scaled (and soft-capped, as onnx computes it)
    mask = ins[3] if len(ins) > 3 else None
    causal = bool(a.get("is_causal", 0))
    if q.dtype != "f32" and (mask is not None or causal):
        raise Unsupported(f"a masked {q.dtype} Attention (its -inf fill is an f32 literal)")
    if mask is not None:
        m = cx.tensor(mask)
        short = l_len - m.shape[-1]
        if short and (m.dtype == "bool" or not isinstance(short, int) or short < 0):
            raise Unsupported("an Attention mask of another length than the keys")
        if short:
            m = cx.emit(f"pad([0, {short}], value=-inf)", m.dtype,
                        tuple(m.shape[:-1]) + (l_len,), head=m)
        if m.dtype == "bool":
            s = cx.emit(f"where({m.var}, {s.var}, -inf)", q.dtype, shape, reads=[m, s],
                        hint="scores")
        else:
            s = cx.emit(f"{s.var} + {m.var}", q.dtype, shape, reads=[s, m], hint="scores")
    if causal:
        if not isinstance(s_len, int) or not isinstance(l_len, int) or \
                not isinstance(cached, int):
            raise Unsupported("a causal Attention over symbolic lengths")
        k_arg = f", {cached}" if cached else ""
        s = cx.emit(f"where(tril(ones([{s_len}, {l_len}]){k_arg}) > 0.5, {s.var}, -inf)",
                    q.dtype, shape, reads=[s], hint="scores")
    qk[2] = s                   # ... with the mask added
    p = cx.emit("softmax", q.dtype, shape, head=s, hint="probs")
    if mask is not None:        # a row the mask hides entirely attends to nothing: 0, not NaN
        top = cx.emit("max(dim=-1, keepdim=true)", q.dtype, shape[:3] + (1,), head=s,
                      hint="top")
        p = cx.emit(f"where({top.var} > -inf, {p.var}, 0.0)", q.dtype, shape,
                    reads=[top, p], hint="probs")
    qk[3] = p
    y = cx.emit(f"{p.var} @ {v.var}", q.dtype, shape[:3] + (v.shape[3],), reads=[p, v])
    if three:
        y = permute(cx, y, [0, 2, 1, 3])
        y = cx.emit(f"reshape({dims_text([y.shape[0], y.shape[1], qh * v.shape[3]])})",
                    y.dtype, (y.shape[0], y.shape[1], qh * v.shape[3]), head=y)
    mode = int(a.get("qk_matmul_output_mode", 0))
    if len(node.output) > 3 and node.output[3] and cx.uses[node.output[3]] and mode not in qk:
        raise Unsupported(f"Attention's qk_matmul_output_mode {mode}")
    return [y] + present + [qk.get(mode)]


def _cat(cx, cache: Sym, new: Sym, hint: str) -> Sym:
    """The cache and the new keys (or values) along the sequence."""
    total = cache.shape[2] + new.shape[2]
    if isinstance(total, SymDim):
        total = total.simplify()
    shape = tuple(new.shape[:2]) + (total,) + tuple(new.shape[3:])
    return cx.emit(f"concat([{cache.var}, {new.var}], dim=2)", new.dtype, shape,
                   reads=[cache, new], hint=hint)


def _heads(cx, t: Sym, heads: int) -> Sym:
    """``[B, S, heads · d]`` as ``[B, heads, S, d]``."""
    b, s, width = t.shape
    if not isinstance(width, int) or width % heads:
        raise Unsupported("an Attention input whose width does not split into its heads")
    split = (b, s, heads, width // heads)
    y = cx.emit(f"reshape({dims_text(split)})", t.dtype, split, head=t)
    return permute(cx, y, [0, 2, 1, 3])
