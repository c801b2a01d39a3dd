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
    placed: dict[int, dict] = {}
    for q, group in by_name.items():
        inside = sorted(index[n.name] for n in graph if n.op != "param" and
                        (n.scope == q or n.scope.startswith(q + ".")))
        group.sort(key=lambda r: max(index[v.node] for v in r["outputs"]))
        lo = 0
        for r in group:
            end = max(index[v.node] for v in r["outputs"])
            mine = [i for i in inside if lo <= i <= end]
            lo = end + 1
            if mine:
                placed[id(r)] = {**r, "start": min(mine), "end": max(mine) + 1}
    return [placed[id(r)] for r in regions if id(r) in placed]
