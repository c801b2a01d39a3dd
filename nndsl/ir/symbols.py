"""Choosing concrete values for symbolic dims: batch size, and defaults for the rest.

The batch symbol is the leading dim of an input. Other symbols take the first candidate size for
which every ``assert`` recorded on symbolic dims holds and every dim in the graph is positive.
"""

from __future__ import annotations

import math

from nndsl.errors import ArgumentError
from nndsl.ir.graph import Graph
from nndsl.ir.types import SymDim, evaluate_dim

CANDIDATES = (16, 8, 32, 64, 4, 128, 224, 256, 2, 1)


def symbols(graph: Graph) -> list[str]:
    out: list[str] = []
    for name in graph.inputs:
        for d in graph.node(name).type.shape:
            if isinstance(d, SymDim):
                for s in sorted(d.symbols()):
                    if s not in out:
                        out.append(s)
    return out


def batch_symbols(graph: Graph) -> list[str]:
    out = []
    for name in graph.inputs:
        shape = graph.node(name).type.shape
        if shape and isinstance(shape[0], SymDim) and str(shape[0]) in shape[0].symbols():
            if str(shape[0]) not in out:
                out.append(str(shape[0]))
    return out


def check_constraint(cond, env: dict) -> bool:
    op, a, b = cond.op, cond.left, cond.right
    if op == "divisible":
        return evaluate_dim(a, env) % b == 0
    if op == "not_divisible":
        return evaluate_dim(a, env) % b != 0
    x, y = evaluate_dim(a, env), evaluate_dim(b, env)
    return {"==": x == y, "!=": x != y, "<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]


def _valid(graph: Graph, env: dict) -> bool:
    for cond, _, _ in graph.meta.get("constraints", []):
        if not check_constraint(cond, env):
            return False
    for node in graph:
        for t in node.types:
            for d in t.shape:
                if isinstance(d, SymDim) and d.evaluate(env) <= 0:
                    return False
    return True


def bind_symbols(graph: Graph, batch: int = 1, **dims: int) -> dict[str, int]:
    """Concrete values for every symbol: ``batch`` for batch dims, ``dims`` by name, else defaults."""
    syms = symbols(graph)
    unknown = [k for k in dims if k not in syms]
    if unknown:
        raise ArgumentError(f"the model has no symbolic dim `{unknown[0]}`", code="E0223",
                            hint="its symbolic dims: " + (", ".join(syms) or "none"))
    env = {s: batch for s in batch_symbols(graph)}
    env.update(dims)
    rest = [s for s in syms if s not in env]
    if rest:
        divisors = [c.right for c, _, _ in graph.meta.get("constraints", [])
                     if c.op == "divisible"]
        lcm = 1
        for k in divisors:
            lcm = lcm * k // math.gcd(lcm, k)
        extra = tuple(lcm * m for m in (1, 2, 4, 8, 16, 3)) if lcm > 1 else ()
        for c in extra + CANDIDATES:
            trial = {**env, **{s: c for s in rest}}
            if _valid(graph, trial):
                return trial
        env.update({s: CANDIDATES[0] for s in rest})
    bad = [f"{c} ({msg})" if msg else str(c) for c, msg, _ in graph.meta.get("constraints", [])
           if not check_constraint(c, env)]
    if bad:
        raise ArgumentError("these dims break the spec's constraints: " + "; ".join(bad),
                            code="E0224", hint=f"dims used: {env}")
    return env
