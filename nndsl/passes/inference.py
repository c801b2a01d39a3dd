"""Inference passes (O2 only): they restructure parameters or hold only in eval mode.

Parameters they create are *derived*: a ``param`` node with ``derive=(fn, sources, options)``
(see :mod:`nndsl.ir.derive`), so weights are still given in the spec's names and transformed
along with the graph.
"""

from __future__ import annotations

import math

from nndsl.ir.derive import expression
from nndsl.ir.graph import Graph, Node, Value
from nndsl.ir.ops import ops_with
from nndsl.passes.cleanup import _scalar_value
from nndsl.passes.rewrite import (Rewriter, Rule, apply_rules, derived_param,
                                  sweep_dead)

FOLDABLE = ops_with("affine")


def remove_dropout(graph: Graph) -> tuple[Graph, bool]:
    """Dropout and stochastic depth are the identity in eval mode: ``dropout(x, p) ⇒ x``,
    ``drop_path(x, p) ⇒ x``."""
    rule = Rule("dropout", lambda rw, n: n.inputs[0] if n.op in ops_with("random")
                else None, lambda rw, n, x: [x])
    return apply_rules(graph, [rule])


def _plain_param(graph: Graph, v: Value | None):
    """What a parameter operand holds, as an expression over the spec's parameters (its name,
    or its derivation when an earlier pass derived it); ``None`` when the operand is computed."""
    if v is None:
        return None
    p = graph.node(v.node)
    return expression(p) if p.op == "param" else None


def _source(graph: Graph, v: Value | None):
    """:func:`_plain_param` of an operand known to be a parameter (or absent)."""
    return None if v is None else expression(graph.node(v.node))


def _scale_match(rw: Rewriter, n: Node):
    """``layer(x) * c``, ``c * layer(x)`` or ``layer(x) / c`` with ``c`` a scalar constant."""
    if n.op not in ("mul", "div") or None in n.inputs:
        return None
    sides = [(0, 1)] if n.op == "div" else [(0, 1), (1, 0)]
    for k, other in sides:
        c = _scalar_value(rw, n.inputs[other])
        layer = rw.src.node(rw.current.inputs[k].node)
        if c is None or layer.op not in FOLDABLE:
            continue
        if layer.attr.get("act"):
            return f"declined: `{layer.name}` runs {layer.attr['act']} before the factor"
        if not rw.single_use(layer):
            return f"declined: `{layer.name}`'s result is read elsewhere too (or is an output)"
        p = rw.producer(n.inputs[k])
        if p.op != layer.op or n.type != p.type:
            return None
        if _plain_param(rw.out, p.inputs[1]) is None or \
                (p.inputs[2] is not None and _plain_param(rw.out, p.inputs[2]) is None):
            return f"declined: `{layer.name}`'s weights are computed, not parameters"
        c = float(c)
        if c == 0.0 or not math.isfinite(c):
            return "declined: the factor is zero or not finite"
        factor = 1.0 / c if n.op == "div" else c
        if not 1e-3 <= abs(factor) <= 1e3:
            return ("declined: a factor this far from 1 could underflow or overflow the weights "
                    "in half precision")
        return p, factor
    return None


def _scale_rewrite(rw: Rewriter, n: Node, m):
    p, factor = m
    params = list(p.inputs)
    for slot, what in ((1, "weight"), (2, "bias")):
        v = p.inputs[slot]
        if v is None:
            continue
        src = rw.out.node(v.node)
        params[slot] = derived_param(rw, f"{p.name}.scaled_{what}", p, src.type.shape, "scale",
                                     (_source(rw.out, v),), dtype=src.type.dtype,
                                     by=factor).out()
    return [rw.take_over(p.with_(inputs=tuple(params))).out()]


def _bounds_match(rw: Rewriter, n: Node):
    """``maximum(x, a)`` or ``minimum(x, b)`` with a scalar constant bound (either side), its
    result of ``x``'s own type; merged with a clamp it alone reads."""
    if n.op not in ("maximum", "minimum") or None in n.inputs:
        return None
    for k in (0, 1):
        c = _scalar_value(rw, n.inputs[1 - k])
        if c is None or isinstance(c, bool):
            continue
        x = n.inputs[k]
        if rw.type_of(x) != n.type:
            return "declined: the bound changes the result's dtype or shape"
        c = float(c)
        if not math.isfinite(c):
            return "declined: the bound is not finite"
        lo, hi = (c, None) if n.op == "maximum" else (None, c)
        p = rw.producer(x)
        if p.op in ("clamp", "relu") and rw.single_use(rw.src.node(rw.current.inputs[k].node)):
            p_lo, p_hi = (0.0, None) if p.op == "relu" else (p.attr["min"], p.attr["max"])
            lo = p_lo if lo is None else lo if p_lo is None else max(lo, p_lo)
            hi = p_hi if hi is None else hi if p_hi is None else min(hi, p_hi)
            if lo is not None and hi is not None and lo > hi:
                return "declined: the bounds cross (the result is a constant)"
            x = p.inputs[0]
        return x, lo, hi
    return None


