"""The built-in functions and layers of the language, each a :class:`Surface`.

A surface call binds its arguments (tensors first), then ``build`` emits IR ops through the
elaboration context. Layers create their parameters with PyTorch's shapes, names and default
initialisation (``nn.Linear``: weight ``[out, in]``, both uniform in ±1/√in, and so on).
"""

from __future__ import annotations

import math

from nndsl.elab.values import REQUIRED, ParamSpec, Surface, TensorVal
from nndsl.ir.ops.shapes import (batch_norm_input, conv_groups, conv_input, linear_input,
                                 recurrent_input, split_axis)
from nndsl.ir.ops.signatures import SIGNATURES, UNARY
from nndsl.ir.types import SymDim

P = ParamSpec
R = REQUIRED
X = P("x", "tensor", R)


def _one(op: str, **fixed):
    def build(ctx, a):
        attrs = {k: v for k, v in a.items() if k != "x"}
        attrs.update(fixed)
        return ctx.emit(op, [a["x"]], attrs)[0]
    return build


# ---- layers with weights ----

def _static_features(ctx, x: TensorVal, axis: int, what: str) -> int:
    n = x.type.shape[axis]
    if not isinstance(n, int):
        ctx.error(f"{what} must be known at compile time, but dim {axis} of the input {x.type} "
                  f"is symbolic ({n})", code="E0314",
                  hint="declare that dim as a number in the input type")
    return n


def _same_dim(a, b) -> bool:
    return type(a) is type(b) and a == b


def _uniform(fan_in: int):
    return ("uniform", 1.0 / math.sqrt(fan_in)) if fan_in > 0 else ("zeros",)


def _linear(ctx, a):
    x = a["x"]
    linear_input(x.type)   # the shape rule's check, before the weight is sized by the input
    fin = _static_features(ctx, x, -1, "linear's in_features")
    out = a["out"]
    w = a["weight"] if a["weight"] is not None else ctx.param("weight", (out, fin), _uniform(fin))
    if a["weight"] is not None and (w.type.rank != 2 or not _same_dim(w.type.shape[0], out)):
        ctx.error(f"linear({out}, weight=...) needs a weight of shape [{out}, {fin}] "
                  f"([out, in_features]), got {w.type}", code="E0306",
                  hint="a tied weight must have `out` rows; transpose it or change `out`")
    # a weight with the wrong in_features is reported by the linear shape rule, with both shapes
    if a["weight"] is not None:
        ctx.alias("weight", w)
    b = ctx.param("bias", (out,), _uniform(fin)) if a["bias"] else None
    return ctx.emit("linear", [x, w, b], {})[0]


