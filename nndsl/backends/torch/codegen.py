"""Readable PyTorch source for a compiled model: ``model.py`` and ``weights.safetensors``.

:func:`generate_source` turns the typed graph into a standalone Python module that needs only
torch: one ``nn.Module`` class per block specialization (the elaborator records where each block
application's nodes are in ``graph.meta["regions"]``) and a model class named after the model.
Standard layers become the torch modules a person would write (``nn.Conv2d``, ``nn.LSTM``...);
``param`` statements become ``nn.Parameter``s; parameter names are the spec's, so the weights file
loads with ``strict=True``. Each ``forward`` walks the graph's nodes in order, one line and one
variable per op, with the value's shape as a comment. The code is specialized to the parameter
values the spec was compiled with, and its constructors refuse any others.

The per-op knowledge is a table keyed by op name, :data:`TORCH_CODEGEN`, like the lowering table;
:data:`LAYER_MODULES` says how a layer op becomes an ``nn`` module. When the recorded regions do
not line up with the graph (a pass rewrote it), the model comes out as one flat class.
"""

from __future__ import annotations

import builtins
import keyword
import math
import re
import textwrap
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from nndsl.errors import LoweringError
from nndsl.fsutil import atomic_write_bytes, atomic_write_text
from nndsl.ir.graph import Graph, Node, Value
from nndsl.ir.ops import SIGNATURES
from nndsl.ir.types import SymDim, TensorType

__all__ = ["TORCH_CODEGEN", "LAYER_MODULES", "generate_source", "write_package",
           "weights_bytes"]

TORCH_DTYPES = {"f32": "torch.float32", "f16": "torch.float16", "bf16": "torch.bfloat16",
                "f64": "torch.float64", "i64": "torch.int64", "i32": "torch.int32",
                "i8": "torch.int8", "u8": "torch.uint8", "bool": "torch.bool"}

# Names the generated code itself uses; no variable, argument or symbol may take them.
_HARD_RESERVED = frozenset(keyword.kwlist) | {
    "self", "torch", "nn", "F", "float", "getattr", "super", "isinstance", "type", "ValueError",
    "_SPEC", "_check_params", "_same", "_cli", "_scope"}
_BUILTINS = frozenset(dir(builtins))
_MODULEDICT_ATTRS = frozenset({"keys", "items", "values", "update", "pop", "clear"})


class _Unsupported(Exception):
    """The structured form cannot express this graph; the caller falls back to a flatter one."""


# ============================================================================ source helpers

def py_literal(v) -> str:
    """A Python literal for a compile-time value (numbers, strings, bools, tuples, dtypes)."""
    if v is None or isinstance(v, bool):
        return repr(v)
    if isinstance(v, int):
        return repr(v)
    if isinstance(v, float):
        if math.isnan(v):
            return 'float("nan")'
        if math.isinf(v):
            return 'float("inf")' if v > 0 else 'float("-inf")'
        return repr(v)
    if isinstance(v, str):
        return _str_lit(v)
    if isinstance(v, (tuple, list)):
        items = [py_literal(x) for x in v]
        return f"({items[0]},)" if len(items) == 1 else "(" + ", ".join(items) + ")"
    if type(v).__name__ == "DType" and isinstance(getattr(v, "name", None), str):
        return _str_lit(v.name)
    raise _Unsupported(f"no Python literal for {type(v).__name__}")


def _str_lit(s: str) -> str:
    if s.isprintable() and '"' not in s and "\\" not in s:
        return f'"{s}"'
    return repr(s)


def _collapse(v) -> str:
    """``(3, 3)`` -> ``3``: PyTorch takes one int for a uniform kernel, stride or padding."""
    if isinstance(v, (tuple, list)) and v and all(x == v[0] for x in v) and \
            isinstance(v[0], int) and not isinstance(v[0], bool):
        return str(v[0])
    return py_literal(v)


def _uniform(v, value) -> bool:
    vals = v if isinstance(v, (tuple, list)) else (v,)
    return all(x == value for x in vals)


def _ident(text: str) -> str:
    s = re.sub(r"\W", "_", text)
    if not s or not s.isidentifier():
        s = "v_" + s
        if not s.isidentifier():
            s = "v"
    if s[0].isdigit():
        s = "v_" + s
    return s


def _is_attr_name(key: str) -> bool:
    return key.isidentifier() and not keyword.iskeyword(key)


def camel_case(name: str, fallback: str) -> str:
    parts = [p for p in re.split(r"[^0-9A-Za-z]+", name) if p]
    s = "".join(p[:1].upper() + p[1:] for p in parts)
    if not s or s[0].isdigit():
        s = fallback + s
    if keyword.iskeyword(s) or s in _HARD_RESERVED or s in _BUILTINS:
        s += fallback
    return s


def _shape_text(t: TensorType) -> str:
    dims = [str(d) for d in t.shape]
    body = "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"
    return body if t.dtype == "f32" else f"{body} {t.dtype}"


def _docstring(text: str, indent: str, width: int = 99) -> list[str]:
    text = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    lines = []
    for para in text.split("\n"):
        lines += textwrap.wrap(para, width - len(indent) - 3, break_long_words=False,
                               break_on_hyphens=False) or [""]
    lines = [ln.replace("\xa0", " ") for ln in lines]
    if len(lines) == 1:
        return [f'{indent}"""{lines[0]}"""']
    out = [f'{indent}"""{lines[0]}']
    out += [f"{indent}{ln}" if ln else "" for ln in lines[1:]]
    out.append(f'{indent}"""')
    return out


class _Names:
    """Allocates distinct Python names within one function or signature."""

    def __init__(self, reserved=()):
        self.used: set[str] = set(_HARD_RESERVED) | set(reserved)

    def take(self, want: str, shadow_builtins: bool = False) -> str:
        base = _ident(want)
        if base in _HARD_RESERVED or (not shadow_builtins and base in _BUILTINS):
            base += "_"
        name, i = base, 2
        while name in self.used:
            name = f"{base}_{i}"
            i += 1
        self.used.add(name)
        return name


# ============================================================================ layers as modules

@dataclass(frozen=True)
class LayerForm:
    """How one layer op is written as an ``nn`` module: its constructor and its parameters.

    ``slots`` maps an operand index to ``(leaf name, shape, dtype, trainable)`` of the parameter
    the module owns there; the node's operands must be exactly those parameters.
    """

    ctor: str
    slots: tuple


def _static(shape) -> bool:
    return all(isinstance(d, int) for d in shape)


def _kwargs(pairs) -> str:
    return "".join(f", {k}={v}" for k, v in pairs if v is not None)


def _linear_form(a, ts):
    w = ts[1]
    if w is None or w.rank != 2 or not _static(w.shape):
        return None
    out, fin = w.shape
    slots = [(1, ("weight", (out, fin), "f32", True))]
    if ts[2] is not None:
        slots.append((2, ("bias", (out,), "f32", True)))
    bias = None if ts[2] is not None else "False"
    return LayerForm(f"nn.Linear({fin}, {out}{_kwargs([('bias', bias)])})", tuple(slots))


