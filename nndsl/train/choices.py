"""Named choices with keyword arguments: ``adamw(lr=1e-3, weight_decay=0.01)``, ``cosine``.

Optimizers, schedules, metrics, data sets and augmentations are each a table of :class:`Choice`
(in their own modules); :func:`pick` reads a train-section value against such a table and returns
a :class:`Picked`, or a located error with a did-you-mean. Values are constants read from the
AST (numbers, strings, booleans, lists), never evaluated as Python.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Callable

from nndsl.errors import Span, TrainError
from nndsl.syntax import ast

REQUIRED = object()


@dataclass(frozen=True)
class Choice:
    name: str
    kwargs: dict                    # keyword -> default (REQUIRED: must be given)
    doc: str = ""
    positional: tuple = ()          # keywords that may also be given by position, in order
    nested: tuple = ()              # keywords whose value is itself a choice of the same table
    check: Callable | None = None   # (args) -> message or None
    ranges: dict = field(default_factory=dict)   # keyword -> (low, high[, low excluded])


@dataclass
class Picked:
    name: str
    args: dict
    span: Span | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict:
        return {"name": self.name, **{k: v.to_json() if isinstance(v, Picked) else
                                      (list(v) if isinstance(v, tuple) else v)
                                      for k, v in self.args.items()}}


class NotConstant(Exception):
    def __init__(self, node):
        super().__init__("not a constant")
        self.node = node


def literal(e):
    """A constant from the AST: number, string, bool, none, list/tuple, arithmetic on numbers."""
    if isinstance(e, ast.Num):
        return e.value
    if isinstance(e, (ast.Str, ast.Const)):
        return e.value
    if isinstance(e, (ast.ListLit, ast.TupleLit)):
        return tuple(literal(x) for x in e.items)
    if isinstance(e, ast.UnaryOp) and e.op == "-":
        v = literal(e.operand)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return -v
    if isinstance(e, ast.BinOp) and e.op in ("+", "-", "*", "/", "**"):
        a, b = literal(e.left), literal(e.right)
        if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (a, b)):
            if e.op == "**" and isinstance(a, int) and isinstance(b, int) and abs(a) > 1 \
                    and b > 0 and b * math.log2(abs(a)) > 1020:
                raise TrainError(f"{a} ** {b} is too large a number", span=e.span,
                                 code="E1211", hint="no train-section value needs more than "
                                                    "300 digits")
            ops = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
                   "/": lambda: a / b, "**": lambda: a ** b}
            try:
                v = ops[e.op]()
            except (OverflowError, ZeroDivisionError):
                v = None
            if isinstance(v, int) and v.bit_length() > 1020:
                raise TrainError("the number is too large", span=e.span, code="E1211",
                                 hint="no train-section value needs more than 300 digits")
            if v is not None:
                return v
    raise NotConstant(e)


def suggest(name: str, names) -> str:
    close = difflib.get_close_matches(name, list(names), n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`? " if close else ""


def pick(e, table: dict, what: str, code: str) -> Picked:
    """Read ``name`` or ``name(args)`` against ``table``."""
    if isinstance(e, ast.Name):
        name, args, span = e.id, (), e.span
    elif isinstance(e, ast.Call) and isinstance(e.func, ast.Name):
        name, args, span = e.func.id, e.args, e.func.span
    else:
        raise TrainError(f"expected {what}: a name like `{next(iter(table))}` or a call like "
                         f"`{next(iter(table))}(...)`", span=e.span, code="E1210")
    choice = table.get(name)
    if choice is None:
        raise TrainError(f"unknown {what} `{name}`", span=span, code=code,
                         hint=suggest(name, table) + f"{what}s: " + ", ".join(table))
    bound: dict = {}
    pos = [a for a in args if a.name is None]
    if len(pos) > len(choice.positional):
        extra = pos[len(choice.positional)]
        raise TrainError(f"{name} takes {len(choice.positional) or 'no'} positional "
                         f"argument{'s' * (len(choice.positional) != 1)}", span=extra.span,
                         code="E1211", hint=_signature(choice))
    for a, k in zip(pos, choice.positional):
        bound[k] = (a.value, a.span)
    for a in args:
        if a.name is None:
            continue
        if a.name not in choice.kwargs:
            raise TrainError(f"{name} has no argument `{a.name}`", span=a.span, code="E1211",
                             hint=suggest(a.name, choice.kwargs) + _signature(choice))
        if a.name in bound:
            raise TrainError(f"`{a.name}` given twice", span=a.span, code="E1211")
        bound[a.name] = (a.value, a.span)
    out = {}
    for k, default in choice.kwargs.items():
        if k not in bound:
            if default is REQUIRED:
                raise TrainError(f"{name} needs `{k}`", span=e.span, code="E1211",
                                 hint=_signature(choice))
            out[k] = default
            continue
        node, aspan = bound[k]
        if k in choice.nested:
            out[k] = pick(node, table, what, code)
            continue
        try:
            v = literal(node)
        except NotConstant:
            raise TrainError(f"`{k}` of {name} must be a constant", span=aspan,
                             code="E1211") from None
        out[k] = _coerce(name, k, v, default, aspan)
        if k in choice.ranges:
            _in_range(name, k, out[k], choice.ranges[k], aspan)
    if choice.check is not None:
        msg = choice.check(out)
        if msg:
            raise TrainError(f"{name}: {msg}", span=e.span, code="E1211", hint=_signature(choice))
    return Picked(name, out, e.span)


def _coerce(name: str, k: str, v, default, span: Span):
    def bad(want: str):
        return TrainError(f"`{k}` of {name} must be {want}, got {_show(v)}", span=span,
                          code="E1211")
    is_num = isinstance(v, (int, float)) and not isinstance(v, bool)
    if isinstance(v, float) and not math.isfinite(v):
        raise bad("a finite number")
    if isinstance(default, bool):
        if not isinstance(v, bool):
            raise bad("true or false")
    elif isinstance(default, float):
        if not is_num:
            raise bad("a number")
        v = float(v)
    elif isinstance(default, int):
        if not (isinstance(v, int) and not isinstance(v, bool)):
            raise bad("an integer")
    elif isinstance(default, tuple):
        if not isinstance(v, tuple):
            raise bad(f"a list like {_show(default)}")
        if default and len(v) != len(default) and all(
                isinstance(x, (int, float)) for x in default):
            raise bad(f"a list of {len(default)} numbers")
    elif isinstance(default, str):
        if not isinstance(v, str):
            raise bad("a string")
    if is_num and k in ("lr", "max_lr") and v <= 0:
        raise bad("positive")
    if is_num and k in ("weight_decay", "momentum", "eps", "rho") and v < 0:
        raise bad("non-negative")
    if k == "betas" and isinstance(v, tuple) and not all(
            isinstance(b, (int, float)) and 0 <= b < 1 for b in v):
        raise bad("two numbers in [0, 1)")
    return v


def _in_range(name: str, k: str, v, rng: tuple, span: Span) -> None:
    low, high = rng[0], rng[1]
    open_low = len(rng) > 2 and rng[2]
    if (v > low if open_low else v >= low) and v <= high:
        return
    if isinstance(low, int) and not open_low:
        want = f"an integer from {low:,} to {high:,}"
    else:
        want = f"a number {'>' if open_low else '>='} {low:g} and <= {high:g}"
    raise TrainError(f"`{k}` of {name} must be {want}, got {_show(v)}", span=span, code="E1211")


def _show(v) -> str:
    """A value the way the spec would write it (for messages)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, tuple):
        return "[" + ", ".join(_show(x) for x in v) + "]"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, int) and abs(v) >= 10**30:
        return f"{'-' * (v < 0)}a {len(str(abs(v)))}-digit number"
    return repr(v)


def _signature(choice: Choice) -> str:
    parts = []
    for k, d in choice.kwargs.items():
        parts.append(k if d is REQUIRED else f"{k}={_show(d) if k not in choice.nested else '...'}")
    return f"{choice.name}({', '.join(parts)})"
