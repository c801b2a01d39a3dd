"""Compile-time builtins and argument checks shared by every part of the elaborator.

``BUILTINS`` is the table of names a spec sees without defining or importing them (``range``,
``len``, ``enumerate``, ``zip``, ``reversed``, ``int``, ``float``, ``floor``, ``ceil``,
``round``, the dtypes, ``inf`` and ``pi``; ``choice``, which only a parameter's default may
call, see :mod:`nndsl.elab.space`); ``_describe`` says in words what a compile-time
value is, for error messages; ``_suggest`` offers "did you mean" for a misspelt name; and
``_coerce`` checks an argument of a built-in function or layer against the kind its
:class:`ParamSpec` declares (``tensor``, ``pos_int``, ``padding``, ``prob``...) and
normalizes it. The limits (``MAX_INT``, ``MAX_SIZE``, the length of a ``range``) are those of
:mod:`nndsl.limits`.
"""

from __future__ import annotations

import difflib
import math
import re

from nndsl.elab.values import Builtin, DType, Instance, Partial, Surface, SymCond, TensorVal
from nndsl.errors import ArgumentError, LimitError, Span
from nndsl.ir.types import DTYPES, SymDim
from nndsl.limits import MAX_INT, MAX_SIZE, active, raise_hint
from nndsl.syntax import ast

F32_MAX = 3.4028234663852886e38   # the largest finite f32: float arguments are applied as f32


def _builtins() -> dict:
    def _range(*a):
        sym = next((v for v in a if isinstance(v, SymDim)), None)
        if sym is not None:
            names = sorted(sym.symbols())
            what = (f"`{sym}` is a symbolic dim" if [str(sym)] == names else
                    f"`{sym}` depends on the symbolic dim{'s' if len(names) > 1 else ''} "
                    + ", ".join(f"`{n}`" for n in names))
            raise ArgumentError(f"range needs compile-time integers, but {what}: its size is "
                                f"known only when the model runs", code="E0245",
                                hint="a `for` loop is unrolled when compiling; to loop over the "
                                     "time steps of a sequence, write the step as a block and "
                                     f"use `scan(step, over=xs)` (or `steps={names[0]}`), see "
                                     "\"Recurrence: scan\" in docs/LANGUAGE.md; or give the dim "
                                     "a number in the input type")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in a) or \
                not 1 <= len(a) <= 3:
            raise ArgumentError("range takes 1 to 3 integers", code="E0245")
        r = range(*a)
        cap = active().max_list
        if len(r) > cap:
            raise LimitError(f"range of {len(r):,} values (limit {cap:,})", code="E0603",
                             hint=raise_hint("max_list", cap, "check the bounds"))
        return tuple(r)

    def _len(v):
        if isinstance(v, TensorVal):
            return v.type.shape[0]
        if isinstance(v, (tuple, str)):
            return len(v)
        raise ArgumentError(f"len of {_describe(v)}: len takes a list, a string or a tensor",
                            code="E0258")

    def _int(v):
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return int(v)
        raise ArgumentError(f"int() of {_describe(v)}: int takes a number", code="E0258")

    def _float(v):
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
        raise ArgumentError(f"float() of {_describe(v)}: float takes a number", code="E0258")

    def _choice(*a):
        from nndsl.elab.space import SearchError
        raise SearchError("`choice(...)` declares a search space: it may only be the default of "
                          "a parameter", code="E1505",
                          hint="write it in the model's parameters, `model m(width: int = "
                               "choice(64, 128))`, and read the parameter here (docs/SEARCH.md)")

    return {
        "range": Builtin("range", _range),
        "choice": Builtin("choice", _choice),
        "len": Builtin("len", _len),
        "enumerate": Builtin("enumerate", lambda v: tuple(enumerate(_seq(v)))),
        "zip": Builtin("zip", lambda *vs: tuple(zip(*map(_seq, vs)))),
        "reversed": Builtin("reversed", lambda v: tuple(reversed(_seq(v)))),
        "int": Builtin("int", _int),
        "float": Builtin("float", _float),
        "floor": Builtin("floor", lambda v: math.floor(v)),
        "ceil": Builtin("ceil", lambda v: math.ceil(v)),
        "round": Builtin("round", lambda v: round(v)),
        **{d: DType(d) for d in DTYPES},
        "inf": math.inf,
        "pi": math.pi,
    }


