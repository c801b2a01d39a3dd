"""Elaboration: run a model's definition at compile time and record the typed graph it builds.

Expressions over numbers, dims, tuples and strings are evaluated right here (loops unroll,
``if`` picks a branch, ``assert`` checks). Expressions over tensors emit IR nodes whose types
come from the shape rules, so every shape is known — or symbolic — before any tensor exists.

Names: a layer applied without a name gets ``{op}_{k}`` in its scope (``conv2d_0``); ``as NAME``
or assigning an unapplied layer to a variable names it; a labelled loop ``stages: for ...`` puts
iteration ``i`` in scope ``stages.i``. A layer's parameters are ``{scope}.{name}.{param}``.
Applying the same instance twice reuses its parameters (shared weights).
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field
from typing import Any

from nndsl.elab import library
from nndsl.elab.loader import Program, std_modules, std_source
from nndsl.elab.values import (REQUIRED, Builtin, DType, Instance, Partial, Surface, SymCond,
                               TensorVal)
from nndsl.errors import (ArgumentError, DefinitionError, LimitError, NndslError, ShapeError,
                          Span, SpecAssertionError, UnknownNameError)
from nndsl.ir.graph import Graph, Node
from nndsl.ir.ops import SIGNATURES, infer
from nndsl.ir.types import DTYPES, FLOAT_DTYPES, INT_DTYPES, SymDim, TensorType
from nndsl.syntax import ast

MAX_CALL_DEPTH = 64
MAX_LOOP = 100_000
MAX_STEPS = 1_000_000
MAX_PARAM_ELEMENTS = 2**34
SHAPE_ONLY_OPS = ("reshape", "flatten", "slice", "squeeze", "unsqueeze", "transpose", "permute",
                  "expand", "cast")


class _Return(Exception):
    def __init__(self, value):
        self.value = value


@dataclass
class _Mod:
    """``dim % k`` for a symbolic dim: only comparable with 0."""

    dim: SymDim
    k: int


@dataclass
class Frame:
    env: dict
    scope: str
    definition: ast.Definition
    is_model: bool
    inputs: dict = field(default_factory=dict)  # block: name -> bound TensorVal
    reuse: bool = False
    call_span: Span | None = None  # block: where it was applied


def _join(scope: str, name: str) -> str:
    return f"{scope}.{name}" if scope else name


def _builtins() -> dict:
    def _range(*a):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in a) or not 1 <= len(a) <= 3:
            raise ArgumentError("range takes 1 to 3 integers", code="E0212")
        r = range(*a)
        if len(r) > MAX_LOOP:
            raise LimitError(f"range of {len(r):,} values (limit {MAX_LOOP:,})", code="E0603")
        return tuple(r)

    def _len(v):
        if isinstance(v, TensorVal):
            return v.type.shape[0]
        if isinstance(v, (tuple, str)):
            return len(v)
        raise ArgumentError(f"len of {_describe(v)}", code="E0212")

    def _int(v):
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return int(v)
        raise ArgumentError(f"int() of {_describe(v)}", code="E0212")

    def _float(v):
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
        raise ArgumentError(f"float() of {_describe(v)}", code="E0212")

    return {
        "range": Builtin("range", _range),
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
    raise ArgumentError(f"expected a list or tuple, got {_describe(v)}", code="E0212")


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
        return f"the layer `{v.qualname or v.name or _callee_name(v.callee)}`"
    if isinstance(v, ast.Definition):
        return f"the {v.kind} `{v.name}`"
    if isinstance(v, SymCond):
        return f"the undecidable condition `{v}`"
    return type(v).__name__


def _callee_name(c) -> str:
    return c.name


class Elaborator:
    """Builds the :class:`Graph` of one model of a :class:`Program`."""

    def __init__(self, program: Program):
        self.program = program
        self.graph: Graph | None = None
        self.counters: dict[str, dict[str, int]] = {}
        self.instances: dict[str, Instance] = {}
        self.call_stack: list[str] = []
        self.symbols: dict[str, Span] = {}
        self.steps = 0  # loop iterations so far, against MAX_STEPS

    # ------------------------------------------------------------------ entry
    def elaborate(self, model: str, overrides: dict | None = None) -> Graph:
        defn = self.program.definitions[model]
        self.graph = g = Graph(defn.name)
        frame = Frame({}, "", defn, is_model=True)
        values = self._bind_params(defn, {}, overrides or {}, defn.span, from_user=True)
        frame.env.update(values)
        g.meta["params"] = {k: v for k, v in values.items()}
        g.meta["model_span"] = defn.name_span
        self.call_stack.append(defn.name)
        try:
            self._exec_body(defn.body, frame)
        except _Return as r:
            raise DefinitionError("a model declares its results with `output NAME = ...`, "
                                  "not `return`", code="E0507", span=r.value,
                                  hint="write `output y = ...`, one line per result") from None
        if not g.outputs:
            raise DefinitionError(f"model `{defn.name}` has no outputs", span=defn.name_span,
                                  code="E0506", hint="add `output y = ...`")
        if not g.inputs:
            raise DefinitionError(f"model `{defn.name}` has no inputs", span=defn.name_span,
                                  code="E0506", hint="add `input x: f32[N, 4]`")
        g.meta["symbols"] = dict(self.symbols)
        return g

    # ------------------------------------------------------------- parameters
    def _bind_params(self, defn: ast.Definition, given: dict, overrides: dict, span: Span,
                     from_user: bool = False) -> dict:
        names = [p.name for p in defn.params]
        for k in overrides:
            if k not in names:
                raise ArgumentError(f"`{defn.name}` has no parameter `{k}`", span=defn.name_span,
                                    code="E0213", hint=_suggest(k, names) or
                                    ("its parameters: " + ", ".join(names) if names
                                     else f"`{defn.name}` takes no parameters"))
        env: dict = {}
        frame = Frame(env, "", defn, is_model=False)
        for p in defn.params:
            if p.name in overrides:
                v = overrides[p.name]
                where = p.span
                if from_user and isinstance(v, list):
                    v = tuple(v)
            elif p.name in given:
                v, where = given[p.name]
            elif p.default is not None:
                v = self._eval(p.default, frame)
                where = p.default.span
            else:
                raise ArgumentError(f"missing argument `{p.name}` of `{defn.name}`", span=span,
                                    code="E0211", notes=[(f"`{p.name}` is declared here", p.span)])
            env[p.name] = self._check_param_type(p, v, where, defn)
        return env

    def _check_param_type(self, p: ast.ParamDef, v, where: Span, defn) -> Any:
        t = p.type
        if t is None or t == "any":
            return v
        ok = {
            "int": isinstance(v, int) and not isinstance(v, bool),
            "float": isinstance(v, (int, float)) and not isinstance(v, bool),
            "bool": isinstance(v, bool),
            "str": isinstance(v, str),
            "dim": isinstance(v, (int, SymDim)) and not isinstance(v, bool),
            "list": isinstance(v, tuple), "tuple": isinstance(v, tuple),
            "dtype": isinstance(v, DType),
        }
        if t not in ok:
            raise ArgumentError(f"unknown parameter type `{t}`", span=p.span, code="E0214",
                                hint="use one of: " + ", ".join(sorted(ok)) + ", any")
        if not ok[t]:
            raise ArgumentError(f"parameter `{p.name}` of `{defn.name}` is declared `{t}` but "
                                f"got {_describe(v)}", span=where, code="E0212")
        return float(v) if t == "float" else v

    # -------------------------------------------------------------- statements
    def _exec_body(self, body, frame: Frame) -> None:
        for stmt in body:
            self._exec(stmt, frame)

    def _exec(self, s, frame: Frame) -> None:
        if isinstance(s, ast.AssignStmt):
            v = self._eval(s.value, frame)
            if len(s.targets) == 1:
                self._assign(frame, s.targets[0], v)
            else:
                if not isinstance(v, tuple) or len(v) != len(s.targets):
                    raise ArgumentError(f"cannot unpack {_describe(v)} into {len(s.targets)} "
                                        f"names", span=s.span, code="E0215")
                for name, item in zip(s.targets, v):
                    self._assign(frame, name, item)
        elif isinstance(s, ast.InputStmt):
            self._input(s, frame)
        elif isinstance(s, ast.OutputStmt):
            if not frame.is_model:
                raise DefinitionError("`output` belongs in a model; a block returns its result "
                                      "with `return`", span=s.span, code="E0507")
            v = self._eval(s.value, frame)
            if not isinstance(v, TensorVal):
                raise ArgumentError(f"output `{s.name}` must be a tensor, got {_describe(v)}",
                                    span=s.value.span, code="E0212")
            if any(n == s.name for n, _ in self.graph.outputs):
                raise DefinitionError(f"output `{s.name}` is declared twice", span=s.span,
                                      code="E0501")
            if s.name in self.graph.inputs:
                raise DefinitionError(f"output `{s.name}` has the name of an input",
                                      span=s.span, code="E0501")
            self.graph.set_output(s.name, v.value)
            frame.env[s.name] = v
        elif isinstance(s, ast.ReturnStmt):
            if frame.is_model:
                raise _Return(s.span)
            vals = tuple(self._eval(e, frame) for e in s.values)
            raise _Return(vals[0] if len(vals) == 1 else vals)
        elif isinstance(s, ast.AssertStmt):
            self._assert(s, frame)
        elif isinstance(s, ast.ForStmt):
            seq = self._eval(s.iterable, frame)
            if isinstance(seq, TensorVal) or not isinstance(seq, tuple):
                raise ArgumentError(f"`for` needs a list, a tuple or range(...), got "
                                    f"{_describe(seq)}", span=s.iterable.span, code="E0212")
            self._loop(s, frame, seq, s.targets, s.destructure)
        elif isinstance(s, ast.RepeatStmt):
            n = self._eval(s.count, frame)
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                raise ArgumentError(f"`repeat` needs a non-negative int, got {_describe(n)}",
                                    span=s.count.span, code="E0212")
            if n > MAX_LOOP:
                raise LimitError(f"loop of {n:,} iterations (limit {MAX_LOOP:,})", span=s.span,
                                 code="E0603")
            self._loop(s, frame, tuple(range(n)), (), False)
        elif isinstance(s, ast.IfStmt):
            cond = self._truth(self._eval(s.cond, frame), s.cond.span)
            if cond:
                self._exec_body(s.body, frame)
            elif s.orelse:
                self._exec_body(s.orelse, frame)
        elif isinstance(s, ast.ParamStmt):
            self._param_stmt(s, frame)
        else:  # pragma: no cover - the parser produces nothing else
            raise NndslError(f"unknown statement {type(s).__name__}", span=s.span)

    def _assign(self, frame: Frame, name: str, v) -> None:
        if isinstance(v, Instance) and v.name is None and v.qualname is None:
            v.name = name
        frame.env[name] = v

    def _loop(self, s, frame: Frame, seq: tuple, targets: tuple, destructure: bool) -> None:
        if len(seq) > MAX_LOOP:
            raise LimitError(f"loop of {len(seq)} iterations (limit {MAX_LOOP})", span=s.span,
                             code="E0603")
        self.steps += len(seq)
        if self.steps > MAX_STEPS:  # nested loops multiply
            raise LimitError(f"the loops of this model run more than {MAX_STEPS:,} iterations in "
                             f"all", span=s.span, code="E0603",
                             hint="nested loops multiply; check the loop bounds")
        outer = frame.scope
        for i, item in enumerate(seq):
            if destructure:
                if not isinstance(item, tuple) or len(item) != len(targets):
                    raise ArgumentError(f"cannot unpack {_describe(item)} into "
                                        f"({', '.join(targets)})", span=s.iterable.span,
                                        code="E0215")
                for t, v in zip(targets, item):
                    frame.env[t] = v
            elif targets:
                frame.env[targets[0]] = item
            if s.label:
                frame.scope = _join(outer, f"{s.label}.{i}")
                self.counters.pop(frame.scope, None)
            try:
                self._exec_body(s.body, frame)
            finally:
                frame.scope = outer

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

    def _assert(self, s: ast.AssertStmt, frame: Frame) -> None:
        cond = self._eval(s.cond, frame)
        msg = self._eval(s.message, frame) if s.message is not None else None
        msg = str(msg) if msg is not None else None
        if isinstance(cond, SymCond):
            self.graph.meta["constraints"].append((cond, msg, s.span))
            return
        if not self._truth(cond, s.cond.span):
            raise SpecAssertionError(f"assertion failed: {msg}" if msg else "assertion failed",
                                     span=s.cond.span, code="E0400",
                                     hint=self._assert_hint(s.cond, frame))

    def _assert_hint(self, cond, frame: Frame) -> str | None:
        names = sorted({n.id for n in _names_in(cond)} & set(frame.env))
        vals = [f"{n} = {frame.env[n]}" for n in names
                if isinstance(frame.env[n], (int, float, str, bool, SymDim))]
        return ("with " + ", ".join(vals)) if vals else None

    # ---------------------------------------------------------------- inputs
    def _input(self, s: ast.InputStmt, frame: Frame) -> None:
        g = self.graph
        if not frame.is_model:
            if s.name not in frame.inputs:
                raise DefinitionError(f"input `{s.name}` must be declared at the top level of the "
                                      f"block", span=s.span, code="E0508")
            v = frame.inputs[s.name]
            if s.type is not None:
                try:
                    self._match_type(v, s.type, frame, s.name)
                except NndslError as err:   # point at the call; the declaration is a note
                    if frame.call_span is not None:
                        err.notes.insert(0, (f"`{frame.definition.name}` declares input "
                                             f"`{s.name}: {self._pattern_str(s.type)}` here",
                                             err.span))
                        err.span = frame.call_span
                    raise
            frame.env[s.name] = v
            return
        if s.type is None or s.type.dims is None:
            raise DefinitionError(f"model input `{s.name}` needs a type with a shape",
                                  span=s.span, code="E0509", hint=f"input {s.name}: f32[N, 16]")
        if s.name in frame.env or s.name in g.inputs:
            raise DefinitionError(f"`{s.name}` is already defined", span=s.span, code="E0501")
        dtype = self._dtype(s.type)
        dims = []
        for d in s.type.dims:
            if isinstance(d, ast.EllipsisExpr):
                raise DefinitionError("a model input needs every dim spelled out", span=d.span,
                                      code="E0509")
            if isinstance(d, ast.Name) and d.id not in frame.env:
                sym = SymDim.symbol(d.id)
                frame.env[d.id] = sym
                self.symbols.setdefault(d.id, d.span)
                dims.append(sym)
                continue
            v = self._eval(d, frame)
            if isinstance(v, bool) or not isinstance(v, (int, SymDim)):
                raise ArgumentError(f"a dim must be an int or a symbol, got {_describe(v)}",
                                    span=d.span, code="E0212")
            if isinstance(v, int) and v <= 0:
                raise ShapeError(f"dims must be positive, got {v}", span=d.span, code="E0315")
            if isinstance(v, int) and v > 2**40:
                raise LimitError(f"dimension {v} is absurdly large", span=d.span, code="E0601",
                                 hint="no tensor dimension is larger than 2^40")
            dims.append(v)
        t = TensorType(dtype, tuple(dims))
        node = g.add(Node.make(s.name, "input", (), {"name": s.name, "dtype": dtype,
                                                    "shape": t.shape}, (t,), s.span, ""))
        frame.env[s.name] = TensorVal(node.out(), t)

    def _dtype(self, tt: ast.TensorTypeExpr) -> str:
        if tt.dtype not in DTYPES:
            raise ArgumentError(f"unknown dtype `{tt.dtype}`", span=tt.span, code="E0217",
                                hint=_suggest(tt.dtype, DTYPES) or "dtypes: " + ", ".join(DTYPES))
        return tt.dtype

    def _match_type(self, v, tt: ast.TensorTypeExpr, frame: Frame, name: str) -> None:
        if not isinstance(v, TensorVal):
            raise ArgumentError(f"input `{name}` expects a tensor, got {_describe(v)}",
                                span=tt.span, code="E0212")
        if tt.dtype not in ("any", "float", "int"):
            if self._dtype(tt) != v.type.dtype:
                raise ShapeError(f"input `{name}` expects {tt.dtype} but got {v.type}", span=tt.span,
                                 code="E0304")
        elif tt.dtype == "float" and v.type.dtype not in FLOAT_DTYPES or \
                tt.dtype == "int" and v.type.dtype not in INT_DTYPES:
            raise ShapeError(f"input `{name}` expects a {tt.dtype} tensor but got {v.type}",
                             span=tt.span, code="E0304")
        if tt.dims is None:
            return
        pats = list(tt.dims)
        shape = v.type.shape
        ell = [i for i, p in enumerate(pats) if isinstance(p, ast.EllipsisExpr)]
        if len(ell) > 1:
            raise ArgumentError("at most one `...` in a shape", span=tt.span, code="E0212")
        if ell:
            i = ell[0]
            n_after = len(pats) - i - 1
            if len(shape) < len(pats) - 1:
                self._rank_error(name, tt, v, frame)
            pairs = list(zip(pats[:i], shape[:i], range(i))) + list(
                zip(pats[i + 1:], shape[len(shape) - n_after:],
                    range(len(shape) - n_after, len(shape))))
        else:
            if len(shape) != len(pats):
                self._rank_error(name, tt, v, frame)
            pairs = list(zip(pats, shape, range(len(shape))))
        for pat, actual, axis in pairs:
            if isinstance(pat, ast.Name) and pat.id not in frame.env and pat.id != "_":
                frame.env[pat.id] = actual
                continue
            if isinstance(pat, ast.Name) and pat.id == "_":
                continue
            want = self._eval(pat, frame)
            if not (want == actual and type(want) is type(actual)):
                why = (f"{pat.id} = {want}" if isinstance(pat, ast.Name)
                       else f"the block needs {want}")
                raise ShapeError(f"`{frame.definition.name}` expects input `{name}`: "
                                 f"{self._pattern_str(tt)}, got {v.type}: dim {axis} is "
                                 f"{actual}, but {why}", span=pat.span, code="E0316",
                                 notes=self._provenance([v]))

    def _rank_error(self, name, tt, v, frame: Frame):
        ell = any(isinstance(d, ast.EllipsisExpr) for d in tt.dims)
        rank = len(tt.dims) - ell
        raise ShapeError(f"`{frame.definition.name}` expects input `{name}` of rank "
                         f"{'at least ' if ell else ''}{rank} ({self._pattern_str(tt)}), got "
                         f"{v.type}", span=tt.span, code="E0316", notes=self._provenance([v]))

    @staticmethod
    def _pattern_str(tt: ast.TensorTypeExpr) -> str:
        def one(d):
            if isinstance(d, ast.EllipsisExpr):
                return "..."
            if isinstance(d, ast.Name):
                return d.id
            if isinstance(d, ast.Num):
                return str(d.value)
            return "?"
        return f"{tt.dtype}[{', '.join(one(d) for d in tt.dims)}]"

    def _param_stmt(self, s: ast.ParamStmt, frame: Frame) -> None:
        dtype = self._dtype(s.type)
        dims = []
        for d in s.type.dims or ():
            v = self._eval(d, frame)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ArgumentError(f"a parameter's dims must be positive ints, got "
                                    f"{_describe(v)}", span=d.span, code="E0212")
            dims.append(v)
        init = ("zeros",)
        if s.init is not None:
            init = self._init_spec(s.init, frame)
        ctx = BuildCtx(self, frame, s.span, frame.scope, None)
        frame.env[s.name] = ctx.param(s.name, tuple(dims), init, dtype=dtype)

    def _init_spec(self, e, frame: Frame) -> tuple:
        """``zeros``, ``ones``, ``normal(std)``, ``normal(mean, std)``, ``uniform(a, b)``,
        ``constant(v)``, ``trunc_normal(std)``."""
        name, args = (e.id, ()) if isinstance(e, ast.Name) else (
            (e.func.id, e.args) if isinstance(e, ast.Call) and isinstance(e.func, ast.Name)
            else (None, ()))
        vals = []
        for a in args:
            v = self._eval(a.value, frame)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ArgumentError(f"initializer arguments must be numbers, got {_describe(v)}",
                                    span=a.span, code="E0212")
            vals.append(float(v))
        table = {"zeros": 0, "ones": 0, "normal": (1, 2), "uniform": 2, "constant": 1,
                 "trunc_normal": (1, 2)}
        if name not in table:
            raise ArgumentError("unknown initializer", span=e.span, code="E0218",
                                hint="use zeros, ones, normal(std), normal(mean, std), "
                                     "uniform(low, high), constant(v) or trunc_normal(std)")
        want = table[name]
        if len(vals) not in (want if isinstance(want, tuple) else (want,)):
            raise ArgumentError(f"`{name}` takes {want} arguments", span=e.span, code="E0211")
        if name in ("normal", "trunc_normal") and len(vals) == 1:
            vals = [0.0] + vals
        return (name, *vals)

    # ------------------------------------------------------------- expressions
    def _eval(self, e, frame: Frame):
        method = _EVAL.get(type(e))
        if method is None:  # pragma: no cover
            raise NndslError(f"cannot evaluate {type(e).__name__}", span=e.span)
        try:
            return method(self, e, frame)
        except NndslError as err:
            raise err.with_span(e.span)

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
        if self._truth(self._eval(e.cond, frame), e.cond.span):
            return self._eval(e.then, frame)
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
        raise ArgumentError(f"cannot negate {_describe(v)}", span=e.span, code="E0212")

    def _e_binop(self, e: ast.BinOp, frame):
        if e.op in ("and", "or"):
            left = self._eval(e.left, frame)
            if isinstance(left, TensorVal):
                right = self._eval(e.right, frame)
                return BuildCtx(self, frame, e.span, frame.scope, None).emit(
                    "logical_" + e.op, [left, right], {})[0]
            lt = self._truth(left, e.left.span)
            if e.op == "and" and not lt or e.op == "or" and lt:
                return lt
            return self._truth(self._eval(e.right, frame), e.right.span)
        left = self._eval(e.left, frame)
        right = self._eval(e.right, frame)
        return self.binary(e.op, left, right, frame, e.span)

    def binary(self, op: str, a, b, frame: Frame, span: Span):
        if isinstance(a, TensorVal) or isinstance(b, TensorVal):
            ctx = BuildCtx(self, frame, span, frame.scope, None)
            name = _TENSOR_BINOPS.get(op)
            if name is None:
                raise ArgumentError(f"operator `{op}` is not defined on tensors", span=span,
                                    code="E0212")
            return ctx.binary(name, a, b)
        if op in ("==", "!=", "<", "<=", ">", ">="):
            return self._compare(op, a, b, span)
        if isinstance(a, tuple) and isinstance(b, tuple) and op == "+":
            return a + b
        if isinstance(a, tuple) and isinstance(b, int) and op == "*":
            if len(a) * b > MAX_LOOP:
                raise LimitError(f"a list of {len(a) * b:,} items (limit {MAX_LOOP:,})",
                                 span=span, code="E0603")
            return a * b
        if isinstance(a, str) and isinstance(b, str) and op == "+":
            return a + b
        num = (int, float, SymDim)
        if not (isinstance(a, num) and isinstance(b, num)) or isinstance(a, bool) or \
                isinstance(b, bool):
            raise ArgumentError(f"cannot apply `{op}` to {_describe(a)} and {_describe(b)}",
                                span=span, code="E0212")
        sym = isinstance(a, SymDim) or isinstance(b, SymDim)
        try:
            if op == "+":
                return a + b
            if op == "-":
                return a - b
            if op == "*":
                return a * b
            if op == "/":
                if sym:
                    raise ArgumentError("`/` on a symbolic dim gives no integer; use `//`",
                                        span=span, code="E0212")
                return a / b
            if op == "//":
                if sym and isinstance(b, (SymDim, float)):
                    raise ArgumentError("a symbolic dim can only be divided by an int",
                                        span=span, code="E0212")
                return a // b
            if op == "%":
                if isinstance(a, SymDim):
                    if not isinstance(b, int):
                        raise ArgumentError("a symbolic dim can only be taken modulo an int",
                                            span=span, code="E0212")
                    return 0 if a.divisible_by(b) else _Mod(a, b)
                return a % b
            if op == "**":
                if sym:
                    raise ArgumentError("`**` on a symbolic dim", span=span, code="E0212")
                if isinstance(a, int) and isinstance(b, int) and abs(a) > 1 and \
                        b * math.log2(abs(a)) > 1024:
                    raise LimitError(f"{a} ** {b} is too large", span=span, code="E0601")
                return a ** b
            if op == "@":
                raise ArgumentError("`@` needs tensors", span=span, code="E0212")
        except ZeroDivisionError:
            raise ArgumentError("division by zero", span=span, code="E0219") from None
        except OverflowError:
            raise LimitError("number too large", span=span, code="E0601") from None
        raise ArgumentError(f"unknown operator {op}", span=span)  # pragma: no cover

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
                                    span=span, code="E0212")
            return SymCond(op, a, b)
        try:
            return {"==": lambda: a == b, "!=": lambda: a != b, "<": lambda: a < b,
                    "<=": lambda: a <= b, ">": lambda: a > b, ">=": lambda: a >= b}[op]()
        except TypeError:
            raise ArgumentError(f"cannot compare {_describe(a)} with {_describe(b)}", span=span,
                                code="E0212") from None

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
                raise UnknownNameError(f"layer `{v.name or _callee_name(v.callee)}` has no "
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
                raise ArgumentError("a list takes one index", span=e.span, code="E0212")
            sub = e.subscripts[0]
            if isinstance(sub, ast.SliceExpr):
                parts = [self._eval(x, frame) if x is not None else None
                         for x in (sub.start, sub.stop, sub.step)]
                return v[slice(*parts)]
            i = self._eval(sub, frame)
            if not isinstance(i, int) or isinstance(i, bool):
                raise ArgumentError(f"a list index must be an int, got {_describe(i)}",
                                    span=sub.span, code="E0212")
            if not -len(v) <= i < len(v):
                raise ArgumentError(f"index {i} out of range for a list of {len(v)}",
                                    span=sub.span, code="E0220")
            return v[i]
        if isinstance(v, TensorVal):
            return self._index_tensor(v, e, frame)
        raise ArgumentError(f"cannot index {_describe(v)}", span=e.span, code="E0212")

    def _index_tensor(self, v: TensorVal, e: ast.Index, frame: Frame):
        subs = list(e.subscripts)
        n_ell = sum(isinstance(s, ast.EllipsisExpr) for s in subs)
        if n_ell > 1:
            raise ArgumentError("at most one `...` in an index", span=e.span, code="E0212")
        rank = v.type.rank
        n_real = len(subs) - n_ell
        if n_real > rank:
            raise ShapeError(f"too many indices ({n_real}) for {v.type}", span=e.span,
                             code="E0302")
        if n_ell:
            i = next(k for k, s in enumerate(subs) if isinstance(s, ast.EllipsisExpr))
            subs = subs[:i] + [None] * (rank - n_real) + subs[i + 1:]
        else:
            subs = subs + [None] * (rank - n_real)
        axes, starts, ends, steps, squeeze = [], [], [], [], []
        for ax, s in enumerate(subs):
            if s is None:
                continue
            if isinstance(s, ast.SliceExpr):
                st, en, sp = (self._eval(x, frame) if x is not None else None
                              for x in (s.start, s.stop, s.step))
                for val, part in ((st, s.start), (en, s.stop)):
                    if val is not None and (isinstance(val, bool) or
                                            not isinstance(val, (int, SymDim))):
                        raise ArgumentError(f"slice bounds must be ints or dims, got "
                                            f"{_describe(val)}", span=part.span, code="E0212")
                sp = 1 if sp is None else sp
                if not isinstance(sp, int) or sp <= 0:
                    raise ArgumentError("slice step must be a positive int", span=s.span,
                                        code="E0212")
                if st is None and en is None and sp == 1:
                    continue
                size = v.type.shape[ax]
                if isinstance(size, int) and all(isinstance(b, int) or b is None
                                                 for b in (st, en)) and \
                        not range(size)[slice(st, en, sp)]:
                    bounds = ":".join("" if b is None else str(b) for b in (st, en)) + \
                        (f":{sp}" if sp != 1 else "")
                    raise ShapeError(f"the slice [{bounds}] selects nothing from dim {ax} of size "
                                     f"{size} in {v.type}", span=s.span, code="E0317",
                                     hint=f"positions along dim {ax} run from 0 to {size - 1} "
                                          f"(or -{size} to -1)")
                axes.append(ax)
                starts.append(st)
                ends.append(en)
                steps.append(sp)
            else:
                i = self._eval(s, frame)
                if isinstance(i, bool) or not isinstance(i, (int, SymDim)):
                    raise ArgumentError(f"an index must be an int, got {_describe(i)}",
                                        span=s.span, code="E0212")
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
        ctx = BuildCtx(self, frame, e.span, frame.scope, None)
        out = v
        if axes:
            out = ctx.emit("slice", [v], {"axes": tuple(axes), "starts": tuple(starts),
                                          "ends": tuple(ends), "steps": tuple(steps)})[0]
        if squeeze:
            out = ctx.emit("squeeze", [out], {"dims": tuple(squeeze)})[0]
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
        return self._pipe_stage(value, e, frame)

    def _pipe_stage(self, value, e: ast.Pipe, frame):
        target, name = e.target, None
        if isinstance(target, ast.Named):
            target, name = target.value, target.name
        if isinstance(target, ast.Call):
            callee = self._eval(target.func, frame)
            pos, kw = self._eval_args(target.args, frame)
            return self.call(callee, [value] + pos, kw, frame, target.span, name)
        callee = self._eval(target, frame)
        return self.call(callee, [value], {}, frame, e.target.span, name)

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
                            span=e.span, code="E0212")

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
                                        span=a.span, code="E0211")
                pos.append((self._eval(a.value, frame), a.span))
            else:
                if a.name in kw:
                    raise ArgumentError(f"keyword argument `{a.name}` is given twice",
                                        span=a.span, code="E0222")
                kw[a.name] = (self._eval(a.value, frame), a.span)
        return pos, kw

    def _e_slice(self, e, frame):
        raise ArgumentError("a slice is only valid inside [...]", span=e.span, code="E0212")

    _e_ellipsis = _e_slice

    # ------------------------------------------------------------------ calls
    def call(self, callee, pos: list, kw: dict, frame: Frame, span: Span, name: str | None):
        pos = [p if isinstance(p, tuple) and len(p) == 2 and isinstance(p[1], Span)
               else (p, span) for p in pos]
        if isinstance(callee, Builtin):
            if kw:
                raise ArgumentError(f"`{callee.name}` takes no keyword arguments", span=span,
                                    code="E0222")
            try:
                return callee.fn(*[v for v, _ in pos])
            except NndslError as err:
                raise err.with_span(span)
            except TypeError:
                raise ArgumentError(f"wrong arguments for `{callee.name}`", span=span,
                                    code="E0211") from None
            except (ValueError, OverflowError) as err:
                raise ArgumentError(f"`{callee.name}` of "
                                    f"{', '.join(_describe(v) for v, _ in pos)}: {err}",
                                    span=span, code="E0212") from None
        if isinstance(callee, Surface):
            if callee.numeric is not None and pos and not any(
                    isinstance(v, TensorVal) for v, _ in pos) and not kw:
                vals = [v for v, _ in pos]
                if all(isinstance(v, (int, float)) and not isinstance(v, bool) or
                       isinstance(v, tuple) for v in vals):
                    try:
                        return callee.numeric(*vals)
                    except (TypeError, ValueError, ZeroDivisionError) as err:
                        raise ArgumentError(f"`{callee.name}` on {', '.join(map(str, vals))}: "
                                            f"{err}", span=span, code="E0212") from None
            args, complete = self._bind(callee.name, callee.params, pos, kw, span)
            if callee.weights:
                inst = Instance(callee, args, span, name=name)
                if not complete:
                    return inst
                return self.apply(inst, {}, frame, span)
            if not complete:
                if name:
                    raise ArgumentError(f"`{callee.name}` has no weights; it cannot be named",
                                        span=span, code="E0212")
                return Partial(callee, args, span)
            ctx = BuildCtx(self, frame, span, frame.scope, None)
            return self._build(callee, ctx, args)
        if isinstance(callee, Partial):
            args, complete = self._bind(callee.callee.name, callee.callee.params, pos, kw, span,
                                        prebound=callee.args)
            if not complete:
                return Partial(callee.callee, args, span)
            return self._build(callee.callee, BuildCtx(self, frame, span, frame.scope, None),
                               args)
        if isinstance(callee, ast.Definition):
            inputs = _block_inputs(callee)
            params = [library.ParamSpec(n, "tensor", REQUIRED) for n in inputs] + \
                [library.ParamSpec(p.name, "block_param", REQUIRED if p.default is None
                                   else "__default__") for p in callee.params]
            args, complete = self._bind(callee.name, tuple(params), pos, kw, span, block=True)
            inst = Instance(callee, args, span, name=name)
            if not complete:
                return inst
            return self.apply(inst, {}, frame, span)
        if isinstance(callee, Instance):
            if name:
                raise ArgumentError("a layer is named where it is created, not where it is "
                                    "applied", span=span, code="E0212")
            if kw or any(not isinstance(v, TensorVal) for v, _ in pos):
                raise ArgumentError(f"the layer `{callee.qualname or callee.name}` has its "
                                    f"options already; pass only tensors", span=span,
                                    code="E0212")
            return self.apply(callee, {"__pos__": [v for v, _ in pos]}, frame, span)
        raise ArgumentError(f"{_describe(callee)} is not callable", span=span, code="E0221")

    def _bind(self, fname: str, params: tuple, pos: list, kw: dict, span: Span,
              prebound: dict | None = None, block: bool = False):
        """Bind arguments to ``params``: leading tensors to tensor operands, the rest in order.

        Returns ``(args, complete)``; ``complete`` is False when tensor operands are missing
        (a layer waiting for its input).
        """
        args = dict(prebound or {})
        tensor_params = [p for p in params if p.kind in ("tensor", "tensors", "operand")
                         and p.default is REQUIRED]
        option_params = [p for p in params if p not in tensor_params]
        i = 0
        if not prebound:
            for p in tensor_params:
                if i < len(pos) and (_is_tensorish(pos[i][0], p.kind) or
                                     p.kind == "operand" and i < len(pos)):
                    args[p.name] = pos[i]
                    i += 1
                else:
                    break
        else:
            for p in tensor_params:
                if p.name not in args and i < len(pos):
                    args[p.name] = pos[i]
                    i += 1
        rest = pos[i:]
        opts = [p for p in option_params if p.name not in args]
        if len(rest) > len(opts):
            v, sp = rest[len(opts)]
            if isinstance(v, TensorVal) and not opts:
                raise ArgumentError(f"`{fname}` takes {len(tensor_params)} tensor "
                                    f"argument{'s' if len(tensor_params) != 1 else ''}, got more",
                                    span=sp, code="E0211")
            raise ArgumentError(f"too many arguments for `{fname}`: its parameters are "
                                f"{', '.join(p.name for p in params)}", span=sp, code="E0211",
                                hint="in `x |> f(...)` the piped tensor is the first argument"
                                if i > 0 else None)
        for p, (v, sp) in zip(opts, rest):
            args[p.name] = (v, sp)
        names = [p.name for p in params]
        for k, (v, sp) in kw.items():
            if k not in names:
                raise ArgumentError(f"`{fname}` has no parameter `{k}`", span=sp, code="E0213",
                                    hint=_suggest(k, names) or "parameters: " + ", ".join(names))
            if k in args and not (prebound and k in prebound):
                raise ArgumentError(f"`{fname}` got `{k}` both by position and by keyword",
                                    span=sp, code="E0222")
            args[k] = (v, sp)
        out: dict = {}
        complete = True
        for p in params:
            if p.name in args:
                v, sp = args[p.name] if isinstance(args[p.name], tuple) and len(
                    args[p.name]) == 2 and isinstance(args[p.name][1], Span) else (
                    args[p.name], span)
                out[p.name] = v if block else _coerce(fname, p, v, sp)
            elif p.default is REQUIRED:
                if p.kind in ("tensor", "tensors", "operand"):
                    complete = False
                    continue
                raise ArgumentError(f"`{fname}` is missing its argument `{p.name}`", span=span,
                                    code="E0211",
                                    hint="parameters: " + ", ".join(
                                        p.name + ("" if p.default is REQUIRED else "=…")
                                        for p in params))
            elif not block:
                out[p.name] = p.default
        return out, complete

    def apply(self, inst: Instance, extra: dict, frame: Frame, span: Span):
        """Apply a layer or block instance to tensors (creating or reusing its weights)."""
        callee = inst.callee
        args = dict(inst.args)
        pos = list(extra.get("__pos__", []))
        if isinstance(callee, Surface):
            tps = callee.tensor_params
            missing = [p for p in tps if p.name not in args or args[p.name] is None]
            if pos:
                if len(pos) != len([p for p in missing if p.default is REQUIRED]):
                    raise ArgumentError(f"`{callee.name}` takes "
                                        f"{len([p for p in missing if p.default is REQUIRED])} "
                                        f"tensor(s), got {len(pos)}", span=span, code="E0211")
                for p, v in zip(missing, pos):
                    args[p.name] = _coerce(callee.name, p, v, span)
        else:
            names = _block_inputs(callee)
            missing = [n for n in names if n not in args]
            if pos:
                if len(pos) != len(missing):
                    raise ArgumentError(f"block `{callee.name}` takes {len(missing)} tensor "
                                        f"input(s), got {len(pos)}", span=span, code="E0211")
                args.update(zip(missing, pos))
        qual = self._name_instance(inst, frame, span)
        reuse = frame.reuse or inst.applied > 0
        if isinstance(callee, Surface):
            ctx = BuildCtx(self, frame, span, qual, inst, reuse)
            out = self._build(callee, ctx, args)
            self.graph.meta.setdefault("layers", {}).setdefault(qual, {
                "kind": callee.name,
                "args": {k: v for k, v in args.items() if not isinstance(v, TensorVal)
                         and k not in ("h0", "c0")}})
        else:
            out = self._apply_block(inst, args, frame, span, qual, reuse)
        inst.applied += 1
        return out

    def _build(self, surface: Surface, ctx: "BuildCtx", args: dict):
        """Run a surface function; a shape error it raises says where its tensors came from."""
        try:
            return surface.build(ctx, args)
        except ShapeError as e:
            tensors = []
            for v in args.values():
                tensors.extend(v if isinstance(v, tuple) else (v,))
            for note in self._provenance(tensors, at=ctx.span):
                if note not in e.notes:
                    e.notes.append(note)
            raise

    def _name_instance(self, inst: Instance, frame: Frame, span: Span) -> str:
        if inst.qualname is not None:
            return inst.qualname
        name = inst.name or self._auto_name(frame.scope, _callee_name(inst.callee))
        qual = _join(frame.scope, name)
        owner = self.instances.get(qual)
        if owner is not None and owner is not inst and not frame.reuse:
            raise DefinitionError(f"the layer name `{qual}` is used twice", span=span,
                                  code="E0502", notes=[("first used here", owner.span)],
                                  hint="give each layer its own name, or label the loop "
                                       "(`stages: for ...`) so each iteration gets a scope")
        self.instances[qual] = inst
        inst.qualname = qual
        return qual

    def _auto_name(self, scope: str, kind: str) -> str:
        c = self.counters.setdefault(scope, {})
        k = c.get(kind, 0)
        c[kind] = k + 1
        return f"{kind}_{k}"

    def _apply_block(self, inst: Instance, args: dict, frame: Frame, span: Span, qual: str,
                     reuse: bool):
        defn: ast.Definition = inst.callee
        if defn.name in self.call_stack:
            chain = " -> ".join(self.call_stack[self.call_stack.index(defn.name):] + [defn.name])
            raise DefinitionError(f"`{defn.name}` calls itself ({chain})", span=span,
                                  code="E0505", hint="blocks cannot be recursive; use a loop")
        if len(self.call_stack) >= MAX_CALL_DEPTH:
            raise LimitError(f"blocks nested more than {MAX_CALL_DEPTH} deep", span=span,
                             code="E0604")
        inputs = {n: args[n] for n in _block_inputs(defn)}
        given = {p.name: (args[p.name], span) for p in defn.params if p.name in args}
        env = self._bind_params(defn, given, {}, span)
        inner = Frame(env, qual, defn, is_model=False, inputs=inputs, reuse=reuse,
                      call_span=span)
        self.counters.pop(qual, None)
        self.call_stack.append(defn.name)
        start = len(self.graph)
        try:
            self._exec_body(defn.body, inner)
        except _Return as r:
            self._record_region(defn, qual, env, inputs, r.value, start, span)
            return r.value
        except NndslError as err:  # an error inside the block: say which call led there
            note = (f"`{defn.name}` is applied here", span)
            if err.span is not None and err.span != span and note not in err.notes:
                err.notes.append(note)
            raise
        finally:
            self.call_stack.pop()
        raise DefinitionError(f"block `{defn.name}` ends without `return`",
                              span=defn.name_span, code="E0506",
                              hint="end the block with `return y`")

    def _record_region(self, defn, qual, env, inputs, result, start, span) -> None:
        """Remember where a block application's nodes are, for readable code generation."""
        outs = result if isinstance(result, tuple) else (result,)
        if not all(isinstance(o, TensorVal) for o in outs):
            return
        self.graph.meta.setdefault("regions", []).append({
            "qualname": qual, "block": defn.name,
            "params": {p.name: env[p.name] for p in defn.params},
            "start": start, "end": len(self.graph),
            "inputs": [v.value for v in inputs.values()],
            "input_names": list(inputs),
            "outputs": [o.value for o in outs], "tuple": isinstance(result, tuple),
        })

    # ------------------------------------------------------------- provenance
    def _provenance(self, vals, at: Span | None = None) -> list:
        """Notes saying where each tensor of ``vals`` came from. A layer's own parameters (made
        at ``at``, the failing call) say nothing new; a tied one made elsewhere does."""
        notes = []
        for v in vals:
            if not isinstance(v, TensorVal):
                continue
            node = self.graph.producer(v.value)
            if node.op == "scalar" or node.op == "param" and (at is None or node.span == at):
                continue
            what = "input" if node.op == "input" else node.op
            notes.append((f"{v.type} comes from {what} `{node.name}`", node.span))
        return notes


