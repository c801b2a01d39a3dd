"""The IR as text, one node a line — what ``nndsl inspect --ir`` shows and golden tests compare.

    %fc: f32[N, 10] = linear(%x, %fc.weight, %fc.bias)  # mlp.nn:7:9
"""

from __future__ import annotations

import os

from nndsl.ir.graph import Body, Graph, Node, body_of
from nndsl.ir.ops import SIGNATURES


def fmt_attr(v) -> str:
    if isinstance(v, tuple):
        return "[" + ", ".join(fmt_attr(x) for x in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, str):
        return v
    if isinstance(v, float):
        return repr(v)
    return str(v)


def fmt_derive(expr) -> str:
    """A derivation as a call: ``quantize_weight(fc.weight, to=i8)``."""
    if not isinstance(expr, tuple):
        return fmt_attr(expr)
    fn, sources, options = expr
    args = [fmt_derive(s) for s in sources] + [f"{k}={fmt_attr(v) if not isinstance(v, tuple) or len(v) <= 8 else f'[{len(v)} values]'}"
                                               for k, v in options if v is not None]
    return f"{fn}({', '.join(args)})"


def format_node(node: Node) -> str:
    outs = ", ".join(f"%{node.name}" + (f"#{i}" if i else "") for i in range(len(node.types)))
    types = ", ".join(str(t) for t in node.types)
    operands = ", ".join("_" if v is None else str(v) for v in node.inputs)
    defaults = SIGNATURES[node.op].attrs
    attrs = [(k, v) for k, v in node.attrs
             if not (k in defaults and defaults[k] == v) and k not in ("shape", "dtype")
             or "type_attrs" in SIGNATURES[node.op].traits and k in ("shape", "dtype")]
    if node.op in ("param", "input"):
        attrs = [(k, v) for k, v in attrs if k not in ("name",)]
    attrs = [(k, v) for k, v in attrs if not isinstance(v, Body)]   # printed below the node
    attr_s = (" {" + ", ".join(f"{k}={fmt_derive(v) if k == 'derive' else fmt_attr(v)}"
                               for k, v in attrs) + "}") if attrs else ""
    where = f"  # {os.path.basename(node.span.file)}:{node.span.line}:{node.span.col}" \
        if node.span else ""
    if len(node.types) > 1:
        lhs = f"{outs}: ({types})"
    else:
        lhs = f"{outs}: {types}"
    return f"{lhs} = {node.op}({operands}){attr_s}{where}"


def _input(graph: Graph, name: str) -> str:
    text = f"%{name}: {graph.node(name).type}"
    dist = graph.meta.get("input_dists", {}).get(name)
    if dist:
        args = ", ".join(f"{k}={v!r}" for k, v in dist.items() if k != "dist")
        text += f" ~ {dist['dist']}({args})"
    return text


def _body_lines(graph: Graph, indent: str) -> list[str]:
    """A ``scan`` body under its node: ``body(inputs) {``, its nodes, ``return ...``, ``}``."""
    lines = [indent + "body(" + ", ".join(f"%{n}: {graph.node(n).type}" for n in graph.inputs)
             + ") {"]
    for node in graph:
        if node.op != "input":
            lines += _node_lines(node, indent + "  ")
    lines.append(indent + "  return " + ", ".join(str(v) for _, v in graph.outputs))
    lines.append(indent + "}")
    return lines


def _node_lines(node: Node, indent: str) -> list[str]:
    lines = [indent + format_node(node)]
    body = body_of(node)
    if body is not None:
        lines += _body_lines(body.graph, indent + "  ")
    return lines


def print_graph(graph: Graph) -> str:
    lines = [f"graph {graph.name}(" + ", ".join(_input(graph, n) for n in graph.inputs) + ") {"]
    for node in graph:
        if node.op == "input":
            continue
        lines += _node_lines(node, "  ")
    outs = ", ".join(f"{name}=%{v.node}" + (f"#{v.index}" if v.index else "")
                     for name, v in graph.outputs)
    lines.append(f"  return {outs}")
    lines.append("}")
    return "\n".join(lines)