def _seq(v):
    if isinstance(v, tuple):
        return v
    raise ArgumentError(f"expected a list or tuple, got {_describe(v)}", code="E0258")


BUILTINS = _builtins()


def _describe(v) -> str:
    if isinstance(v, TensorVal):
        return f"a tensor {v.type}"
    if isinstance(v, bool):
        return f"a bool ({'true' if v else 'false'})"
    if isinstance(v, int):
        return f"an int ({v})"
    if isinstance(v, float):
        return f"a float ({v})"
    if isinstance(v, str):
        return f'a string ("{v}")'
    if isinstance(v, SymDim):
        return f"a symbolic dim ({v})"
    if isinstance(v, tuple):
        return f"a list of {len(v)}"
    if v is None:
        return "none"
    if isinstance(v, DType):
        return f"the dtype {v.name}"
    if isinstance(v, (Surface, Partial)):
        return f"the function `{(v if isinstance(v, Surface) else v.callee).name}`"
    if isinstance(v, Instance):
        return f"the layer `{v.qualname or v.name or v.callee.name}`"
    if isinstance(v, ast.Definition):
        return f"the {v.kind} `{v.name}`"
    if isinstance(v, SymCond):
        return f"the undecidable condition `{v}`"
    return type(v).__name__


def _edit_distance(a: str, b: str) -> int:
    """Insertions, deletions, substitutions and swaps of two neighbours (``rleu`` is one swap
    from ``relu``) that turn ``a`` into ``b``."""
    prev2, prev = None, list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if prev2 is not None and i > 1 and j > 1 and a[i - 1] == b[j - 2] and \
                    a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[-1]


def _closest(name: str, candidates) -> str | None:
    """The candidate ``name`` is most likely a typo of: at most one edit away for a name of up
    to five letters, two for a longer one (case aside), so an unknown `pad` does not suggest
    `expand` nor `einsum` `sum`; ties go to the more similar spelling, then the first."""
    if not name:
        return None
    limit = 1 if len(name) <= 5 else 2
    best, best_key = None, None
    for c in dict.fromkeys(candidates):
        if not isinstance(c, str) or c == name or abs(len(c) - len(name)) > limit:
            continue
        d = _edit_distance(name.lower(), c.lower())
        if d > limit:
            continue
        key = (d, -difflib.SequenceMatcher(None, name, c).ratio())
        if best_key is None or key < best_key:
            best, best_key = c, key
    return best


def _suggest(name: str, candidates) -> str | None:
    close = _closest(name, candidates)
    return f"did you mean `{close}`?" if close else None


def _is_tensorish(v, kind: str) -> bool:
    if kind == "tensors":
        return isinstance(v, tuple) and len(v) > 0 and all(isinstance(x, TensorVal) for x in v)
    return isinstance(v, TensorVal)