class BuildCtx:
    """What a surface function sees while it builds IR: emit ops, create parameters."""

    def __init__(self, el: Elaborator, frame: Frame, span: Span, scope: str,
                 inst: Instance | None, reuse: bool = False):
        self.el, self.frame, self.span, self.scope, self.inst = el, frame, span, scope, inst
        self.reuse = reuse

    @property
    def graph(self) -> Graph:
        return self.el.graph

    def error(self, message: str, code: str = "E0300", hint: str | None = None):
        raise ShapeError(message, span=self.span, code=code, hint=hint)

    def param(self, local: str, shape: tuple, init: tuple, dtype: str = "f32",
              trainable: bool = True) -> TensorVal:
        g = self.graph
        qual = _join(self.scope, local)
        t = TensorType(dtype, tuple(shape))
        if qual in g:
            node = g.node(qual)
            if node.op != "param":
                raise DefinitionError(f"`{qual}` names both a parameter and another value",
                                      span=self.span, code="E0502")
            if node.type != t:
                raise ShapeError(f"the shared layer `{self.scope}` was built with {local} "
                                 f"{node.type} when first applied; this input would need {t}",
                                 span=self.span, code="E0318",
                                 notes=[("first applied here", node.span)],
                                 hint="a shared layer must see inputs of the same size; use "
                                      "separate layers, or project the inputs to one size")
            if not self.reuse and (self.inst is None or not self.inst.applied):
                raise DefinitionError(f"the parameter `{qual}` is defined twice", span=self.span,
                                      code="E0502", notes=[("first defined here", node.span)])
            tv = TensorVal(node.out(), node.type)
        else:
            numel = 1
            for d in shape:
                if not isinstance(d, int) or d <= 0:
                    raise ShapeError(f"parameter `{qual}` needs positive static dims, got "
                                     f"[{', '.join(map(str, shape))}]", span=self.span,
                                     code="E0315")
                numel *= d
            if numel > MAX_PARAM_ELEMENTS:
                raise LimitError(f"parameter `{qual}` would have {numel:,} elements",
                                 span=self.span, code="E0601",
                                 hint="that is far beyond any real model; check the sizes")
            node = g.add(Node.make(qual, "param", (), {"name": qual, "shape": t.shape,
                                                       "dtype": dtype, "init": init,
                                                       "trainable": trainable},
                                   (t,), self.span, self.scope))
            tv = TensorVal(node.out(), t)
        if self.inst is not None and self.scope == self.inst.qualname:
            self.inst.params.setdefault(local, tv)
        return tv

    def alias(self, local: str, value: TensorVal) -> None:
        """``{scope}.{local}`` is another name for the parameter ``value`` (tied weights)."""
        node = self.graph.producer(value.value)
        if node.op == "param":
            self.graph.meta.setdefault("aliases", {})[_join(self.scope, local)] = node.name

    def emit(self, op: str, inputs: list, attrs: dict) -> tuple:
        g = self.graph
        sig = SIGNATURES[op]
        full = {**sig.attrs, **attrs}
        in_types = [v.type if v is not None else None for v in inputs]
        try:
            types = infer(op, in_types, full)
        except ShapeError as e:
            e.with_span(self.span)
            e.notes.extend(self.el._provenance(inputs, at=self.span))
            raise
        base = self.inst.qualname if (self.inst is not None and self.scope ==
                                      self.inst.qualname) else _join(self.scope, op)
        name = g.fresh_name(base)
        node = g.add(Node.make(name, op, [v.value if v is not None else None for v in inputs],
                               attrs, types, self.span, self.frame.scope))
        return tuple(TensorVal(node.out(i), t) for i, t in enumerate(types))

    def scalar(self, value, like: TensorVal) -> TensorVal:
        dtype = like.type.dtype
        if isinstance(value, float) and dtype not in FLOAT_DTYPES:
            dtype = "f32"
        if isinstance(value, bool):
            dtype = "bool"
        return self.emit("scalar", [], {"value": value, "dtype": dtype})[0]

    def operands(self, vals: list) -> list:
        like = next((v for v in vals if isinstance(v, TensorVal)), None)
        if like is None:
            self.error("at least one operand must be a tensor", code="E0212")
        out = []
        for v in vals:
            if isinstance(v, TensorVal):
                out.append(v)
            elif isinstance(v, (int, float)) and not isinstance(v, bool) or isinstance(v, bool):
                out.append(self.scalar(v, like))
            elif isinstance(v, SymDim):
                self.error(f"a symbolic dim ({v}) cannot be used as a tensor value",
                           code="E0212", hint="use arange/full to make a tensor")
            else:
                raise ArgumentError(f"expected a tensor or a number, got {_describe(v)}",
                                    span=self.span, code="E0212")
        return out

    def binary(self, op: str, a, b) -> TensorVal:
        if op == "matmul" and not (isinstance(a, TensorVal) and isinstance(b, TensorVal)):
            self.error("`@` needs two tensors", code="E0212")
        x, y = self.operands([a, b])
        return self.emit(op, [x, y], {})[0]

    def index_range(self, x: TensorVal, high: int) -> None:
        """Record that the integer input ``x`` comes from must hold values in [0, high)."""
        node = self.graph.producer(x.value)
        while node.op in SHAPE_ONLY_OPS and node.inputs:
            node = self.graph.producer(node.inputs[0])
        if node.op == "input":
            ranges = self.graph.meta["input_ranges"]
            lo, hi = ranges.get(node.name, (0, high))
            ranges[node.name] = (0, min(hi, high))