def _conv(nd: int):
    def build(ctx, a):
        x = a["x"]
        # the shape rule's checks that the weight's size depends on, before it is made
        conv_input(x.type, nd, f"conv{nd}d")
        cin = _static_features(ctx, x, 1, f"conv{nd}d's input channels")
        _per_dim(ctx, a, ("kernel", "stride", "padding", "dilation"), nd, f"conv{nd}d")
        g, out = a["groups"], a["out"]
        conv_groups(cin, out, g, f"conv{nd}d")
        k = _tuple(a["kernel"], nd)
        fan_in = cin // g * math.prod(k)
        w = ctx.param("weight", (out, cin // g) + k, _uniform(fan_in))
        b = ctx.param("bias", (out,), _uniform(fan_in)) if a["bias"] else None
        attrs = {"stride": _tuple(a["stride"], nd), "padding": a["padding"] if a["padding"] ==
                 "same" else _tuple(a["padding"], nd), "dilation": _tuple(a["dilation"], nd),
                 "groups": g}
        return ctx.emit(f"conv{nd}d", [x, w, b], attrs)[0]
    return build


def _conv_transpose2d(ctx, a):
    x = a["x"]
    conv_input(x.type, 2, "conv_transpose2d")   # the shape rule's checks, before the weight
    cin = _static_features(ctx, x, 1, "conv_transpose2d's input channels")
    _per_dim(ctx, a, ("kernel", "stride", "padding", "output_padding", "dilation"), 2,
             "conv_transpose2d")
    g, out = a["groups"], a["out"]
    conv_groups(cin, out, g, "conv_transpose2d")
    k = _tuple(a["kernel"], 2)
    fan_in = out // g * math.prod(k)
    w = ctx.param("weight", (cin, out // g) + k, _uniform(fan_in))
    b = ctx.param("bias", (out,), _uniform(fan_in)) if a["bias"] else None
    attrs = {n: _tuple(a[n], 2) for n in ("stride", "padding", "output_padding", "dilation")}
    attrs["groups"] = g
    return ctx.emit("conv_transpose2d", [x, w, b], attrs)[0]


def _batch_norm(ctx, a):
    x = a["x"]
    batch_norm_input(x.type)   # the shape rule's check, before the weights are sized
    c = _static_features(ctx, x, 1, "batch_norm's channels")
    w = ctx.param("weight", (c,), ("ones",)) if a["affine"] else None
    b = ctx.param("bias", (c,), ("zeros",)) if a["affine"] else None
    rm = ctx.param("running_mean", (c,), ("zeros",), trainable=False)
    rv = ctx.param("running_var", (c,), ("ones",), trainable=False)
    nbt = ctx.param("num_batches_tracked", (), ("zeros",), dtype="i64", trainable=False)
    return ctx.emit("batch_norm", [x, w, b, rm, rv, nbt],
                    {"eps": a["eps"], "momentum": a["momentum"]})[0]


def _normalized_shape(ctx, a, op: str) -> tuple:
    """The dims a layer or RMS norm normalizes: ``shape``, or the input's last dim."""
    shape = a["shape"]
    if shape is None:
        shape = (_static_features(ctx, a["x"], -1, f"{op}'s size"),)
    return _tuple(shape, 1)


def _layer_norm(ctx, a):
    shape = _normalized_shape(ctx, a, "layer_norm")
    w = ctx.param("weight", shape, ("ones",)) if a["affine"] else None
    b = ctx.param("bias", shape, ("zeros",)) if a["affine"] and a["bias"] else None
    return ctx.emit("layer_norm", [a["x"], w, b],
                    {"normalized_shape": shape, "eps": a["eps"]})[0]


def _rms_norm(ctx, a):
    shape = _normalized_shape(ctx, a, "rms_norm")
    w = ctx.param("weight", shape, ("ones",)) if a["affine"] else None
    return ctx.emit("rms_norm", [a["x"], w], {"normalized_shape": shape, "eps": a["eps"]})[0]


def _group_norm(ctx, a):
    x = a["x"]
    c = _static_features(ctx, x, 1, "group_norm's channels")   # the rule checks the groups
    w = ctx.param("weight", (c,), ("ones",)) if a["affine"] else None
    b = ctx.param("bias", (c,), ("zeros",)) if a["affine"] else None
    return ctx.emit("group_norm", [x, w, b], {"groups": a["groups"], "eps": a["eps"]})[0]


def _embedding(ctx, a):
    x = a["x"]   # the shape rule checks the indices' dtype
    n, d, pad = a["num"], a["dim"], a["padding_idx"]
    if pad is not None and not -n <= pad < n:
        ctx.error(f"embedding padding_idx={pad} is not a row of the {n}-row table",
                  code="E0247", hint=f"use an index in [0, {n - 1}] (or -{n} to -1)")
    init = ("normal", 0.0, 1.0) if pad is None else ("normal_pad", 0.0, 1.0, pad % n)
    w = ctx.param("weight", (n, d), init)
    out = ctx.emit("embedding", [x, w], {"padding_idx": None if pad is None else pad % n})[0]
    ctx.index_range(x, n)
    return out


def _recurrent(kind: str, gates: int):
    def build(ctx, a):
        x = a["x"]
        recurrent_input(x.type, kind)   # the shape rule's check, before the weights are sized
        if kind == "rnn" and a["nonlinearity"] not in ("tanh", "relu"):
            ctx.error(f"rnn nonlinearity must be \"tanh\" or \"relu\", got "
                      f"\"{a['nonlinearity']}\"", code="E0247")
        feat = _static_features(ctx, x, 2, f"{kind}'s input features")
        h, layers = a["hidden"], a["layers"]
        dirs = 2 if a["bidirectional"] else 1
        init = _uniform(h)
        weights = []
        for layer in range(layers):
            fin = feat if layer == 0 else dirs * h
            for d in range(dirs):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                weights.append(ctx.param(f"weight_ih{sfx}", (gates * h, fin), init))
                weights.append(ctx.param(f"weight_hh{sfx}", (gates * h, h), init))
                if a["bias"]:
                    weights.append(ctx.param(f"bias_ih{sfx}", (gates * h,), init))
                    weights.append(ctx.param(f"bias_hh{sfx}", (gates * h,), init))
        attrs = {"hidden": h, "layers": layers, "bidirectional": a["bidirectional"],
                 "batch_first": True, "dropout": a["dropout"], "bias": a["bias"]}
        if kind == "rnn":
            attrs["nonlinearity"] = a["nonlinearity"]
        state = [a.get("h0")] + ([a.get("c0")] if kind == "lstm" else [])
        outs = ctx.emit(kind, [x] + state + weights, attrs)
        return tuple(outs) if a["state"] else outs[0]
    return build


# ---- functions ----

def _global_avg_pool(ctx, a):
    x = a["x"]
    nd = x.type.rank - 2
    if nd not in (1, 2):
        ctx.error(f"global_avg_pool expects [N, C, L] or [N, C, H, W], got {x.type}", code="E0308")
    y = ctx.emit(f"adaptive_avg_pool{nd}d", [x], {"output_size": (1,) * nd})[0]
    return ctx.emit("flatten", [y], {"start": 1, "end": -1})[0]


def _pool(op: str, nd: int):
    def build(ctx, a):
        _per_dim(ctx, a, ("kernel", "stride", "padding", "dilation"), nd, op)
        attrs = {"kernel": _tuple(a["kernel"], nd),
                 "stride": _tuple(a["stride"] if a["stride"] is not None else a["kernel"], nd),
                 "padding": _tuple(a["padding"], nd), "ceil_mode": a["ceil_mode"]}
        if op.startswith("max"):
            attrs["dilation"] = _tuple(a["dilation"], nd)
        else:
            attrs["count_include_pad"] = a["count_include_pad"]
        return ctx.emit(op, [a["x"]], attrs)[0]
    return build


def _adaptive(nd: int):
    def build(ctx, a):
        _per_dim(ctx, a, ("size",), nd, f"adaptive_avg_pool{nd}d")
        return ctx.emit(f"adaptive_avg_pool{nd}d", [a["x"]],
                        {"output_size": _tuple(a["size"], nd)})[0]
    return build


def _reduce(op: str):
    def build(ctx, a):
        dims = a["dim"]
        dims = None if dims is None else _tuple(dims, 1)
        return ctx.emit(op, [a["x"]], {"dims": dims, "keepdim": a["keepdim"]})[0]
    return build


def _split(ctx, a):
    x = a["x"]
    dim = a["dim"]
    size = x.type.shape[split_axis(x.type, dim, "split dim")]   # the split rule's check
    parts = a["parts"]
    if isinstance(parts, int):
        if isinstance(size, SymDim) and not size.divisible_by(parts) or \
                isinstance(size, int) and size % parts:
            example = ""
            if isinstance(size, int) and parts <= size:
                q, r = divmod(size, parts)
                example = ", e.g. split([" + ", ".join(
                    str(q + (i < r)) for i in range(parts)) + f"], dim={dim})"
            ctx.error(f"cannot split dim {dim} of {x.type} (size {size}) into {parts} equal "
                      f"parts", code="E0312",
                      hint=f"pass a list of sizes that add up to {size}{example}")
        parts = (size // parts,) * parts
    return tuple(ctx.emit("split", [x], {"dim": dim, "sizes": tuple(parts)}))


def _full(fixed_value=None):
    def build(ctx, a):
        value = fixed_value if fixed_value is not None else a["value"]
        return ctx.emit("full", [], {"shape": _tuple(a["shape"], 1), "value": float(value),
                                     "dtype": (a["dtype"].name if a["dtype"] else "f32")})[0]
    return build


def _arange(ctx, a):
    return ctx.emit("arange", [], {"n": a["n"], "dtype": a["dtype"].name if a["dtype"] else "i64"})[0]


def _binary(op: str):
    def build(ctx, a):
        return ctx.binary(op, a["a"], a["b"])
    return build


def _where(ctx, a):
    c, x, y = ctx.operands([a["cond"], a["a"], a["b"]])
    return ctx.emit("where", [c, x, y], {})[0]


def _masked_fill(ctx, a):
    return ctx.emit("masked_fill", [a["x"], a["mask"]], {"value": float(a["value"])})[0]


def _transpose(ctx, a):
    return ctx.emit("transpose", [a["x"]], {"dim0": a["dim0"], "dim1": a["dim1"]})[0]


def _concat(ctx, a):
    return ctx.emit("concat", list(a["xs"]), {"dim": a["dim"]})[0]


def _reshape(ctx, a):
    return ctx.emit("reshape", [a["x"]], {"shape": _tuple(a["shape"], 1)})[0]


def _reshape_like(op):
    def build(ctx, a):
        return ctx.emit(op, [a["x"]], {"shape": _tuple(a["shape"], 1)})[0]
    return build


def _squeeze(ctx, a):
    d = a["dim"]
    return ctx.emit("squeeze", [a["x"]], {"dims": None if d is None else _tuple(d, 1)})[0]


def _cast(ctx, a):
    return ctx.emit("cast", [a["x"]], {"dtype": a["dtype"].name})[0]


def _identity(ctx, a):
    return a["x"]


def _per_dim(ctx, a, names: tuple, nd: int, op: str) -> None:
    """Options such as kernel=[3, 3] give one value per spatial dim: exactly ``nd`` of them."""
    for n in names:
        v = a.get(n)
        if isinstance(v, (tuple, list)) and len(v) != nd:
            ctx.error(f"{op} {n} needs one value per spatial dim ({nd}), got "
                      f"[{', '.join(map(str, v))}]", code="E0329",
                      hint=f"write one int for all {nd} spatial dims, or a list of {nd}")


def _gelu(ctx, a):
    if a["approximate"] not in ("none", "tanh"):
        ctx.error(f"gelu approximate must be \"none\" or \"tanh\", got \"{a['approximate']}\"",
                  code="E0247")
    return _one("gelu")(ctx, a)


def _tuple(v, n: int) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


def _py_reduce(fn):
    def numeric(*vals):
        if len(vals) == 1 and isinstance(vals[0], (tuple, list)):
            return fn(vals[0])
        return fn(vals)
    return numeric


BIAS = P("bias", "bool", True)
LAYERS = {
    "linear": Surface("linear", (X, P("out", "pos_int", R), BIAS, P("weight", "tensor", None)),
                      _linear, weights=True, doc="y = x Wᵀ + b; in_features from the input"),
    **{f"conv{d}d": Surface(f"conv{d}d", (X, P("out", "pos_int", R), P("kernel", "ints", R),
                                          P("stride", "ints", 1), P("padding", "padding", 0),
                                          P("dilation", "ints", 1), P("groups", "pos_int", 1),
                                          BIAS), _conv(d), weights=True,
                            doc=f"{d}-d convolution; in_channels from the input")
       for d in (1, 2, 3)},
    "conv_transpose2d": Surface("conv_transpose2d", (
        X, P("out", "pos_int", R), P("kernel", "ints", R), P("stride", "ints", 1),
        P("padding", "ints", 0), P("output_padding", "ints", 0), P("dilation", "ints", 1),
        P("groups", "pos_int", 1), BIAS), _conv_transpose2d, weights=True,
        doc="2-d transposed convolution"),
    "batch_norm": Surface("batch_norm", (X, P("eps", "pos_float", 1e-5),
                                         P("momentum", "float", 0.1), P("affine", "bool", True)),
                          _batch_norm, weights=True,
                          doc="batch normalization over channel dim 1 (1d/2d/3d)"),
    "layer_norm": Surface("layer_norm", (X, P("shape", "ints_or_none", None),
                                         P("eps", "pos_float", 1e-5), P("affine", "bool", True),
                                         BIAS), _layer_norm, weights=True,
                          doc="layer normalization over the last dim(s)"),
    "rms_norm": Surface("rms_norm", (X, P("shape", "ints_or_none", None),
                                     P("eps", "pos_float", None), P("affine", "bool", True)),
                        _rms_norm, weights=True,
                        doc="RMS normalization over the last dim(s): x / √(mean(x²) + eps) · γ "
                            "(eps by default the dtype's machine epsilon, as torch.nn.RMSNorm)"),
    "group_norm": Surface("group_norm", (X, P("groups", "pos_int", R),
                                         P("eps", "pos_float", 1e-5), P("affine", "bool", True)),
                          _group_norm, weights=True,
                          doc="group normalization"),
    "embedding": Surface("embedding", (X, P("num", "pos_int", R), P("dim", "pos_int", R),
                                       P("padding_idx", "opt_int", None)), _embedding,
                         weights=True, doc="lookup table of num rows of size dim"),
    **{k: Surface(k, (X, P("hidden", "pos_int", R), P("layers", "pos_int", 1),
                      P("bidirectional", "bool", False), P("dropout", "prob", 0.0), BIAS,
                      P("state", "bool", False), P("h0", "tensor", None))
                  + ((P("c0", "tensor", None),) if k == "lstm" else ())
                  + ((P("nonlinearity", "str", "tanh"),) if k == "rnn" else ()),
                  _recurrent(k, g), weights=True,
                  doc=f"{k.upper()} over [N, T, F]; returns the output sequence, or "
                      f"(out, h_n{', c_n' if k == 'lstm' else ''}) with state=true")
       for k, g in (("lstm", 4), ("gru", 3), ("rnn", 1))},
}

A, B = P("a", "operand", R), P("b", "operand", R)
FUNCTIONS = {
    **{op: Surface(op, (X,), _one(op), numeric=SIGNATURES[op].scalar, doc=UNARY[op])
       for op in UNARY if op not in ("neg", "logical_not")},
    "swish": Surface("swish", (X,), _one("silu"), doc="x * sigmoid(x) (= silu)"),
    "leaky_relu": Surface("leaky_relu", (X, P("slope", "float", 0.01)), _one("leaky_relu")),
    "gelu": Surface("gelu", (X, P("approximate", "str", "none")), _gelu),
    "elu": Surface("elu", (X, P("alpha", "float", 1.0)), _one("elu")),
    "softplus": Surface("softplus", (X, P("beta", "float", 1.0), P("threshold", "float", 20.0)),
                        _one("softplus")),
    "softmax": Surface("softmax", (X, P("dim", "int", -1)), _one("softmax")),
    "log_softmax": Surface("log_softmax", (X, P("dim", "int", -1)), _one("log_softmax")),
    "dropout": Surface("dropout", (X, P("p", "prob", 0.5)), _one("dropout")),
    "identity": Surface("identity", (X,), _identity),
    "flatten": Surface("flatten", (X, P("start", "int", 1), P("end", "int", -1)), _one("flatten")),
    "reshape": Surface("reshape", (X, P("shape", "dims", R)), _reshape),
    "transpose": Surface("transpose", (X, P("dim0", "int", -2), P("dim1", "int", -1)), _transpose),
    "permute": Surface("permute", (X, P("dims", "int_tuple", R)), _one("permute")),
    "squeeze": Surface("squeeze", (X, P("dim", "ints_or_none", None)), _squeeze),
    "unsqueeze": Surface("unsqueeze", (X, P("dim", "int", R)), _one("unsqueeze")),
    "concat": Surface("concat", (P("xs", "tensors", R), P("dim", "int", 0)), _concat),
    "split": Surface("split", (X, P("parts", "dims_or_int", R), P("dim", "int", -1)), _split),
    **{op: Surface(op, (X, P("dim", "ints_or_none", None), P("keepdim", "bool", False)),
                   _reduce(op), numeric=_py_reduce(fn))
       for op, fn in (("sum", sum), ("mean", None), ("max", max), ("min", min),
                      ("prod", math.prod))},
    "matmul": Surface("matmul", (P("a", "tensor", R), P("b", "tensor", R)), _binary("matmul")),
    "maximum": Surface("maximum", (A, B), _binary("maximum")),
    "minimum": Surface("minimum", (A, B), _binary("minimum")),
    "where": Surface("where", (P("cond", "tensor", R), A, B), _where),
    "masked_fill": Surface("masked_fill", (X, P("mask", "tensor", R), P("value", "fill", R)),
                           _masked_fill),
    "tril": Surface("tril", (X, P("k", "int", 0)), _one("tril")),
    "triu": Surface("triu", (X, P("k", "int", 0)), _one("triu")),
    "ones": Surface("ones", (P("shape", "dims", R), P("dtype", "dtype", None)), _full(1.0)),
    "zeros": Surface("zeros", (P("shape", "dims", R), P("dtype", "dtype", None)), _full(0.0)),
    "full": Surface("full", (P("shape", "dims", R), P("value", "fill", R),
                             P("dtype", "dtype", None)), _full()),
    "arange": Surface("arange", (P("n", "dim", R), P("dtype", "dtype", None)), _arange),
    "cast": Surface("cast", (X, P("dtype", "dtype", R)), _cast),
    **{f"max_pool{d}d": Surface(f"max_pool{d}d", (X, P("kernel", "ints", R),
                                                  P("stride", "ints_or_none", None),
                                                  P("padding", "ints", 0), P("dilation", "ints", 1),
                                                  P("ceil_mode", "bool", False)),
                                _pool(f"max_pool{d}d", d)) for d in (1, 2)},
    **{f"avg_pool{d}d": Surface(f"avg_pool{d}d", (X, P("kernel", "ints", R),
                                                  P("stride", "ints_or_none", None),
                                                  P("padding", "ints", 0),
                                                  P("ceil_mode", "bool", False),
                                                  P("count_include_pad", "bool", True)),
                                _pool(f"avg_pool{d}d", d)) for d in (1, 2)},
    **{f"adaptive_avg_pool{d}d": Surface(f"adaptive_avg_pool{d}d", (X, P("size", "ints", R)),
                                         _adaptive(d)) for d in (1, 2)},
    "global_avg_pool": Surface("global_avg_pool", (X,), _global_avg_pool,
                               doc="mean over the spatial dims, then flatten: [N, C]"),
}


def _scan(ctx, a):
    return ctx.el.scan(ctx, a)


def _argmax(ctx, a):
    return ctx.emit("argmax", [a["x"]], {"dim": a["dim"], "keepdim": a["keepdim"]})[0]


def _argsort(ctx, a):
    return ctx.emit("argsort", [a["x"]], {"dim": a["dim"], "descending": a["descending"]})[0]


def _cumsum(ctx, a):
    return ctx.emit("cumsum", [a["x"]], {"dim": a["dim"]})[0]


def _indexed(op: str, operands: tuple):
    """gather / index_select / scatter_add: emit, then bound the index's source input to the
    size of the indexed dim (so example inputs are valid ids)."""
    def build(ctx, a):
        x, index = a["x"], a["index"]
        out = ctx.emit(op, [a[k] for k in operands], {"dim": a["dim"]})[0]
        ctx.index_range(index, x.type.shape[a["dim"] % x.type.rank])
        return out
    return build


def _segment(op: str, data: str):
    def build(ctx, a):
        ids = a["segment_ids"]
        out = ctx.emit(op, [a[data], ids], {"num_segments": a["num_segments"]})[0]
        ctx.index_range(ids, a["num_segments"])
        return out
    return build


IDX = P("index", "tensor", R)
SEG = (P("segment_ids", "tensor", R), P("num_segments", "dim", R))
FUNCTIONS["argsort"] = Surface(
    "argsort", (X, P("dim", "int", -1), P("descending", "bool", False)), _argsort,
    doc="indices (i64) that sort x along dim; stable: equal values keep their order")
FUNCTIONS["cumsum"] = Surface("cumsum", (X, P("dim", "int", -1)), _cumsum,
                              doc="running sum along dim (integers sum in i64)")
FUNCTIONS["gather"] = Surface(
    "gather", (X, IDX, P("dim", "int", R)), _indexed("gather", ("x", "index")),
    doc="out[i][j] = x[index[i][j]][j] for dim 0 (torch.gather): an i64 index of x's rank")
FUNCTIONS["index_select"] = Surface(
    "index_select", (X, IDX, P("dim", "int", 0)), _indexed("index_select", ("x", "index")),
    doc="the slices x[index[k]] along dim, for a 1-d i64 index (rows of node features by edge)")
FUNCTIONS["scatter_add"] = Surface(
    "scatter_add", (X, IDX, P("src", "tensor", R), P("dim", "int", R)),
    _indexed("scatter_add", ("x", "index", "src")),
    doc="x with src[i][j] added at x[index[i][j]][j] for dim 0 (torch.scatter_add)")
for _op, _what in (("segment_sum", "sum"), ("segment_mean", "mean"), ("segment_max", "max")):
    FUNCTIONS[_op] = Surface(
        _op, (P("data", "tensor", R),) + SEG, _segment(_op, "data"),
        doc=f"the {_what} of the rows of data that share a segment id: [num_segments, ...], "
            f"0 for an empty segment")
FUNCTIONS["segment_softmax"] = Surface(
    "segment_softmax", (P("scores", "tensor", R),) + SEG,
    _segment("segment_softmax", "scores"),
    doc="softmax of scores over the rows that share a segment id (attention over a node's "
        "incoming edges)")
FUNCTIONS["argmax"] = Surface("argmax", (X, P("dim", "int", -1), P("keepdim", "bool", False)),
                              _argmax, doc="index (i64) of the largest value along dim")
FUNCTIONS["scan"] = Surface(
    "scan", (P("step", "any", R), P("over", "any", None), P("init", "any", None),
             P("dim", "int", 1), P("steps", "any", None)), _scan,
    doc="apply a step block once per time step with shared weights, carrying state: returns "
        "the final state, then the per-step outputs stacked along dim")
FUNCTIONS["expand"] = Surface("expand", (X, P("shape", "dims", R)), _reshape_like("expand"))
FUNCTIONS["mean"] = Surface("mean", FUNCTIONS["mean"].params, _reduce("mean"),
                            numeric=_py_reduce(lambda v: sum(v) / len(v)))
FUNCTIONS["cat"] = FUNCTIONS["concat"]


def _chunk(ctx, a):
    """``torch.chunk``: pieces of ⌈size / n⌉ along dim, the last one smaller (and fewer than n
    pieces when the size does not allow n)."""
    x, n, dim = a["x"], a["n"], a["dim"]
    size = x.type.shape[split_axis(x.type, dim, "chunk dim")]   # the split rule's check
    if isinstance(size, SymDim):
        if not size.divisible_by(n):
            ctx.error(f"cannot chunk dim {dim} of {x.type} into {n} pieces: its size {size} is "
                      f"symbolic and not known to be a multiple of {n}", code="E0312",
                      hint=f"assert {size} % {n} == 0, or split with explicit sizes")
        sizes = (size // n,) * n
    else:
        step = -(-size // n) if size else 0
        sizes = tuple(min(step, size - i) for i in range(0, size, step)) if step else (0,)
    return tuple(ctx.emit("split", [x], {"dim": dim, "sizes": sizes}))


def _topk(ctx, a):
    return tuple(ctx.emit("topk", [a["x"]], {"k": a["k"], "dim": a["dim"],
                                             "largest": a["largest"]}))


def _einsum(ctx, a):
    xs = [a[k] for k in "abcd" if a[k] is not None]
    return ctx.emit("einsum", xs, {"equation": a["equation"].replace(" ", "")})[0]


def _stack(ctx, a):
    return ctx.emit("stack", list(a["xs"]), {"dim": a["dim"]})[0]


def _pad(ctx, a):
    return ctx.emit("pad", [a["x"]], {"widths": _tuple(a["widths"], 1), "mode": a["mode"],
                                      "value": a["value"]})[0]


def _roll(ctx, a):
    return ctx.emit("roll", [a["x"]], {"shifts": _tuple(a["shifts"], 1),
                                       "dims": _tuple(a["dims"], 1)})[0]


def _upsample(ctx, a):
    if a["align_corners"] and a["mode"] == "nearest":
        ctx.error("align_corners applies to linear and bilinear upsampling, not nearest",
                  code="E0323", hint="leave align_corners out for mode=\"nearest\"")
    scale = a["scale"]
    return ctx.emit("upsample", [a["x"]], {"scale": tuple(scale) if isinstance(scale, tuple)
                                           else scale, "mode": a["mode"],
                                           "align_corners": a["align_corners"]})[0]


def _one_hot(ctx, a):
    x, n = a["x"], a["n"]
    out = ctx.emit("one_hot", [x], {"n": n, "dtype": a["dtype"].name if a["dtype"] else "i64"})[0]
    ctx.index_range(x, n)
    return out


def _dims_op(op: str, key: str):
    def build(ctx, a):
        dims = a["dim"]
        attrs = {"dims": None if dims is None else _tuple(dims, 1), "keepdim": a["keepdim"]}
        if key:
            attrs[key] = a[key]
        return ctx.emit(op, [a["x"]], attrs)[0]
    return build


OPTIONAL = {k: P(k, "tensor", None) for k in "abcd"}
FUNCTIONS.update({
    "clamp": Surface("clamp", (X, P("min", "fill", None), P("max", "fill", None)),
                     _one("clamp"), doc="min(max(x, min), max); either bound may be left out"),
    "drop_path": Surface("drop_path", (X, P("p", "prob", R)), _one("drop_path"),
                         doc="stochastic depth: in training, each sample (dim 0) is zeroed with "
                             "probability p and the others scaled by 1/(1-p); the identity at "
                             "eval"),
    "topk": Surface("topk", (X, P("k", "int", R), P("dim", "int", -1), P("largest", "bool", True),
                             P("sorted", "bool", True)), _topk,
                    doc="(values, indices): the k largest (largest=false: smallest) values "
                        "along dim, and their i64 indices; always in order (sorted=false, "
                        "which promises no order, gives the same result in every backend)"),
    "pad": Surface("pad", (X, P("widths", "ints", R), P("mode", "str", "constant"),
                           P("value", "fill", 0.0)), _pad,
                   doc="pad with (before, after) widths per dim, last dim first (as "
                       "torch.nn.functional.pad); mode constant, reflect, replicate, circular"),
    "roll": Surface("roll", (X, P("shifts", "ints", R), P("dims", "ints", R)), _roll,
                    doc="shift elements cyclically: element i moves to i + shift along each dim"),
    "stack": Surface("stack", (P("xs", "tensors", R), P("dim", "int", 0)), _stack,
                     doc="join tensors of one shape along a new dim"),
    "chunk": Surface("chunk", (X, P("n", "pos_int", R), P("dim", "int", 0)), _chunk,
                     doc="split into n pieces along dim, as torch.chunk (⌈size/n⌉ each, the "
                         "last smaller)"),
    "einsum": Surface("einsum", (P("equation", "str", R),) + tuple(OPTIONAL.values()), _einsum,
                      doc="Einstein summation over one to four tensors: "
                          "einsum(\"bhqd,bhkd->bhqk\", q, k)"),
    "upsample": Surface("upsample", (X, P("scale", "ints", 2), P("mode", "str", "nearest"),
                                     P("align_corners", "bool", False)), _upsample,
                        doc="resize [N, C, ...] by integer factors: nearest (any rank), linear "
                            "([N, C, L]) or bilinear ([N, C, H, W])"),
    "pixel_shuffle": Surface("pixel_shuffle", (X, P("r", "pos_int", R)), _one("pixel_shuffle"),
                             doc="[N, C·r², H, W] → [N, C, H·r, W·r] (sub-pixel convolution)"),
    "logsumexp": Surface("logsumexp", (X, P("dim", "ints_or_none", None),
                                       P("keepdim", "bool", False)), _dims_op("logsumexp", ""),
                         doc="log Σ exp(x) over dims, computed stably"),
    **{op: Surface(op, (X, P("dim", "ints_or_none", None), P("correction", "int", 1),
                        P("keepdim", "bool", False)), _dims_op(op, "correction"),
                   doc=f"{what} over dims (all by default), dividing by n - correction")
       for op, what in (("var", "variance"), ("std", "standard deviation"))},
    "cumprod": Surface("cumprod", (X, P("dim", "int", -1)), _one("cumprod"),
                       doc="running product along dim (integers multiply in i64)"),
    "flip": Surface("flip", (X, P("dims", "ints", R)), lambda ctx, a: ctx.emit(
        "flip", [a["x"]], {"dims": _tuple(a["dims"], 1)})[0], doc="reverse the order along dims"),
    "repeat_interleave": Surface("repeat_interleave", (X, P("repeats", "pos_int", R),
                                                       P("dim", "opt_int", None)),
                                 _one("repeat_interleave"),
                                 doc="each element repeated along dim (no dim: the flattened "
                                     "tensor), as torch.repeat_interleave with an int"),
    "one_hot": Surface("one_hot", (X, P("n", "pos_int", R), P("dtype", "dtype", None)), _one_hot,
                       doc="class indices → one-hot vectors in a new last dim of size n (i64, "
                           "or dtype)"),
})

SURFACE: dict[str, Surface] = {**FUNCTIONS, **LAYERS}
