"""Block applications as nested regions of the graph, and the module tree built from them.

The elaborator records in ``graph.meta["regions"]`` where the nodes of each block application
lie in the graph's order, with the application's inputs, outputs and parameter values.
:func:`_parse_regions` reads and nests them (``None`` when they do not line up with the graph,
as after a pass that rewrote it), :func:`_validate` and :func:`_settle` dissolve the regions that
cannot be a self-contained ``nn.Module`` into their parents, and :func:`_build_tree` lays out the
attribute paths of the generated modules (block classes, layers, containers and parameters) as a
tree of :class:`_TNode`, which :func:`_step` walks to write ``self.blocks[0].attn.proj``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nndsl.backends.torch.codegen.source import _is_attr_name, _str_lit, _Unsupported
from nndsl.ir.graph import Graph, Value
from nndsl.ir.regions import placed_regions

# Attributes of nn.ModuleDict that a key may not shadow: such a container is written as a scope.
_MODULEDICT_ATTRS = frozenset({"keys", "items", "values", "update", "pop", "clear"})


# ---- regions ----

@dataclass(eq=False)
class _Region:
    """One recorded block application: the nodes ``order[start:end]`` compute ``outputs`` from
    ``inputs``; ``qual`` is its scope, ``parent`` the innermost region around it, and ``valid``
    turns false when it is dissolved into its parent."""

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
        """Whether the node at index ``i`` of the order is one of the region's."""
        return self.start <= i < self.end

    def owns_path(self, path: str) -> bool:
        """Whether a parameter or scope path lies inside the region's scope."""
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
    raw = placed_regions(graph)
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

    # parameters are reached by path and numbers (`scalar`) written where they are used: neither
    # ties a region to the values around it
    free = ("param", "scalar")
    for j, node in enumerate(order):
        for v in node.inputs:
            if v is not None and order[pos[v.node]].op not in free:
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
                        p.op not in free and not r.has_index(pos[v.node]):
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


# ---- the module tree ----

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
    """The attribute paths of the generated modules: a class per valid region, a module per
    layer (``layers``: scope -> the layer found there), the other parameters, and the plain
    containers between them, each styled as attributes, an ``nn.ModuleList`` or a dict."""
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
    absorbed = set()
    for qual, layer in layers.items():
        names = [f"{qual}.{leaf}" for leaf in layer.leaves]
        at = min(pos[n] for n in names) if names else min(pos[a] for a in layer.apps)
        node = insert(qual, "layer", at, layer)
        if node.children:
            raise _Unsupported(f"layer `{qual}` has nested scopes")
        for leaf, name in zip(layer.leaves, names):
            node.children[leaf] = _TNode("lparam", leaf, pos[name], graph.node(name))
            absorbed.add(name)
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
    style(root)
    return root


def _children(t: _TNode) -> list:
    """A node's ``(key, child)`` pairs in the order they are written: by index in a list, else
    in graph order."""
    if t.style == "list":
        return sorted(t.children.items(), key=lambda kv: int(kv[0]))
    return sorted(t.children.items(), key=lambda kv: (kv[1].order, kv[0]))


def _step(expr: str, parent: _TNode, key: str) -> str:
    """The expression for child ``key`` of the module at ``expr``."""
    if parent.style == "list":
        return f"{expr}[{int(key)}]"
    if parent.style == "dict":
        return f"{expr}[{_str_lit(key)}]"
    return f"{expr}.{key}" if _is_attr_name(key) else f"getattr({expr}, {_str_lit(key)})"
