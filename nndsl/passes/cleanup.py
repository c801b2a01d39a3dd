"""Clean-up passes (O1, training-safe): dead code, common subexpressions, constant folding,
algebraic simplification. None of them touches the parameter set."""

from __future__ import annotations

from nndsl.ir.graph import Graph, Node, Value
from nndsl.ir.ops import SIGNATURES, ops_with
from nndsl.passes.rewrite import Rewriter, Rule, apply_rules, sweep_dead

RANDOM_OPS = ops_with("random")   # two dropouts of one tensor are different draws: never merged
TYPE_DETERMINED = ops_with("type_determined")


def dce(graph: Graph) -> tuple[Graph, bool]:
    """Dead-code elimination: drop every node no output depends on (inputs and parameters stay).

    ``y = f(x); z = g(x); output y``  ⇒  ``y = f(x); output y``
    """
    out = sweep_dead(graph)
    return out, out is not graph


def cse(graph: Graph) -> tuple[Graph, bool]:
    """Common-subexpression elimination: one node per distinct (op, operands, attributes).

    ``a = x - m; b = x - m``  ⇒  ``a = x - m; b = a``   (never for random ops such as dropout)
    """
    rw = Rewriter(graph)
    seen: dict[tuple, Node] = {}
    for node in graph:
        n = rw.remapped(node)
        if n.op in ("input", "param", "scan") + RANDOM_OPS:   # a scan's body may draw
            rw.add(n)
            continue
        key = (n.op, n.inputs, n.attrs, n.types)
        if key in seen:
            rw.replace(node, [seen[key].out(i) for i in range(len(n.types))])
            continue
        seen[key] = rw.add(n)
    out = rw.finish()
    return out, rw.changed


# ---- constant folding: rank-0 arithmetic on scalar constants ----
_FOLD = {op: sig.scalar for op, sig in SIGNATURES.items() if sig.scalar is not None}


def _scalar_value(rw: Rewriter, v: Value | None):
    p = rw.producer(v)
    return p.attr["value"] if p is not None and p.op == "scalar" else None


def _fold_match(rw: Rewriter, n: Node):
    if n.op not in _FOLD or n.type.rank != 0 or not n.inputs:
        return None
    vals = [_scalar_value(rw, v) for v in n.inputs]
    if any(v is None for v in vals):
        return None
    try:
        value = _FOLD[n.op](*vals)
    except (ValueError, ZeroDivisionError, OverflowError):
        return "not foldable: the operation has no finite value"
    if isinstance(value, complex):
        return "not foldable: complex result"
    return value


def _fold_rewrite(rw: Rewriter, n: Node, value):
    value = float(value) if n.type.dtype.startswith(("f", "b")) and n.type.dtype != "bool" \
        else value
    return [rw.emit("scalar", [], {"value": value, "dtype": n.type.dtype}, like=n).out()]


def constant_fold(graph: Graph) -> tuple[Graph, bool]:
    """Constant folding: arithmetic whose operands are all scalar constants becomes a constant.

    ``c = 1 / sqrt(64)``  ⇒  ``c = 0.125``.  (Shape arithmetic — dims, sizes, slice bounds — is
    already evaluated while elaborating, so every shape in the IR is a folded constant or a
    canonical polynomial in the symbolic dims.)
    """
    return apply_rules(graph, [Rule("fold_scalar", _fold_match, _fold_rewrite)])


# ---- algebraic simplification ----
def _is_const(rw, v, value) -> bool:
    c = _scalar_value(rw, v)
    return c is not None and c == value


def _same_type(rw: Rewriter, n: Node, v: Value) -> bool:
    return rw.type_of(v) == n.type


def _identity_match(rw: Rewriter, n: Node):
    """The operand that ``n`` merely passes through, if it is a no-op."""
    a = n.attr
    ins = n.inputs
    if n.op in ("add", "sub") and _is_const(rw, ins[1], 0) and _same_type(rw, n, ins[0]):
        return ins[0]
    if n.op == "add" and _is_const(rw, ins[0], 0) and _same_type(rw, n, ins[1]):
        return ins[1]
    if n.op in ("mul", "div", "pow") and _is_const(rw, ins[1], 1) and _same_type(rw, n, ins[0]):
        return ins[0]
    if n.op == "mul" and _is_const(rw, ins[0], 1) and _same_type(rw, n, ins[1]):
        return ins[1]
    if n.op in TYPE_DETERMINED and _same_type(rw, n, ins[0]):
        return ins[0]
    if n.op == "permute" and tuple(d % n.type.rank for d in a["dims"]) == \
            tuple(range(n.type.rank)):
        return ins[0]
    if n.op in RANDOM_OPS and a.get("p", 0.5) == 0.0:
        return ins[0]
    p = rw.producer(ins[0]) if ins and ins[0] is not None else None
    if n.op == "transpose" and p is not None and p.op == "transpose":
        r = n.type.rank
        if {a["dim0"] % r, a["dim1"] % r} == {p.attr["dim0"] % r, p.attr["dim1"] % r}:
            return p.inputs[0]
    if n.op == "squeeze" and p is not None and p.op == "unsqueeze" and \
            rw.type_of(p.inputs[0]) == n.type:
        return p.inputs[0]
    return None


def _chain_match(rw: Rewriter, n: Node):
    """reshape(reshape(x)) ⇒ reshape(x); flatten(reshape(x)) likewise."""
    if n.op not in ("reshape", "flatten"):
        return None
    p = rw.producer(n.inputs[0])
    if p is None or p.op not in ("reshape", "flatten") or not rw.single_use(p):
        return None
    return p.inputs[0]


def _chain_rewrite(rw: Rewriter, n: Node, x: Value):
    return [rw.emit("reshape", [x], {"shape": n.type.shape}, like=n).out()]


SIMPLIFY_RULES = [
    Rule("identity", _identity_match, lambda rw, n, v: [v]),
    Rule("reshape_chain", _chain_match, _chain_rewrite),
]


def simplify(graph: Graph) -> tuple[Graph, bool]:
    """Algebraic simplification:

    ``x + 0 = x - 0 = x * 1 = x / 1 = x ** 1 = x``;  ``transpose(transpose(x, a, b), a, b) = x``;
    ``reshape(reshape(x, s1), s2) = reshape(x, s2)``;  a reshape, flatten, expand, cast or
    squeeze to the type it already has, an identity permute, ``dropout(p=0)`` and ``drop_path(p=0)`` are ``x``;
    ``squeeze(unsqueeze(x, d), d) = x``.
    """
    return apply_rules(graph, SIMPLIFY_RULES)
