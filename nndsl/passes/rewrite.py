"""Building a new graph from an old one, and the rule driver every rewriting pass uses.

A pass never mutates its input. A :class:`Rewriter` walks the source graph in order and copies
each node into a fresh graph, with its operands renamed through a value map; a rule may instead
emit replacement nodes and map the old node's outputs to them. Nodes left without readers are
swept at the end (graph inputs and parameters are kept: passes below O2 never change the
parameter set).

A :class:`Rule` has a ``match`` that returns a match object or a string saying why it declines,
and a ``rewrite`` that emits the replacement. :func:`apply_rules` runs rules to a fixed point.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Callable, Iterator

from nndsl.ir.graph import Graph, Node, Value
from nndsl.ir.ops import SIGNATURES, infer
from nndsl.ir.types import TensorType


def user_counts(graph: Graph) -> dict[str, int]:
    """How many operand slots (plus graph outputs) read each node."""
    counts: dict[str, int] = {}
    for node in graph:
        for v in node.inputs:
            if v is not None:
                counts[v.node] = counts.get(v.node, 0) + 1
    for _, v in graph.outputs:
        counts[v.node] = counts.get(v.node, 0) + 1
    return counts


class Rewriter:
    def __init__(self, src: Graph):
        self.src = src
        self.out = Graph(src.name)
        self.out.meta = {k: (v.copy() if hasattr(v, "copy") else v) for k, v in src.meta.items()}
        self.map: dict[Value, Value] = {}
        self.users = user_counts(src)
        self.changed = False
        self.current: Node | None = None   # the source node the rules are looking at
        self.notes: dict = {}    # what a rule works out once per round (a group rewrite's groups)

    def readers(self, name: str) -> list[Node]:
        """The nodes of the source graph that read node ``name``."""
        return self.src.readers(name)

    # values and producers in the new graph
    def value(self, v: Value | None) -> Value | None:
        return None if v is None else self.map.get(v, v)

    def producer(self, v: Value | None) -> Node | None:
        return None if v is None else self.out.node(v.node)

    def type_of(self, v: Value) -> TensorType:
        return self.out.type_of(v)

    def single_use(self, node: Node) -> bool:
        """Whether the source graph reads ``node`` exactly once (so fusing it away is safe)."""
        return self.users.get(node.name, 0) == 1 and node.name not in \
            {v.node for _, v in self.src.outputs}

    def remapped(self, node: Node) -> Node:
        if not self.map:
            return node
        inputs = tuple(self.value(v) for v in node.inputs)
        return node if inputs == node.inputs else node.with_(inputs=inputs)

    # building
    def keep(self, node: Node) -> Node:
        n = self.remapped(node)
        self.out.add(n)
        return n

    def emit(self, op: str, inputs: list, attrs: dict, like: Node, name: str | None = None,
             span=None) -> Node:
        """Add a new node of ``op``; its types come from the op's shape rule."""
        in_types = [self.type_of(v) if v is not None else None for v in inputs]
        types = infer(op, in_types, {**SIGNATURES[op].attrs, **attrs})
        node = Node.make(self.out.fresh_name(name or like.name), op, inputs, attrs, types,
                         span if span is not None else like.span, like.scope)
        return self.out.add(node)

    def add(self, node: Node) -> Node:
        return self.out.add(node)

    def take_over(self, node: Node) -> Node:
        """Rebuild a node already in the new graph under its own name with other operands; it
        moves to the end, after what the rule emitted for it (it must have no reader yet: the
        node being rewritten was its only one)."""
        self.changed = True
        return self.out.take_over(node)

    def update(self, node: Node) -> Node:
        """Change a node already in the new graph in place, under its own name (its operands
        and types stay): how a rule at an activation gives the layer above it an epilogue."""
        self.changed = True
        return self.out.update(node)

    def replace(self, old: Node, values: list[Value]) -> None:
        for i, v in enumerate(values):
            self.map[old.out(i)] = v
        self.changed = True

    def finish(self, sweep: bool = True, keep_params: bool = True) -> Graph:
        """The new graph: outputs (and block regions) follow the value map; dead nodes go."""
        self.out.outputs = [(n, self.value(v)) for n, v in self.src.outputs]
        regions = self.out.meta.get("regions")
        if regions and self.map:
            self.out.meta["regions"] = [
                {**r, "inputs": [self.value(v) for v in r["inputs"]],
                 "outputs": [self.value(v) for v in r["outputs"]]} for r in regions]
        if sweep:
            swept = sweep_dead(self.out, keep_params)
            self.changed = self.changed or len(swept) != len(self.out)
            return swept
        return self.out


def sweep_dead(graph: Graph, keep_params: bool = True) -> Graph:
    """The graph without nodes that nothing reads (inputs and, by default, parameters stay)."""
    live: set[str] = {v.node for _, v in graph.outputs}
    for node in reversed(list(graph)):
        if node.name in live or node.op == "input" or (keep_params and node.op == "param"):
            live.add(node.name)
            live.update(v.node for v in node.inputs if v is not None)
    if len(live) == len(graph):
        return graph
    g = Graph(graph.name)
    g.meta = graph.meta
    for node in graph:
        if node.name in live:
            g.add(node)
    g.outputs = list(graph.outputs)
    return g


