"""Search spaces: the values ``nndsl search`` may give a model's parameters, and the limits of
a ``search`` section (docs/SEARCH.md).

A parameter declares its space in its default, with literals only::

    model mlp(width: int = choice(64, 128, 256), depth: int = range(1, 4),
              act: str = choice("relu", "gelu")) { ... }
    search mlp { params <= 200_000  flops <= 5e6 }

``choice(v1, v2, ...)`` is any of its values (numbers, strings, booleans or lists, all of one
kind; integers among floats count as floats); ``range(a, b[, step])`` as the default of an
``int`` parameter is the integers ``a, a+step, ...`` below ``b``, as a ``for`` loop's ``range``
counts. Elsewhere ``range`` keeps its meaning (a list), and ``choice`` is refused.

Outside ``nndsl search`` a space stands for its first value (``choice``'s first, ``range``'s
start), so a spec with a search space compiles, trains and inspects as an ordinary one.

A limit is ``QUANTITY OP NUMBER`` with ``OP`` one of ``<= < >= >`` and a quantity of
:data:`QUANTITIES`, measured on the compiled graph (no tensor is built). Nothing here is
evaluated as Python: values are read from the syntax tree.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass

from nndsl.errors import NndslError, Span
from nndsl.syntax import ast


class SearchError(NndslError):
    """A mistake in a search space, a `search` section or what `nndsl search` was asked."""

    code = "E1500"


# what a limit may bound: name -> (what it is, how it is measured on a Compiled)
QUANTITIES = {
    "params": "trainable parameters, as `nndsl inspect` counts them",
    "flops": "FLOPs of one sample (batch 1), as `nndsl inspect` counts them",
}
LIMIT_OPS = ("<=", "<", ">=", ">")
SPACE_FUNCTIONS = ("choice", "range")
MAX_CHOICES = 1000


@dataclass(frozen=True)
class Dimension:
    """One searched parameter: ``choice`` of ``values``, or ``range`` ``(start, stop, step)``."""

    name: str
    kind: str            # "choice" | "range"
    values: tuple        # choice: the values; range: (start, stop, step)
    span: Span           # the default expression

    @property
    def options(self) -> tuple:
        """Every value the parameter may take, in written (or counting) order."""
        return tuple(range(*self.values)) if self.kind == "range" else self.values

    @property
    def first(self):
        return self.values[0]

    def text(self) -> str:
        """The space as written: ``choice(64, 128)``, ``range(1, 4)``."""
        if self.kind == "range":
            a, b, s = self.values
            return f"range({a}, {b}" + (f", {s})" if s != 1 else ")")
        return "choice(" + ", ".join(spec_literal(v) for v in self.values) + ")"

    def to_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "values": [list(v) if isinstance(v, tuple)
                                                                 else v for v in self.values]}


@dataclass(frozen=True)
class Limit:
    """``params <= 200000``: a bound on a measured quantity."""

    quantity: str
    op: str
    bound: float
    span: Span

    def holds(self, value: float) -> bool:
        return {"<=": value <= self.bound, "<": value < self.bound,
                ">=": value >= self.bound, ">": value > self.bound}[self.op]

    def text(self) -> str:
        b = int(self.bound) if float(self.bound).is_integer() else self.bound
        return f"{self.quantity} {self.op} {b:,}" if isinstance(b, int) else \
            f"{self.quantity} {self.op} {b:g}"


# ---- parameter defaults ----

def _is_call(node, name: str) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name


def is_space(p: ast.ParamDef) -> bool:
    """Whether the parameter's default declares a search space."""
    return _is_call(p.default, "choice") or (_is_call(p.default, "range") and p.type == "int")


_KINDS = {bool: "a bool", int: "a number", float: "a number", str: "a string", tuple: "a list"}


def literal(node):
    """The value of a literal (a number, a string, ``true``/``false``, a list of literals), read
    from the syntax tree; None when ``node`` is no literal."""
    if isinstance(node, ast.Num):
        return node.value
    if isinstance(node, ast.Str):
        return node.value
    if isinstance(node, ast.Const) and isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.UnaryOp) and node.op == "-" and isinstance(node.operand, ast.Num):
        return -node.operand.value
    if isinstance(node, (ast.ListLit, ast.TupleLit)):
        items = [literal(i) for i in node.items]
        return None if any(i is None for i in items) else tuple(items)
    return None