def _conv_form(nd: int):
    def form(a, ts):
        x, w = ts[0], ts[1]
        if w is None or w.rank != nd + 2 or not _static(w.shape) or x.rank != nd + 2:
            return None
        out, cin_g, *k = w.shape
        groups = a["groups"]
        pad = a["padding"]
        kw = [("kernel_size", _collapse(tuple(k))),
              ("stride", None if _uniform(a["stride"], 1) else _collapse(a["stride"])),
              ("padding", '"same"' if pad == "same" else
               None if _uniform(pad, 0) else _collapse(pad)),
              ("dilation", None if _uniform(a["dilation"], 1) else _collapse(a["dilation"])),
              ("groups", None if groups == 1 else str(groups)),
              ("bias", None if ts[2] is not None else "False")]
        slots = [(1, ("weight", tuple(w.shape), "f32", True))]
        if ts[2] is not None:
            slots.append((2, ("bias", (out,), "f32", True)))
        return LayerForm(f"nn.Conv{nd}d({cin_g * groups}, {out}{_kwargs(kw)})", tuple(slots))
    return form


def _conv_transpose_form(a, ts):
    x, w = ts[0], ts[1]
    if w is None or w.rank != 4 or not _static(w.shape) or x.rank != 4:
        return None
    cin, out_g, *k = w.shape
    groups = a["groups"]
    kw = [("kernel_size", _collapse(tuple(k))),
          ("stride", None if _uniform(a["stride"], 1) else _collapse(a["stride"])),
          ("padding", None if _uniform(a["padding"], 0) else _collapse(a["padding"])),
          ("output_padding", None if _uniform(a["output_padding"], 0)
           else _collapse(a["output_padding"])),
          ("groups", None if groups == 1 else str(groups)),
          ("bias", None if ts[2] is not None else "False"),
          ("dilation", None if _uniform(a["dilation"], 1) else _collapse(a["dilation"]))]
    slots = [(1, ("weight", tuple(w.shape), "f32", True))]
    if ts[2] is not None:
        slots.append((2, ("bias", (out_g * groups,), "f32", True)))
    return LayerForm(f"nn.ConvTranspose2d({cin}, {out_g * groups}{_kwargs(kw)})", tuple(slots))


def _batch_norm_form(a, ts):
    x, w, b, rm = ts[0], ts[1], ts[2], ts[3]
    nd = {2: 1, 3: 1, 4: 2, 5: 3}.get(x.rank)
    if nd is None or rm is None or rm.rank != 1 or (w is None) != (b is None):
        return None
    c = rm.shape[0]
    if not isinstance(c, int) or a["momentum"] is None:
        return None
    kw = [("eps", None if a["eps"] == 1e-5 else py_literal(a["eps"])),
          ("momentum", None if a["momentum"] == 0.1 else py_literal(a["momentum"])),
          ("affine", None if w is not None else "False")]
    slots = []
    if w is not None:
        slots += [(1, ("weight", (c,), "f32", True)), (2, ("bias", (c,), "f32", True))]
    slots += [(3, ("running_mean", (c,), "f32", False)), (4, ("running_var", (c,), "f32", False)),
              (5, ("num_batches_tracked", (), "i64", False))]
    return LayerForm(f"nn.BatchNorm{nd}d({c}{_kwargs(kw)})", tuple(slots))


def _layer_norm_form(a, ts):
    w, b = ts[1], ts[2]
    shape = tuple(a["normalized_shape"])
    if not shape or not _static(shape) or (w is None and b is not None):
        return None
    kw = [("eps", None if a["eps"] == 1e-5 else py_literal(a["eps"])),
          ("elementwise_affine", None if w is not None else "False"),
          ("bias", "False" if w is not None and b is None else None)]
    slots = []
    if w is not None:
        slots.append((1, ("weight", shape, "f32", True)))
    if b is not None:
        slots.append((2, ("bias", shape, "f32", True)))
    size = str(shape[0]) if len(shape) == 1 else py_literal(shape)
    return LayerForm(f"nn.LayerNorm({size}{_kwargs(kw)})", tuple(slots))


def _group_norm_form(a, ts):
    x, w, b = ts[0], ts[1], ts[2]
    if x.rank < 2 or not isinstance(x.shape[1], int) or (w is None) != (b is None):
        return None
    c = x.shape[1]
    kw = [("eps", None if a["eps"] == 1e-5 else py_literal(a["eps"])),
          ("affine", None if w is not None else "False")]
    slots = []
    if w is not None:
        slots = [(1, ("weight", (c,), "f32", True)), (2, ("bias", (c,), "f32", True))]
    return LayerForm(f"nn.GroupNorm({a['groups']}, {c}{_kwargs(kw)})", tuple(slots))


def _embedding_form(a, ts):
    w = ts[1]
    if w is None or w.rank != 2 or not _static(w.shape):
        return None
    num, dim = w.shape
    pad = a["padding_idx"]
    kw = [("padding_idx", None if pad is None else str(pad))]
    return LayerForm(f"nn.Embedding({num}, {dim}{_kwargs(kw)})",
                     ((1, ("weight", (num, dim), "f32", True)),))


def _recurrent_form(kind: str):
    gates = {"lstm": 4, "gru": 3, "rnn": 1}[kind]
    first = 3 if kind == "lstm" else 2

    def form(a, ts):
        x = ts[0]
        if x.rank != 3 or not isinstance(x.shape[2], int) or not a["batch_first"]:
            return None
        if kind == "rnn" and a["nonlinearity"] not in ("tanh", "relu"):
            return None
        h, layers = a["hidden"], a["layers"]
        dirs = 2 if a["bidirectional"] else 1
        slots, i = [], first
        for layer in range(layers):
            fin = x.shape[2] if layer == 0 else dirs * h
            for d in range(dirs):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                leaves = [(f"weight_ih{sfx}", (gates * h, fin)),
                          (f"weight_hh{sfx}", (gates * h, h))]
                if a["bias"]:
                    leaves += [(f"bias_ih{sfx}", (gates * h,)), (f"bias_hh{sfx}", (gates * h,))]
                for leaf, shape in leaves:
                    slots.append((i, (leaf, shape, "f32", True)))
                    i += 1
        if len(ts) != i:
            return None
        kw = [("num_layers", None if layers == 1 else str(layers)),
              ("bias", None if a["bias"] else "False"), ("batch_first", "True"),
              ("dropout", None if a["dropout"] == 0 else py_literal(a["dropout"])),
              ("bidirectional", "True" if a["bidirectional"] else None)]
        if kind == "rnn" and a["nonlinearity"] != "tanh":
            kw.append(("nonlinearity", py_literal(a["nonlinearity"])))
        return LayerForm(f"nn.{kind.upper()}({x.shape[2]}, {h}{_kwargs(kw)})", tuple(slots))
    return form


# op name -> fn(attrs, operand types) -> LayerForm | None (None: write it functionally).
LAYER_MODULES: dict[str, Callable] = {
    "linear": _linear_form,
    "conv1d": _conv_form(1), "conv2d": _conv_form(2), "conv3d": _conv_form(3),
    "conv_transpose2d": _conv_transpose_form,
    "batch_norm": _batch_norm_form,
    "layer_norm": _layer_norm_form,
    "group_norm": _group_norm_form,
    "embedding": _embedding_form,
    "lstm": _recurrent_form("lstm"), "gru": _recurrent_form("gru"), "rnn": _recurrent_form("rnn"),
}


