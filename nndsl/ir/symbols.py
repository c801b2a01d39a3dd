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
        raise ArgumentError(f"the model has no symbolic dim `{unknown[0]}`", code="E0252",
                            hint="its symbolic dims: " + (", ".join(syms) or "none"))
    if not _positive_int(batch):
        raise ArgumentError(f"batch must be a positive int, got {batch!r}", code="E0223",
                            hint="--batch INT with INT >= 1")
    for k, v in dims.items():
        if not _positive_int(v):
            raise ArgumentError(f"the dim `{k}` must be a positive size, got {v!r}",
                                code="E0223", hint=f"--dim {k}=INT with INT >= 1")
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
    empty = non_positive_dim(graph, env) if dims else None    # (defaults avoid them already)
    if empty is not None:
        node, t, d, v = empty
        raise ArgumentError(f"at {_env_text(env)}, `{node.name}` would be {t} with {d} = {v}: "
                            f"a size must be at least 1", span=node.span, code="E0224",
                            hint="choose larger sizes with --dim NAME=INT")
    return env


def _positive_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _env_text(env: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in env.items())


def non_positive_dim(graph: Graph, env: dict):
    """The first ``(node, type, dim, value)`` whose symbolic dim is not positive under
    ``env`` (a size the inputs' sizes make zero or negative), or None."""
    for node in graph:
        for t in node.types:
            for d in t.shape:
                if isinstance(d, SymDim):
                    try:
                        v = d.evaluate(env)
                    except KeyError:
                        continue
                    if v <= 0:
                        return node, t, d, v
    return None


# ---- id ranges of integer inputs ----
# ``graph.meta["input_ranges"]`` maps an integer input to ``(low, high)``: its values must lie in
# [low, high). ``high`` is an int, a symbolic dim (node ids index the V rows of a node-feature
# input: [0, V)), or a tuple of such bounds when an input indexes several things (the minimum).

def tighter_bound(a, b):
    """The tighter of two exclusive upper bounds (ints, symbolic dims or tuples of them)."""
    items = [v for x in (a, b) for v in (x if isinstance(x, tuple) else (x,))]
    ints = [v for v in items if isinstance(v, int)]
    syms = list(dict.fromkeys(v for v in items if not isinstance(v, int)))
    out = ([min(ints)] if ints else []) + syms
    return out[0] if len(out) == 1 else tuple(out)


def bound_value(bound, env: dict) -> int:
    """An upper bound as a number, with the symbols in ``env``."""
    if isinstance(bound, (tuple, list)):
        return min(bound_value(v, env) for v in bound)
    return int(evaluate_dim(bound, env))


def concrete_range(rng, env: dict):
    """``(low, high)`` with a symbolic ``high`` evaluated in ``env``; None stays None."""
    if rng is None:
        return None
    low, high = rng
    return (low, bound_value(high, env))


def range_to_json(rng) -> list:
    """A range for the ONNX metadata: symbolic bounds as their text (``"V"``)."""
    def one(v):
        if isinstance(v, (tuple, list)):
            return [one(x) for x in v]
        return v if isinstance(v, int) else str(v)
    return [rng[0], one(rng[1])]


def range_from_json(rng, env: dict):
    """A range read back from the ONNX metadata, with its symbols' values in ``env``."""
    if rng is None:
        return None
    return (rng[0], _json_bound(rng[1], env))


def _json_bound(v, env: dict) -> int:
    if isinstance(v, list):
        return min(_json_bound(x, env) for x in v)
    if isinstance(v, (int, float)):
        return int(v)
    return int(_eval_text(v, env))


def _eval_text(text: str, env: dict) -> int:
    """A symbolic dim's text (``V``, ``2*N + 1``, ``(H//2)``) evaluated with ``env``: names,
    integers, ``+ - * //`` and parentheses only."""
    import ast
    import operator
    ops = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.FloorDiv: operator.floordiv}

    def ev(n):
        if isinstance(n, ast.Expression):
            return ev(n.body)
        if isinstance(n, ast.Constant) and isinstance(n.value, int):
            return n.value
        if isinstance(n, ast.Name):
            if n.id not in env:
                raise ArgumentError(f"the id range bound `{text}` names the unknown dim `{n.id}`",
                                    code="E0253")
            return int(env[n.id])
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.USub):
            return -ev(n.operand)
        if isinstance(n, ast.BinOp) and type(n.op) in ops:
            return ops[type(n.op)](ev(n.left), ev(n.right))
        raise ArgumentError(f"cannot read the id range bound `{text}`", code="E0253")
    return ev(ast.parse(text, mode="eval"))


# ---- checking run-time inputs against the spec ----