@dataclass(frozen=True)
class Rule:
    name: str
    match: Callable      # (rewriter, node) -> match object | str (why it declines) | None
    rewrite: Callable    # (rewriter, node, match) -> list[Value] replacing node's outputs


@dataclass(frozen=True)
class Decision:
    """What a rule did with a candidate: fired, or declined and why. A rule's match that
    returns None does not see a candidate at all and leaves no decision."""
    rule: str
    node: str
    scope: str
    fired: bool
    why: str = ""
    span: object = None


ROUND_LIMIT = "(round limit)"    # the rule name of the decision that says the loop stopped early

_EXPLAIN: ContextVar[bool] = ContextVar("nndsl_explain_rules", default=False)
_LOG: ContextVar["DecisionLog | None"] = ContextVar("nndsl_rule_log", default=None)


@contextmanager
def explaining() -> Iterator[None]:
    """Within it, every pass pipeline records its rules' decisions on its pass records
    (``PassRecord.decisions``): what ``nndsl inspect --explain PASS`` prints."""
    token = _EXPLAIN.set(True)
    try:
        yield
    finally:
        _EXPLAIN.reset(token)


class DecisionLog(list):
    """Decisions in the order they were taken; ``driven`` says whether the rule driver ran at
    all (a pass that is its own loop records nothing and stays undriven)."""
    driven = False


@contextmanager
def collecting() -> Iterator[DecisionLog | None]:
    """The log the rules applied within it record their decisions in, when explaining; else
    None (and nothing is recorded)."""
    if not _EXPLAIN.get():
        yield None
        return
    log = DecisionLog()
    token = _LOG.set(log)
    try:
        yield log
    finally:
        _LOG.reset(token)


def apply_rules(graph: Graph, rules: list[Rule], max_rounds: int = 8) -> tuple[Graph, bool]:
    """Apply ``rules`` until none fires (at most ``max_rounds`` sweeps over the graph). When
    explaining, each fire and each reasoned decline is recorded, and so is stopping at the
    round limit with rules still firing."""
    log = _LOG.get()
    if log is not None:
        log.driven = True
    changed_any = False
    for _ in range(max_rounds):
        rw = Rewriter(graph)
        for node in graph:
            n = rw.remapped(node)
            rw.current = node
            for rule in rules:
                m = rule.match(rw, n)
                if m is None:
                    continue
                if isinstance(m, str):
                    if log is not None:
                        log.append(Decision(rule.name, n.name, n.scope, False, m, n.span))
                    continue
                if log is not None:
                    log.append(Decision(rule.name, n.name, n.scope, True, "", n.span))
                rw.replace(node, rule.rewrite(rw, n, m))
                break
            else:
                rw.add(n)
        out = rw.finish()
        if not rw.changed:
            break            # nothing fired: keep the graph we had
        graph = out
        changed_any = True
    else:
        if log is not None:
            log.append(Decision(ROUND_LIMIT, "", "", False,
                                f"stopped after {max_rounds} rounds with rules still firing: "
                                f"the result may not be a fixed point"))
    return graph, changed_any


def derived_param(rw: Rewriter, name: str, like: Node, shape, fn: str, sources,
                  dtype: str = "f32", trainable: bool = True, **options):
    """A new ``param`` node holding ``fn(*sources, **options)`` (see :mod:`nndsl.ir.derive`).
    Its node and its parameter name are one: a fresh one when ``name`` is taken (a layer
    folded twice gets ``conv.folded_weight_1``)."""
    name = rw.out.fresh_name(name)
    attrs = {"name": name, "shape": tuple(shape), "dtype": dtype, "init": None,
             "trainable": trainable,
             "derive": (fn, tuple(sources), tuple(sorted(options.items())))}
    return rw.emit("param", [], attrs, like=like, name=name)


def resize_params(graph: Graph, takes: dict, attrs=None) -> Graph:
    """``graph`` with parameters cut down to kept slices and every other node rebuilt with the
    types its shape rule gives for the new sizes. ``takes``: param name -> ``[(axis, kept
    index)]`` (each a derived ``take``, so weights still load in the spec's names);
    ``attrs(node, rw, new_node)`` gives a rebuilt node's attributes (default: its own)."""
    from nndsl.ir.derive import expression
    rw = Rewriter(graph)
    rw.out.meta.setdefault("source_params", tuple(graph.params()))
    for node in graph:
        n = rw.remapped(node)
        if node.op == "param" and node.name in takes:
            expr, shape = expression(node), list(node.type.shape)
            for axis, index in takes[node.name]:
                expr = ("take", (expr,), (("axis", axis), ("index", index)))
                shape[axis] = len(index)
            new = rw.emit("param", [], {**node.attr, "shape": tuple(shape), "derive": expr},
                          like=node, name=node.name)
        elif node.op in ("input", "param"):
            new = rw.add(n)
        else:
            new = rw.emit(node.op, list(n.inputs), node.attr if attrs is None else
                          attrs(node, rw, n), like=node, name=node.name)
        for i in range(len(node.types)):
            rw.map[node.out(i)] = new.out(i)
    return rw.finish(keep_params=False)