@dataclass
class _Layer:
    qual: str
    op: str
    ctor: str
    leaves: tuple
    apps: set = field(default_factory=set)


def _find_layers(graph: Graph, order: list) -> dict:
    """Layers written as ``nn`` modules: those whose every parameter is where the module has it."""
    kinds = graph.meta.get("layers") or {}
    param_names = sorted(n.name for n in order if n.op == "param")
    found: dict[str, _Layer] = {}
    bad: set[str] = set()
    for node in order:
        make = LAYER_MODULES.get(node.op)
        if make is None:
            continue
        types = [graph.type_of(v) if v is not None else None for v in node.inputs]
        form = make({**SIGNATURES[node.op].attrs, **node.attr}, types)
        if form is None:
            continue
        quals, ok = set(), True
        for i, (leaf, shape, dtype, trainable) in form.slots:
            v = node.inputs[i] if i < len(node.inputs) else None
            p = graph.node(v.node) if v is not None else None
            if p is None or p.op != "param" or not p.name.endswith("." + leaf) or \
                    tuple(p.type.shape) != tuple(shape) or p.type.dtype != dtype or \
                    bool(p.attr.get("trainable", True)) != trainable:
                ok = False
                break
            quals.add(p.name[:-len(leaf) - 1])
        slot_ids = {i for i, _ in form.slots}
        weights = [i for i, v in enumerate(node.inputs) if i not in slot_ids and v is not None
                   and graph.node(v.node).op == "param"
                   and graph.node(v.node).name.startswith(tuple(q + "." for q in quals))]
        if not ok or len(quals) != 1 or weights:
            continue
        qual = quals.pop()
        meta = kinds.get(qual)
        if not isinstance(meta, dict) or meta.get("kind") != node.op:
            continue
        leaves = tuple(leaf for _, (leaf, *_rest) in form.slots)
        layer = found.get(qual)
        if layer is None:
            found[qual] = _Layer(qual, node.op, form.ctor, leaves, {node.name})
        elif (layer.op, layer.ctor, layer.leaves) != (node.op, form.ctor, leaves):
            bad.add(qual)
        else:
            layer.apps.add(node.name)
    for qual, layer in found.items():
        lo = bisect_left(param_names, qual + ".")
        under = []
        while lo < len(param_names) and param_names[lo].startswith(qual + "."):
            under.append(param_names[lo])
            lo += 1
        if sorted(under) != sorted(f"{qual}.{leaf}" for leaf in layer.leaves):
            bad.add(qual)
    return {q: lay for q, lay in found.items() if q not in bad}


# ============================================================================ per-op source

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
    """What an op's entry sees: operand expressions and types, attributes, helpers."""

    def __init__(self, fn: "_Function", node: Node, module: str | None):
        self.fn = fn
        self.node = node
        self.a = {**SIGNATURES[node.op].attrs, **node.attr}
        self.module = module
        self._args = [fn.expr(v) if v is not None else None for v in node.inputs]

    def x(self, i: int = 0) -> str:
        return "None" if self._args[i] is None else self._args[i]

    def has(self, i: int) -> bool:
        return i < len(self._args) and self._args[i] is not None

    def xs(self, start: int = 0) -> list[str]:
        return [self.x(i) for i in range(start, len(self._args))]

    def const(self, i: int) -> bool:
        v = self.node.inputs[i]
        return v is not None and self.fn.is_const(v)

    def t(self, i: int = 0) -> TensorType:
        return self.fn.gen.graph.type_of(self.node.inputs[i])

    def dim(self, d) -> str:
        return self.fn.dim(d)

    def dims(self, ds) -> str:
        """Dims as call arguments: ``N, T, 8``; ``()`` for none."""
        return ", ".join(self.dim(d) for d in ds) if ds else "()"

    def shape(self, ds) -> str:
        """Dims as a tuple literal."""
        items = [self.dim(d) for d in ds]
        return f"({items[0]},)" if len(items) == 1 else "(" + ", ".join(items) + ")"

    @property
    def device(self) -> str:
        return self.fn.device()

    @property
    def rank(self) -> int:
        return self.t(0).rank


def _call(fn: str, *args, **kw) -> str:
    parts = [a for a in args if a is not None]
    parts += [f"{k}={v}" for k, v in kw.items() if v is not None]
    return f"{fn}({', '.join(parts)})"


def _unary(fn: str):
    return lambda e: f"{fn}({e.x(0)})"


def _binop(symbol: str):
    return lambda e: f"{e.x(0)} {symbol} {e.x(1)}"


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


_ACT_SOURCE = {"relu": "F.relu", "sigmoid": "torch.sigmoid", "tanh": "torch.tanh",
               "silu": "F.silu", "gelu": "F.gelu"}


def _with_act(emit):
    """An epilogue activation fused into the layer (``act``) is applied to its result."""
    def wrapped(e):
        act = e.a.get("act")
        expr = emit(e)
        return expr if act is None else f"{_ACT_SOURCE[act]}({expr})"
    return wrapped


def _attention(e):
    a = e.a
    return _call("F.scaled_dot_product_attention", e.x(0), e.x(1), e.x(2),
                 attn_mask=e.x(3) if e.has(3) else None,
                 dropout_p=f"{py_literal(a['dropout'])} if self.training else 0.0"
                 if a["dropout"] else None,
                 is_causal="True" if a["causal"] else None,
                 scale=None if a["scale"] is None else py_literal(a["scale"]))


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


# op name -> fn(OpSource) -> expression source | Emitted. Every op of SIGNATURES but the graph's
# sources (input, param) is here; a test keeps the table in step with the signatures.
TORCH_CODEGEN: dict[str, Callable] = {
    "scalar": _scalar,  # written inline where it is used
    "full": _full,
    "arange": _arange,
    "relu": _unary("F.relu"), "sigmoid": _unary("torch.sigmoid"), "tanh": _unary("torch.tanh"),
    "silu": _unary("F.silu"), "selu": _unary("F.selu"), "exp": _unary("torch.exp"),
    "log": _unary("torch.log"), "sqrt": _unary("torch.sqrt"), "rsqrt": _unary("torch.rsqrt"),
    "abs": _unary("torch.abs"), "neg": lambda e: f"-{e.x(0)}", "erf": _unary("torch.erf"),
    "sin": _unary("torch.sin"), "cos": _unary("torch.cos"),
    "logical_not": _unary("torch.logical_not"),
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
    "add": _binop("+"), "sub": _binop("-"), "mul": _binop("*"), "div": _binop("/"),
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
    "conv1d": _with_act(_conv(1)), "conv2d": _with_act(_conv(2)),
    "conv3d": _with_act(_conv(3)), "conv_transpose2d": _with_act(_conv_transpose),
    "attention": _attention,
    "memory_format": lambda e: f"{e.x(0)}.contiguous(memory_format="
                               f"{'torch.channels_last' if e.a['format'] == 'channels_last' else 'torch.contiguous_format'})",
    "max_pool1d": _max_pool(1), "max_pool2d": _max_pool(2),
    "avg_pool1d": _avg_pool(1), "avg_pool2d": _avg_pool(2),
    "adaptive_avg_pool1d": _adaptive(1), "adaptive_avg_pool2d": _adaptive(2),
    "batch_norm": _batch_norm,
    "layer_norm": _layer_norm,
    "group_norm": _group_norm,
    "embedding": _embedding,
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
    "sum": _reduce("torch.sum"), "mean": _reduce("torch.mean"), "max": _reduce("torch.amax"),
    "min": _reduce("torch.amin"), "prod": _prod,
    "softmax": _softmax("F.softmax"), "log_softmax": _softmax("F.log_softmax"),
}