def check_inputs(graph: Graph, arrays: dict) -> dict[str, int]:
    """Check input arrays (NumPy, by input name; any subset of the inputs) against what the
    spec says of them before anything runs: ranks and fixed dims, one size per symbolic dim,
    the spec's ``assert``s on symbolic dims, sizes of at least 1, and the id ranges of integer
    inputs. Returns the symbols' values; raises :class:`InputError` naming the input, the bad
    value (and its position) and what is allowed."""
    from nndsl.errors import InputError
    env: dict[str, int] = {}
    where: dict[str, tuple] = {}         # symbol -> (input, axis) that sized it
    typed = [(n, graph.node(n).type) for n in graph.inputs if n in arrays]
    for name, t in typed:
        shape = tuple(arrays[name].shape)
        if len(shape) != t.rank:
            raise InputError(f"input `{name}` must be {t} (rank {t.rank}), got shape "
                             f"{list(shape)}", code="E1104")
        for ax, (d, n) in enumerate(zip(t.shape, shape)):
            if isinstance(d, int):
                if d != n:
                    raise InputError(f"input `{name}` must be {t}, got shape {list(shape)} "
                                     f"(dim {ax} is {n}, not {d})", code="E1104")
            elif d.symbols() == {str(d)}:
                s = str(d)
                if s in env and env[s] != n:
                    other, oax = where[s]
                    raise InputError(f"dim `{s}` is {env[s]} in `{other}` (dim {oax}) and {n} "
                                     f"in `{name}` (dim {ax})", code="E1102",
                                     hint=f"inputs that share `{s}` must agree on its size")
                env[s], where[s] = n, (name, ax)
    for name, t in typed:                 # dims computed from the symbols (2*T, H//2)
        shape = tuple(arrays[name].shape)
        for ax, (d, n) in enumerate(zip(t.shape, shape)):
            if isinstance(d, SymDim) and d.symbols() != {str(d)}:
                try:
                    want = d.evaluate(env)
                except KeyError:
                    continue
                if want != n:
                    raise InputError(f"input `{name}` must be {t}: dim {ax} should be {d} = "
                                     f"{want} at {_env_text(env)}, the array has {n}",
                                     code="E1104")
    for s, n in env.items():
        if n < 1:
            name, ax = where[s]
            raise InputError(f"input `{name}` is empty: dim {ax} (`{s}`) is {n}",
                             code="E1104", hint="every size must be at least 1")
    for cond, msg, span in graph.meta.get("constraints", []):
        try:
            ok = check_constraint(cond, env)
        except KeyError:                  # a symbol no given input sizes
            continue
        if not ok:
            used = sorted(SymDim.lift(cond.left).symbols() |
                          (SymDim.lift(cond.right).symbols()
                           if not isinstance(cond.right, int) else set()))
            sizes = ", ".join(f"`{s}` = {env[s]} (dim {where[s][1]} of `{where[s][0]}`)"
                              for s in used if s in where)
            raise InputError(f"the inputs break the spec's assert `{cond}`"
                             + (f" ({msg})" if msg else "") + f": {sizes}",
                             span=span, code="E1110",
                             hint="resize the inputs so the assert holds")
    empty = non_positive_dim(graph, env)
    if empty is not None:
        node, t, d, v = empty
        raise InputError(f"inputs of these sizes ({_env_text(env)}) make `{node.name}` {t} "
                         f"with {d} = {v}: a size must be at least 1", span=node.span,
                         code="E1104", hint="the inputs are too small for the model")
    ranges = graph.meta.get("input_ranges", {})
    for name, _ in typed:
        rng = ranges.get(name)
        if rng is None:
            continue
        try:
            low, high = concrete_range(rng, env)
        except KeyError:
            continue
        check_id_range(name, arrays[name], low, high)
    return env


def check_id_range(name: str, arr, low: int, high: int) -> None:
    """Every value of the integer array ``arr`` (the input ``name``) in ``[low, high)``."""
    import numpy as np

    from nndsl.errors import InputError
    arr = np.asarray(arr)
    if arr.size == 0 or not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
        return
    bad = (arr < low) | (arr >= high)
    if not bad.any():
        return
    pos = tuple(int(i) for i in np.argwhere(bad)[0])
    count = int(bad.sum())
    more = f" ({count:,} values are outside it)" if count > 1 else ""
    raise InputError(f"input `{name}` holds {arr[pos]} at position {list(pos)}, outside its "
                     f"id range [{low}, {high}){more}", code="E1111",
                     hint=f"the ids of `{name}` index a table of {high - low} rows: each must "
                          f"be from {low} to {high - 1}")


# ---- the asserts on symbolic dims in an ONNX file's metadata ----
# ``[left, op, right, message]`` with the dims as text (``T``, ``(H//2)``): ``run`` checks an
# ``.onnx`` file's inputs against them as it checks a spec's.

def constraint_to_json(cond, msg) -> list:
    return [str(cond.left), cond.op, str(cond.right), msg]


def check_json_constraints(items, env: dict, where: dict) -> None:
    """Raise the error :func:`check_inputs` raises for the first broken constraint (as read
    from the metadata) whose symbols ``env`` sizes; ``where``: symbol -> (input, axis)."""
    from nndsl.errors import InputError
    for left, op, right, msg in items:
        try:
            a, b = _eval_text(left, env), (_eval_text(right, env) if isinstance(right, str)
                                           else int(right))
        except ArgumentError:
            continue
        ok = {"divisible": lambda: a % b == 0, "not_divisible": lambda: a % b != 0,
              "==": lambda: a == b, "!=": lambda: a != b, "<": lambda: a < b,
              "<=": lambda: a <= b, ">": lambda: a > b, ">=": lambda: a >= b}.get(op)
        if ok is None or ok():
            continue
        text = f"{left} % {right} {'==' if op == 'divisible' else '!='} 0" \
            if op in ("divisible", "not_divisible") else f"{left} {op} {right}"
        sizes = ", ".join(f"`{s}` = {env[s]} (dim {where[s][1]} of `{where[s][0]}`)"
                          for s in sorted(where) if s in _names(text))
        raise InputError(f"the inputs break the spec's assert `{text}`"
                         + (f" ({msg})" if msg else "") + f": {sizes}", code="E1110",
                         hint="resize the inputs so the assert holds")


def _names(text: str) -> set:
    import re
    return set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text))
