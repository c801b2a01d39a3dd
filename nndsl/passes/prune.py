"""Pruning passes: weights zeroed by masks, or channels removed from the graph.

- ``magnitude=S``: in every conv and linear weight the fraction ``S`` of entries smallest in
  magnitude is zeroed: ``W' = W · [|W| > τ]``, ``τ`` the layer's ``S``-quantile of ``|W|``.
- ``global=S``: the same with one threshold for all those weights together, so layers whose
  weights matter more (small first convolutions, classifiers) keep more of them.
- ``2:4``: in every run of four consecutive input weights of a linear layer, the two smallest
  in magnitude are zeroed (N:M semi-structured sparsity).
- ``channels=S``: the fraction ``S`` of output channels of convolutions and hidden features of
  linears with the smallest L2 norm is *removed*, and the new sizes are carried to everything
  that reads them. Channels joined by an elementwise op (a residual add, a squeeze-excitation
  product) form one group and are removed together; batch norms and depthwise convolutions
  follow their group; a concatenation or a flatten maps channels to positions further on. A
  group that reaches a graph output or an op the analysis does not follow (a reshape, a
  transpose, a norm over the channel axis, attention) is left whole. The result is a smaller
  dense graph: ``conv(x, W, b)[:, keep] = conv(x, W[keep], b[keep])`` and the next layer reads
  only the kept inputs, ``W_next[:, keep]``.

The masks and the kept channels are derived parameters (:mod:`nndsl.ir.derive`), so the spec's
weights still load by name. Channel choice needs weight values: ``prune_channels`` takes them
(the model's initial ones when none are given).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nndsl.errors import ArgumentError
from nndsl.ir.derive import evaluate, expression
from nndsl.ir.graph import Graph, Node, Value
from nndsl.ir.ops import SIGNATURES
from nndsl.ir.ops.signatures import UNARY
from nndsl.passes.rewrite import Rewriter, derived_param, resize_params

PRUNABLE = ("conv1d", "conv2d", "conv3d", "linear")
# Ops whose output carries the channels of their first operand unchanged, on the same axis;
# pooling does so for the channel axis (1) only: it mixes the positions of the others.
_THROUGH = frozenset(UNARY) | {"leaky_relu", "gelu", "elu", "softplus", "dropout",
                               "drop_path", "clamp", "memory_format"}
_POOLS = frozenset({"max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d",
                    "adaptive_avg_pool1d", "adaptive_avg_pool2d"})
_ELEMENTWISE = frozenset({"add", "sub", "mul", "div", "maximum", "minimum"})


def _in_scopes(node: Node, scopes: tuple | None, exclude: tuple) -> bool:
    if any(node.under(k) for k in exclude):
        return False
    return scopes is None or any(node.under(k) for k in scopes)


def _weight(graph: Graph, node: Node) -> Node | None:
    if node.op not in PRUNABLE or node.inputs[1] is None:
        return None
    p = graph.node(node.inputs[1].node)
    return p if p.op == "param" else None


# ---- masks ----

def global_sparsities(values: dict, sparsity: float) -> dict:
    """Per-weight sparsities that zero the fraction ``sparsity`` of all ``values`` together,
    smallest magnitude first (ties broken by position, as each layer's mask breaks them)."""
    names = list(values)
    flat = np.concatenate([np.abs(values[n]).reshape(-1) for n in names])
    owner = np.concatenate([np.full(values[n].size, i) for i, n in enumerate(names)])
    k = int(round(sparsity * flat.size))
    dropped = np.bincount(owner[np.argsort(flat, kind="stable")[:k]], minlength=len(names))
    return {n: float(dropped[i]) / values[n].size for i, n in enumerate(names)}


def mask_weights(kind: str, value, scopes: tuple | None = None, exclude: tuple = (),
                 weights: dict | None = None):
    """``magnitude`` or ``global`` (value: the sparsity; ``global`` ranks ``weights``, the
    spec's values) or ``n_m`` (value: ``(n, m)``) as a pass."""
    def run(graph: Graph) -> tuple[Graph, bool]:
        targets: dict[str, Node] = {}
        for node in graph:
            w = _weight(graph, node)
            if w is None or not _in_scopes(node, scopes, exclude):
                continue
            if kind == "n_m" and (node.op != "linear" or w.type.shape[-1] % value[1]):
                continue
            if any(f in ("magnitude_mask", "n_m_mask") for f in _fns(w)):
                continue      # masked already: the pass is idempotent
            targets[w.name] = w
        if not targets:
            if any(f in ("magnitude_mask", "n_m_mask") for n in graph.params()
                   for f in _fns(n)):
                return graph, False          # masked already
            raise ArgumentError("nothing to prune: no " + (
                "linear weight with a width N:M divides" if kind == "n_m" else
                "conv or linear weight") + " in the pruned scopes", code="E0239")
        per_layer = {n: float(value) for n in targets} if kind == "magnitude" else None
        if kind == "global":
            per_layer = global_sparsities(
                {n: evaluate(expression(w), weights) for n, w in targets.items()}, value)
        rw = Rewriter(graph)
        for node in graph:
            if node.name in targets:
                if per_layer is not None:
                    p = derived_param(rw, node.name, node, node.type.shape, "magnitude_mask",
                                      [expression(node)], trainable=node.attr["trainable"],
                                      sparsity=per_layer[node.name])
                else:
                    p = derived_param(rw, node.name, node, node.type.shape, "n_m_mask",
                                      [expression(node)], trainable=node.attr["trainable"],
                                      n=value[0], m=value[1])
                rw.map[node.out()] = p.out()
                rw.changed = True
            else:
                rw.keep(node)
        return rw.finish(keep_params=False), True
    return run


def _fns(node: Node) -> list[str]:
    from nndsl.ir.derive import functions
    return functions(node.attr.get("derive"))


# ---- channels ----

@dataclass
class _Group:
    size: int
    producers: list = field(default_factory=list)     # weight params whose axis 0 is the group
    blocked: str | None = None


@dataclass(frozen=True)
class _View:
    """Where a group's channels sit in a tensor: channel ``c`` occupies positions
    ``offset + c·repeat + j`` (``j < repeat``) of axis ``axis``."""
    group: int
    axis: int
    offset: int = 0
    repeat: int = 1


class _Analysis:
    """Which channels of which layers form groups, and who reads them (a DepGraph-style
    dependency analysis over the IR)."""

    def __init__(self, graph: Graph, scopes, exclude):
        self.graph = graph
        self.readers = graph.reader_map()
        self.outputs = {v for _, v in graph.outputs}
        self.groups: list[_Group] = []
        self.parent: list[int] = []
        # (param name, axis) -> {(group, offset, repeat)}
        self.segments: dict[tuple, set] = {}
        self.seen: set = set()
        self.meets: dict[str, list] = {}   # elementwise node -> [(slots, view)]
        first: dict[str, int] = {}    # weight -> the group of its first application
        for node in graph:
            w = _weight(graph, node)
            if w is None or node.attr.get("groups", 1) != 1:
                continue
            gid = len(self.groups)
            self.groups.append(_Group(w.type.shape[0]))
            self.parent.append(gid)
            if w.name in first:      # a layer applied twice: one weight, one set of channels
                self.union(first[w.name], gid)
            first.setdefault(w.name, gid)
            if not _in_scopes(node, scopes, exclude):
                self.groups[gid].blocked = "outside the pruned scopes"
            self.groups[gid].producers.append(w.name)
            self._seg(node.inputs[1], 0, _View(gid, 0))
            if node.inputs[2] is not None:
                self._seg(node.inputs[2], 0, _View(gid, 0))
            axis = node.type.rank - 1 if node.op == "linear" else 1
            self.follow(node.out(), _View(gid, axis))
        self.settle()

    def find(self, g: int) -> int:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def union(self, a: int, b: int) -> None:
        a, b = self.find(a), self.find(b)
        if a == b:
            return
        ga, gb = self.groups[a], self.groups[b]
        if ga.size != gb.size:
            ga.blocked = gb.blocked = "joined with channels of another size"
        self.parent[b] = a
        ga.producers += gb.producers
        ga.blocked = ga.blocked or gb.blocked

    def block(self, view: _View, why: str) -> None:
        g = self.groups[self.find(view.group)]
        g.blocked = g.blocked or why

    def _seg(self, v: Value, axis: int, view: _View) -> None:
        p = self.graph.node(v.node)
        if p.op != "param":
            self.block(view, "a computed weight")
            return
        self.segments.setdefault((p.name, axis), set()).add((view.group, view.offset,
                                                             view.repeat))

    def follow(self, v: Value, view: _View) -> None:
        if (v, view) in self.seen:
            return
        self.seen.add((v, view))
        if v in self.outputs:
            self.block(view, "it reaches a graph output")
        for r in self.readers.get(v.node, []):
            slots = [i for i, u in enumerate(r.inputs) if u == v]
            self.read(r, slots, view)

    def read(self, r: Node, slots: list, view: _View) -> None:
        g = self.graph
        a = {**SIGNATURES[r.op].attrs, **r.attr}
        t = g.type_of(r.inputs[slots[0]])
        if slots != [0] and r.op not in _ELEMENTWISE and r.op != "concat":
            self.block(view, f"read by {r.op} as a weight")
            return
        if r.op in _THROUGH or (r.op in _POOLS and view.axis == 1):
            self.follow(r.out(), view)
        elif r.op == "batch_norm" and view.axis == 1 and view.repeat == 1:
            for i in range(1, 5):
                if r.inputs[i] is not None:
                    self._seg(r.inputs[i], 0, view)
            self.follow(r.out(), view)
        elif r.op in _ELEMENTWISE:
            self._elementwise(r, slots, view)
        elif r.op == "concat":
            axis = a["dim"] % t.rank
            if axis != view.axis:
                self.block(view, "concatenated along another axis")
                return
            for slot in slots:
                off = sum(g.type_of(u).shape[axis] for u in r.inputs[:slot])
                if not isinstance(off, int):
                    self.block(view, "concatenated after a symbolic size")
                    return
                self.follow(r.out(), _View(view.group, axis, view.offset + off, view.repeat))
        elif r.op == "flatten" and view.axis == a["start"] % t.rank == 1 and \
                (a["end"] % t.rank) == t.rank - 1:
            rest = 1
            for d in t.shape[2:]:
                rest = rest * d
            if not isinstance(rest, int):
                self.block(view, "flattened with symbolic spatial dims")
                return
            self.follow(r.out(), _View(view.group, 1, view.offset * rest, view.repeat * rest))
        elif r.op in PRUNABLE and view.axis == (t.rank - 1 if r.op == "linear" else 1):
            groups = a.get("groups", 1)
            if groups == 1:
                if r.inputs[1] is None or g.node(r.inputs[1].node).op != "param":
                    self.block(view, "read by a layer with a computed weight")
                    return
                self._seg(r.inputs[1], 1, view)
            elif groups == t.shape[1] == r.type.shape[1] and view.repeat == 1:
                self._seg(r.inputs[1], 0, view)            # depthwise: its filters follow
                if r.inputs[2] is not None:
                    self._seg(r.inputs[2], 0, view)
                self.follow(r.out(), view)
            else:
                self.block(view, "read by a grouped convolution")
        else:
            self.block(view, f"read by {r.op}")

    def _elementwise(self, r: Node, slots: list, view: _View) -> None:
        """Recorded, and settled once every group is traced (:meth:`settle`)."""
        self.meets.setdefault(r.name, []).append((tuple(slots), view))
        if r.type.rank == self.graph.type_of(r.inputs[slots[0]]).rank:
            self.follow(r.out(), view)
        else:
            self.block(view, f"{r.op} broadcasts to a larger rank")

    def settle(self) -> None:
        """Operands of an elementwise op must carry the same channels at the same place (then
        their groups are one), or broadcast along the channel axis (a scalar, a bias)."""
        g = self.graph
        for name, meets in self.meets.items():
            r = g.node(name)
            view0 = meets[0][1]
            views = {}
            for slots, view in meets:
                for s in slots:
                    views.setdefault(s, []).append(view)
            rank = r.type.rank
            for i, u in enumerate(r.inputs):
                if i in views:
                    continue
                ut = g.type_of(u)
                from_end = rank - view0.axis
                if ut.rank < from_end or ut.shape[ut.rank - from_end] == 1:
                    continue
                for _, view in meets:
                    self.block(view, f"{r.op} with a tensor that is not a layer's channels")
            flat = [v for vs in views.values() for v in vs]
            if len({(v.axis, v.offset, v.repeat) for v in flat}) > 1:
                for v in flat:
                    self.block(v, f"{r.op} of channels at different places")
                continue
            for v in flat[1:]:
                self.union(flat[0].group, v.group)


def _norms(analysis: _Analysis, root: int, weights: dict) -> np.ndarray:
    total = None
    for name in analysis.groups[root].producers:
        w = weights[name].reshape(weights[name].shape[0], -1).astype(np.float64)
        n = (w ** 2).sum(axis=1)
        total = n if total is None else total + n
    return np.sqrt(total)


def prune_channels(sparsity: float, weights: dict, scopes: tuple | None = None,
                   exclude: tuple = ()):
    """``channels=S`` as a pass; ``weights`` are the values (by the graph's parameter names)
    that decide which channels are least important."""
    def run(graph: Graph) -> tuple[Graph, bool]:
        if graph.meta.get("pruned_channels"):
            return graph, False
        an = _Analysis(graph, scopes, exclude)
        # a group reached by one pass of the analysis can be unioned later: settle roots, and a
        # group blocked anywhere is blocked everywhere
        roots = {an.find(i) for i in range(len(an.groups))}
        for i in range(len(an.groups)):
            if an.groups[i].blocked:
                an.groups[an.find(i)].blocked = an.groups[an.find(i)].blocked or \
                    an.groups[i].blocked
        values = {n.name: evaluate(expression(n), weights) for n in graph.params()
                  if any(n.name in an.groups[r].producers for r in roots)}
        kept: dict[int, tuple] = {}
        for r in sorted(roots):
            grp = an.groups[r]
            if grp.blocked:
                continue
            n_keep = max(1, int(round(grp.size * (1.0 - sparsity))))
            if n_keep == grp.size:
                continue
            order = np.argsort(-_norms(an, r, values), kind="stable")
            kept[r] = tuple(sorted(int(i) for i in order[:n_keep]))
        if not kept:
            reasons = sorted({an.groups[r].blocked for r in roots if an.groups[r].blocked})
            raise ArgumentError("channels=S finds no channels it can remove" +
                                (": every group is kept whole (" + "; ".join(reasons[:6]) + ")"
                                 if reasons else ""), code="E0239",
                                hint="a group is kept whole when its channels reach a model "
                                     "output or an op the analysis does not follow; a smaller S "
                                     "may also round to no channel at all")
        takes: dict[str, list] = {}     # param -> [(axis, index)]
        for (pname, axis), segs in sorted(an.segments.items()):
            length = graph.node(pname).type.shape[axis]
            drop: set[int] = set()
            for gid, off, rep in segs:
                root = an.find(gid)
                if root not in kept:
                    continue
                keep = set(kept[root])
                for c in range(an.groups[root].size):
                    if c not in keep:
                        drop.update(off + c * rep + j for j in range(rep))
            if drop:
                takes.setdefault(pname, []).append(
                    (axis, tuple(i for i in range(length) if i not in drop)))
        def depthwise_groups(node, rw, n):
            """A depthwise conv has one group per channel: as many as it now reads."""
            a = node.attr
            if node.op in PRUNABLE and a.get("groups", 1) > 1 and \
                    a["groups"] == graph.type_of(node.inputs[0]).shape[1]:
                return {**a, "groups": rw.type_of(n.inputs[0]).shape[1]}
            return a
        out = resize_params(graph, takes, depthwise_groups)
        out.meta["pruned_channels"] = {
            name: tuple(out.node(name).type.shape) for name in takes}
        return out, True
    return run


def parse_prune(text: str) -> tuple[str, object]:
    """``magnitude=S`` | ``global=S`` | ``2:4`` (any ``N:M``) | ``channels=S`` | ``heads=S``
    as ``(kind, value)``."""
    t = str(text).strip()
    if ":" in t and "=" not in t:
        n, _, m = t.partition(":")
        try:
            n_, m_ = int(n), int(m)
        except ValueError:
            n_ = m_ = 0
        if not 0 < n_ < m_:
            raise ArgumentError(f"--prune {t}: N:M sparsity needs 0 < N < M, e.g. 2:4",
                                code="E0255")
        return "n_m", (n_, m_)
    kind, _, value = t.partition("=")
    if kind not in ("magnitude", "global", "channels", "heads"):
        raise ArgumentError(f"unknown pruning `{t}`", code="E0255",
                            hint="use magnitude=S, global=S, channels=S, heads=S (S in (0, 1)) "
                                 "or 2:4")
    try:
        s = float(value)
    except ValueError:
        s = -1.0
    if not 0.0 < s < 1.0:
        raise ArgumentError(f"--prune {t}: the sparsity must be a number in (0, 1), got "
                            f"`{value}`", code="E0255", hint=f"for example {kind}=0.5")
    return kind, s