# Names for the outputs of multi-output ops, as suffixes of the node's name.
_OUTPUT_SUFFIXES = {"lstm": ("", "_h", "_c"), "gru": ("", "_h"), "rnn": ("", "_h")}


# ============================================================================ regions

@dataclass(eq=False)
class _Region:
    idx: int
    qual: str
    block: str
    params: dict
    start: int
    end: int
    inputs: list
    input_names: list
    outputs: list
    tuple: bool
    parent: "_Region | None" = None
    valid: bool = True
    names_from: dict = field(default_factory=dict)  # node index -> index to take its name from

    def has_index(self, i: int) -> bool:
        return self.start <= i < self.end

    def owns_path(self, path: str) -> bool:
        return path.startswith(self.qual + ".")


def _contains(p: _Region, r: _Region) -> bool:
    """Whether region ``r`` is nested inside region ``p``."""
    if not (p.start <= r.start and r.end <= p.end):
        return False
    prefixed = r.qual.startswith(p.qual + ".")
    if (p.start, p.end) == (r.start, r.end):
        return prefixed if p.start == p.end else p.idx > r.idx
    if r.start == r.end and r.start in (p.start, p.end):
        return prefixed
    return True


def _parse_regions(graph: Graph, order: list, pos: dict) -> list | None:
    """The recorded regions, nested; ``None`` when they do not line up with the graph."""
    raw = graph.meta.get("regions") or []
    n = len(order)
    out: list[_Region] = []
    try:
        for i, r in enumerate(raw):
            reg = _Region(i, r["qualname"], r["block"], dict(r["params"]), r["start"], r["end"],
                          list(r["inputs"]), list(r["input_names"]), list(r["outputs"]),
                          bool(r["tuple"]))
            if not isinstance(reg.qual, str) or not reg.qual or not isinstance(reg.block, str):
                return None
            if type(reg.start) is not int or type(reg.end) is not int or \
                    not 0 <= reg.start <= reg.end <= n:
                return None
            if len(reg.inputs) != len(reg.input_names) or not reg.outputs or \
                    not all(isinstance(s, str) for s in reg.input_names):
                return None
            for v in reg.inputs + reg.outputs:
                if not isinstance(v, Value) or v.node not in pos or \
                        v.index >= len(graph.node(v.node).types):
                    return None
            if any(pos[v.node] >= reg.start for v in reg.inputs) or \
                    any(pos[v.node] >= reg.end for v in reg.outputs):
                return None
            out.append(reg)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    for r in out:
        for p in out:
            if p is r or not _contains(p, r):
                continue
            if r.parent is None or (p.end - p.start, p.idx) < \
                    (r.parent.end - r.parent.start, r.parent.idx):
                r.parent = p
    for a in out:
        for b in out:
            nested = a.start <= b.start and b.end <= a.end or b.start <= a.start and a.end <= b.end
            if a.idx < b.idx and a.start < b.end and b.start < a.end and not nested:
                return None
    # Every node that is not a parameter must lie in the scope of its innermost region.
    inner = _innermost(out, n)
    for i, node in enumerate(order):
        r = inner[i]
        if r is not None and node.op != "param" and not (
                node.scope == r.qual or node.scope.startswith(r.qual + ".")):
            return None
    _link_applications(out, order)
    return out


def _innermost(regions: list, n: int) -> list:
    """For each node index, the innermost region that holds it (or ``None``)."""
    depth = {}
    for r in regions:
        d, p = 0, r.parent
        while p is not None:
            d, p = d + 1, p.parent
        depth[r.idx] = d
    inner: list = [None] * n
    for r in sorted(regions, key=lambda r: (depth[r.idx], r.idx)):
        for i in range(r.start, r.end):
            inner[i] = r
    return inner


def _link_applications(regions: list, order: list) -> None:
    """Applications of one block instance read alike: name their values after the first's.

    (The graph gives the second application's nodes fresh names, ``proj_1`` for ``proj``.)
    """
    first: dict[str, _Region] = {}
    for r in regions:
        c = first.setdefault(r.qual, r)
        if c is r:
            continue
        mine = [j for j in range(r.start, r.end) if order[j].op != "param"]
        theirs = [j for j in range(c.start, c.end) if order[j].op != "param"]
        if [order[j].op for j in mine] == [order[j].op for j in theirs]:
            r.names_from = dict(zip(mine, theirs))


def _validate(graph: Graph, order: list, pos: dict, regions: list) -> None:
    """Dissolve the regions that cannot be a self-contained module into their parents."""
    if not regions:
        return
    n = len(order)
    inner = _innermost(regions, n)
    outs = {r.idx: set(r.outputs) for r in regions}
    ins = {r.idx: set(r.inputs) for r in regions}

    def escapes(v: Value, j: int) -> None:
        r = inner[pos[v.node]]
        while r is not None and not r.has_index(j):
            if v not in outs[r.idx]:
                r.valid = False
            r = r.parent

    for j, node in enumerate(order):
        for v in node.inputs:
            if v is not None and order[pos[v.node]].op != "param":
                escapes(v, j)
    for _, v in graph.outputs:
        if graph.node(v.node).op != "param":
            escapes(v, n)
    for r in regions:
        for j in range(r.start, r.end):
            for v in order[j].inputs:
                if v is None or v in ins[r.idx]:
                    continue
                p = graph.node(v.node)
                if p.op == "param" and not r.owns_path(p.name) or \
                        p.op != "param" and not r.has_index(pos[v.node]):
                    r.valid = False
        for v in r.outputs:
            p = graph.node(v.node)
            if not (r.has_index(pos[v.node]) and p.op != "param" or v in ins[r.idx] or
                    p.op == "param" and r.owns_path(p.name)):
                r.valid = False
    _settle(regions)


def _effective_parent(r: _Region) -> _Region | None:
    p = r.parent
    while p is not None and not p.valid:
        p = p.parent
    return p


def _settle(regions: list) -> None:
    """A region whose nested block is not in its scope cannot hold it: dissolve it too."""
    changed = True
    while changed:
        changed = False
        bad_quals = {r.qual for r in regions if not r.valid}
        for r in regions:
            if r.valid and r.qual in bad_quals:
                r.valid, changed = False, True
        for r in regions:
            if not r.valid:
                continue
            p = _effective_parent(r)
            if p is not None and p.valid and not p.owns_path(r.qual):
                p.valid, changed = False, True


# ============================================================================ module tree

class _TNode:
    """One attribute path of the generated module tree."""

    __slots__ = ("kind", "key", "children", "order", "info", "style")

    def __init__(self, kind: str, key: str, order: int, info=None):
        self.kind = kind  # root | class | container | layer | param | lparam
        self.key = key
        self.children: dict[str, _TNode] = {}
        self.order = order
        self.info = info
        self.style = "attr"  # how children are reached: attr | list | dict