def _kind(v) -> str:
    return _KINDS[type(v)]


def dimension(p: ast.ParamDef) -> Dimension | None:
    """The search space a parameter's default declares, checked; None when it declares none."""
    if not is_space(p):
        return None
    call = p.default
    fn = call.func.id
    for a in call.args:
        if a.name is not None:
            raise SearchError(f"`{fn}` takes no keyword arguments", span=a.span, code="E1503",
                              hint=f"write the values in order: `{fn}(64, 128)`"
                              if fn == "choice" else "write `range(start, stop)` or "
                                                     "`range(start, stop, step)`")
    if fn == "range":
        return _range_dimension(p, call)
    if not call.args:
        raise SearchError(f"`choice()` of parameter `{p.name}` has no values", span=call.span,
                          code="E1501", hint="list the values it may take: `choice(64, 128, 256)`")
    if len(call.args) > MAX_CHOICES:
        raise SearchError(f"`choice` of parameter `{p.name}` lists {len(call.args):,} values "
                          f"(at most {MAX_CHOICES:,})", span=call.span, code="E1501",
                          hint="for a range of integers write `range(start, stop)`")
    values = []
    for a in call.args:
        v = literal(a.value)
        if v is None:
            raise SearchError("a value of `choice` must be a literal (a number, a string, "
                              "true/false or a list of them)", span=a.value.span, code="E1503",
                              hint="search spaces are read without running the spec: write the "
                                   "value itself, e.g. `choice(64, 128)`")
        values.append((v, a.value.span))
    first_kind = _kind(values[0][0])
    for v, where in values[1:]:
        if _kind(v) != first_kind:
            raise SearchError(f"`choice` of parameter `{p.name}` mixes kinds: {first_kind} "
                              f"({spec_literal(values[0][0])}) and {_kind(v)} "
                              f"({spec_literal(v)})", span=where, code="E1502",
                              notes=[("the first value is here", values[0][1])],
                              hint="every value of a choice is of one kind (numbers, strings, "
                                   "booleans or lists)")
    plain = [v for v, _ in values]
    if first_kind == "a number" and any(isinstance(v, float) for v in plain):
        plain = [float(v) for v in plain]
    seen: dict = {}
    for (v, where), key in zip(values, plain):
        k = (type(key), key)
        if k in seen:
            raise SearchError(f"`choice` of parameter `{p.name}` lists {spec_literal(v)} twice",
                              span=where, code="E1502", notes=[("first listed here", seen[k])],
                              hint="remove the second one")
        seen[k] = where
    return Dimension(p.name, "choice", tuple(plain), call.span)


def _range_dimension(p: ast.ParamDef, call: ast.Call) -> Dimension:
    args = [literal(a.value) for a in call.args]
    if not 1 <= len(args) <= 3 or not all(isinstance(v, int) and not isinstance(v, bool)
                                          for v in args):
        raise SearchError(f"the `range` of parameter `{p.name}` takes 1 to 3 integer literals",
                          span=call.span, code="E1504",
                          hint="write `range(start, stop)` (stop excluded) or `range(start, "
                               "stop, step)`, e.g. `range(1, 5)` for 1, 2, 3, 4")
    a, b, s = (0, args[0], 1) if len(args) == 1 else (args[0], args[1], 1) if len(args) == 2 \
        else tuple(args)
    if s == 0 or len(range(a, b, s)) == 0:
        raise SearchError(f"the `range` of parameter `{p.name}` holds no value"
                          + (" (its step is 0)" if s == 0 else f": {a} is not below {b}"
                             if s > 0 else f": {a} is not above {b}"),
                          span=call.span, code="E1504",
                          hint="`range(a, b)` counts a, a+1, ... up to b-1: give a stop above "
                               "the start")
    # normalized so that the first and last values are a's and the last one counted
    r = range(a, b, s)
    return Dimension(p.name, "range", (r.start, r.stop, r.step), call.span)


def default_value(p: ast.ParamDef):
    """The value a search-space default stands for outside a search: ``choice``'s first value,
    ``range``'s start."""
    d = dimension(p)
    return d.first


