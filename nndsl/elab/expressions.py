"""Expressions: evaluating expression nodes to compile-time values or to tensors in the graph.

Names resolve to local variables, then definitions, built-in functions and layers, then
builtins. Arithmetic, comparisons and ``and``/``or``/``not`` compute on numbers, dims, lists and
strings right away, and emit IR ops when an operand is a tensor; a comparison that involves a
symbolic dim becomes a :class:`SymCond` that only ``assert`` may keep. Indexing and slicing a
list picks items, on a tensor emits ``slice``/``squeeze``; attributes read a tensor's ``.shape``,
``.dtype``, ``.rank``, ``.T`` or a layer's parameters; calls, named calls and ``|>`` pipelines
go to the call machinery. :class:`ExpressionMixin` holds these methods; the
:class:`Elaborator` inherits them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nndsl.elab import library
from nndsl.elab.builtins import BUILTINS, MAX_INT, _describe, _suggest
from nndsl.elab.context import BuildCtx, Frame
from nndsl.elab.loader import std_modules, std_source
from nndsl.elab.values import DType, Instance, Surface, SymCond, TensorVal
from nndsl.errors import ArgumentError, LimitError, NndslError, ShapeError, Span, UnknownNameError
from nndsl.ir.types import SymDim
from nndsl.limits import MAX_INT_BITS, raise_hint
from nndsl.syntax import ast


@dataclass
class _Mod:
    """``dim % k`` for a symbolic dim: only comparable with 0."""

    dim: SymDim
    k: int


MAX_SYM_TERMS = 64        # terms of one symbolic dim: (N + 1) ** 64 is not a dim anyone means
MAX_SYM_TEXT = 2000       # characters of one symbolic dim written out


def _bounded(r, op: str, span: Span):
    """The result ``r`` of a compile-time ``op``, checked while it is still small: an integer
    within ±2^MAX_INT_BITS (``k = k * k`` sixty times over would take hours and gigabytes), a
    symbolic dim of a few terms."""
    if isinstance(r, int) and not isinstance(r, bool):
        if r.bit_length() > MAX_INT_BITS:
            digits = int(r.bit_length() * 0.30103) + 1
            raise LimitError(f"the result of `{op}` is an integer of about {digits:,} digits: "
                             f"compile-time integers lie within ±2^{MAX_INT_BITS}", span=span,
                             code="E0601", hint="a value that grows in a loop (`k = k * k`) "
                                                "soon leaves every range a size or an argument "
                                                "may take; check the loop")
    elif isinstance(r, SymDim):
        if len(r.terms) > MAX_SYM_TERMS or len(r.key()) > MAX_SYM_TEXT:
            raise LimitError(f"the result of `{op}` is a symbolic dim too large to be a size "
                             f"({len(r.terms):,} terms, {len(r.key()):,} characters; at most "
                             f"{MAX_SYM_TERMS} terms and {MAX_SYM_TEXT:,} characters)",
                             span=span, code="E0601",
                             hint="a dim that grows in a loop (`d = d * d`) is no size a tensor "
                                  "can have; check the loop")
    return r


_TENSOR_BINOPS = {"+": "add", "-": "sub", "*": "mul", "/": "div", "//": "floor_div",
                  "%": "mod", "**": "pow", "@": "matmul", "==": "eq", "!=": "ne", "<": "lt",
                  "<=": "le", ">": "gt", ">=": "ge"}


class ExpressionMixin:
    """Evaluates expression nodes for the :class:`Elaborator`.

    Uses the host's ``program`` and ``graph``, and :meth:`~nndsl.elab.calls.CallMixin.call`
    for calls, named calls and pipeline stages.
    """

    # --------------------------------------------------------------- conditions
    def _truth(self, v, span: Span) -> bool:
        if isinstance(v, bool):
            return v
        if isinstance(v, SymCond):
            raise ArgumentError(f"cannot decide `{v}` at compile time: it depends on a symbolic "
                                f"dim", span=span, code="E0216",
                                hint="a compile-time condition needs values known when "
                                     "compiling: give the dim a number in the input type or "
                                     "make it a model parameter (`assert` may still state a "
                                     "requirement on a symbolic dim)")
        if isinstance(v, TensorVal):
            raise ArgumentError("a tensor cannot be a compile-time condition", span=span,
                                code="E0216", hint="use where(cond, a, b) to choose per element")
        if isinstance(v, (int, float, str, tuple)) or v is None:
            return bool(v)
        raise ArgumentError(f"{_describe(v)} is not a condition", span=span, code="E0216")

    # -------------------------------------------------------------- expressions
    recorder = None   # on_eval(expr, value[, stage]) when observed (elaborate.recording)

    def _eval(self, e, frame: Frame):
        method = _EVAL.get(type(e))
        if method is None:  # pragma: no cover
            raise NndslError(f"cannot evaluate {type(e).__name__}", span=e.span)
        try:
            v = method(self, e, frame)
        except NndslError as err:
            raise err.with_span(e.span)
        if self.recorder is not None:
            self.recorder(e, v)
        return v

    def _e_num(self, e, frame):
        return e.value

    def _e_str(self, e, frame):
        return e.value

    def _e_const(self, e, frame):
        return e.value

    def _e_name(self, e: ast.Name, frame: Frame):
        return self.lookup(e.id, frame, e.span)

    def lookup(self, name: str, frame: Frame, span: Span):
        if name in frame.env:
            unread = getattr(self, "unread_params", None)
            if unread and name in unread and frame.definition is self.model_defn:
                del unread[name]   # a model parameter is read (W0301 is about those never read)
            return frame.env[name]
        if name in self.program.definitions:
            return self.program.definitions[name]
        if name in library.SURFACE:
            return library.SURFACE[name]
        if name in BUILTINS:
            return BUILTINS[name]
        visible = list(frame.env) + list(self.program.definitions) + list(library.SURFACE) + \
            [k for k in BUILTINS]
        hint = _suggest(name, visible)
        if name in ("None", "True", "False", "null"):
            spelt = "none" if name in ("None", "null") else name.lower()
            hint = f"the language spells it `{spelt}`"
        for mod in std_modules():
            text = std_source(mod) or ""
            if f"block {name}(" in text or f"model {name}(" in text:
                hint = f"`{name}` is in the standard library: add `import std.{mod}`"
                break
        raise UnknownNameError(f"unknown name `{name}`", span=span, code="E0201", hint=hint)

    def _e_tuple(self, e, frame):
        return tuple(self._eval(x, frame) for x in e.items)

    _e_list = _e_tuple

    def _e_if(self, e: ast.IfExpr, frame):
        skip = getattr(self, "_skip", None)
        if self._truth(self._eval(e.cond, frame), e.cond.span):
            if skip:
                skip(frame, e.other)
            return self._eval(e.then, frame)
        if skip:
            skip(frame, e.then)
        return self._eval(e.other, frame)

    def _e_unary(self, e: ast.UnaryOp, frame):
        v = self._eval(e.operand, frame)
        if e.op == "not":
            if isinstance(v, TensorVal):
                return BuildCtx(self, frame, e.span, frame.scope, None).emit(
                    "logical_not", [v], {})[0]
            return not self._truth(v, e.operand.span)
        if isinstance(v, TensorVal):
            return BuildCtx(self, frame, e.span, frame.scope, None).emit("neg", [v], {})[0]
        if isinstance(v, (int, float, SymDim)) and not isinstance(v, bool):
            return -v
        raise ArgumentError(f"cannot negate {_describe(v)}", span=e.span, code="E0240")

    def _e_binop(self, e: ast.BinOp, frame):
        if e.op in ("and", "or"):
            left = self._eval(e.left, frame)
            if isinstance(left, TensorVal):
                right = self._eval(e.right, frame)
                return BuildCtx(self, frame, e.span, frame.scope, None).emit(
                    "logical_" + e.op, [left, right], {})[0]
            lt = self._truth(left, e.left.span)
            if e.op == "and" and not lt or e.op == "or" and lt:
                if getattr(self, "_skip", None):
                    self._skip(frame, e.right)
                return lt
            return self._truth(self._eval(e.right, frame), e.right.span)
        left = self._eval(e.left, frame)
        right = self._eval(e.right, frame)
        return self.binary(e.op, left, right, frame, e.span)

    def binary(self, op: str, a, b, frame: Frame, span: Span):
        if isinstance(a, TensorVal) or isinstance(b, TensorVal):
            for n in (a, b):
                if isinstance(n, int) and not isinstance(n, bool) and abs(n) > MAX_INT:
                    shown = str(n) if n.bit_length() < 100 else f"({len(str(abs(n)))} digits)"
                    raise LimitError(f"the integer {shown} is too large to combine with a "
                                     f"tensor (at most ±2^62)",
                                     span=span, code="E0601", hint="check the number")
                if isinstance(n, float) and math.isnan(n):
                    raise ArgumentError(f"`{op}` of a tensor and NaN", span=span, code="E0240",
                                        hint="NaN makes every result NaN; check the number")
            ctx = BuildCtx(self, frame, span, frame.scope, None)
            name = _TENSOR_BINOPS.get(op)
            if name is None:
                raise ArgumentError(f"operator `{op}` is not defined on tensors", span=span,
                                    code="E0240")
            return ctx.binary(name, a, b)
        if op in ("==", "!=", "<", "<=", ">", ">="):
            return self._compare(op, a, b, span)
        if isinstance(a, tuple) and isinstance(b, tuple) and op == "+":
            self._check_length("max_list", len(a) + len(b), span)
            return a + b
        if isinstance(a, tuple) and isinstance(b, int) and not isinstance(b, bool) and \
                op == "*":
            self._check_length("max_list", len(a) * max(b, 0), span)
            return a * b
        if isinstance(a, str) and isinstance(b, str) and op == "+":
            self._check_length("max_string", len(a) + len(b), span)
            return a + b
        num = (int, float, SymDim)
        if not (isinstance(a, num) and isinstance(b, num)) or isinstance(a, bool) or \
                isinstance(b, bool):
            raise ArgumentError(f"cannot apply `{op}` to {_describe(a)} and {_describe(b)}",
                                span=span, code="E0240")
        sym = isinstance(a, SymDim) or isinstance(b, SymDim)
        try:
            r = self._arith(op, a, b, sym, span)
        except ZeroDivisionError:
            raise ArgumentError("division by zero", span=span, code="E0219") from None
        except OverflowError:
            raise LimitError("number too large", span=span, code="E0601",
                             hint="compile-time numbers must fit in a float (about 1.8e308)"
                             ) from None
        return _bounded(r, op, span)

    @staticmethod
    def _arith(op: str, a, b, sym: bool, span: Span):
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            if sym:
                raise ArgumentError("`/` on a symbolic dim gives no integer; use `//`",
                                    span=span, code="E0241")
            return a / b
        if op == "//":
            if sym and isinstance(b, (SymDim, float)):
                raise ArgumentError("a symbolic dim can only be divided by an int",
                                    span=span, code="E0241")
            return a // b
        if op == "%":
            if isinstance(a, SymDim):
                if not isinstance(b, int):
                    raise ArgumentError("a symbolic dim can only be taken modulo an int",
                                        span=span, code="E0241")
                return 0 if a.divisible_by(b) else _Mod(a, b)
            return a % b
        if op == "**":
            if sym:
                raise ArgumentError("`**` on a symbolic dim", span=span, code="E0241")
            if isinstance(a, int) and isinstance(b, int) and abs(a) > 1 and \
                    b * math.log2(abs(a)) > MAX_INT_BITS:
                raise LimitError(f"{a} ** {b} is too large: compile-time integers lie within "
                                 f"±2^{MAX_INT_BITS}", span=span, code="E0601",
                                 hint="check the exponent")
            return a ** b
        if op == "@":
            raise ArgumentError("`@` needs tensors", span=span, code="E0240")
        raise ArgumentError(f"unknown operator {op}", span=span)  # pragma: no cover

    def _check_length(self, limit: str, n: int, span: Span) -> None:
        """A list or string of ``n`` items would be made at ``span``: refused past the limit,
        before it is built (doubling a string sixty times would need exabytes)."""
        cap = getattr(self.limits, limit)
        if n > cap:
            what = "list" if limit == "max_list" else "string"
            unit = "items" if limit == "max_list" else "characters"
            raise LimitError(f"a {what} of {n:,} {unit} (limit {cap:,})", span=span,
                             code="E0603", hint=raise_hint(limit, cap, "a value that doubles in "
                                                           "a loop grows past any limit; check "
                                                           "the loop"))

    def _compare(self, op: str, a, b, span: Span):
        if isinstance(a, _Mod) or isinstance(b, _Mod):
            m, other = (a, b) if isinstance(a, _Mod) else (b, a)
            if other == 0 and op in ("==", "!="):
                c = SymCond("divisible", m.dim, m.k)
                return c if op == "==" else SymCond("not_divisible", m.dim, m.k)
            raise ArgumentError("a symbolic `%` can only be compared with 0", span=span,
                                code="E0216")
        if isinstance(a, SymDim) or isinstance(b, SymDim):
            if op in ("==", "!=") and a == b and type(a) is type(b):
                return op == "=="
            if not isinstance(a, (int, SymDim)) or not isinstance(b, (int, SymDim)):
                raise ArgumentError(f"cannot compare {_describe(a)} with {_describe(b)}",
                                    span=span, code="E0240")
            return SymCond(op, a, b)
        try:
            return {"==": lambda: a == b, "!=": lambda: a != b, "<": lambda: a < b,
                    "<=": lambda: a <= b, ">": lambda: a > b, ">=": lambda: a >= b}[op]()
        except TypeError:
            raise ArgumentError(f"cannot compare {_describe(a)} with {_describe(b)}", span=span,
                                code="E0240") from None

    def _e_attr(self, e: ast.Attr, frame):
        v = self._eval(e.value, frame)
        if isinstance(v, TensorVal):
            if e.name == "shape":
                return tuple(v.type.shape)
            if e.name == "dtype":
                return DType(v.type.dtype)
            if e.name == "rank":
                return v.type.rank
            if e.name == "T":
                return BuildCtx(self, frame, e.span, frame.scope, None).emit(
                    "transpose", [v], {"dim0": -2, "dim1": -1})[0]
            close = _suggest(e.name, ("shape", "dtype", "rank", "T"))
            raise UnknownNameError(f"a tensor has no attribute `{e.name}`", span=e.span,
                                   code="E0202", hint=(close + " " if close else "")
                                   + "tensors have .shape, .dtype, .rank, .T")
        if isinstance(v, Instance):
            if e.name in v.params:
                return v.params[e.name]
            if not v.applied:
                raise UnknownNameError(f"layer `{v.name or v.callee.name}` has no "
                                       f"weights yet", span=e.span, code="E0203",
                                       hint="apply the layer to a tensor before reading its "
                                            "parameters (their shapes come from its input)")
            raise UnknownNameError(f"layer `{v.qualname}` has no parameter `{e.name}`",
                                   span=e.span, code="E0202",
                                   hint=_suggest(e.name, list(v.params)) or
                                   "its parameters: " + ", ".join(v.params))
        raise UnknownNameError(f"{_describe(v)} has no attribute `{e.name}`", span=e.span,
                               code="E0202")

    def _e_index(self, e: ast.Index, frame):
        v = self._eval(e.value, frame)
        if isinstance(v, tuple):
            if len(e.subscripts) != 1:
                raise ArgumentError("a list takes one index", span=e.span, code="E0242")
            sub = e.subscripts[0]
            if isinstance(sub, ast.SliceExpr):
                parts = []
                for what, x in zip(("start", "stop", "step"), (sub.start, sub.stop, sub.step)):
                    b = self._eval(x, frame) if x is not None else None
                    if b is not None and (not isinstance(b, int) or isinstance(b, bool)):
                        raise ArgumentError(f"the {what} of a list slice must be an int, got "
                                            f"{_describe(b)}", span=x.span, code="E0242",
                                            hint="use // for integer division, or int(...)"
                                            if isinstance(b, float) else None)
                    parts.append(b)
                if parts[2] == 0:
                    raise ArgumentError("a list slice's step cannot be zero",
                                        span=sub.step.span, code="E0313",
                                        hint="write a step of 1 (or leave it out), or -1 to "
                                             "reverse the list")
                return v[slice(*parts)]
            i = self._eval(sub, frame)
            if not isinstance(i, int) or isinstance(i, bool):
                raise ArgumentError(f"a list index must be an int, got {_describe(i)}",
                                    span=sub.span, code="E0242")
            if not -len(v) <= i < len(v):
                raise ArgumentError(f"index {i} out of range for a list of {len(v)}",
                                    span=sub.span, code="E0220")
            return v[i]
        if isinstance(v, TensorVal):
            return self._index_tensor(v, e, frame)
        raise ArgumentError(f"cannot index {_describe(v)}", span=e.span, code="E0242")

    def _index_tensor(self, v: TensorVal, e: ast.Index, frame: Frame):
        """NumPy's indexing on a tensor, with static shapes: ints and slices (``slice``,
        ``squeeze``), ``...``, ``none`` (a new dim of size 1: ``unsqueeze``), and one i64 tensor
        of ids along a dim (``index_select``; reshapes around it for an n-d index). A boolean
        mask is refused: its result's shape would depend on the data."""
        subs = list(e.subscripts)
        if sum(isinstance(s, ast.EllipsisExpr) for s in subs) > 1:
            raise ArgumentError("at most one `...` in an index", span=e.span, code="E0243")
        items = []   # (kind, value, node): slice, int, tensor, new, ...
        for s in subs:
            if isinstance(s, ast.EllipsisExpr):
                items.append(("...", None, s))
            elif isinstance(s, ast.SliceExpr):
                items.append(("slice", None, s))
            else:
                i = self._eval(s, frame)
                kind = "new" if i is None else "tensor" if isinstance(i, TensorVal) else "int"
                items.append((kind, i, s))
        rank = v.type.rank
        n_real = sum(k in ("slice", "int", "tensor") for k, _, _ in items)
        if n_real > rank:
            raise ShapeError(f"too many indices ({n_real}) for {v.type}", span=e.span,
                             code="E0302", hint="`none` adds a dim without using one"
                             if any(k == "new" for k, _, _ in items) else None)
        full = [("full", None, None)] * (rank - n_real)
        ell = next((i for i, (k, _, _) in enumerate(items) if k == "..."), None)
        items = items[:ell] + full + items[ell + 1:] if ell is not None else items + full
        tensors = [(k, i, s) for k, i, s in items if k == "tensor"]
        if tensors:
            self._check_index_tensor(v, tensors, items, e)
        axes, starts, ends, steps, squeeze, new = [], [], [], [], [], []
        picked = None     # (axis, index tensor, node)
        ax = pos = 0      # the input dim and the output dim each item stands at
        for kind, i, s in items:
            if kind == "new":
                new.append(pos)
                pos += 1
                continue
            if kind == "slice":
                bounds = self._slice_bounds(v, ax, s, frame)
                if bounds is not None:
                    for lst, b in zip((axes, starts, ends, steps), (ax, *bounds)):
                        lst.append(b)
                pos += 1
            elif kind == "int":
                if isinstance(i, bool) or not isinstance(i, (int, SymDim)):
                    raise ArgumentError(f"an index must be an int, a slice, `...`, `none` or an "
                                        f"i64 tensor, got {_describe(i)}", span=s.span,
                                        code="E0242")
                size = v.type.shape[ax]
                if isinstance(i, int) and isinstance(size, int) and not -size <= i < size or \
                        isinstance(i, SymDim) and i == size:
                    raise ShapeError(f"index {i} is out of range for dim {ax} of size {size} "
                                     f"in {v.type}", span=s.span, code="E0317",
                                     hint=f"valid indices are 0 to {size - 1} (or -{size} to -1)")
                axes.append(ax)
                starts.append(i)
                ends.append(None if isinstance(i, int) and i == -1 else i + 1)
                steps.append(1)
                squeeze.append(ax)
            elif kind == "tensor":
                picked = (ax, i, s)
                pos += max(i.type.rank, 0)
            else:   # a whole dim
                pos += 1
            ax += 1
        ctx = BuildCtx(self, frame, e.span, frame.scope, None)
        out = v
        if axes:
            out = ctx.emit("slice", [v], {"axes": tuple(axes), "starts": tuple(starts),
                                          "ends": tuple(ends), "steps": tuple(steps)})[0]
        if picked is not None:
            out = self._pick(ctx, out, *picked, squeeze)
        if squeeze:
            out = ctx.emit("squeeze", [out], {"dims": tuple(squeeze)})[0]
        for d in new:
            out = ctx.emit("unsqueeze", [out], {"dim": d})[0]
        return out

    def _slice_bounds(self, v: TensorVal, ax: int, s: ast.SliceExpr, frame: Frame):
        """``(start, stop, step)`` of a slice along dim ``ax``; None for the whole dim."""
        st, en, sp = (self._eval(x, frame) if x is not None else None
                      for x in (s.start, s.stop, s.step))
        for val, part in ((st, s.start), (en, s.stop)):
            if val is not None and (isinstance(val, bool) or not isinstance(val, (int, SymDim))):
                raise ArgumentError(f"slice bounds must be ints or dims, got "
                                    f"{_describe(val)}", span=part.span, code="E0242")
        sp = 1 if sp is None else sp
        if not isinstance(sp, int) or sp <= 0:
            raise ArgumentError("slice step must be a positive int", span=s.span, code="E0313")
        for val, part in ((st, s.start), (en, s.stop), (sp, s.step)):
            if isinstance(val, int) and abs(val) > MAX_INT:
                shown = str(val) if val.bit_length() < 100 else f"({len(str(abs(val)))} digits)"
                raise LimitError(f"slice bound {shown} is out of range (at most ±2^62)",
                                 span=part.span, code="E0601",
                                 hint="leave the bound out to slice to the end of the dim")
        if st is None and en is None and sp == 1:
            return None
        size = v.type.shape[ax]
        if isinstance(size, int) and all(isinstance(b, int) or b is None for b in (st, en)) and \
                not range(size)[slice(st, en, sp)]:
            bounds = ":".join("" if b is None else str(b) for b in (st, en)) + \
                (f":{sp}" if sp != 1 else "")
            raise ShapeError(f"the slice [{bounds}] selects nothing from dim {ax} of size "
                             f"{size} in {v.type}", span=s.span, code="E0317",
                             hint=f"positions along dim {ax} run from 0 to {size - 1} "
                                  f"(or -{size} to -1)")
        return st, en, sp

    def _check_index_tensor(self, v: TensorVal, tensors: list, items: list, e: ast.Index):
        _, idx, node = tensors[0]
        if idx.type.dtype == "bool":
            raise ShapeError(f"a boolean mask cannot index a tensor: the result's shape would "
                             f"depend on how many of its values are true, and every shape is "
                             f"known when compiling ({v.type} indexed by {idx.type})",
                             span=node.span, code="E0340",
                             hint="keep the shape and replace what the mask leaves out: "
                                  "`where(mask, x, 0)` or `masked_fill(x, not mask, 0)` (then "
                                  "sum or mean over the kept values); to pick rows by position, "
                                  "index with i64 ids: `x[ids]`")
        if idx.type.dtype != "i64":
            raise ShapeError(f"a tensor index must hold i64 ids, got {idx.type}",
                             span=node.span, code="E0304",
                             hint="convert it with cast(index, i64)")
        if len(tensors) > 1:
            raise ArgumentError("one tensor index at a time: NumPy would broadcast several "
                                "together", span=tensors[1][2].span, code="E0250",
                                hint="index one dim per step (`x[i][:, j]`), or use "
                                     "gather(x, index, dim) for an index per element")
        if any(k == "int" for k, _, _ in items):
            raise ArgumentError("a tensor index cannot be combined with an integer index in "
                                "one subscript", span=e.span, code="E0250",
                                hint="index in two steps, the integer first: `x[:, 0]`, then "
                                     "`[ids]` on the result")

    def _pick(self, ctx: BuildCtx, x: TensorVal, ax: int, idx: TensorVal, node, squeeze: list):
        """``x`` at the ids ``idx`` along dim ``ax``: index_select, with reshapes around it for
        a 0-d or n-d index (the result has idx's dims in place of dim ``ax``)."""
        size = x.type.shape[ax]
        flat = idx
        if idx.type.rank != 1:
            flat = ctx.emit("reshape", [idx], {"shape": (-1,)})[0]
        out = ctx.emit("index_select", [x, flat], {"dim": ax})[0]
        ctx.index_range(idx, size)
        if idx.type.rank == 0:
            squeeze.append(ax)
        elif idx.type.rank > 1:
            shape = x.type.shape[:ax] + idx.type.shape + x.type.shape[ax + 1:]
            out = ctx.emit("reshape", [out], {"shape": tuple(shape)})[0]
        return out

    def _e_pipe(self, e: ast.Pipe, frame):
        # ``x |> f |> g |> ...`` nests to the left; walk the chain in a loop, not by recursion,
        # so that a pipeline of thousands of stages cannot exhaust Python's stack.
        chain = [e]
        while isinstance(chain[-1].value, ast.Pipe):
            chain.append(chain[-1].value)
        value = self._eval(chain[-1].value, frame)
        for stage in reversed(chain[1:]):
            try:
                value = self._pipe_stage(value, stage, frame)
            except NndslError as err:
                raise err.with_span(stage.span)
            if self.recorder is not None:
                self.recorder(stage.target, value, True)
        value = self._pipe_stage(value, e, frame)
        if self.recorder is not None:
            self.recorder(e.target, value, True)
        return value

    def _pipe_stage(self, value, e: ast.Pipe, frame):
        target, name = e.target, None
        if isinstance(target, ast.Named):
            target, name = target.value, target.name
        if isinstance(target, ast.Call):
            callee = self._eval(target.func, frame)
            pos, kw = self._eval_args(target.args, frame)
            return self.call(callee, [value] + pos, kw, frame, target.span, name, piped=True)
        callee = self._eval(target, frame)
        return self.call(callee, [value], {}, frame, e.target.span, name, piped=True)

    def _e_named(self, e: ast.Named, frame):
        if isinstance(e.value, ast.Call):
            callee = self._eval(e.value.func, frame)
            pos, kw = self._eval_args(e.value.args, frame)
            return self.call(callee, pos, kw, frame, e.value.span, e.name)
        v = self._eval(e.value, frame)
        if isinstance(v, (Surface, ast.Definition)):
            return self.call(v, [], {}, frame, e.value.span, e.name)
        if isinstance(v, Instance) and v.qualname is None:
            v.name = e.name
            return v
        raise ArgumentError(f"only a layer or block call can be named, not {_describe(v)}",
                            span=e.span, code="E0246")

    def _e_call(self, e: ast.Call, frame):
        callee = self._eval(e.func, frame)
        pos, kw = self._eval_args(e.args, frame)
        return self.call(callee, pos, kw, frame, e.span, None)

    def _eval_args(self, args, frame):
        pos, kw = [], {}
        for a in args:
            if a.name is None:
                if kw:
                    raise ArgumentError("a positional argument follows a keyword argument",
                                        span=a.span, code="E0263",
                                        hint="put the positional arguments first, or give "
                                             "this one by name too")
                pos.append((self._eval(a.value, frame), a.span))
            else:
                if a.name in kw:
                    raise ArgumentError(f"keyword argument `{a.name}` is given twice",
                                        span=a.span, code="E0222")
                kw[a.name] = (self._eval(a.value, frame), a.span)
        return pos, kw

    def _e_slice(self, e, frame):
        raise ArgumentError("a slice is only valid inside [...]", span=e.span, code="E0242")

    _e_ellipsis = _e_slice


_EVAL = {
    ast.Num: ExpressionMixin._e_num, ast.Str: ExpressionMixin._e_str,
    ast.Const: ExpressionMixin._e_const, ast.Name: ExpressionMixin._e_name,
    ast.TupleLit: ExpressionMixin._e_tuple, ast.ListLit: ExpressionMixin._e_list,
    ast.IfExpr: ExpressionMixin._e_if, ast.UnaryOp: ExpressionMixin._e_unary,
    ast.BinOp: ExpressionMixin._e_binop, ast.Attr: ExpressionMixin._e_attr,
    ast.Index: ExpressionMixin._e_index, ast.Pipe: ExpressionMixin._e_pipe,
    ast.Named: ExpressionMixin._e_named, ast.Call: ExpressionMixin._e_call,
    ast.SliceExpr: ExpressionMixin._e_slice, ast.EllipsisExpr: ExpressionMixin._e_ellipsis,
}
