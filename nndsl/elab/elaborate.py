"""Elaboration: run a model's definition at compile time and record the typed graph it builds.

Expressions over numbers, dims, tuples and strings are evaluated right here (loops unroll,
``if`` picks a branch, ``assert`` checks). Expressions over tensors emit IR nodes whose types
come from the shape rules, so every shape is known — or symbolic — before any tensor exists.

Names: a layer applied without a name gets ``{op}_{k}`` in its scope (``conv2d_0``); ``as NAME``
or assigning an unapplied layer to a variable names it; a labelled loop ``stages: for ...`` puts
iteration ``i`` in scope ``stages.i``. A layer's parameters are ``{scope}.{name}.{param}``.
Applying the same instance twice reuses its parameters (shared weights).

This module runs statements: inputs and outputs, assignments, ``assert``, loops, ``param``
declarations and model and block bodies. Expressions are in :mod:`nndsl.elab.expressions`,
calls and layer instances in :mod:`nndsl.elab.calls`, the build context and frames in
:mod:`nndsl.elab.context`, builtins and argument checks in :mod:`nndsl.elab.builtins`.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar

from nndsl.elab.builtins import _describe, _suggest
from nndsl.elab.calls import CallMixin
from nndsl.elab.context import BuildCtx, Frame, _join, _Return
from nndsl.elab.expressions import ExpressionMixin
from nndsl.elab.loader import Program
from nndsl.elab.scan import ScanMixin
from nndsl.elab.unused import UnusedMixin
from nndsl.elab.values import Instance, SymCond, TensorVal
from nndsl.errors import (ArgumentError, DefinitionError, LimitError, NndslError, NndslWarning,
                          ShapeError, Span, SpecAssertionError)
from nndsl.gc_pause import paused_gc
from nndsl.ir.dists import DISTRIBUTIONS, REQUIRED, signature
from nndsl.ir.graph import Graph, Node
from nndsl.ir.types import DTYPES, FLOAT_DTYPES, INT_DTYPES, SymDim, TensorType
from nndsl.limits import DEFAULT, QUIET, Limits, Progress, raise_hint, using
from nndsl.syntax import ast


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


def _trim_notes(err: NndslError, keep: int = 3) -> None:
    """An error deep inside blocks that apply blocks has a note per application: keep the
    innermost and outermost ``keep`` of a long chain and say how many are left out."""
    applied = [i for i, (text, _) in enumerate(err.notes) if text.endswith(" is applied here")]
    if len(applied) <= 2 * keep + 1:
        return
    drop = set(applied[keep:-keep])
    notes = []
    for i, note in enumerate(err.notes):
        if i == applied[keep]:
            notes.append((f"... {len(drop):,} more block applications ...", None))
        if i not in drop:
            notes.append(note)
    err.notes = notes


# An optional observer of elaboration (editor support indexes what each expression evaluated
# to): a function of the new Elaborator that returns ``on_eval(expr, value[, stage])`` or
# None. Unset (the default), elaboration records nothing; see :func:`recording`.
RECORDING: ContextVar = ContextVar("nndsl_recording", default=None)


@contextmanager
def recording(observer):
    """Inside the ``with`` block, each :class:`Elaborator` made calls ``observer(elaborator)``;
    the function it returns (if not None) hears ``(expr, value)`` for every expression
    evaluated, and ``(target, result, True)`` for every stage of a pipeline."""
    token = RECORDING.set(observer)
    try:
        yield
    finally:
        RECORDING.reset(token)


class Elaborator(ExpressionMixin, CallMixin, ScanMixin, UnusedMixin):
    """Builds the :class:`Graph` of one model of a :class:`Program`.

    ``limits`` are the budgets of the compilation (:class:`~nndsl.limits.Limits`: graph nodes,
    loop iterations and block applications, list and string lengths, parameter bytes), checked
    as the graph grows; ``progress`` hears how far it has got (:class:`~nndsl.limits.Progress`).
    """

    def __init__(self, program: Program, limits: Limits | None = None,
                 progress: Progress | None = None):
        self.program = program
        self.limits = limits if limits is not None else DEFAULT
        self.progress = progress if progress is not None else QUIET
        self.nodes = 0          # nodes made so far, scan bodies included, against max_nodes
        self.param_bytes = 0    # bytes of the parameters made so far, against max_param_bytes
        self._loops: list = []  # [loop statement, iteration] of the loops running, innermost last
        self.graph: Graph | None = None   # where ops go: the model's graph, or a scan body
        self.root: Graph | None = None    # the model's graph (parameters, inputs, outputs)
        self._bodies: list = []           # the scan bodies being built, innermost last
        self.counters: dict[str, dict[str, int]] = {}
        self.instances: dict[str, Instance] = {}
        self.call_stack: list[str] = []
        self.symbols: dict[str, Span] = {}
        self.steps = 0  # loop iterations and block applications so far, against max_steps
        # for warnings (W0xxx): what was written and never used
        self.warnings: list[NndslWarning] = []
        self.block_calls: list = []       # (graph, start, end, qualname, block, span, outputs)
        self.final_graphs: dict = {}      # a scan body being built -> the graph its node holds
        self.param_stmts: set[str] = set()  # parameters declared by `param` statements
        self.model_defn: ast.Definition | None = None
        self.unread_params: dict[str, ast.ParamDef] = {}   # model parameters not read yet
        self.shadowed_params: dict[str, tuple] = {}   # reassigned before read: (param, where)
        self.skipped_names: set[str] = set()   # named in model code not run (a branch not taken)
        observer = RECORDING.get()
        self.recorder = observer(self) if observer is not None else None

    # ------------------------------------------------------------------ entry
    def elaborate(self, model: str, overrides: dict | None = None) -> Graph:
        with using(self.limits), paused_gc():
            try:
                return self._elaborate(model, overrides)
            except NndslError as err:
                _trim_notes(err)
                raise

    def _elaborate(self, model: str, overrides: dict | None) -> Graph:
        defn = self.program.definitions[model]
        self.graph = self.root = g = Graph(defn.name)
        self.model_defn = defn
        self.unread_params = {p.name: p for p in defn.params}
        frame = Frame({}, "", defn, is_model=True)
        values = self._bind_params(defn, {}, overrides or {}, defn.span, from_user=True)
        frame.env.update(values)
        g.meta["params"] = {k: v for k, v in values.items()}
        g.meta["model_span"] = defn.name_span
        g.meta["limits"] = self.limits   # the backends check what they allocate against them
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
        self.warnings = self._unused_warnings()
        return g

    # -------------------------------------------------------------- statements
    def _exec_body(self, body, frame: Frame) -> None:
        for stmt in body:
            self._exec(stmt, frame)

    def _exec(self, s, frame: Frame) -> None:
        if isinstance(s, ast.AssignStmt):
            v = self._eval(s.value, frame)
            if len(s.targets) == 1:
                self._assign(frame, s.targets[0], v, s.span)
            else:
                if not isinstance(v, tuple) or len(v) != len(s.targets):
                    raise ArgumentError(f"cannot unpack {_describe(v)} into {len(s.targets)} "
                                        f"names", span=s.span, code="E0215")
                for name, item in zip(s.targets, v):
                    self._assign(frame, name, item, s.span)
        elif isinstance(s, ast.InputStmt):
            self._input(s, frame)
        elif isinstance(s, ast.OutputStmt):
            if not frame.is_model:
                raise DefinitionError("`output` belongs in a model; a block returns its result "
                                      "with `return`", span=s.span, code="E0507")
            v = self._eval(s.value, frame)
            if not isinstance(v, TensorVal):
                raise ArgumentError(f"output `{s.name}` must be a tensor, got {_describe(v)}",
                                    span=s.value.span, code="E0248")
            if any(n == s.name for n, _ in self.graph.outputs):
                raise DefinitionError(f"output `{s.name}` is declared twice", span=s.span,
                                      code="E0501")
            if s.name in self.graph.inputs:
                raise DefinitionError(f"output `{s.name}` has the name of an input",
                                      span=s.span, code="E0501")
            self.graph.set_output(s.name, v.value)
            self._shadow(frame, s.name, s.span)
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
                                    f"{_describe(seq)}", span=s.iterable.span, code="E0244")
            self._loop(s, frame, seq, s.targets, s.destructure)
        elif isinstance(s, ast.RepeatStmt):
            n = self._eval(s.count, frame)
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                raise ArgumentError(f"`repeat` needs a non-negative int, got {_describe(n)}",
                                    span=s.count.span, code="E0244")
            self._loop(s, frame, range(n), (), False)
        elif isinstance(s, ast.IfStmt):
            cond = self._truth(self._eval(s.cond, frame), s.cond.span)
            self._skip(frame, s.orelse if cond else s.body)
            if cond:
                self._exec_body(s.body, frame)
            elif s.orelse:
                self._exec_body(s.orelse, frame)
        elif isinstance(s, ast.ParamStmt):
            self._param_stmt(s, frame)
        else:  # pragma: no cover - the parser produces nothing else
            raise NndslError(f"unknown statement {type(s).__name__}", span=s.span)

    def _assign(self, frame: Frame, name: str, v, span: Span | None = None) -> None:
        if isinstance(v, Instance) and v.name is None and v.qualname is None:
            v.name = name
        self._shadow(frame, name, span)
        frame.env[name] = v

    def _skip(self, frame: Frame, code) -> None:
        """``code`` (statements or an expression) of the model's body is not run with these
        parameter values: a model parameter it names is not reported unread (W0301), as it
        matters for other values (an option of a branch not taken)."""
        if frame.definition is self.model_defn and code:
            for stmt in code if isinstance(code, tuple | list) else (code,):
                self.skipped_names.update(n.id for n in _names_in(stmt))

    def _shadow(self, frame: Frame, name: str, span: Span | None) -> None:
        """``name`` is rebound in the model's body: a model parameter of that name not read
        until now never will be (W0301)."""
        if frame.is_model and name in self.unread_params:
            self.shadowed_params[name] = (self.unread_params.pop(name), span)

    def _loop(self, s, frame: Frame, seq, targets: tuple, destructure: bool) -> None:
        if not seq:
            self._skip(frame, s.body)
        n = _length(seq)
        if n > self.limits.max_steps:
            raise LimitError(f"a loop of {n:,} iterations (limit "
                             f"{self.limits.max_steps:,} steps in all)", span=s.span,
                             code="E0603", notes=self._loop_notes(),
                             hint=raise_hint("max_steps", self.limits.max_steps,
                                             "loops unroll when compiling; to step through a "
                                             "long sequence use `scan`"))
        # every iteration is a step: a loop that would cross the budget is refused before it
        # starts (nested loops multiply), not after it has run a million bodies
        self._check_steps(n, s.span)
        outer = frame.scope
        here = [s, 0]
        self._loops.append(here)
        try:
            for i, item in enumerate(seq):
                here[1] = i
                self.steps += 1
                if destructure:
                    if not isinstance(item, tuple) or len(item) != len(targets):
                        raise ArgumentError(f"cannot unpack {_describe(item)} into "
                                            f"({', '.join(targets)})", span=s.iterable.span,
                                            code="E0215")
                    for t, v in zip(targets, item):
                        self._shadow(frame, t, s.span)
                        frame.env[t] = v
                elif targets:
                    self._shadow(frame, targets[0], s.span)
                    frame.env[targets[0]] = item
                if s.label:
                    frame.scope = _join(outer, f"{s.label}.{i}")
                    self.counters.pop(frame.scope, None)
                try:
                    self._exec_body(s.body, frame)
                finally:
                    frame.scope = outer
        finally:
            self._loops.pop()

    def _check_steps(self, more: int, span: Span) -> None:
        """``more`` steps (loop iterations, block applications) are about to run at ``span``."""
        cap = self.limits.max_steps
        if self.steps + more > cap:
            raise LimitError(f"the loops and block applications of this model take more than "
                             f"{cap:,} steps in all", span=span, code="E0603",
                             notes=self._loop_notes(),
                             hint=raise_hint("max_steps", cap, "nested loops and blocks that "
                                             "apply other blocks several times multiply; check "
                                             "the loop bounds"))

    def _loop_notes(self) -> list:
        """Notes naming the loops running now and their iteration, innermost first."""
        return [(f"in iteration {i + 1:,} of this loop", s.span)
                for s, i in reversed(self._loops[-4:])]

    def grew(self, node: Node, span: Span | None) -> None:
        """A node was added to the graph being built (or a scan body) at ``span``: count it
        against ``max_nodes``, its bytes against ``max_param_bytes`` for a parameter."""
        self.nodes += 1
        n = self.nodes
        if n > self.limits.max_nodes:
            raise LimitError(f"the model grows past {self.limits.max_nodes:,} graph nodes",
                             span=span, code="E0607", notes=self._loop_notes(),
                             hint=raise_hint("max_nodes", self.limits.max_nodes,
                                             "loops and block applications are expanded when "
                                             "compiling, so nested loops multiply; check the "
                                             "loop bounds"))
        if n % self.progress.every == 0:
            self.progress.tick(n)

    def _assert(self, s: ast.AssertStmt, frame: Frame) -> None:
        cond = self._eval(s.cond, frame)
        msg = self._eval(s.message, frame) if s.message is not None else None
        # a message is written out: a list (possibly nested, sharing items, so exponentially
        # long when printed) is described instead
        msg = None if msg is None else msg if isinstance(msg, str) else \
            str(msg) if isinstance(msg, (int, float, SymDim)) else _describe(msg)
        if isinstance(cond, SymCond):
            self.root.meta["constraints"].append((cond, msg, s.span))
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
            if s.dist is not None:
                raise DefinitionError(f"only a model input can be random: a block's input "
                                      f"`{s.name}` is what its caller passes", span=s.dist.span,
                                      code="E0515", hint="declare the random input in the model "
                                      "and pass it to the block")
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
                                    span=d.span, code="E0249")
            if isinstance(v, int) and v <= 0:
                raise ShapeError(f"dims must be positive, got {v}", span=d.span, code="E0315")
            if isinstance(v, int) and v > 2**40:
                raise LimitError(f"dimension {v} is absurdly large", span=d.span, code="E0601",
                                 hint="no tensor dimension is larger than 2^40")
            dims.append(v)
        t = TensorType(dtype, tuple(dims))
        node = g.add(Node.make(s.name, "input", (), {"name": s.name, "dtype": dtype,
                                                    "shape": t.shape}, (t,), s.span, ""))
        self.grew(node, s.span)
        frame.env[s.name] = TensorVal(node.out(), t)
        if s.dist is not None:
            self._input_dist(s, t, frame)

    def _input_dist(self, s: ast.InputStmt, t: TensorType, frame: Frame) -> None:
        """Record the distribution of a random input (``~ normal()``) on the graph."""
        e = s.dist
        name = e.func.id if isinstance(e, ast.Call) and isinstance(e.func, ast.Name) else \
            e.id if isinstance(e, ast.Name) else None
        choices = ", ".join(signature(d) for d in DISTRIBUTIONS.values())
        if name not in DISTRIBUTIONS:
            raise DefinitionError(f"unknown distribution `{name}`" if name else
                                  "a random input is drawn from a distribution, like normal()",
                                  span=e.span, code="E0513",
                                  hint=" ".join(x for x in ((_suggest(name, DISTRIBUTIONS)
                                                             if name else None),
                                                            "distributions: " + choices) if x))
        d = DISTRIBUTIONS[name]
        kind = "float" if t.dtype in FLOAT_DTYPES else "bool" if t.dtype == "bool" else "int"
        if kind not in d.kinds:
            fits = [x.name for x in DISTRIBUTIONS.values() if kind in x.kinds]
            raise DefinitionError(f"{name} draws {' or '.join(d.kinds)} values, but `{s.name}` "
                                  f"is {t}", span=e.span, code="E0513",
                                  hint=f"for {t.dtype}: {', '.join(fits)}")
        args = dict(d.args)
        given: set[str] = set()
        order = list(d.args)
        for i, a in enumerate(e.args if isinstance(e, ast.Call) else ()):
            key = a.name if a.name is not None else (order[i] if i < len(order) else None)
            if key is None or key not in d.args:
                raise ArgumentError(f"{name} has no argument `{a.name}`" if a.name else
                                    f"{name} takes at most {len(order)} arguments",
                                    span=a.span, code="E0513", hint=signature(d))
            if key in given:
                raise ArgumentError(f"`{key}` given twice", span=a.span, code="E0513")
            given.add(key)
            v = self._eval(a.value, frame)
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)
            if ok and kind == "int":
                ok = isinstance(v, int)
            if not ok:
                raise ArgumentError(f"`{key}` of {name} must be a compile-time "
                                    f"{'integer' if kind == 'int' else 'number'}, got "
                                    f"{_describe(v)}", span=a.value.span, code="E0513")
            args[key] = float(v) if kind != "int" else v
        missing = [k for k, v in args.items() if v is REQUIRED]
        if missing:
            raise ArgumentError(f"{name} needs `{missing[0]}`", span=e.span, code="E0513",
                                hint=signature(d))
        bad = None
        if name in ("uniform", "randint") and not args["low"] < args["high"]:
            bad = "needs low < high"
        elif name == "normal" and not args["std"] > 0:
            bad = "needs std > 0"
        elif name == "bernoulli" and not 0 <= args["p"] <= 1:
            bad = "needs 0 <= p <= 1"
        if bad:
            raise ArgumentError(f"{name} {bad}", span=e.span, code="E0513", hint=signature(d))
        self.graph.meta.setdefault("input_dists", {})[s.name] = {"dist": name, **args}
        if name == "randint":
            self.graph.meta["input_ranges"][s.name] = (args["low"], args["high"])

    def _dtype(self, tt: ast.TensorTypeExpr) -> str:
        if tt.dtype not in DTYPES:
            raise ArgumentError(f"unknown dtype `{tt.dtype}`", span=tt.span, code="E0217",
                                hint=_suggest(tt.dtype, DTYPES) or "dtypes: " + ", ".join(DTYPES))
        return tt.dtype

    def _match_type(self, v, tt: ast.TensorTypeExpr, frame: Frame, name: str) -> None:
        if not isinstance(v, TensorVal):
            raise ArgumentError(f"input `{name}` expects a tensor, got {_describe(v)}",
                                span=tt.span, code="E0260",
                                hint=f"pass a tensor for `{name}`; numbers and other options go to "
                                     f"the block's parameters")
        if tt.dtype not in ("any", "float", "int"):
            if self._dtype(tt) != v.type.dtype:
                raise ShapeError(f"input `{name}` expects {tt.dtype} but got {v.type}", span=tt.span,
                                 code="E0316")
        elif tt.dtype == "float" and v.type.dtype not in FLOAT_DTYPES or \
                tt.dtype == "int" and v.type.dtype not in INT_DTYPES:
            raise ShapeError(f"input `{name}` expects a {tt.dtype} tensor but got {v.type}",
                             span=tt.span, code="E0316")
        if tt.dims is None:
            return
        pats = list(tt.dims)
        shape = v.type.shape
        ell = [i for i, p in enumerate(pats) if isinstance(p, ast.EllipsisExpr)]
        if len(ell) > 1:
            raise ArgumentError("at most one `...` in a shape", span=tt.span, code="E0243")
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
                                    f"{_describe(v)}", span=d.span, code="E0249")
            dims.append(v)
        init = ("zeros",)
        if s.init is not None:
            init = self._init_spec(s.init, frame)
        ctx = BuildCtx(self, frame, s.span, frame.scope, None, frame.reuse)  # shared: reuse
        self._shadow(frame, s.name, s.span)
        frame.env[s.name] = ctx.param(s.name, tuple(dims), init, dtype=dtype)
        self.param_stmts.add(_join(frame.scope, s.name))

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
                                    span=a.span, code="E0262",
                                    hint="write the numbers the initializer takes, e.g. "
                                         "`normal(0.02)` or `uniform(-0.1, 0.1)`")
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

    # ------------------------------------------------------------- provenance
    def _provenance(self, vals, at: Span | None = None) -> list:
        """Notes saying where each tensor of ``vals`` came from. A layer's own parameters (made
        at ``at``, the failing call) say nothing new; a tied one made elsewhere does."""
        notes = []
        for v in vals:
            if not isinstance(v, TensorVal):
                continue
            node = self.producer(v.value)
            if node is None or node.op == "scalar" or node.op == "param" and (at is None or node.span == at):
                continue
            what = "input" if node.op == "input" else node.op
            notes.append((f"{v.type} comes from {what} `{node.name}`", node.span))
        return notes


def _length(seq) -> int:
    """How many items ``seq`` has; a ``range`` of more than 2^63 items (which ``len`` cannot
    give) is counted from its bounds."""
    try:
        return len(seq)
    except OverflowError:
        return max(0, (seq.stop - seq.start + seq.step - (1 if seq.step > 0 else -1)) // seq.step)