def space_of(defn: ast.Definition) -> list[Dimension]:
    """The searched parameters of a model, in declaration order."""
    return [d for d in (dimension(p) for p in defn.params) if d is not None]


def space_size(dims: list[Dimension]) -> int:
    n = 1
    for d in dims:
        n *= len(d.options)
    return n


# ---- search sections ----

def _number(node) -> float | None:
    """A bound's value: numbers with + - * / ** and parentheses, read from the syntax tree."""
    if isinstance(node, ast.Num):
        return node.value
    if isinstance(node, ast.UnaryOp) and node.op == "-":
        v = _number(node.operand)
        return None if v is None else -v
    if isinstance(node, ast.BinOp) and node.op in ("+", "-", "*", "/", "**"):
        a, b = _number(node.left), _number(node.right)
        if a is None or b is None:
            return None
        try:
            v = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
                 "/": lambda: a / b, "**": lambda: a ** b if abs(b) <= 64 else math.inf}[node.op]()
        except (ZeroDivisionError, OverflowError):
            return None
        return v if isinstance(v, (int, float)) and math.isfinite(v) else None
    return None


def limits_of(section: ast.SearchDef) -> list[Limit]:
    """A search section's limits, checked."""
    out = []
    for lim in section.limits:
        if lim.quantity not in QUANTITIES:
            close = difflib.get_close_matches(lim.quantity, QUANTITIES, n=1, cutoff=0.6)
            raise SearchError(f"a search section cannot limit `{lim.quantity}`: it is no quantity "
                              f"nndsl measures", span=lim.quantity_span, code="E1510",
                              hint=(f"did you mean `{close[0]}`? " if close else "")
                              + "limits are on: " + "; ".join(f"`{k}` ({v})"
                                                              for k, v in QUANTITIES.items()))
        if lim.op not in LIMIT_OPS:
            raise SearchError(f"a limit is a bound, not `{lim.op}`", span=lim.span, code="E1511",
                              hint=f"write `{lim.quantity} <= N` (or <, >=, >)")
        bound = _number(lim.value)
        if bound is None:
            raise SearchError(f"the bound of `{lim.quantity}` must be a number", span=lim.value.span,
                              code="E1511", hint=f"for example `{lim.quantity} <= 200_000` or "
                                                 f"`{lim.quantity} <= 2e5`")
        out.append(Limit(lim.quantity, lim.op, bound, lim.span))
    return out


def check_sections(module: ast.Module, models: list[str]) -> None:
    """Every search section of the main file names one of its models, once, with valid limits
    (a compile-time check: ``nndsl check`` reports them)."""
    seen: dict = {}
    for s in module.searches:
        if s.model not in models:
            close = difflib.get_close_matches(s.model, models, n=1, cutoff=0.6)
            raise SearchError(f"the search section names model `{s.model}`, which the file does "
                              f"not define", span=s.name_span, code="E1512",
                              hint=(f"did you mean `{close[0]}`?" if close else
                                    "its models: " + ", ".join(models)))
        if s.model in seen:
            raise SearchError(f"`{s.model}` has two search sections", span=s.name_span,
                              code="E1512", notes=[("the first one is here", seen[s.model])],
                              hint="merge them into one section")
        seen[s.model] = s.name_span
        limits_of(s)


def search_section(module: ast.Module, model: str) -> ast.SearchDef | None:
    return next((s for s in module.searches if s.model == model), None)


def measure(compiled) -> dict:
    """The quantities limits bound, of a compiled model."""
    return {"params": compiled.param_count(), "flops": compiled.flops(batch=1)}


def broken(limits: list[Limit], measured: dict) -> list[tuple[Limit, float]]:
    """The limits a measured configuration breaks, with its value of each."""
    return [(lim, measured[lim.quantity]) for lim in limits
            if not lim.holds(measured[lim.quantity])]


# ---- values as spec text ----

def spec_literal(v) -> str:
    """A value as a spec writes it: ``128``, ``0.5``, ``"gelu"``, ``true``, ``[64, 32]``."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") \
            .replace("\t", "\\t") + '"'
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(spec_literal(x) for x in v) + "]"
    raise TypeError(f"no spec literal for {type(v).__name__}")