def _build_tree(graph: Graph, order: list, pos: dict, regions: list, layers: dict) -> _TNode:
    root = _TNode("root", "", -1)

    def insert(path: str, kind: str, at: int, info=None) -> _TNode:
        parts = path.split(".")
        cur = root
        for k in parts[:-1]:
            nxt = cur.children.get(k)
            if nxt is None:
                nxt = cur.children[k] = _TNode("container", k, at)
            elif nxt.kind not in ("container", "class"):
                raise _Unsupported(f"`{path}` lies inside the {nxt.kind} `{k}`")
            nxt.order = min(nxt.order, at)
            cur = nxt
        leaf = parts[-1]
        node = cur.children.get(leaf)
        if node is None:
            node = cur.children[leaf] = _TNode(kind, leaf, at, info)
        elif kind == "class" and node.kind in ("container", "class"):
            node.kind = "class"
            node.order = min(node.order, at)
            node.info = node.info or info
        else:
            raise _Unsupported(f"`{path}` names two things")
        return node

    for r in regions:
        if r.valid:
            insert(r.qual, "class", r.start, r)
    absorbed = {}
    for qual, layer in layers.items():
        names = [f"{qual}.{leaf}" for leaf in layer.leaves]
        at = min(pos[n] for n in names) if names else min(pos[a] for a in layer.apps)
        node = insert(qual, "layer", at, layer)
        if node.children:
            raise _Unsupported(f"layer `{qual}` has nested scopes")
        for leaf, name in zip(layer.leaves, names):
            node.children[leaf] = _TNode("lparam", leaf, pos[name], graph.node(name))
            absorbed[name] = True
    for node in order:
        if node.op == "param" and node.name not in absorbed:
            insert(node.name, "param", pos[node.name], node)

    def style(t: _TNode) -> None:
        for c in t.children.values():
            style(c)
        if t.kind != "container":
            return
        keys = list(t.children)
        modules_only = all(c.kind in ("container", "class", "layer") for c in t.children.values())
        if modules_only and sorted(keys, key=lambda k: (len(k), k)) == \
                [str(i) for i in range(len(keys))]:
            t.style = "list"
        elif modules_only and not any(k in _MODULEDICT_ATTRS for k in keys):
            t.style = "dict"
        else:
            t.style = "attr"
    style(root)
    return root


def _children(t: _TNode) -> list:
    if t.style == "list":
        return sorted(t.children.items(), key=lambda kv: int(kv[0]))
    return sorted(t.children.items(), key=lambda kv: (kv[1].order, kv[0]))


def _step(expr: str, parent: _TNode, key: str) -> str:
    if parent.style == "list":
        return f"{expr}[{int(key)}]"
    if parent.style == "dict":
        return f"{expr}[{_str_lit(key)}]"
    return f"{expr}.{key}" if _is_attr_name(key) else f"getattr({expr}, {_str_lit(key)})"


# ============================================================================ functions

class _Function:
    """The body of one ``forward``: values to expressions, symbol binding, lines."""

    def __init__(self, gen: "_Generator", cls: _TNode, prefix: str, region: _Region | None):
        self.gen = gen
        self.cls = cls
        self.prefix = prefix
        self.region = region
        self.names = _Names(gen.class_names)
        for s in gen.symbols:
            self.names.used.add(s)
        self.vals: dict[Value, str] = {}
        self.consts: set[Value] = set()
        self.sites: list[tuple[str, TensorType]] = []  # tensors whose dims can bind symbols
        self.args: list[str] = []
        self.sym_names: dict[str, str] = {}
        self.bound: set[str] = set()
        self.top_bindings: list[tuple[str, str]] = []
        self.extra: list[tuple[str, str]] = []  # (symbol, keyword) a caller must pass
        self.pending: list[str] = []
        self.lines: list[str] = []
        self.preferred: dict[Value, str] = {}

    # ---- names and values ----
    def add_arg(self, want: str, v: Value | None, t: TensorType | None) -> str:
        name = self.names.take(want, shadow_builtins=True)
        self.args.append(name)
        if v is not None and v not in self.vals:
            self.vals[v] = name
        if t is not None:
            self.sites.append((name, t))
        return name

    def is_const(self, v: Value) -> bool:
        return v in self.consts

    def expr(self, v: Value) -> str:
        if v in self.vals:
            return self.vals[v]
        p = self.gen.graph.node(v.node)
        if p.op == "param":
            return self.access(p.name)
        raise _Unsupported(f"value {v} is not available in `{self.prefix or 'the model'}`")

    def access(self, path: str) -> str:
        if self.prefix:
            if not path.startswith(self.prefix + "."):
                raise _Unsupported(f"`{path}` is outside `{self.prefix}`")
            path = path[len(self.prefix) + 1:]
        expr, t = "self", self.cls
        for k in path.split("."):
            child = t.children.get(k)
            if child is None:
                raise _Unsupported(f"no module path `{path}`")
            expr, t = _step(expr, t, k), child
        return expr

    def local_name(self, name: str) -> str:
        if self.prefix and name.startswith(self.prefix + "."):
            return name[len(self.prefix) + 1:]
        return name

    def new_var(self, v: Value, base: str) -> str:
        name = self.names.take(self.preferred.get(v, base))
        self.vals[v] = name
        return name

    # ---- symbolic dims ----
    def sym(self, s: str) -> str:
        if s not in self.sym_names:
            ok = _is_attr_name(s) and s not in _HARD_RESERVED and s not in self.args
            self.sym_names[s] = s if ok else self.names.take(s + "_dim")
        return self.sym_names[s]

    def dim(self, d) -> str:
        if isinstance(d, bool) or not isinstance(d, (int, SymDim)):
            return py_literal(d)
        if isinstance(d, int):
            return str(d)
        text = str(d)
        for s in sorted(d.symbols()):
            if s not in self.bound and s not in self.pending:
                self.pending.append(s)
            if self.sym(s) != s:
                text = re.sub(rf"\b{re.escape(s)}\b", self.sym(s), text)
        return text

    def _site(self, s: str):
        target = SymDim.symbol(s)
        for i, (expr, t) in enumerate(self.sites):
            for ax, d in enumerate(t.shape):
                if isinstance(d, SymDim) and d == target:
                    return i, expr, ax
        return None

    def flush(self) -> list[str]:
        """Bind the symbols the next line needs: from the inputs at the top, else from the
        first value that has the dim, else (in a block) from the caller."""
        inline = []
        for s in self.pending:
            self.bound.add(s)
            site = self._site(s)
            if site is None:
                if self.region is None:
                    raise _Unsupported(f"no input has the dim `{s}`")
                self.extra.append((s, self.sym(s)))
            elif site[0] < len(self.args):
                self.top_bindings.append((self.sym(s), f"{site[1]}.shape[{site[2]}]"))
            else:
                inline.append((self.sym(s), f"{site[1]}.shape[{site[2]}]"))
        self.pending = []
        if not inline:
            return []
        return [", ".join(n for n, _ in inline) + " = " + ", ".join(e for _, e in inline)]

    def device(self) -> str | None:
        for expr, _ in self.sites[:len(self.args)]:
            return f"{expr}.device"
        return None

    # ---- lines ----
    def emit_node(self, node: Node, name_source: Node) -> None:
        if node.op in ("param", "input"):
            if node.op == "input" and Value(node.name) not in self.vals:
                raise _Unsupported(f"input `{node.name}` inside a block")
            return
        entry = TORCH_CODEGEN.get(node.op)
        if entry is None:
            raise LoweringError(f"op `{node.op}` has no PyTorch source form", span=node.span,
                                code="E0910")
        if node.op == "scalar":  # a Python number, written where it is used
            v = node.out()
            text = entry(OpSource(self, node, None))
            self.vals[v] = f"({text})" if text.startswith("-") else text
            self.consts.add(v)
            return
        layer = self.gen.layer_apps.get(node.name)
        module = self.access(layer) if layer is not None else None
        res = entry(OpSource(self, node, module))
        res = res if isinstance(res, Emitted) else Emitted(res)
        base = _ident(self.local_name(name_source.name).replace(".", "_"))
        suffixes = _OUTPUT_SUFFIXES.get(node.op) or [f"_{i}" for i in range(len(node.types))]
        if len(node.types) == 1 and node.op not in _OUTPUT_SUFFIXES:
            suffixes = [""]
        targets = [self.new_var(node.out(i), base + suffixes[i]) for i in range(len(node.types))]
        pattern = res.pattern or ", ".join("{%d}" % i for i in range(len(targets)))
        lhs = pattern.format(*targets)
        lines = self.flush() + list(res.pre)
        lines.append(f"{lhs} = {res.expr}  # {', '.join(_shape_text(t) for t in node.types)}")
        self.lines += lines
        for i, t in enumerate(node.types):
            self.sites.append((targets[i], t))

    def emit_call(self, child: _Region) -> None:
        args = [self.expr(v) for v in child.inputs]
        info = self.gen.class_info[child.qual]
        for s, kw in info["extra"]:
            self.dim(SymDim.symbol(s))
            args.append(f"{kw}={self.sym(s)}")
        call = f"{self.access(child.qual)}({', '.join(args)})"
        base = _ident(self.local_name(child.qual).replace(".", "_"))
        outs = child.outputs
        names = [base] if len(outs) == 1 else [f"{base}_{i}" for i in range(len(outs))]
        targets = [self.names.take(want if v in self.vals else self.preferred.get(v, want))
                   for v, want in zip(outs, names)]
        for v, name in zip(outs, targets):
            self.vals[v] = name
        lhs = ", ".join(targets)
        if child.tuple and len(targets) == 1:
            lhs = f"({lhs},)"
        types = [self.gen.graph.type_of(v) for v in outs]
        self.lines += self.flush()
        self.lines.append(f"{lhs} = {call}  # {', '.join(_shape_text(t) for t in types)}")
        for name, t in zip(targets, types):
            self.sites.append((name, t))

    def head(self) -> list[str]:
        if not self.top_bindings:
            return []
        return [", ".join(n for n, _ in self.top_bindings) + " = " +
                ", ".join(e for _, e in self.top_bindings)]