def _coerce(fname: str, p, v, span: Span):
    """Check an argument against its declared kind; normalize lists to tuples."""
    kind = p.kind

    def bad(what: str):
        quoted = isinstance(v, str) and re.fullmatch(r"-?\d+(\.\d*)?", v.strip())
        raise ArgumentError(f"`{fname}` argument `{p.name}` must be {what}, got {_describe(v)}",
                            span=span, code="E0212",
                            hint=f"write the number without quotes: {v.strip()}" if quoted
                            else None)

    def is_int(x):
        return isinstance(x, int) and not isinstance(x, bool)

    def too_large(x, limit: int, what: str):
        shown = f"{x}" if len(str(x)) <= 30 else f"a {len(str(abs(x)))}-digit number"
        raise LimitError(f"`{fname}` argument `{p.name}` = {shown} is out of range: {what} "
                         f"must lie within ±2^{limit.bit_length() - 1}", span=span, code="E0601",
                         hint=f"check the value of `{p.name}`")

    def check_ints(vals, limit: int, what: str):
        for x in vals:
            if is_int(x) and abs(x) > limit:
                too_large(x, limit, what)

    def check_float(x, allow_inf: bool):
        if isinstance(x, float) and math.isnan(x):
            bad("a number, not NaN")
        if math.isinf(x) and not allow_inf:
            bad("a finite number")
        if not math.isinf(x) and abs(x) > F32_MAX:
            raise LimitError(f"`{fname}` argument `{p.name}` = {x:g} does not fit in f32 "
                             f"(largest finite f32: {F32_MAX:.4g})", span=span, code="E0604",
                             hint=(f"use inf or -inf for an unbounded `{p.name}`" if allow_inf
                                   else f"give `{p.name}` a value of magnitude below 3.4e38"))

    if v is None and p.default is None:
        return None
    if kind == "tensor":
        if not isinstance(v, TensorVal):
            bad("a tensor")
        return v
    if kind == "tensors":
        if not _is_tensorish(v, "tensors"):
            bad("a list of tensors")
        return v
    if kind == "operand":
        if isinstance(v, bool) or not isinstance(v, (TensorVal, int, float)):
            bad("a tensor or a number")
        if is_int(v):
            check_ints((v,), MAX_INT, "an integer operand")
        if isinstance(v, float) and math.isnan(v):
            bad("a tensor or a number, not NaN")
        return v
    if kind in ("int", "opt_int"):
        if not is_int(v):
            bad("an int")
        check_ints((v,), MAX_INT, "an int argument")
        return v
    if kind == "pos_int":
        if not is_int(v):
            if isinstance(v, float) and v.is_integer():
                bad("an int (use // for integer division)")
            bad("a positive int")
        if v <= 0:
            bad("a positive int")
        if v > 2**40:
            raise LimitError(f"`{fname}` argument `{p.name}` = {v} is absurdly large", span=span,
                             code="E0601", hint=f"no tensor dimension is larger than 2^40; "
                                                f"check the value of `{p.name}`")
        return v
    if kind == "dim":
        if not (is_int(v) or isinstance(v, SymDim)):
            bad("an int or a dim")
        check_ints((v,), MAX_SIZE, "a size")
        return v
    if kind in ("dims", "dims_or_int"):
        if kind == "dims_or_int" and is_int(v):
            if v <= 0:
                bad("a positive int")
            check_ints((v,), MAX_SIZE, "a size")
            return v
        vals = v if isinstance(v, tuple) else (v,)
        if not all(is_int(x) or isinstance(x, SymDim) for x in vals):
            bad("a list of ints or dims")
        check_ints(vals, MAX_SIZE, "a size")
        return tuple(vals)
    if kind in ("ints", "ints_or_none", "int_tuple"):
        if v is None and kind == "ints_or_none":
            return None
        vals = v if isinstance(v, tuple) else (v,)
        if kind == "int_tuple" and not isinstance(v, tuple):
            bad("a list of ints")
        if not all(is_int(x) for x in vals):
            bad("an int or a list of ints")
        if kind == "int_tuple":
            check_ints(vals, MAX_INT, "an int argument")
        else:
            check_ints(vals, MAX_SIZE, "a size, stride, kernel, padding or dim")
        return v
    if kind == "padding":
        if v == "same":
            return "same"
        if v == "valid":
            return 0
        vals = v if isinstance(v, tuple) else (v,)
        if not all(is_int(x) and x >= 0 for x in vals):
            bad('a non-negative int, a list of them, or "same"')
        check_ints(vals, MAX_SIZE, "a padding")
        return v
    if kind in ("float", "fill", "pos_float"):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            bad("a positive number" if kind == "pos_float" else "a number")
        check_float(v, allow_inf=kind == "fill")
        if kind == "pos_float" and not v > 0:
            bad("a positive number")
        return float(v)
    if kind == "prob":
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1:
            bad("a probability in [0, 1)")
        return float(v)
    if kind == "bool":
        if not isinstance(v, bool):
            bad("true or false")
        return v
    if kind == "str":
        if not isinstance(v, str):
            bad("a string")
        return v
    if kind == "dtype":
        if not isinstance(v, DType):
            bad("a dtype such as f32")
        return v
    return v
