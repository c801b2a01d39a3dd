"""Where each block application's nodes are in a graph, found when someone asks.

The elaborator records each block application in ``graph.meta["regions"]`` (its qualified
name, the block, its parameter values, its input and output values); passes carry the records
along (the rewriter maps their inputs and outputs through its value map), but never the node
ranges: a pass need not know that anyone reads them. :func:`placed_regions` derives each
application's range of nodes from the graph as it is — the nodes of its scope between the
previous application's outputs and its own — for the readers that need ranges (the code
generator's module tree, the torch module's gradient-checkpointing segments).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

from nndsl.ir.graph import Graph


def placed_regions(graph: Graph) -> list[dict]:
    """The recorded regions whose outputs are still in ``graph``, each with ``start`` and
    ``end``: the range of its non-parameter nodes. A block applied several times under one name
    is split at each application's outputs: its nodes come after the previous application's
    outputs. The recorded order is kept (a block's region comes after the regions nested in
    it)."""
    regions = graph.meta.get("regions")
    if not regions:
        return []
    index = {n.name: i for i, n in enumerate(graph)}
    by_name: dict[str, list] = {}
    for r in regions:
        if all(v.node in index for v in r["outputs"]):
            by_name.setdefault(r["qualname"], []).append(r)
    # the positions of each recorded scope's non-parameter nodes, in order: one pass over the
    # graph (each node under every prefix of its scope that names a region)
    inside: dict[str, list] = {q: [] for q in by_name}
    for i, n in enumerate(graph):
        if n.op == "param" or not n.scope:
            continue
        parts = n.scope.split(".")
        for k in range(1, len(parts) + 1):
            bucket = inside.get(".".join(parts[:k]))
            if bucket is not None:
                bucket.append(i)
    placed: dict[int, dict] = {}
    for q, group in by_name.items():
        mine_all = inside[q]
        group.sort(key=lambda r: max(index[v.node] for v in r["outputs"]))
        lo = 0
        for r in group:
            end = max(index[v.node] for v in r["outputs"])
            a, b = bisect_left(mine_all, lo), bisect_right(mine_all, end)
            lo = end + 1
            if a < b:
                placed[id(r)] = {**r, "start": mine_all[a], "end": mine_all[b - 1] + 1}
    return [placed[id(r)] for r in regions if id(r) in placed]