_TENSOR_BINOPS = {"+": "add", "-": "sub", "*": "mul", "/": "div", "//": "floor_div",
                  "%": "mod", "**": "pow", "@": "matmul", "==": "eq", "!=": "ne", "<": "lt",
                  "<=": "le", ">": "gt", ">=": "ge"}


def _is_tensorish(v, kind: str) -> bool:
    if kind == "tensors":
        return isinstance(v, tuple) and len(v) > 0 and all(isinstance(x, TensorVal) for x in v)
    return isinstance(v, TensorVal)


def _block_inputs(defn: ast.Definition) -> list[str]:
    return [s.name for s in defn.body if isinstance(s, ast.InputStmt)]


def _names_in(node) -> list:
    out, stack = [], [node]
    while stack:
        n = stack.pop()
        if isinstance(n, ast.Name):
            out.append(n)
        elif isinstance(n, ast.Node):
            for v in vars(n).values():
                if isinstance(v, ast.Node):
                    stack.append(v)
                elif isinstance(v, tuple):
                    stack.extend(x for x in v if isinstance(x, ast.Node))
    return out


def _suggest(name: str, candidates) -> str | None:
    close = difflib.get_close_matches(name, list(dict.fromkeys(candidates)), n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else None


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
        return v
    if kind in ("int", "opt_int"):
        if not is_int(v):
            bad("an int")
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
        return v
    if kind in ("dims", "dims_or_int"):
        if kind == "dims_or_int" and is_int(v):
            if v <= 0:
                bad("a positive int")
            return v
        vals = v if isinstance(v, tuple) else (v,)
        if not all(is_int(x) or isinstance(x, SymDim) for x in vals):
            bad("a list of ints or dims")
        return tuple(vals)
    if kind in ("ints", "ints_or_none", "int_tuple"):
        if v is None and kind == "ints_or_none":
            return None
        vals = v if isinstance(v, tuple) else (v,)
        if kind == "int_tuple" and not isinstance(v, tuple):
            bad("a list of ints")
        if not all(is_int(x) for x in vals):
            bad("an int or a list of ints")
        return v if isinstance(v, tuple) else v
    if kind == "padding":
        if v == "same":
            return "same"
        if v == "valid":
            return 0
        vals = v if isinstance(v, tuple) else (v,)
        if not all(is_int(x) and x >= 0 for x in vals):
            bad('a non-negative int, a list of them, or "same"')
        return v
    if kind == "float":
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            bad("a number")
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


_EVAL = {
    ast.Num: Elaborator._e_num, ast.Str: Elaborator._e_str, ast.Const: Elaborator._e_const,
    ast.Name: Elaborator._e_name, ast.TupleLit: Elaborator._e_tuple,
    ast.ListLit: Elaborator._e_list, ast.IfExpr: Elaborator._e_if,
    ast.UnaryOp: Elaborator._e_unary, ast.BinOp: Elaborator._e_binop,
    ast.Attr: Elaborator._e_attr, ast.Index: Elaborator._e_index, ast.Pipe: Elaborator._e_pipe,
    ast.Named: Elaborator._e_named, ast.Call: Elaborator._e_call,
    ast.SliceExpr: Elaborator._e_slice, ast.EllipsisExpr: Elaborator._e_ellipsis,
}
