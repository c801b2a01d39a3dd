"""Sizes of the graph family: GCN, GraphSAGE, GAT and GIN, message passing over an edge list
(node features x [V, F], edge_index [2, E]; the node count V is the "batch"). The small versions
keep every structure (two or more layers, several attention heads averaged in GAT's last layer)
at a few units, and no dropout, so that optimized and unoptimized graphs give the same numbers
in training mode."""

SMALL = {
    "gcn": {"F": 12, "hidden": 8, "classes": 5, "p": 0.0},
    "graphsage": {"F": 12, "hidden": 16, "classes": 5, "p": 0.0},
    "gat": {"F": 12, "hidden": 4, "heads": 3, "classes": 5, "out_heads": 2, "p": 0.0},
    "gin": {"F": 6, "hidden": 16, "layers": 3, "classes": 3, "p": 0.0},
}

# No published reference counts: the papers give the architectures, not the counts.
# tests/test_graph_ops.py checks each spec's count against the arithmetic of its architecture.
REFERENCE: dict = {}