def _bounds_rewrite(rw: Rewriter, n: Node, m) -> list[Value]:
    x, lo, hi = m
    if lo == 0.0 and hi is None:     # ReLU: an epilogue the layer before can run
        return [rw.emit("relu", [x], {}, like=n, name=n.name).out()]
    return [rw.emit("clamp", [x], {"min": lo, "max": hi}, like=n, name=n.name).out()]


def clamp_bounds(graph: Graph) -> tuple[Graph, bool]:
    """Constant bounds become one clamp: ``maximum(x, a) → clamp(x, min=a)``,
    ``minimum(x, b) → clamp(x, max=b)``, and ``minimum(maximum(x, a), b) = clamp(x, a, b)``
    (ReLU6 written out); ``maximum(x, 0)`` is ``relu(x)``. A convolution's runtime applies a clamp as a post-op, and ONNX's
    ``Clip`` is what onnxruntime fuses into the convolution before it (``Max``/``Min`` it
    does not). The gradient at a bound is the clamp's (1 on the kept side), so the pass is
    for inference.
    """
    return apply_rules(graph, [Rule("clamp_bounds", _bounds_match, _bounds_rewrite)])


def fold_scale(graph: Graph) -> tuple[Graph, bool]:
    """A constant factor after a linear or convolution folds into its weight and bias:

    ``linear(x, W, b) · c = linear(x, c·W, c·b)`` (and ``/ c``). The layer keeps its name; its
    weights are ``{layer}.scaled_weight`` and ``{layer}.scaled_bias``, derived from the spec's.
    """
    return apply_rules(graph, [Rule("fold_scale", _scale_match, _scale_rewrite)])


def _bn_match(rw: Rewriter, n: Node):
    if n.op != "batch_norm" or n.inputs[0] is None:
        return None
    layer = rw.src.node(rw.current.inputs[0].node)
    if layer.op not in FOLDABLE:
        return None
    if layer.attr.get("act"):
        return f"declined: `{layer.name}` runs {layer.attr['act']} before the batch norm"
    if not rw.single_use(layer):
        return f"declined: `{layer.name}`'s result is read elsewhere too (or is an output)"
    if layer.op == "linear" and layer.type.rank != 2:
        return ("declined: batch norm's channel is dim 1, and this linear's features are "
                "its last dim")
    p = rw.producer(n.inputs[0])
    if p.op != layer.op or p.attr.get("act"):
        return None          # another rule rewrote the layer this round
    if _plain_param(rw.out, p.inputs[1]) is None or \
            (p.inputs[2] is not None and _plain_param(rw.out, p.inputs[2]) is None):
        return f"declined: `{layer.name}`'s weights are computed, not parameters"
    if any(v is not None and _plain_param(rw.out, v) is None for v in n.inputs[1:5]):
        return "declined: the batch norm's statistics are computed, not parameters"
    return p


def _bn_rewrite(rw: Rewriter, n: Node, p: Node):
    eps = n.attr.get("eps", 1e-5)
    gamma, beta, mean, var = (_source(rw.out, v) for v in n.inputs[1:5])
    w_name, b_name = _source(rw.out, p.inputs[1]), _source(rw.out, p.inputs[2])
    w_t = rw.type_of(p.inputs[1])
    w = derived_param(rw, f"{p.name}.folded_weight", p, w_t.shape, "fold_bn_weight",
                      (w_name, gamma, var), eps=eps)
    b = derived_param(rw, f"{p.name}.folded_bias", p, (w_t.shape[0],), "fold_bn_bias",
                      (b_name, gamma, beta, mean, var), eps=eps)
    return [rw.take_over(p.with_(inputs=(p.inputs[0], w.out(), b.out()))).out()]


def fold_batch_norm(graph: Graph) -> tuple[Graph, bool]:
    """Batch norm (eval statistics) folded into the convolution or linear before it:

    ``W' = W · γ/√(σ² + ε)``  (per output channel),  ``b' = (b − μ) · γ/√(σ² + ε) + β``

    so ``bn(conv(x, W, b)) = conv(x, W', b')``. The new weights are ``{layer}.folded_weight`` and
    ``{layer}.folded_bias``, derived from the spec's parameters; the layer keeps its name.
    """
    out, changed = apply_rules(graph, [Rule("fold_batch_norm", _bn_match, _bn_rewrite)])
    return (sweep_dead(out, keep_params=False) if changed else out), changed


