"""``verify(graph)``: the IR invariants, checked between every pass.

Every operand defined before use (so the graph is acyclic); operand counts match the op's signature; every
node's output types equal what its shape rule computes; outputs name existing values. A failure
names the node and its source line and shows the IR around it.
"""

from __future__ import annotations

from nndsl.errors import NndslError, VerifyError
from nndsl.ir.graph import Graph, body_of
from nndsl.ir.ops import SHAPE_RULES, SIGNATURES


def verify(graph: Graph) -> None:
    """The invariants of ``graph`` and, recursively, of the bodies of its ``scan`` nodes (a body
    holds no parameters: what it reads from outside comes in as its inputs)."""
    seen: set[str] = set()
    for node in graph:
        body = body_of(node)
        if body is not None:
            if any(n.op == "param" for n in body.graph):
                _fail(graph, node, "its body holds a parameter; parameters live in the outer "
                                   "graph and come in as inputs")
            verify(body.graph)
        if node.op not in SIGNATURES:
            _fail(graph, node, f"unknown op `{node.op}`")
        sig = SIGNATURES[node.op]
        variadic = any(o.startswith("*") for o in sig.operands)
        fixed = [o for o in sig.operands if not o.startswith("*")]
        if (len(node.inputs) != len(fixed)) if not variadic else len(node.inputs) < len(fixed):
            _fail(graph, node, f"`{node.op}` takes {len(fixed)} operands, node has "
                               f"{len(node.inputs)}")
        for i, v in enumerate(node.inputs):
            if v is None:
                if i < len(fixed) and not fixed[i].endswith("?"):
                    _fail(graph, node, f"required operand `{fixed[i]}` is missing")
                continue
            if v.node not in seen:
                _fail(graph, node, f"operand {v} is used before it is defined")
            if v.index >= len(graph.node(v.node).types):
                _fail(graph, node, f"operand {v} names a missing output")
        in_types = [graph.type_of(v) if v is not None else None for v in node.inputs]
        try:
            expected = SHAPE_RULES[node.op](in_types, {**sig.attrs, **node.attr})
        except NndslError as e:
            _fail(graph, node, f"shape rule fails: {e.message}")
        if tuple(expected) != node.types:
            _fail(graph, node, f"declared types {', '.join(map(str, node.types))} differ from "
                               f"the shape rule's {', '.join(map(str, expected))}")
        seen.add(node.name)
    for name, v in graph.outputs:
        if v.node not in seen:
            _fail(graph, None, f"output `{name}` reads undefined value {v}")
    # Every operand is defined before it is read (checked above), so the graph is acyclic:
    # insertion order is a topological order by construction.


def _fail(graph: Graph, node, message: str):
    from nndsl.ir.printer import print_graph

    text = print_graph(graph).splitlines()
    context = ""
    if node is not None:
        idx = next((i for i, ln in enumerate(text) if ln.lstrip().startswith(f"%{node.name}:")), 0)
        context = "\n".join(text[max(0, idx - 3): idx + 4])
        message = f"node %{node.name} ({node.op}): {message}"
    raise VerifyError(message, span=node.span if node is not None else None,
                      notes=[("IR around the node:\n" + context, None)] if context else None,
                      hint="this is a compiler bug; please report it with the spec")
