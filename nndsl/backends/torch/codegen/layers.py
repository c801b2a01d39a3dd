"""Standard layers written as the ``nn`` modules a person would write.

:data:`LAYER_MODULES` maps a layer op (``linear``, ``conv2d``, ``lstm``...) to a function that
gives its :class:`LayerForm`: the ``nn.Linear(...)``-style constructor and the parameters the
module owns, by operand index. :func:`_find_layers` picks the layer applications of a graph that
can be written that way, those whose every parameter sits where the module keeps it under one
scope that the elaborator recorded as that kind of layer; the others are written functionally.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Callable

from nndsl.backends.torch.codegen.source import _collapse, _uniform, py_literal
from nndsl.ir.graph import Graph
from nndsl.ir.ops import SIGNATURES


@dataclass(frozen=True)
class LayerForm:
    """How one layer op is written as an ``nn`` module: its constructor and its parameters.

    ``slots`` maps an operand index to ``(leaf name, shape, dtype, trainable)`` of the parameter
    the module owns there; the node's operands must be exactly those parameters.
    """

    ctor: str
    slots: tuple


def _static(shape) -> bool:
    """Whether every dim of a shape is a number."""
    return all(isinstance(d, int) for d in shape)


def _kwargs(pairs) -> str:
    """``, name=value`` for each keyword argument that is not left at its default (``None``)."""
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


def _rms_norm_form(a, ts):
    w = ts[1]
    shape = tuple(a["normalized_shape"])
    if not shape or not _static(shape):
        return None
    kw = [("eps", None if a["eps"] is None else py_literal(a["eps"])),
          ("elementwise_affine", None if w is not None else "False")]
    slots = ((1, ("weight", shape, "f32", True)),) if w is not None else ()
    size = str(shape[0]) if len(shape) == 1 else py_literal(shape)
    return LayerForm(f"nn.RMSNorm({size}{_kwargs(kw)})", slots)


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
    "rms_norm": _rms_norm_form,
    "group_norm": _group_norm_form,
    "embedding": _embedding_form,
    "lstm": _recurrent_form("lstm"), "gru": _recurrent_form("gru"), "rnn": _recurrent_form("rnn"),
}


@dataclass
class _Layer:
    """A layer written as an ``nn`` module: its scope, op, constructor, parameter leaves and
    the names of the nodes that apply it."""

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
        if not ok or len(quals) != 1:
            continue
        (qual,) = quals
        # Another parameter of the scope as an operand the module does not take: no module.
        slot_ids = {i for i, _ in form.slots}
        if any(i not in slot_ids and v is not None and graph.node(v.node).op == "param"
               and graph.node(v.node).name.startswith(qual + ".")
               for i, v in enumerate(node.inputs)):
            continue
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
