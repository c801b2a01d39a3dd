"""Elementwise ops as the spec's operators and functions; a linear layer's bias and a
batch norm's per-channel scale and shift folded into them."""

from __future__ import annotations

import numpy as np

from nndsl.importer.values import FLOATS, ONNX_DTYPES, ShapeVec, Sym, Unsupported
from nndsl.importer.ops import OPS, op
from nndsl.importer.ops.common import _elementwise_type, _literal, _x
from nndsl.importer.ops.constants import _shape_vec, _vec
from nndsl.importer.program import number
from nndsl.ir.types import SymDim

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
            stmt.info["onnx_out"] != onnx_in or cx.uses[onnx_in] != 1 or x.rank < 2 or \
            stmt.info.get("instance"):      # a batch norm applied twice keeps its weights
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
    _unshare(cx, layer)     # its weights are no longer the file's: a later reader is another
    return True


def _unshare(cx, layer: str) -> None:
    for key, (name, _) in list(cx.shared.items()):
        if name == layer:
            del cx.shared[key]


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
    if abs(al - 1 / 6) < 1e-7 and be == 0.5:       # PyTorch's hardsigmoid, as it exports it
        return [cx.emit("hardsigmoid", x.dtype, x.shape, head=x)]
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