# ============================================================================ the generator

_HELPERS = '''
def _same(a, b):
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


def _cli(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_cli(v) for v in value) + "]"
    return str(value)


def _check_params(module, given, compiled, block=None):
    """This code is specialized to the parameter values it was generated for: refuse others."""
    for name, value in given.items():
        if _same(value, compiled[name]):
            continue
        if block is None:
            how = (f"compile the spec again with that value: "
                   f"nndsl compile {_SPEC} --to torch --param {name}={_cli(value)}")
        else:
            how = (f"the parameters of block `{block}` follow from the model's, so compile "
                   f"the spec again with other model parameters: "
                   f"nndsl compile {_SPEC} --to torch --param NAME=VALUE")
        raise ValueError(
            f"{type(module).__name__} was generated for {name}={compiled[name]!r} and only "
            f"supports that value, not {name}={value!r}; {how}")
'''

_SCOPE_HELPER = '''

def _scope(members):
    """A module that only holds parameters, buffers and modules of one scope of the spec."""
    scope = nn.Module()
    for name, member in members.items():
        if isinstance(member, nn.Parameter):
            scope.register_parameter(name, member)
        elif isinstance(member, torch.Tensor):
            scope.register_buffer(name, member)
        else:
            scope.add_module(name, member)
    return scope
'''


def _init_expr(node: Node) -> str:
    """A tensor expression for a parameter's initial value, after its ``init`` attribute."""
    a = node.attr
    shape = tuple(node.type.shape)
    sh = ", ".join(str(d) for d in shape) if shape else "()"
    dt = "" if a.get("dtype", "f32") == "f32" else f", dtype={TORCH_DTYPES[a['dtype']]}"
    init = tuple(a.get("init") or ("zeros",))
    kind, args = init[0], [float(v) for v in init[1:]]
    empty = f"torch.empty({sh}{dt})"
    if kind == "ones":
        return f"torch.ones({sh}{dt})"
    if kind == "constant" and args:
        return f"torch.full({py_literal(shape)}, {py_literal(args[0])}{dt})"
    if kind == "uniform" and args:
        low, high = (-args[0], args[0]) if len(args) == 1 else args[:2]
        return f"{empty}.uniform_({py_literal(low)}, {py_literal(high)})"
    if kind in ("normal", "normal_pad") and len(args) >= 2:
        expr = f"{empty}.normal_({py_literal(args[0])}, {py_literal(args[1])})"
        if kind == "normal_pad" and len(args) >= 3:
            expr += f".index_fill_(0, torch.tensor([{int(args[2])}]), 0.0)"
        return expr
    if kind == "trunc_normal" and len(args) >= 2:
        mean, std = args[:2]
        return (f"nn.init.trunc_normal_({empty}, {py_literal(mean)}, {py_literal(std)}, "
                f"{py_literal(mean - 2 * std)}, {py_literal(mean + 2 * std)})")
    return f"torch.zeros({sh}{dt})"


