"""The per-op source table: how each IR op is written as one line of PyTorch.

:data:`TORCH_CODEGEN` maps every op name but the graph's sources (``input``, ``param``) to a
function that receives an :class:`OpSource` (the operands as expressions, the op's attributes,
the operand types) and returns the right-hand side of the op's line: an expression string, or an
:class:`Emitted` when the op needs statements before its line or a pattern for several results.
Layer ops call their ``nn`` module when the node has one (``OpSource.module``) and are written
functionally (``F.conv2d(...)``) otherwise; arguments left at PyTorch's defaults are left out.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Callable

from nndsl.backends.torch.calls import EPILOGUE, PLAIN
from nndsl.backends.torch.codegen.source import TORCH_DTYPES, _collapse, _uniform, py_literal
from nndsl.backends.torch.lowering import drop_path, fake_quantize
from nndsl.ir.graph import Node
from nndsl.ir.ops import SIGNATURES
from nndsl.ir.types import FLOAT_DTYPES, TensorType


@dataclass
class Emitted:
    """What an op's entry returns when a plain expression is not enough.

    ``pattern`` formats the assignment targets (``"{0}, ({1}, {2})"``); ``pre`` holds statements
    that go before the line.
    """

    expr: str
    pattern: str | None = None
    pre: tuple = ()


class OpSource:
    """What an op's entry sees: operand expressions and types, attributes, helpers.

    ``fn`` is the ``forward`` being written (the generator's ``_Function``): it turns values and
    symbolic dims into expressions. ``module`` is the expression of the ``nn`` module the node
    applies (``self.conv``), or ``None`` when the op is written functionally.
    """

    def __init__(self, fn, node: Node, module: str | None):
        self.fn = fn
        self.node = node
        self.a = {**SIGNATURES[node.op].attrs, **node.attr}
        self.module = module
        self._args = [fn.expr(v) if v is not None else None for v in node.inputs]

    def helper(self, name: str) -> str:
        """Ask for the generated file to define helper ``name`` (see :data:`HELPERS`)."""
        self.fn.gen.helpers.add(name)
        return name

    def x(self, i: int = 0) -> str:
        """Operand ``i`` as an expression (``None`` for an absent optional operand)."""
        return "None" if self._args[i] is None else self._args[i]

    def has(self, i: int) -> bool:
        """Whether operand ``i`` is given."""
        return i < len(self._args) and self._args[i] is not None

    def xs(self, start: int = 0) -> list[str]:
        """The operands from ``start`` on, as expressions."""
        return [self.x(i) for i in range(start, len(self._args))]

    def const(self, i: int) -> bool:
        """Whether operand ``i`` is a Python number rather than a tensor."""
        v = self.node.inputs[i]
        return v is not None and self.fn.is_const(v)

    def t(self, i: int = 0) -> TensorType:
        """The type of operand ``i``."""
        return self.fn.graph.type_of(self.node.inputs[i])

    def dim(self, d) -> str:
        """A dim as an expression (a symbolic one is bound from a tensor's shape first)."""
        return self.fn.dim(d)

    def dims(self, ds) -> str:
        """Dims as call arguments: ``N, T, 8``; ``()`` for none."""
        return ", ".join(self.dim(d) for d in ds) if ds else "()"

    def shape(self, ds) -> str:
        """Dims as a tuple literal."""
        items = [self.dim(d) for d in ds]
        return f"({items[0]},)" if len(items) == 1 else "(" + ", ".join(items) + ")"

    @property
    def device(self) -> str | None:
        """The inputs' device, for the tensors an op creates (``None`` without inputs)."""
        return self.fn.device()

    @property
    def rank(self) -> int:
        """The rank of the first operand."""
        return self.t(0).rank


def _call(fn: str, *args, **kw) -> str:
    """``fn(args..., key=value...)``, leaving out the arguments that are ``None``."""
    parts = [a for a in args if a is not None]
    parts += [f"{k}={v}" for k, v in kw.items() if v is not None]
    return f"{fn}({', '.join(parts)})"


def _unary(fn: str):
    return lambda e: f"{fn}({e.x(0)})"


def _binop(symbol: str):
    return lambda e: f"{e.x(0)} {symbol} {e.x(1)}"


def _div(e):
    """``a / b``; an integer result rounds toward zero (torch's ``/`` would give floats)."""
    if e.node.type.dtype in FLOAT_DTYPES:
        return f"{e.x(0)} / {e.x(1)}"
    return f"torch.div({e.x(0)}, {e.x(1)}, rounding_mode=\"trunc\")"


def _scalar(e):
    return py_literal(e.a["value"])


def _full(e):
    a = e.a
    dtype = None if a["dtype"] == "f32" else TORCH_DTYPES[a["dtype"]]
    value = a["value"]
    if a["dtype"] == "bool":
        value = bool(value)
    elif a["dtype"] not in ("f32", "f16", "bf16", "f64") and float(value).is_integer():
        value = int(value)
    device = e.device
    if value in (0, 1) and not (isinstance(value, float) and math.copysign(1, value) < 0):
        fn = "torch.ones" if value == 1 else "torch.zeros"
        return _call(fn, e.dims(a["shape"]), dtype=dtype, device=device)
    return _call("torch.full", e.shape(a["shape"]), py_literal(value), dtype=dtype, device=device)


def _arange(e):
    dtype = None if e.a["dtype"] == "i64" else TORCH_DTYPES[e.a["dtype"]]
    return _call("torch.arange", e.dim(e.a["n"]), dtype=dtype, device=e.device)


def _clamp(which: str, torch_fn: str):
    def emit(e):
        if e.const(1):
            return f"torch.clamp({e.x(0)}, {which}={e.x(1)})"
        if e.const(0):
            return f"torch.clamp({e.x(1)}, {which}={e.x(0)})"
        return f"{torch_fn}({e.x(0)}, {e.x(1)})"
    return emit


def _logical(fn: str):
    def emit(e):
        args = [f"torch.tensor({e.x(i)})" if e.const(i) else e.x(i) for i in (0, 1)]
        return f"{fn}({args[0]}, {args[1]})"
    return emit


def _tri(fn: str):
    return lambda e: _call(fn, e.x(0), None if e.a["k"] == 0 else str(e.a["k"]))


def _linear(e):
    if e.module:
        return f"{e.module}({e.x(0)})"
    return _call("F.linear", e.x(0), e.x(1), e.x(2) if e.has(2) else None)


def _conv(nd: int):
    def emit(e):
        if e.module:
            return f"{e.module}({e.x(0)})"
        a = e.a
        pad = a["padding"]
        return _call(f"F.conv{nd}d", e.x(0), e.x(1), e.x(2),
                     stride=None if _uniform(a["stride"], 1) else _collapse(a["stride"]),
                     padding='"same"' if pad == "same" else
                     None if _uniform(pad, 0) else _collapse(pad),
                     dilation=None if _uniform(a["dilation"], 1) else _collapse(a["dilation"]),
                     groups=None if a["groups"] == 1 else str(a["groups"]))
    return emit


# The epilogue activations (ops_with("epilogue")) as source; a test keeps the keys equal.
_ACT_SOURCE = EPILOGUE


def _with_act(emit):
    """An epilogue activation fused into the layer (``act``) is applied to its result."""
    def wrapped(e):
        act = e.a.get("act")
        expr = emit(e)
        return expr if act is None else f"{_ACT_SOURCE[act]}({expr})"
    return wrapped


# Functions an op's line calls, written once at the top of the files that use them.
HELPERS: dict[str, str] = {
    "_dequantize": '''
def _dequantize(q, scale, group=None):
    """Integer weights back to float: one scale a row, or per row and group of columns.
    A uint8 weight holds two signed 4-bit values a byte, the even one in the low nibble."""
    if q.dtype == torch.uint8:
        lo, hi = (q & 0xF).to(torch.int8), (q >> 4).to(torch.int8)
        q = torch.stack([lo, hi], dim=-1).reshape(*q.shape[:-1], -1)
        q = torch.where(q > 7, q - 16, q)
    if group is None:
        return q.to(scale.dtype) * scale.reshape(-1, *([1] * (q.dim() - 1)))
    rows, cols = q.shape
    return (q.to(scale.dtype).reshape(rows, cols // group, group)
            * scale.unsqueeze(-1)).reshape(rows, cols)
''',
    "_qlayer": '''
_QPACKED = {}


def _qpack(kind, weight, scale, bias, x_scale, conv=None):
    """Int8 weights (one scale a row) and the int32 bias packed for the quantized engine,
    once (again if they change)."""
    key = (kind, weight.data_ptr(), weight._version, scale._version, x_scale, conv,
           None if bias is None else (bias.data_ptr(), bias._version))
    hit = _QPACKED.get(id(weight))
    if hit is None or hit[0] != key:
        qw = torch._make_per_channel_quantized_tensor(
            weight, scale.double(), torch.zeros(weight.shape[0], dtype=torch.long), 0)
        b = None if bias is None else bias.double().mul(scale.double() * x_scale).float()
        if kind == "conv":
            packed = torch.ops.quantized.conv2d_prepack(qw, b, *conv)
        else:
            packed = torch.ops.quantized.linear_prepack(qw, b)
        hit = _QPACKED[id(weight)] = (key, packed)
    return hit[1]


def _qconv2d(x, weight, scale, bias, x_scale, out_scale, out_zp, stride, padding, dilation,
             groups, relu=False):
    """Convolution of quint8 activations with int8 weights, requantized to quint8."""
    packed = _qpack("conv", weight, scale, bias, x_scale, (stride, padding, dilation, groups))
    op = torch.ops.quantized.conv2d_relu if relu else torch.ops.quantized.conv2d
    return op(x, packed, out_scale, out_zp)


def _qlinear(x, weight, scale, bias, x_scale, out_scale, out_zp, relu=False):
    """Linear layer of quint8 activations with int8 weights, requantized to quint8."""
    packed = _qpack("linear", weight, scale, bias, x_scale)
    op = torch.ops.quantized.linear_relu if relu else torch.ops.quantized.linear
    return op(x, packed, out_scale, out_zp)
''',
    "_linear_int8": '''
_PACKED = {}


def _linear_int8(x, weight, scale, bias=None):
    """Dynamic int8 linear: x is quantized per call, the int8 weight has one scale a row.
    The weight is packed for the quantized engine once (again if it changes)."""
    key = (weight.data_ptr(), weight._version, scale._version,
           None if bias is None else (bias.data_ptr(), bias._version))
    packed = _PACKED.get(id(weight))
    if packed is None or packed[0] != key:
        qw = torch._make_per_channel_quantized_tensor(
            weight, scale.double(), torch.zeros(weight.shape[0], dtype=torch.long), 0)
        packed = _PACKED[id(weight)] = (key, torch.ops.quantized.linear_prepack(qw, bias))
    return torch.ops.quantized.linear_dynamic(x, packed[1], True)
''',
}


# the runtime's own functions, so the generated file computes exactly what the module does
# (and draws the same random numbers)
HELPERS["_fake_quantize"] = "\n" + inspect.getsource(fake_quantize).replace(
    "def fake_quantize(", "def _fake_quantize(", 1)
HELPERS["_drop_path"] = "\n" + inspect.getsource(drop_path).replace(
    "def drop_path(", "def _drop_path(", 1)


def _dequantize(e):
    g = e.a["group"]
    return f"{e.helper('_dequantize')}({e.x(0)}, {e.x(1)}" + (f", {g})" if g else ")")


def _fake_quantize(e):
    g = e.a["group"]
    return f"{e.helper('_fake_quantize')}({e.x(0)}, {e.a['bits']}" + (f", {g})" if g else ")")


def _qconv2d(e):
    a = e.a

    def pair(v):
        return py_literal(list(v) if isinstance(v, (tuple, list)) else [v, v])
    e.helper("_qlayer")
    return _call("_qconv2d", e.x(0), e.x(1), e.x(2), e.x(3),
                 py_literal(a["x_scale"]), py_literal(a["out_scale"]), str(a["out_zp"]),
                 pair(a["stride"]), pair(a["padding"]), pair(a["dilation"]), str(a["groups"]),
                 relu="True" if a["act"] == "relu" else None)


def _qlinear(e):
    a = e.a
    e.helper("_qlayer")
    return _call("_qlinear", e.x(0), e.x(1), e.x(2), e.x(3),
                 py_literal(a["x_scale"]), py_literal(a["out_scale"]), str(a["out_zp"]),
                 relu="True" if a["act"] == "relu" else None)


def _qadd(e):
    a = e.a
    op = "torch.ops.quantized.add_relu" if a["act"] == "relu" else "torch.ops.quantized.add"
    return f"{op}({e.x(0)}, {e.x(1)}, {py_literal(a['out_scale'])}, {a['out_zp']})"


def _linear_int8(e):
    return _call(e.helper("_linear_int8"), e.x(0), e.x(1), e.x(2), e.x(3) if e.has(3) else None)


def _attention(e):
    a = e.a
    return _call("F.scaled_dot_product_attention", e.x(0), e.x(1), e.x(2),
                 attn_mask=e.x(3) if e.has(3) else None,
                 dropout_p=f"{py_literal(a['dropout'])} if self.training else 0.0"
                 if a["dropout"] else None,
                 is_causal="True" if a["causal"] else None,
                 scale=None if a["scale"] is None or _default_scale(e, a["scale"])
                 else py_literal(a["scale"]))


def _default_scale(e, scale) -> bool:
    """Whether an attention's scale is SDPA's own, 1/sqrt(E) of the query's last dim."""
    d = e.t(0).shape[-1] if e.t(0).rank else None
    return isinstance(d, int) and d > 0 and scale == 1.0 / math.sqrt(d)


def _conv_transpose(e):
    if e.module:
        return f"{e.module}({e.x(0)})"
    a = e.a
    return _call("F.conv_transpose2d", e.x(0), e.x(1), e.x(2),
                 stride=None if _uniform(a["stride"], 1) else _collapse(a["stride"]),
                 padding=None if _uniform(a["padding"], 0) else _collapse(a["padding"]),
                 output_padding=None if _uniform(a["output_padding"], 0)
                 else _collapse(a["output_padding"]),
                 groups=None if a["groups"] == 1 else str(a["groups"]),
                 dilation=None if _uniform(a["dilation"], 1) else _collapse(a["dilation"]))


def _memory_format(e):
    fmt = "torch.channels_last" if e.a["format"] == "channels_last" else "torch.contiguous_format"
    return f"{e.x(0)}.contiguous(memory_format={fmt})"


def _max_pool(nd: int):
    def emit(e):
        a = e.a
        return _call(f"F.max_pool{nd}d", e.x(0), _collapse(a["kernel"]),
                     stride=None if tuple(a["stride"]) == tuple(a["kernel"])
                     else _collapse(a["stride"]),
                     padding=None if _uniform(a["padding"], 0) else _collapse(a["padding"]),
                     dilation=None if _uniform(a["dilation"], 1) else _collapse(a["dilation"]),
                     ceil_mode="True" if a["ceil_mode"] else None)
    return emit


def _avg_pool(nd: int):
    def emit(e):
        a = e.a
        return _call(f"F.avg_pool{nd}d", e.x(0), _collapse(a["kernel"]),
                     stride=None if tuple(a["stride"]) == tuple(a["kernel"])
                     else _collapse(a["stride"]),
                     padding=None if _uniform(a["padding"], 0) else _collapse(a["padding"]),
                     ceil_mode="True" if a["ceil_mode"] else None,
                     count_include_pad=None if a["count_include_pad"] else "False")
    return emit


def _adaptive(nd: int):
    return lambda e: _call(f"F.adaptive_avg_pool{nd}d", e.x(0), _collapse(e.a["output_size"]))


def _batch_norm(e):
    if e.module:
        return f"{e.module}({e.x(0)})"
    a = e.a
    pre = ("if self.training:", f"    {e.x(5)}.add_(1)")
    return Emitted(_call("F.batch_norm", e.x(0), e.x(3), e.x(4), e.x(1), e.x(2), "self.training",
                         py_literal(a["momentum"]), py_literal(a["eps"])), pre=pre)


def _layer_norm(e):
    if e.module:
        return f"{e.module}({e.x(0)})"
    return _call("F.layer_norm", e.x(0), py_literal(tuple(e.a["normalized_shape"])), e.x(1),
                 e.x(2), py_literal(e.a["eps"]))


def _group_norm(e):
    if e.module:
        return f"{e.module}({e.x(0)})"
    return _call("F.group_norm", e.x(0), str(e.a["groups"]), e.x(1), e.x(2),
                 py_literal(e.a["eps"]))


def _embedding(e):
    if e.module:
        return f"{e.module}({e.x(0)})"
    pad = e.a["padding_idx"]
    return _call("F.embedding", e.x(0), e.x(1), padding_idx=None if pad is None else str(pad))


def _recurrent(kind: str):
    has_c = kind == "lstm"

    def emit(e):
        a = e.a
        x = e.x(0)
        h0 = e.x(1) if e.has(1) else None
        c0 = e.x(2) if has_c and e.has(2) else None
        if e.module:
            if has_c:
                if h0 is None and c0 is None:
                    return Emitted(f"{e.module}({x})", "{0}, ({1}, {2})")
                h0 = h0 or f"torch.zeros_like({c0})"
                c0 = c0 or f"torch.zeros_like({h0})"
                return Emitted(f"{e.module}({x}, ({h0}, {c0}))", "{0}, ({1}, {2})")
            return Emitted(f"{e.module}({x}{'' if h0 is None else ', ' + h0})")
        dirs = 2 if a["bidirectional"] else 1
        if h0 is None:
            h0 = (f"torch.zeros({a['layers'] * dirs}, {x}.shape[0], {a['hidden']}, "
                  f"dtype={x}.dtype, device={x}.device)")
        weights = "[" + ", ".join(e.xs(3 if has_c else 2)) + "]"
        rest = (f"{weights}, {a['bias']}, {a['layers']}, {py_literal(a['dropout'])}, "
                f"self.training, {a['bidirectional']}, True")
        if has_c:
            state = f"({h0}, {c0 or f'torch.zeros_like({h0})'})"
            return Emitted(f"torch.lstm({x}, {state}, {rest})")
        fn = {"gru": "torch.gru"}.get(kind) or (
            "torch.rnn_tanh" if a["nonlinearity"] == "tanh" else "torch.rnn_relu")
        return Emitted(f"{fn}({x}, {h0}, {rest})")
    return emit


def _flatten(e):
    start, end = e.a["start"], e.a["end"]
    if end == -1:
        return f"{e.x(0)}.flatten({'' if start == 0 else start})"
    return f"{e.x(0)}.flatten({start}, {end})"


def _squeeze(e):
    dims = e.a["dims"]
    if dims is None:
        return f"{e.x(0)}.squeeze()"
    dims = tuple(dims)
    return f"{e.x(0)}.squeeze({dims[0] if len(dims) == 1 else py_literal(dims)})"


def _concat(e):
    dim = e.a["dim"]
    return _call("torch.cat", "[" + ", ".join(e.xs()) + "]", dim=None if dim == 0 else str(dim))


def _split(e):
    sizes = tuple(e.a["sizes"])
    dim = e.a["dim"]
    pattern = "({0},)" if len(sizes) == 1 else None
    if sizes and all(s == sizes[0] for s in sizes):
        return Emitted(f"{e.x(0)}.split({e.dim(sizes[0])}, dim={dim})", pattern)
    return Emitted(f"torch.split({e.x(0)}, [{', '.join(e.dim(s) for s in sizes)}], dim={dim})",
                   pattern)


def _slice(e):
    rank = e.rank
    idx = [":"] * rank
    for ax, st, en, sp in zip(e.a["axes"], e.a["starts"], e.a["ends"], e.a["steps"]):
        part = ("" if st is None else e.dim(st)) + ":" + ("" if en is None else e.dim(en))
        if sp is not None and sp != 1:
            part += f":{e.dim(sp)}"
        idx[ax % rank] = part
    while len(idx) > 1 and idx[-1] == ":":
        idx.pop()
    return f"{e.x(0)}[{', '.join(idx) if idx else '...'}]"


def _reduce(fn: str):
    def emit(e):
        dims = e.a["dims"]
        dims = tuple(range(e.rank)) if dims is None else tuple(dims)
        dim = str(dims[0]) if len(dims) == 1 else py_literal(dims)
        return _call(fn, e.x(0), dim=dim, keepdim="True" if e.a["keepdim"] else None)
    return emit


def _prod(e):
    rank = e.rank
    dims = e.a["dims"]
    dims = tuple(range(rank)) if dims is None else tuple(dims)
    expr = e.x(0)
    for d in sorted((d % rank for d in dims), reverse=True):
        expr = _call("torch.prod", expr, dim=str(d), keepdim="True" if e.a["keepdim"] else None)
    return expr


def _softmax(fn: str):
    return lambda e: f"{fn}({e.x(0)}, dim={e.a['dim']})"


def _argmax(e):
    return _call("torch.argmax", e.x(0), dim=str(e.a["dim"]),
                 keepdim="True" if e.a["keepdim"] else None)


def _argsort(e):
    return _call("torch.argsort", e.x(0), dim=str(e.a["dim"]),
                 descending="True" if e.a["descending"] else None, stable="True")


def _index_select(e):
    if e.a["dim"] % e.rank == 0:
        return f"{e.x(0)}[{e.x(1)}]"
    return f"{e.x(0)}.index_select({e.a['dim']}, {e.x(1)})"


def _rows(e, ids: str, rank: int) -> str:
    """Segment ids ``[E]`` as an index of the data's shape ``[E, ...]`` (for scatter_reduce)."""
    if rank == 1:
        return ids
    return f"{ids}.view(-1, {', '.join(['1'] * (rank - 1))}).expand_as({e.x(0)})"


def _segment_zeros(e, like: str) -> str:
    """``like.new_zeros(num_segments, ...)``: one row per segment, shaped like a data row."""
    t = e.t(0)
    return f"{like}.new_zeros({e.dims((e.a['num_segments'],) + tuple(t.shape[1:]))})"


def _segment_sum(e):
    return f"{_segment_zeros(e, e.x(0))}.index_add(0, {e.x(1)}, {e.x(0)})"


def _segment_mean(e):
    rank = e.rank
    counts = f"torch.bincount({e.x(1)}, minlength={e.dim(e.a['num_segments'])}).clamp(min=1)"
    if rank == 2:
        counts += ".unsqueeze(-1)"
    elif rank > 2:
        counts += f".view(-1, {', '.join(['1'] * (rank - 1))})"
    return f"{_segment_sum(e)} / {counts}"


def _segment_max(e):
    return (f'{_segment_zeros(e, e.x(0))}.scatter_reduce(0, {_rows(e, e.x(1), e.rank)}, '
            f'{e.x(0)}, "amax", include_self=False)')


def _segment_softmax(e):
    """Three lines: the per-segment max (not differentiated through), the shifted exponentials,
    and their per-segment sums."""
    base = e.fn.local_name(e.node.name).replace(".", "_")
    top = e.fn.names.take(f"{base}_max")
    ex = e.fn.names.take(f"{base}_exp")
    s, ids = e.x(0), e.x(1)
    pre = (f'{top} = {_segment_zeros(e, s)}.scatter_reduce(0, {_rows(e, ids, e.rank)}, '
           f'{s}.detach(), "amax", include_self=False)',
           f"{ex} = torch.exp({s} - {top}[{ids}])")
    return Emitted(f"{ex} / {_segment_zeros(e, ex)}.index_add(0, {ids}, {ex})[{ids}]", pre=pre)


def _scan(e):
    """A Python ``for`` loop over the steps (written by the function, which owns the names)."""
    return e.fn.scan_source(e)


def _clamp_op(e):
    a = e.a
    whole = e.t(0).dtype not in ("f32", "f16", "bf16", "f64")

    def bound(v):
        return None if v is None else py_literal(int(v) if whole else float(v))
    return _call("torch.clamp", e.x(0), min=bound(a["min"]), max=bound(a["max"]))


def _rms_norm(e):
    if e.module:
        return f"{e.module}({e.x(0)})"
    eps = e.a["eps"]
    return _call("F.rms_norm", e.x(0), py_literal(tuple(e.a["normalized_shape"])),
                 e.x(1) if e.has(1) else None, eps=None if eps is None else py_literal(eps))


def _one_hot(e):
    x = e.x(0) if e.t(0).dtype == "i64" else f"{e.x(0)}.long()"
    expr = f"F.one_hot({x}, {e.dim(e.a['n'])})"
    return expr if e.a["dtype"] == "i64" else f"{expr}.to({TORCH_DTYPES[e.a['dtype']]})"


def _dims_or_all(e) -> str:
    dims = e.a["dims"]
    dims = tuple(range(e.rank)) if dims is None else tuple(dims)
    return str(dims[0]) if len(dims) == 1 else py_literal(dims)


def _var(fn: str):
    def emit(e):
        c = e.a["correction"]
        return _call(fn, e.x(0), _dims_or_all(e), correction=None if c == 1 else str(c),
                     keepdim="True" if e.a["keepdim"] else None)
    return emit


def _pad(e):
    a = e.a
    mode = a["mode"]
    return _call("F.pad", e.x(0), py_literal(list(a["widths"])),
                 mode=None if mode == "constant" else py_literal(mode),
                 value=py_literal(a["value"]) if mode == "constant" and a["value"] != 0 else None)


def _upsample(e):
    a = e.a
    scale = a["scale"]
    scale = tuple(scale) if isinstance(scale, (tuple, list)) else (scale,) * (e.rank - 2)
    factor = py_literal(float(scale[0])) if len(set(scale)) == 1 else \
        py_literal(tuple(float(f) for f in scale))
    linear = a["mode"] != "nearest"
    return _call("F.interpolate", e.x(0), scale_factor=factor,
                 mode=None if a["mode"] == "nearest" else py_literal(a["mode"]),
                 align_corners=str(a["align_corners"]) if linear else None)


def _ints(v) -> str:
    v = tuple(v)
    return str(v[0]) if len(v) == 1 else py_literal(v)


# op name -> fn(OpSource) -> expression source | Emitted. Every op of SIGNATURES but the graph's
# sources (input, param) is here; a test keeps the table in step with the signatures.
TORCH_CODEGEN: dict[str, Callable] = {
    "scalar": _scalar,  # written inline where it is used
    "full": _full,
    "arange": _arange,
    **{op: _unary(name) for op, name in PLAIN.items()},
    "neg": lambda e: f"-{e.x(0)}",
    "leaky_relu": lambda e: _call("F.leaky_relu", e.x(0), None if e.a["slope"] == 0.01
                                  else py_literal(e.a["slope"])),
    "gelu": lambda e: _call("F.gelu", e.x(0), approximate=None if e.a["approximate"] == "none"
                            else py_literal(e.a["approximate"])),
    "elu": lambda e: _call("F.elu", e.x(0), alpha=None if e.a["alpha"] == 1.0
                           else py_literal(e.a["alpha"])),
    "softplus": lambda e: _call("F.softplus", e.x(0),
                                beta=None if e.a["beta"] == 1.0 else py_literal(e.a["beta"]),
                                threshold=None if e.a["threshold"] == 20.0
                                else py_literal(e.a["threshold"])),
    "dropout": lambda e: f"F.dropout({e.x(0)}, p={py_literal(e.a['p'])}, training=self.training)",
    "cast": lambda e: f"{e.x(0)}.to({TORCH_DTYPES[e.a['dtype']]})",
    "drop_path": lambda e: f"{e.helper('_drop_path')}({e.x(0)}, {py_literal(e.a['p'])}, "
                           f"self.training)",
    "clamp": _clamp_op,
    "add": _binop("+"), "sub": _binop("-"), "mul": _binop("*"), "div": _div,
    "pow": _binop("**"), "floor_div": _binop("//"), "mod": _binop("%"),
    "maximum": _clamp("min", "torch.maximum"), "minimum": _clamp("max", "torch.minimum"),
    "eq": _binop("=="), "ne": _binop("!="), "lt": _binop("<"), "le": _binop("<="),
    "gt": _binop(">"), "ge": _binop(">="),
    "logical_and": _logical("torch.logical_and"), "logical_or": _logical("torch.logical_or"),
    "where": lambda e: f"torch.where({e.x(0)}, {e.x(1)}, {e.x(2)})",
    "masked_fill": lambda e: f"{e.x(0)}.masked_fill({e.x(1)}, {py_literal(e.a['value'])})",
    "tril": _tri("torch.tril"), "triu": _tri("torch.triu"),
    "matmul": _binop("@"),
    "linear": _with_act(_linear),
    "linear_int8": _with_act(_linear_int8), "dequantize": _dequantize,
    "fake_quantize": _fake_quantize,
    "quantize": lambda e: f"torch.quantize_per_tensor({e.x(0)}, {py_literal(e.a['scale'])}, "
                          f"{e.a['zero_point']}, torch.quint8)",
    "dequantize_act": lambda e: f"{e.x(0)}.dequantize()",
    "qconv2d": _qconv2d, "qlinear": _qlinear, "qadd": _qadd,
    "qclamp": lambda e: _call("torch.clamp", e.x(0), min=None if e.a["min"] is None else
                              py_literal(float(e.a["min"])),
                              max=None if e.a["max"] is None else py_literal(float(e.a["max"]))),
    "conv1d": _with_act(_conv(1)), "conv2d": _with_act(_conv(2)),
    "conv3d": _with_act(_conv(3)), "conv_transpose2d": _with_act(_conv_transpose),
    "attention": _attention,
    "memory_format": _memory_format,
    "max_pool1d": _max_pool(1), "max_pool2d": _max_pool(2),
    "avg_pool1d": _avg_pool(1), "avg_pool2d": _avg_pool(2),
    "adaptive_avg_pool1d": _adaptive(1), "adaptive_avg_pool2d": _adaptive(2),
    "batch_norm": _batch_norm,
    "layer_norm": _layer_norm,
    "group_norm": _group_norm,
    "embedding": _embedding, "rms_norm": _rms_norm, "one_hot": _one_hot,
    "einsum": lambda e: _call("torch.einsum", py_literal(e.a["equation"]), *e.xs()),
    "lstm": _recurrent("lstm"), "gru": _recurrent("gru"), "rnn": _recurrent("rnn"),
    "flatten": _flatten,
    "reshape": lambda e: f"{e.x(0)}.reshape({e.dims(e.a['shape'])})",
    "transpose": lambda e: f"{e.x(0)}.transpose({e.a['dim0']}, {e.a['dim1']})",
    "permute": lambda e: f"{e.x(0)}.permute({e.dims(e.a['dims'])})",
    "squeeze": _squeeze,
    "unsqueeze": lambda e: f"{e.x(0)}.unsqueeze({e.a['dim']})",
    "expand": lambda e: f"{e.x(0)}.expand({e.dims(e.a['shape'])})",
    "concat": _concat,
    "split": _split,
    "slice": _slice,
    "stack": lambda e: _call("torch.stack", "[" + ", ".join(e.xs()) + "]",
                             dim=None if e.a["dim"] == 0 else str(e.a["dim"])),
    "flip": lambda e: f"torch.flip({e.x(0)}, {py_literal(tuple(e.a['dims']))})",
    "roll": lambda e: f"torch.roll({e.x(0)}, {_ints(e.a['shifts'])}, {_ints(e.a['dims'])})",
    "repeat_interleave": lambda e: _call("torch.repeat_interleave", e.x(0), str(e.a["repeats"]),
                                         dim=None if e.a["dim"] is None else str(e.a["dim"])),
    "pad": _pad, "upsample": _upsample,
    "pixel_shuffle": lambda e: f"F.pixel_shuffle({e.x(0)}, {e.a['r']})",
    "sum": _reduce("torch.sum"), "mean": _reduce("torch.mean"), "max": _reduce("torch.amax"),
    "min": _reduce("torch.amin"), "prod": _prod,
    "softmax": _softmax("F.softmax"), "log_softmax": _softmax("F.log_softmax"),
    "argmax": _argmax,
    "argsort": _argsort,
    "cumsum": lambda e: f"torch.cumsum({e.x(0)}, dim={e.a['dim']})",
    "cumprod": lambda e: f"torch.cumprod({e.x(0)}, dim={e.a['dim']})",
    "logsumexp": lambda e: _call("torch.logsumexp", e.x(0), _dims_or_all(e),
                                 keepdim="True" if e.a["keepdim"] else None),
    "var": _var("torch.var"), "std": _var("torch.std"),
    "topk": lambda e: _call("torch.topk", e.x(0), str(e.a["k"]),
                            dim=None if e.a["dim"] == -1 else str(e.a["dim"]),
                            largest=None if e.a["largest"] else "False"),
    "gather": lambda e: f"torch.gather({e.x(0)}, {e.a['dim']}, {e.x(1)})",
    "index_select": _index_select,
    "scatter_add": lambda e: f"{e.x(0)}.scatter_add({e.a['dim']}, {e.x(1)}, {e.x(2)})",
    "segment_sum": _segment_sum, "segment_mean": _segment_mean, "segment_max": _segment_max,
    "segment_softmax": _segment_softmax,
    "scan": _scan,
}

# Names for the outputs of multi-output ops, as suffixes of the node's name.
_OUTPUT_SUFFIXES = {"lstm": ("", "_h", "_c"), "gru": ("", "_h"), "rnn": ("", "_h")}
