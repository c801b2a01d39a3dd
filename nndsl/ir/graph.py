"""The typed graph IR: frozen nodes in a deterministic order, with each node's readers indexed.

A :class:`Node` is one operation: its op name, the values it reads (in operand order — an op
like ``add(x, x)`` reads the same value twice, so order lives on the node, not on edges), its
attributes, the types of its outputs, the source span it came from and its scope path
(``stages.1.basic_0``). A :class:`Value` names one output of one node.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Iterator


from nndsl.errors import Span
from nndsl.ir.types import TensorType


@dataclass(frozen=True, order=True)
class Value:
    node: str
    index: int = 0

    def __str__(self) -> str:
        return f"%{self.node}" + (f"#{self.index}" if self.index else "")


def freeze(x: Any) -> Any:
    """Attributes must be hashable: lists become tuples, dicts become sorted item tuples."""
    if isinstance(x, list):
        return tuple(freeze(v) for v in x)
    if isinstance(x, tuple):
        return tuple(freeze(v) for v in x)
    if isinstance(x, dict):
        return tuple(sorted((k, freeze(v)) for k, v in x.items()))
    return x


class Body:
    """The subgraph a node runs repeatedly (``scan``): an immutable :class:`Graph` as an attribute.

    The body's ``input`` nodes are, in order, what the node gives it at each step (the per-step
    slices, the carried state, then the outer values it reads, "captures"); its outputs are what
    a step returns. Two bodies are equal when their graphs are: the same nodes (names, ops,
    operands, attributes, types, scopes), inputs and outputs, so nodes stay hashable and
    comparable. Nobody mutates a body's graph: a pass that changes it builds a new ``Body``.
    """

    __slots__ = ("graph", "_key", "_hash", "cache")

    def __init__(self, graph: "Graph"):
        self.graph = graph
        self._key: tuple | None = None
        self._hash: int | None = None
        self.cache: dict = {}   # what backends derive from the body (a torch plan), built once

    @property
    def key(self) -> tuple:
        if self._key is None:
            g = self.graph
            self._key = (g.name, tuple(g), tuple(g.inputs), tuple(g.outputs))
        return self._key

    def __eq__(self, other) -> bool:
        return isinstance(other, Body) and (other is self or other.key == self.key)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(self.key)
        return self._hash

    def __repr__(self) -> str:
        ops = sum(1 for n in self.graph if n.op != "input")
        return f"<{self.graph.name}: {ops} ops>"

    def __deepcopy__(self, memo) -> "Body":
        return self     # immutable: a copied module shares it

    def __reduce__(self):
        return (Body, (self.graph,))     # what backends cached is rebuilt, not pickled


def body_of(node: "Node") -> "Body | None":
    """The subgraph a node runs (``scan``), or None for an ordinary op."""
    for _, v in node.attrs:
        if isinstance(v, Body):
            return v
    return None


@dataclass(frozen=True)
class Node:
    name: str
    op: str
    inputs: tuple  # of Value | None (None: an optional operand that is absent)
    attrs: tuple  # sorted (key, value) pairs
    types: tuple  # of TensorType, one per output
    span: Span | None = field(default=None, compare=False)
    scope: str = ""

    @staticmethod
    def make(name: str, op: str, inputs: Iterable, attrs: dict, types: Iterable[TensorType],
             span: Span | None = None, scope: str = "") -> "Node":
        return Node(name, op, tuple(inputs), tuple(sorted((k, freeze(v)) for k, v in attrs.items())),
                    tuple(types), span, scope)

    @property
    def attr(self) -> dict:
        return dict(self.attrs)

    @property
    def type(self) -> TensorType:
        return self.types[0]

    def out(self, i: int = 0) -> Value:
        return Value(self.name, i)

    def under(self, scope: str) -> bool:
        """Whether the node is in ``scope`` (``stages`` holds ``stages.0.conv1``) or is the
        layer ``scope`` itself."""
        return any(x == scope or x.startswith(scope + ".") for x in (self.scope, self.name))

    def with_(self, **changes) -> "Node":
        if "attrs" in changes and isinstance(changes["attrs"], dict):
            changes["attrs"] = tuple(sorted((k, freeze(v)) for k, v in changes["attrs"].items()))
        return replace(self, **changes)


class Graph:
    """A DAG of :class:`Node` in insertion order (always a valid topological order).

    ``inputs`` are the names of ``input`` nodes in declared order; ``outputs`` are
    ``(name, Value)`` pairs in declared order. ``meta`` holds model-level facts that are not
    nodes: the model name and parameters, runtime constraints on symbolic dims, and the valid
    value range of integer inputs.
    """

    def __init__(self, name: str = "model"):
        self.name = name
        self._nodes: dict[str, Node] = {}
        self._fresh: dict[str, int] = {}  # fresh_name: next suffix to try per hint
        self._readers: dict[str, list[Node]] = {}   # node name -> its readers, one per slot
        self.inputs: list[str] = []
        self.outputs: list[tuple[str, Value]] = []
        self.meta: dict[str, Any] = {"constraints": [], "input_ranges": {}, "input_dists": {},
                                     "params": {}}

    # ---- building ----
    def add(self, node: Node) -> Node:
        if node.name in self._nodes:
            raise ValueError(f"duplicate node name {node.name}")
        for v in node.inputs:
            if v is not None and v.node not in self._nodes:
                raise ValueError(f"node {node.name} reads undefined value {v}")
        self._nodes[node.name] = node
        for v in node.inputs:
            if v is not None:
                self._readers.setdefault(v.node, []).append(node)
        if node.op == "input":
            self.inputs.append(node.name)
        return node

    def update(self, node: Node) -> Node:
        """Put ``node`` in the place of the node of its name: same operands and output types,
        other attributes (a rule that changes a producer upstream keeps its name and its
        place in the order)."""
        old = self._nodes[node.name]
        if node.inputs != old.inputs or node.types != old.types:
            raise ValueError(f"update of {node.name} changes its operands or types")
        self._nodes[node.name] = node
        for v in node.inputs:
            if v is not None:
                self._readers[v.node] = [node if r is old else r for r in self._readers[v.node]]
        return node

    def take_over(self, node: Node) -> Node:
        """Put ``node`` at the end of the graph under the name of a node nothing reads yet
        (that node goes): a rule rebuilding the producer above it with new operands keeps the
        producer's name, and the new operands (derived weights) come before it."""
        old = self._nodes[node.name]
        if self._readers.get(node.name):
            raise ValueError(f"take_over of {node.name}: it has readers")
        for v in old.inputs:
            if v is not None:
                self._readers[v.node] = [r for r in self._readers[v.node] if r is not old]
        del self._nodes[node.name]
        if old.op == "input":
            self.inputs.remove(old.name)
        return self.add(node)

    def fresh_name(self, hint: str) -> str:
        if hint not in self._nodes:
            return hint
        i = self._fresh.get(hint, 1)  # names below it are taken: no quadratic rescans
        while f"{hint}_{i}" in self._nodes:
            i += 1
        self._fresh[hint] = i
        return f"{hint}_{i}"

    def set_output(self, name: str, value: Value) -> None:
        self.outputs.append((name, value))

    # ---- reading ----
    def __iter__(self) -> Iterator[Node]:
        return iter(self._nodes.values())

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, name: str) -> bool:
        return name in self._nodes

    def node(self, name: str) -> Node:
        return self._nodes[name]

    def type_of(self, v: Value) -> TensorType:
        return self._nodes[v.node].types[v.index]

    def producer(self, v: Value) -> Node:
        return self._nodes[v.node]

    def readers(self, name: str) -> list[Node]:
        """The nodes that read node ``name``, in graph order, once per operand slot that
        reads it (``x * x`` reads ``x`` twice). Kept as nodes are added; do not modify."""
        return self._readers.get(name, [])

    def reader_map(self) -> dict[str, list[Node]]:
        """Every node's readers (:meth:`readers`) by node name; do not modify."""
        return self._readers

    def params(self) -> list[Node]:
        """``param`` nodes (trainable parameters and buffers) in spec order."""
        return [n for n in self._nodes.values() if n.op == "param"]

    def copy(self) -> "Graph":
        g = Graph(self.name)
        for n in self._nodes.values():
            g.add(n)
        g.outputs = list(self.outputs)
        g.meta = {k: (v.copy() if hasattr(v, "copy") else v) for k, v in self.meta.items()}
        return g
