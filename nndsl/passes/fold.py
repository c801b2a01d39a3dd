"""Constant-subgraph folding (O1, training-safe): tensors computed from nothing but the graph
become buffers, computed once at compile time instead of on every forward.

A value is *constant* when it is computed from the sources ``scalar``, ``full`` and ``arange``
only, through ops NumPy can replay (:data:`nndsl.ir.evaluate.EVALUATORS`: arithmetic,
comparisons and logic, ``where``, ``masked_fill``, ``tril``/``triu``, ``exp``/``log``/``sin``/
``cos``/..., ``cast``, ``matmul``, reshapes, permutes, slices, concatenation, some reductions),
and every shape on the way is static: a dim of an input (``T`` of ``x: f32[B, T, C]``) keeps
the subgraph running. Each constant value that something else reads is replaced by a
non-trainable ``param`` (a buffer) holding ``constant(program=...)``: the subgraph as a small
program (op, operand steps, non-default attributes), evaluated in NumPy by both backends alike
(:mod:`nndsl.ir.derive`). Buffers are named ``{scope}.const`` (``src_pos.const``) after where
the subgraph was written; they are no part of the spec's checkpoints.

    ``inv_freq = exp(cast(arange(8), f32) * -1.15)``  ⇒  ``inv_freq = param {derive=constant(...)}``

Folding only pays for real work: a value built from sources by reshapes, casts, slices and
concatenation alone (``unsqueeze(arange(8), 0)``) is left as it is, as are single numbers; an
``expand`` is kept, reading the folded value before it (no broadcast copy is stored); a model
output stays computed (a caller may write to what the model returns). A value
of more than :data:`MAX_ELEMENTS` elements stays computed, and so does one whose value the
backends would disagree on (:class:`nndsl.ir.evaluate.Unfoldable`). Runs after the fusions,
which recognise some constants by their form (a causal mask becomes ``causal=true``).
"""

from __future__ import annotations

from nndsl.ir.evaluate import EVALUATORS, NP_DTYPES, Unfoldable, constant, symbolic
from nndsl.ir.graph import Graph, Node
from nndsl.ir.ops import SIGNATURES
from nndsl.passes.rewrite import Rewriter, derived_param

MAX_ELEMENTS = 1 << 24     # 16M elements: larger constants stay computed
SOURCES = ("scalar", "full", "arange")
# ops that only move or relabel elements: a constant made of nothing else is not worth a buffer
MOVES = SOURCES + ("cast", "reshape", "flatten", "squeeze", "unsqueeze", "expand", "transpose",
                   "permute", "slice", "concat", "stack", "flip", "roll", "repeat_interleave")


def _numel(node: Node) -> int | None:
    n = 1
    for d in node.type.shape:
        if not isinstance(d, int):
            return None
        n *= d
    return n


def constant_nodes(graph: Graph) -> dict[str, Node]:
    """The nodes whose value is a constant the pass can compute, by name, in graph order."""
    const: dict[str, Node] = {}
    for n in graph:
        if n.op not in EVALUATORS or len(n.types) != 1:
            continue
        if any(v is None or v.node not in const for v in n.inputs):
            continue
        size = _numel(n)
        if size is None or size > MAX_ELEMENTS or n.type.dtype not in NP_DTYPES or \
                symbolic(n.attrs):
            continue
        const[n.name] = n
    return const


def _roots(graph: Graph, const: dict, readers: dict) -> list[str]:
    """Constant values read by something that is not constant (or by an output)."""
    outputs = {v.node for _, v in graph.outputs}
    return [c for c in const if c in outputs or
            any(r.name not in const for r in readers.get(c, []))]


def _ancestors(const: dict, root: str) -> set[str]:
    seen, stack = set(), [root]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        stack.extend(v.node for v in const[name].inputs)
    return seen


def program_of(graph_order: list, const: dict, root: str) -> tuple:
    """The steps computing ``root``: its constant ancestors in graph order, each
    ``(op, operand steps, attributes that are not the op's defaults)``."""
    mine = _ancestors(const, root)
    index: dict[str, int] = {}
    steps = []
    for name in graph_order:
        if name not in mine:
            continue
        n = const[name]
        defaults = SIGNATURES[n.op].attrs
        attrs = tuple((k, v) for k, v in n.attrs if not (   # 0 is no default 0.0: types stay
            k in defaults and type(defaults[k]) is type(v) and defaults[k] == v))
        steps.append((n.op, tuple(index[v.node] for v in n.inputs), attrs))
        index[name] = len(steps) - 1
    return tuple(steps)


def _buffer_name(scope: str, taken: set, params: list) -> str:
    """``{scope}.const`` (then ``const_1``, ...): a name no node has, that is no parameter's
    scope and lies in no parameter."""
    base = f"{scope}.const" if scope else "const"
    name, i = base, 0
    while name in taken or any(p.startswith(name + ".") or name.startswith(p + ".")
                               for p in params):
        i += 1
        name = f"{base}_{i}"
    return name


def fold_constant_tensors(graph: Graph) -> tuple[Graph, bool]:
    """Constant subgraphs (from ``scalar``/``full``/``arange`` with static shapes) become
    buffers ``param {derive=constant(program)}``; see the module docstring."""
    const = constant_nodes(graph)
    if not const:
        return graph, False
    readers = graph.reader_map()
    while True:    # an expand of a constant reads the folded value before it
        wide = [r for r in _roots(graph, const, readers) if const[r].op == "expand"]
        if not wide:
            break
        for r in wide:
            del const[r]
    order = [n.name for n in graph]
    outputs = {v.node for _, v in graph.outputs}
    folds: dict[str, tuple] = {}
    for root in _roots(graph, const, readers):
        if const[root].op in SOURCES or root in outputs:   # no output is a module's buffer
            continue
        program = program_of(order, const, root)
        if all(op in MOVES for op, _, _ in program):
            continue
        try:
            constant(program)      # computed now: what cannot be is left to run
        except Unfoldable:
            continue
        folds[root] = program
    if not folds:
        return graph, False
    rw = Rewriter(graph)
    taken = set(order)
    params = [n.name for n in graph.params()]
    for node in graph:
        if node.name not in folds:
            rw.add(rw.remapped(node))
            continue
        name = _buffer_name(node.scope, taken, params)
        taken.add(name)
        params.append(name)
        p = derived_param(rw, name, node, node.type.shape, "constant", [],
                          dtype=node.type.dtype, trainable=False, program=folds[node.name])
        rw.replace(node, [p.out()])
    return rw.finish(), True