def _linear_groups(rw: Rewriter) -> dict[str, tuple[list[Node], int]]:
    """Each plain linear of the source graph that shares its input (and its having a bias or
    not) with another: its group, in graph order, and its place in it. Worked out once per
    round."""
    key = "merge_parallel_linears"
    if key not in rw.notes:
        graph, groups = rw.src, {}
        for node in graph:
            if node.op != "linear" or node.attr.get("act") or node.inputs[0] is None:
                continue
            if _plain_param(graph, node.inputs[1]) is None or \
                    (node.inputs[2] is not None and _plain_param(graph, node.inputs[2]) is None):
                continue
            groups.setdefault((node.inputs[0], node.inputs[2] is None), []).append(node)
        rw.notes[key] = {m.name: (g, i) for g in groups.values() if len(g) > 1
                         for i, m in enumerate(g)}
        rw.notes["merged_split"] = {}
    return rw.notes[key]


def _parallel_match(rw: Rewriter, n: Node):
    if n.op != "linear":
        return None
    if n.attr.get("act"):
        return f"it runs `{n.attr['act']}` as its epilogue"
    if _plain_param(rw.src, rw.current.inputs[1]) is None:
        return "its weight is computed, not a parameter"
    if n.inputs[2] is not None and _plain_param(rw.src, rw.current.inputs[2]) is None:
        return "its bias is computed, not a parameter"
    return _linear_groups(rw).get(rw.current.name) or \
        "no other linear (with a bias as it has, or none as it has) reads its input"


def _parallel_rewrite(rw: Rewriter, n: Node, m) -> list[Value]:
    """At the group's first linear: the merged linear and its split; every member then reads
    its part of the split."""
    group, i = m
    splits = rw.notes["merged_split"]
    first = group[0]
    if i == 0:
        graph = rw.src
        name = "+".join(g.name for g in group)
        ws = [_source(graph, g.inputs[1]) for g in group]
        rows = [graph.type_of(g.inputs[1]).shape[0] for g in group]
        fin = graph.type_of(first.inputs[1]).shape[1]
        w = derived_param(rw, f"{name}.weight", first, (sum(rows), fin), "concat", ws, axis=0)
        b = None
        if first.inputs[2] is not None:
            b = derived_param(rw, f"{name}.bias", first, (sum(rows),), "concat",
                              [_source(graph, g.inputs[2]) for g in group], axis=0).out()
        merged = rw.emit("linear", [n.inputs[0], w.out(), b], {}, like=first, name=name)
        splits[first.name] = rw.emit("split", [merged.out()], {"dim": -1, "sizes": tuple(rows)},
                                     like=first, name=f"{name}.split").name
    return [Value(splits[first.name], i)]


def merge_parallel_linears(graph: Graph) -> tuple[Graph, bool]:
    """Linears that read the same input (Q, K, V projections) become one linear and a split:

    ``[x Wqᵀ + bq, x Wkᵀ + bk, x Wvᵀ + bv] = split(x [Wq; Wk; Wv]ᵀ + [bq; bk; bv])``

    A group rewrite on the rule driver: the rule fires at each member; at the first it emits
    the merged linear and the split, the others read their part of it.
    """
    out, changed = apply_rules(graph, [Rule("merge_parallel_linears", _parallel_match,
                                            _parallel_rewrite)])
    return (sweep_dead(out, keep_params=False) if changed else out), changed


def channels_last(graph: Graph) -> tuple[Graph, bool]:
    """Memory layout for speed on the torch backend: 4-D image tensors flow channels-last
    (NHWC in memory, still NCHW in shape) through 2-d convolutions; inputs are converted on
    entry and 4-D outputs back to the standard layout on exit, so callers see no difference.
    The backend stores 4-D weights channels-last too (``meta["channels_last"]``).
    """
    if graph.meta.get("channels_last") or not any(n.op == "conv2d" for n in graph):
        return graph, False
    rw = Rewriter(graph)
    for node in graph:
        n = rw.keep(node)
        if node.op == "input" and n.type.rank == 4 and n.type.dtype.startswith(("f", "b")):
            cl = rw.emit("memory_format", [n.out()], {"format": "channels_last"}, like=n,
                         name=f"{n.name}.channels_last")
            rw.map[node.out()] = cl.out()
    outs = []
    for name, v in graph.outputs:
        v2 = rw.value(v)
        if rw.type_of(v2).rank == 4:
            like = rw.producer(v2)
            v2 = rw.emit("memory_format", [v2], {"format": "contiguous"}, like=like,
                         name=f"{name}.contiguous").out()
        outs.append((name, v2))
    out = rw.finish(sweep=False)
    out.outputs = outs
    out.meta["channels_last"] = True
    return out, True


def prune_params(graph: Graph) -> tuple[Graph, bool]:
    """Parameters no node reads any more (replaced by derived ones) are dropped."""
    out = sweep_dead(graph, keep_params=False)
    return out, out is not graph
