"""Structured pruning of attention heads (``heads=S``), on the fused ``attention`` op.

Multi-head attention reads ``q``, ``k``, ``v`` as ``transpose(reshape(p, [N, T, h, d]), 1, 2)``
of a projection ``p`` (a linear, or one part of a split of a merged QKV linear), and its result
goes ``reshape(transpose(·, 1, 2), [N, T, h·d])`` into an output linear. Head ``i`` owns rows
``i·d … (i+1)·d − 1`` of each projection's weight and bias, and the same columns of the output
linear's weight; heads do not interact, so removing one is

    attention(q, k, v)[:, keep] = attention(q[:, keep], k[:, keep], v[:, keep])

and the output linear reads only the kept heads' columns. The fraction ``S`` of heads with the
smallest L2 norm (over their q, k, v rows and output columns) goes; the reshapes and the split
get the new sizes. Attention that is not written this way (weights that are computed or
shared, other layouts) is left whole. The op exists from O1 on (``fuse_attention``), so this
pass runs after the level's pipeline.
"""

from __future__ import annotations

import numpy as np

from nndsl.errors import ArgumentError
from nndsl.ir.derive import evaluate, expression
from nndsl.ir.graph import Graph, Node, Value
from nndsl.passes.rewrite import resize_params


def _only(readers, v: Value):
    rs = readers.get(v.node, [])
    return rs[0] if len(rs) == 1 and sum(1 for u in rs[0].inputs if u == v) == 1 else None


def _param(graph: Graph, v: Value | None):
    if v is None:
        return None
    p = graph.node(v.node)
    return p if p.op == "param" else None


def _projection(graph: Graph, readers, v: Value):
    """``(reshape, linear, split or None, split index, h, d)`` for an attention operand
    ``transpose(reshape(p, [.., h, d]), 1, 2)``, or None."""
    t = graph.node(v.node)
    if t.op != "transpose" or {t.attr["dim0"], t.attr["dim1"]} != {1, 2} or t.type.rank != 4:
        return None
    r = graph.node(t.inputs[0].node)
    if r.op != "reshape" or _only(readers, t.inputs[0]) is not t or _only(readers, v) is None:
        return None
    h, d = r.type.shape[2], r.type.shape[3]
    if not isinstance(h, int) or not isinstance(d, int):
        return None
    src = graph.node(r.inputs[0].node)
    split, index = None, 0
    if src.op == "split":
        if src.attr["dim"] not in (-1, src.types[0].rank - 1):
            return None
        split, index = src, r.inputs[0].index
        src = graph.node(src.inputs[0].node)
    if src.op != "linear" or _param(graph, src.inputs[1]) is None or \
            (src.inputs[2] is not None and _param(graph, src.inputs[2]) is None):
        return None
    return r, src, split, index, h, d


def _site(graph: Graph, readers, att: Node):
    """Everything one attention's heads touch, or None when it is not the usual layout."""
    parts = [_projection(graph, readers, v) for v in att.inputs[:3]]
    if any(p is None for p in parts) or len({(p[4], p[5]) for p in parts}) != 1:
        return None
    t = _only(readers, att.out())
    if t is None or t.op != "transpose" or {t.attr["dim0"], t.attr["dim1"]} != {1, 2}:
        return None
    r = _only(readers, t.out())
    if r is None or r.op != "reshape" or r.type.rank != 3:
        return None
    out = _only(readers, r.out())
    if out is None or out.op != "linear" or out.inputs[0] != r.out() or \
            _param(graph, out.inputs[1]) is None:
        return None
    return parts, (t, r, out)


def prune_heads(sparsity: float, weights: dict):
    """``heads=S`` as a pass; ``weights`` (the spec's values) rank the heads."""
    def run(graph: Graph) -> tuple[Graph, bool]:
        if graph.meta.get("pruned_heads"):
            return graph, False
        readers = graph.reader_map()
        sites = [s for s in (_site(graph, readers, n) for n in graph if n.op == "attention")
                 if s is not None]
        if not sites:
            raise ArgumentError("heads=S finds no attention to prune", code="E0239",
                                hint="it prunes the fused attention op (from -O1 on) whose q, k "
                                     "and v are reshaped projections of linears")

        def value(v: Value):
            return evaluate(expression(graph.node(v.node)), weights)

        rows: dict[str, list] = {}        # param -> [(axis, kept index)]
        attrs: dict[str, dict] = {}       # node -> new attributes
        for parts, (_, r_out, out) in sites:
            h, d = parts[0][4], parts[0][5]
            norms = np.zeros(h)
            spans = []                     # (linear, first row of this operand)
            for r, lin, split, index, _, _ in parts:
                start = 0 if split is None else sum(split.attr["sizes"][:index])
                spans.append((lin, start))
                w = value(lin.inputs[1]).astype(np.float64)
                for i in range(h):
                    norms[i] += (w[start + i * d: start + (i + 1) * d] ** 2).sum()
            wo = value(out.inputs[1]).astype(np.float64)
            for i in range(h):
                norms[i] += (wo[:, i * d:(i + 1) * d] ** 2).sum()
            n_keep = max(1, int(round(h * (1.0 - sparsity))))
            if n_keep == h:
                continue
            heads = sorted(int(i) for i in np.argsort(-np.sqrt(norms), kind="stable")[:n_keep])
            cols = [i * d + j for i in heads for j in range(d)]
            by_linear: dict[str, tuple] = {}
            for (lin, start), (r, _, split, _, _, _) in zip(spans, parts):
                by_linear.setdefault(lin.name, (lin, []))[1].extend(start + c for c in cols)
                shape = list(r.attr["shape"])
                shape[2] = n_keep
                attrs[r.name] = {**r.attr, "shape": tuple(shape)}
                if split is not None:
                    sizes = list(attrs.get(split.name, split.attr)["sizes"])
                    for _, _, s2, idx, _, _ in parts:
                        if s2 is split:
                            sizes[idx] = n_keep * d
                    attrs[split.name] = {**split.attr, "sizes": tuple(sizes)}
            for lin, kept in by_linear.values():
                covered = {start + i for owner, start in spans if owner is lin
                           for i in range(h * d)}
                others = set(range(lin.type.shape[-1])) - covered   # rows of no q, k or v
                index = tuple(sorted(set(kept) | others))
                for v in lin.inputs[1:]:
                    if v is not None:
                        rows.setdefault(v.node, []).append((0, index))
            rows.setdefault(out.inputs[1].node, []).append((1, tuple(cols)))
            shape = list(r_out.attr["shape"])
            shape[-1] = n_keep * d
            attrs[r_out.name] = {**r_out.attr, "shape": tuple(shape)}
        if not rows:
            return graph, False
        out_graph = resize_params(graph, rows, lambda node, rw, n: attrs.get(node.name,
                                                                              node.attr))
        pruned = {name: tuple(out_graph.node(name).type.shape) for name in rows}
        out_graph.meta["pruned_heads"] = pruned
        out_graph.meta["pruned_channels"] = {**(graph.meta.get("pruned_channels") or {}),
                                             **pruned}
        return out_graph, True
    return run