class _Generator:
    def __init__(self, graph: Graph, regions: list, layers: dict, spec: str):
        self.graph = graph
        self.order = list(graph)
        self.pos = {n.name: i for i, n in enumerate(self.order)}
        self.regions = regions
        self.layers = layers
        self.spec = spec
        self.layer_apps = {a: q for q, lay in layers.items() for a in lay.apps}
        self.model_class = camel_case(graph.name, "Model")
        self.symbols: list[str] = []
        for name in graph.inputs:
            for d in graph.node(name).type.shape:
                if isinstance(d, SymDim):
                    for s in sorted(d.symbols()):
                        if s not in self.symbols:
                            self.symbols.append(s)
        self.class_names: set[str] = {self.model_class}
        self.class_info: dict[str, dict] = {}
        self.block_sources: list[str] = []
        self.calls: dict = {}  # region idx (None: the model) -> the block calls in its forward
        self.uses_scope = False

    # ---- whole file ----
    def source(self) -> str:
        while True:
            _settle(self.regions)
            tree = _build_tree(self.graph, self.order, self.pos, self.regions, self.layers)
            self.calls = {}
            for r in self.regions:
                if r.valid:
                    p = _effective_parent(r)
                    self.calls.setdefault(None if p is None else p.idx, []).append(r)
            if not self._classes(tree):
                break
        model = self._model_class(tree)
        return self._file(model)

    def _classes(self, tree: _TNode) -> bool:
        """Generate the block classes bottom-up; ``True`` when a region had to be dissolved."""
        self.class_names = {self.model_class}
        self.class_info = {}
        self.block_sources = []
        self.uses_scope = False
        by_text: dict[tuple, str] = {}
        counts: dict[str, int] = {}
        for r in self.regions:
            if not r.valid:
                continue
            cnode = self._class_node(tree, r.qual)
            try:
                body, extra = self._block_body(r, cnode)
            except _Unsupported:
                self._dissolve(r)
                return True
            seen = self.class_info.get(r.qual)
            if seen is not None:
                if seen["body"] != body:
                    self._dissolve(r)
                    return True
                continue
            key = (r.block, body)
            name = by_text.get(key)
            if name is None:
                base = camel_case(r.block, "Block")
                k = counts.get(base, 0) + 1
                name = base if k == 1 else f"{base}{k}"
                while name in self.class_names:
                    k += 1
                    name = f"{base}{k}"
                counts[base] = k
                self.class_names.add(name)
                by_text[key] = name
                self.block_sources.append(f"class {name}(nn.Module):\n{body}")
            self.class_info[r.qual] = {"name": name, "body": body, "extra": extra, "region": r}
        return False

    def _dissolve(self, r: _Region) -> None:
        for other in self.regions:
            if other.qual == r.qual:
                other.valid = False

    @staticmethod
    def _class_node(tree: _TNode, qual: str) -> _TNode:
        t = tree
        for k in qual.split("."):
            t = t.children[k]
        return t

    # ---- one class ----
    def _ctor(self, params: dict, block: str | None) -> tuple[str, list[str]]:
        """The constructor's signature and the line that checks its arguments."""
        names = _Names()
        sig, given, compiled = [], [], []
        for k, v in params.items():
            try:
                lit = py_literal(v)
            except _Unsupported:
                continue
            if not isinstance(k, str):
                continue
            arg = names.take(k, shadow_builtins=True)
            sig.append(f"{arg}={lit}")
            given.append(f"{_str_lit(k)}: {arg}")
            compiled.append(f"{_str_lit(k)}: {lit}")
        if not sig:
            return "self", []
        tail = "" if block is None else f", block={_str_lit(block)}"
        one = f"_check_params(self, {{{', '.join(given)}}}, {{{', '.join(compiled)}}}{tail})"
        if len(one) <= 91:
            check = [one]
        else:
            check = ["_check_params(", "    self,", f"    {{{', '.join(given)}}},",
                     f"    {{{', '.join(compiled)}}},"]
            if block is not None:
                check.append(f"    block={_str_lit(block)},")
            check.append(")")
        return "self, " + ", ".join(sig), check

    def _init(self, cnode: _TNode, params: dict, block: str | None) -> list[str]:
        sig, check = self._ctor(params, block)
        lines = [f"    def __init__({sig}):", "        super().__init__()"]
        lines += ["        " + ln for ln in check]
        for key, child in _children(cnode):
            lines += self._member_lines(key, child)
        return lines

    def _member_lines(self, key: str, child: _TNode) -> list[str]:
        ind = "        "
        if child.kind == "param":
            init = _init_expr(child.info)
            if not child.info.attr.get("trainable", True):
                return [f"{ind}self.register_buffer({_str_lit(key)}, {init})"]
            if _is_attr_name(key):
                return [f"{ind}self.{key} = nn.Parameter({init})"]
            return [f"{ind}self.register_parameter({_str_lit(key)}, nn.Parameter({init}))"]
        expr = self._member_expr(child, ind)
        if _is_attr_name(key):
            return [f"{ind}self.{key} = {expr}"]
        return [f"{ind}self.add_module({_str_lit(key)}, {expr})"]

    def _member_expr(self, t: _TNode, ind: str) -> str:
        if t.kind == "layer":
            return t.info.ctor
        if t.kind == "class":
            info = self.class_info.get(t.info.qual if t.info else None)
            if info is None:
                raise _Unsupported(f"no class for `{t.key}`")
            r = info["region"]
            args = []
            names = _Names()
            for k, v in r.params.items():
                try:
                    lit = py_literal(v)
                except _Unsupported:
                    continue
                args.append(f"{names.take(k, shadow_builtins=True)}={lit}")
            return f"{info['name']}({', '.join(args)})"
        if t.kind == "param":
            init = _init_expr(t.info)
            return f"nn.Parameter({init})" if t.info.attr.get("trainable", True) else init
        inner = ind + "    "
        items = []
        for key, child in _children(t):
            expr = self._member_expr(child, inner)
            items.append(expr if t.style == "list" else f"{_str_lit(key)}: {expr}")
        if t.style == "list":
            opening, closing = "nn.ModuleList([", "])"
        elif t.style == "dict":
            opening, closing = "nn.ModuleDict({", "})"
        else:
            self.uses_scope = True
            opening, closing = "_scope({", "})"
        flat = opening + ", ".join(items) + closing
        if "\n" not in flat and len(ind) + len(flat) <= 92:
            return flat
        return opening + "\n" + "".join(f"{inner}{it},\n" for it in items) + ind + closing

    def _forward(self, fn: _Function, items: list, outputs: list, tuple_out: bool,
                 doc: str | None = None, pre: list | None = None) -> list[str]:
        for item in items:
            if isinstance(item, _Region):
                fn.emit_call(item)
            else:
                node, source = item
                fn.emit_node(node, source)
        rets = [fn.expr(v) for v in outputs]
        ret = ", ".join(rets)
        if tuple_out and len(rets) == 1:
            ret = f"({ret},)"
        fn.flush()
        args = list(fn.args)
        if fn.extra:
            args += ["*"] + [kw for _, kw in sorted(fn.extra)]
        lines = [f"    def forward({', '.join(['self'] + args)}):"]
        if doc:
            lines += _docstring(doc, "        ")
        lines += ["        " + ln for ln in fn.head() + (pre or []) + fn.lines]
        lines.append(f"        return {ret}")
        return lines

    def _items(self, start: int, end: int, owner: _Region | None) -> list:
        """The own nodes and the nested block calls of one function, in order."""
        children = sorted(self.calls.get(None if owner is None else owner.idx, []),
                          key=lambda r: (r.start, r.end, r.idx))
        names = owner.names_from if owner is not None else {}
        items, i = [], start
        for c in children:
            items += [(self.order[j], self.order[names.get(j, j)]) for j in range(i, c.start)]
            items.append(c)
            i = max(i, c.end)
        items += [(self.order[j], self.order[names.get(j, j)]) for j in range(i, end)]
        return items

    def _block_body(self, r: _Region, cnode: _TNode) -> tuple[str, list]:
        fn = _Function(self, cnode, r.qual, r)
        for name, v in zip(r.input_names, r.inputs):
            fn.add_arg(name, v, self.graph.type_of(v))
        items = self._items(r.start, r.end, r)
        forward = self._forward(fn, items, r.outputs, r.tuple)
        shown = ", ".join(f"{k}={_show(v)}" for k, v in r.params.items())
        doc = _docstring(f"Block `{r.block}({shown})` of the spec, specialized to these "
                         f"parameter values.", "    ")
        lines = doc + [""] + self._init(cnode, r.params, r.block) + [""] + forward
        return "\n".join(lines) + "\n", sorted(fn.extra)

    def _model_class(self, tree: _TNode) -> str:
        g = self.graph
        fn = _Function(self, tree, "", None)
        for name in g.inputs:
            fn.add_arg(name, Value(name), g.node(name).type)
        for out_name, v in g.outputs:
            if v not in fn.preferred and v not in fn.vals:
                fn.preferred[v] = out_name
        checks = []
        for cond, msg, _span in g.meta.get("constraints", []):
            checks += self._constraint(fn, cond, msg)
        items = self._items(0, len(self.order), None)
        keep = str.maketrans(" ", "\xa0")  # wrap the docstring between items, not inside
        ins = ", ".join(f"{fn.args[i]}: {g.node(n).type}".translate(keep)
                        for i, n in enumerate(g.inputs))
        outs = ", ".join(f"{n}: {g.type_of(v)}".translate(keep) for n, v in g.outputs)
        forward = self._forward(fn, items, [v for _, v in g.outputs], False,
                                doc=f"({ins}) -> {outs}", pre=checks)
        params = dict(g.meta.get("params") or {})
        shown = ", ".join(f"{k}={_show(v)}" for k, v in params.items())
        count = sum(math.prod(n.type.shape) for n in g.params()
                    if n.attr.get("trainable", True) and _static(n.type.shape))
        doc = f"Model `{g.name}` of {self.spec} ({count:,} parameters), generated by nndsl."
        if shown:
            doc += (f"\n\nSpecialized to {shown}; other values need a new compilation with "
                    f"`--param NAME=VALUE`.")
        lines = _docstring(doc, "    ") + [""] + self._init(tree, params, None) + [""] + forward
        return f"class {self.model_class}(nn.Module):\n" + "\n".join(lines) + "\n"

    def _constraint(self, fn: _Function, cond, msg) -> list[str]:
        op = getattr(cond, "op", None)
        try:
            left = fn.dim(cond.left)
            if op in ("divisible", "not_divisible"):
                test = f"({left}) % {int(cond.right)} {'==' if op == 'divisible' else '!='} 0"
            elif op in ("==", "!=", "<", "<=", ">", ">="):
                test = f"{left} {op} {fn.dim(cond.right)}"
            else:
                return []
        except (_Unsupported, AttributeError, TypeError, ValueError):
            return []
        text = f"{msg} (needs {cond})" if msg else f"the input dims break the spec's {cond}"
        return [f"if not ({test}):", f"    raise ValueError({_str_lit(text)})"]

    def _file(self, model: str) -> str:
        g = self.graph
        cls = self.model_class
        text = (f"PyTorch model `{g.name}`, generated by `nndsl compile` from {self.spec}.\n\n"
                f"It needs only torch. Load the weights written next to it with\n\n"
                f"    from safetensors.torch import load_file\n"
                f"    model = {cls}()\n"
                f'    model.load_state_dict(load_file("weights.safetensors"))\n\n'
                f"The code is specialized to the parameter values it was compiled with; to "
                f"change them,\ncompile the spec again with `--param NAME=VALUE`.\n")
        header = '"""' + text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"') + '"""\n'
        imports = ("import torch\nimport torch.nn.functional as F\nfrom torch import nn\n\n"
                   f"_SPEC = {_str_lit(self.spec)}\n")
        parts = [_HELPERS] + ([_SCOPE_HELPER] if self.uses_scope else [])
        parts += self.block_sources + [model]
        return header + "\n" + imports + "".join(
            "\n\n" + p.strip("\n") + "\n" for p in parts)


def _show(v) -> str:
    try:
        return py_literal(v)
    except _Unsupported:
        return str(v)


# ============================================================================ entry points

def _spec_name(graph: Graph) -> str:
    span = graph.meta.get("model_span")
    file = getattr(span, "file", None)
    if isinstance(file, str) and file and not file.startswith("<"):
        return Path(file).name
    return "SPEC.nn"


def _check_names(graph: Graph) -> None:
    """Refuse scope names that are attributes of every ``nn.Module`` (as ``GraphModule`` does):
    ``self.train(x)`` would call ``Module.train``."""
    import torch

    reserved = set(dir(torch.nn.Module()))
    paths = [(n.name, n.span) for n in graph.params()]
    paths += [(r.get("qualname"), None) for r in graph.meta.get("regions") or []
              if isinstance(r, dict) and isinstance(r.get("qualname"), str)]
    for path, span in paths:
        for part in path.split("."):
            if part in reserved:
                raise LoweringError(f"the name `{part}` (in `{path}`) is reserved in PyTorch",
                                    span=span, code="E0902", hint="rename the layer")


def generate_source(graph: Graph, spec: str | None = None, *,
                    layers_as_modules: bool = True) -> str:
    """The model as a standalone PyTorch module (Python source that imports only torch).

    ``spec`` names the spec file in the messages of the generated code (default: the file the
    model came from). With ``layers_as_modules=False`` every layer is written functionally
    (``F.conv2d(x, self.conv.weight, ...)``) over plain ``nn.Parameter``s.
    """
    if not isinstance(graph, Graph) and isinstance(getattr(graph, "graph", None), Graph):
        graph = graph.graph  # a Compiled model
    spec = spec or _spec_name(graph)
    _check_names(graph)
    order = list(graph)
    pos = {n.name: i for i, n in enumerate(order)}
    layers = _find_layers(graph, order) if layers_as_modules else {}
    regions = _parse_regions(graph, order, pos) or []
    _validate(graph, order, pos, regions)
    attempts = [(regions, layers), ([], layers), ([], {})]
    for regs, lays in attempts:
        try:
            return _Generator(graph, regs, lays, spec).source()
        except _Unsupported as e:
            last = e
    raise LoweringError(f"cannot write `{graph.name}` as PyTorch source: {last}", code="E0911")


def weights_bytes(state_dict) -> bytes:
    """A state dict as safetensors bytes (each tensor contiguous and on its own storage)."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}
    return save(tensors, metadata={"format": "pt"})


def write_package(compiled, out_dir, weights=None) -> tuple[Path, Path]:
    """Write ``model.py`` and ``weights.safetensors`` for a compiled model into ``out_dir``
    (``weights``: a state dict or ``.safetensors`` path; default, the initial weights).

    Both files are generated in memory first and each is written atomically, so an error never
    leaves a half-written file behind. Returns the two paths.
    """
    out = Path(out_dir)
    file = getattr(compiled, "file", None)
    spec = Path(file).name if isinstance(file, str) and file and not file.startswith("<") \
        else None
    source = generate_source(compiled.graph, spec)
    data = weights_bytes(compiled.to_torch(weights=weights).state_dict())
    model_path, weights_path = out / "model.py", out / "weights.safetensors"
    atomic_write_text(model_path, source)
    atomic_write_bytes(weights_path, data)
    return model_path, weights_path
