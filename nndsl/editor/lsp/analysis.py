"""What the language server knows about one document, without any LSP in it.

:func:`analyze` compiles a document's text as the file at its path (so its imports resolve as
they will on disk) and returns an :class:`Analysis`: the compiler's errors and warnings, and an
index from positions in the text to what elaboration made of them. Every model of the document
is compiled with its defaults, each on its own, so an error in one does not hide another's.
While compiling, elaboration is observed (:func:`nndsl.elab.elaborate.recording`): each
expression of the document is recorded with the first value it evaluated to, how often it was
evaluated, and the distinct tensor types it took (a block applied in a loop sees several).

Queries (:meth:`Analysis.hover`, :meth:`~Analysis.definition`, :meth:`~Analysis.symbols`,
:meth:`~Analysis.inlay_hints`, :func:`completions`) read that index and never compile; they take
and return character offsets into the document's text (:mod:`.positions` converts them).
"""

from __future__ import annotations

import importlib.resources
import math
import os
import re
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from nndsl import api
from nndsl.backends.torch.reserved import check_names
from nndsl.elab import library
from nndsl.elab.builtins import BUILTINS
from nndsl.elab.elaborate import recording
from nndsl.elab.loader import std_modules
from nndsl.elab.values import REQUIRED, Builtin, DType, Instance, Partial, Surface, TensorVal
from nndsl.errors import NndslError, Span
from nndsl.ir.types import SymDim, TensorType
from nndsl.syntax import ast

from nndsl.editor.lsp.positions import Text


class Cancelled(Exception):
    """A newer text of the document arrived: the compilation of this one is abandoned."""


# ------------------------------------------------------------------------------ diagnostics

@dataclass
class Diagnostic:
    """One finding of the compiler, placed in this document: ``span`` is where it shows (None:
    the start of the document), ``related`` the located notes (spans in any file)."""

    severity: str            # "error" | "warning"
    code: str
    message: str
    span: Span | None
    related: list = field(default_factory=list)   # (text, Span)
    unnecessary: bool = False   # an unused value (the editor may fade it)

    def key(self) -> tuple:
        s = self.span
        return (self.severity, self.code, self.message,
                (s.line, s.col, s.end_line, s.end_col) if s else None)


INTERNAL = "internal"    # the code of a compiler crash shown as a diagnostic


# ------------------------------------------------------------------------------ recording

@dataclass
class Record:
    """What one expression of the document evaluated to."""

    node: ast.Node
    value: object
    count: int = 1
    types: list = field(default_factory=list)   # distinct str(TensorType), at most MAX_TYPES
    graph: object = None    # the graph being built when it was first evaluated


MAX_TYPES = 4


def _key(span: Span) -> tuple:
    return (span.line, span.col, span.end_line, span.end_col)


class _Recorder:
    """Observes every elaboration of one document's compilation."""

    def __init__(self, file: str, cancel: threading.Event | None):
        self.file = file
        self.cancel = cancel
        self.values: dict = {}   # span key -> Record (expressions)
        self.stages: dict = {}   # span key -> Record (results of pipeline stages)
        self.elaborators: list = []

    def __call__(self, el):
        self.elaborators.append(el)
        file, cancel, values, stages = self.file, self.cancel, self.values, self.stages

        def on_eval(e, v, stage=False):
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            s = e.span
            if s is None or s.file != file:
                return
            table = stages if stage else values
            k = (s.line, s.col, s.end_line, s.end_col)
            r = table.get(k)
            if r is None:
                r = table[k] = Record(e, v, graph=el.graph)
            else:
                r.count += 1
            if isinstance(v, TensorVal) and len(r.types) < MAX_TYPES:
                t = str(v.type)
                if t not in r.types:
                    r.types.append(t)
        return on_eval


# ------------------------------------------------------------------------------ sites

@dataclass
class Site:
    """A stretch of the document the index knows: ``kind`` is ``expr`` (an expression), ``bind``
    (a name being bound), ``def`` (the name of a model or block), ``import``, ``section`` (the
    model name of a train or optimize section)."""

    start: int
    end: int
    kind: str
    node: object
    name: str = ""
    owner: object = None     # the enclosing ast.Definition
    extra: object = None     # bind: (stmt, index); expr: the parent node


@dataclass
class Binding:
    name: str
    start: int
    end: int
    effective: int      # uses at or after this offset see it
    what: str           # input, output, assignment, parameter, loop variable, param, dim
    stmt: object = None
    index: int = 0


@dataclass
class Symbol:
    name: str
    kind: str         # model, block, train, optimize, input, output
    span: Span
    selection: Span
    detail: str = ""
    children: list = field(default_factory=list)


@dataclass
class Hint:
    offset: int
    label: str


@dataclass
class Location:
    """A place in some file: its path and the span (None: the start of the file)."""

    path: str
    span: Span | None = None
    text: str | None = None   # the file's text, for converting the span


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def stdlib_path(name: str) -> str | None:
    """The file of ``std.NAME`` in the installed package, if it is a real file."""
    try:
        res = importlib.resources.files("nndsl.stdlib").joinpath(f"{name}.nn")
        p = Path(str(res))
        return str(p) if p.is_file() else None
    except (ModuleNotFoundError, FileNotFoundError, TypeError):
        return None


class Analysis:
    """The compiler's view of one text of a document (see the module docstring)."""

    def __init__(self, text: str, path: str | None = None):
        self.text = text
        self.index = Text(text)
        self.path = path
        self.file = path if path is not None else "<string>"
        self.base = str(Path(path).parent) if path else None
        self.diagnostics: list[Diagnostic] = []
        self.program = None
        self.module: ast.Module | None = None
        self.compiled: dict = {}          # model name -> Compiled (models that compiled)
        self.values: dict = {}
        self.stages: dict = {}
        self.elaborators: list = []
        self.sites: list[Site] = []
        self.bindings: dict = {}          # id(ast.Definition) -> [Binding]
        self.parents: dict = {}           # id(expression) -> the node holding it
        self._nodes: dict | None = None   # span key -> [(graph, node)]
        self._blocks: dict | None = None  # span key -> [(graph, start, end, qual, block)]
        self._flops: dict = {}
        self.cancelled = False

    @property
    def ok(self) -> bool:
        """Whether the text parsed (and so the index has sites)."""
        return self.module is not None

    # ------------------------------------------------------------------ diagnostics
    def _in_doc(self, span: Span | None) -> bool:
        return span is not None and span.file == self.file

    def add_finding(self, f, severity: str) -> None:
        span = f.span
        notes = list(getattr(f, "notes", []) or [])
        message = f.message
        related = [(text, s) for text, s in notes if s is not None]
        unlocated = [text for text, s in notes if s is None]
        where = span if self._in_doc(span) else None
        if where is None:
            where = next((s for _, s in notes if self._in_doc(s)), None)
            if where is None and span is not None:   # in a file read through an import
                where = self._first_import()
            if span is not None:
                message = f"{span}: {message}"
                related.insert(0, ("the error is here" if severity == "error" else "here", span))
        for text in unlocated:
            message += f"\nnote: {text}"
        if f.hint:
            message += f"\nhint: {f.hint}"
        code = f.code
        d = Diagnostic(severity, code, message, where, related,
                       unnecessary=severity == "warning" and code in ("W0101", "W0102",
                                                                      "W0103", "W0201"))
        if all(d.key() != x.key() for x in self.diagnostics):
            self.diagnostics.append(d)

    def _first_import(self) -> Span | None:
        m = re.search(r"^[ \t]*(import\b[^\n]*)", self.text, re.M)
        if m is None:
            return None
        a = self.index.nn_position(m.start(1))
        b = self.index.nn_position(len(m.group(1).rstrip("\r")) + m.start(1))
        return Span(self.file, a[0], a[1], b[0], b[1])

    def add_internal(self, exc: BaseException, what: str) -> None:
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        self.diagnostics.append(Diagnostic(
            "error", INTERNAL, f"internal error in the compiler while {what}: {detail}\n"
            "hint: this is a bug in nndsl, not in the spec; please report it with the spec",
            None))

    # ------------------------------------------------------------------ compiling
    def run(self, cancel: threading.Event | None = None, lib=()) -> "Analysis":
        rec = _Recorder(self.file, cancel)
        name = self.path
        try:
            program, _ = api.load(source=self.text, name=name, base=self.base, lib=lib)
        except Cancelled:
            raise
        except NndslError as e:
            self.add_finding(e, "error")
            return self
        except Exception as e:   # noqa: BLE001 - a compiler crash is shown, not raised
            self.add_internal(e, "reading the spec")
            return self
        self.program = program
        self.module = program.main
        try:
            self._index_module()
        except Exception as e:   # noqa: BLE001
            self.add_internal(e, "indexing the document")
        models = program.models
        if not models:   # a library of blocks: checked where a model applies them
            return self
        for m in (models if len(models) > 1 else [None]):
            try:
                with recording(rec):
                    c = api.compile(source=self.text, name=name, base=self.base, lib=lib,
                                    model=m)
            except Cancelled:
                raise
            except NndslError as e:
                self.add_finding(e, "error")
                continue
            except RecursionError as e:
                self.add_internal(e, f"compiling {m or 'the model'}")
                continue
            except Exception as e:   # noqa: BLE001
                self.add_internal(e, f"compiling {m or 'the model'}")
                continue
            self.compiled[c.name] = c
            for w in c.warnings:
                self.add_finding(w, "warning")
            try:
                check_names(c.graph)     # names the torch module could not take, as `check`
            except NndslError as e:
                self.add_finding(e, "error")
        self.values, self.stages, self.elaborators = rec.values, rec.stages, rec.elaborators
        return self

    # ------------------------------------------------------------------ the index
    def _index_module(self) -> None:
        m = self.module
        for imp in m.imports:
            a, b = self.index.span_offsets(imp.span)
            self.sites.append(Site(a, b, "import", imp))
        for d in m.definitions:
            self._index_definition(d)
        for sec in (*m.trains, *m.optimizes):
            if sec.name_span is not None:
                a, b = self.index.span_offsets(sec.name_span)
                self.sites.append(Site(a, b, "section", sec, sec.model))
            entries = sec.entries
            for e in entries:
                self._index_expr(e.value, None, None)
        self.sites.sort(key=lambda s: (s.start, -s.end))

    def _bind(self, owner, name: str, start: int, end: int, effective: int, what: str,
              stmt=None, index: int = 0) -> None:
        b = Binding(name, start, end, effective, what, stmt, index)
        self.bindings.setdefault(id(owner), []).append(b)
        self.sites.append(Site(start, end, "bind", b, name, owner))

    def _find_name(self, name: str, start: int, limit: int) -> tuple[int, int]:
        """The offsets of the identifier ``name`` first written at or after ``start``."""
        for m in _IDENT.finditer(self.text, start, max(start, limit)):
            if m.group() == name:
                return m.start(), m.end()
        return start, start

    def _index_definition(self, d: ast.Definition) -> None:
        a, b = self.index.span_offsets(d.name_span or d.span)
        self.sites.append(Site(a, b, "def", d, d.name, d))
        for p in d.params:
            s, e = self.index.span_offsets(p.span)
            ns, ne = self._find_name(p.name, s, e)
            self._bind(d, p.name, ns, ne, ne, "parameter", p)
            if p.default is not None:
                self._index_expr(p.default, d, None)
        self._index_body(d.body, d)

    def _index_body(self, body, d) -> None:
        for s in body:
            self._index_stmt(s, d)

    def _index_stmt(self, s, d) -> None:
        start, end = self.index.span_offsets(s.span)
        if isinstance(s, ast.AssignStmt):
            pos = start
            for i, t in enumerate(s.targets):
                ns, ne = self._find_name(t, pos, end)
                pos = ne
                self._bind(d, t, ns, ne, end, "assignment", s, i)
            self._index_expr(s.value, d, s)
        elif isinstance(s, ast.InputStmt):
            ns, ne = self._find_name(s.name, start + len("input"), end)
            self._bind(d, s.name, ns, ne, ne, "input", s)
            if s.type is not None:
                self._index_type(s.type, d)
            if s.dist is not None:
                self._index_expr(s.dist, d, s)
        elif isinstance(s, ast.OutputStmt):
            ns, ne = self._find_name(s.name, start + len("output"), end)
            self._bind(d, s.name, ns, ne, end, "output", s)
            self._index_expr(s.value, d, s)
        elif isinstance(s, ast.ParamStmt):
            ns, ne = self._find_name(s.name, start + len("param"), end)
            self._bind(d, s.name, ns, ne, end, "param", s)
            self._index_type(s.type, d)
            if s.init is not None:
                self._index_expr(s.init, d, s)
        elif isinstance(s, ast.ReturnStmt):
            for v in s.values:
                self._index_expr(v, d, s)
        elif isinstance(s, ast.AssertStmt):
            self._index_expr(s.cond, d, s)
            if s.message is not None:
                self._index_expr(s.message, d, s)
        elif isinstance(s, (ast.ForStmt, ast.RepeatStmt)):
            if isinstance(s, ast.ForStmt):
                it0, _ = self.index.span_offsets(s.iterable.span)
                kw = re.compile(r"\bfor\b").search(self.text, start, it0)
                pos = kw.end() if kw else start
                for i, t in enumerate(s.targets):
                    ns, ne = self._find_name(t, pos, it0)
                    pos = ne
                    self._bind(d, t, ns, ne, ne, "loop variable", s, i)
                self._index_expr(s.iterable, d, s)
            else:
                self._index_expr(s.count, d, s)
            self._index_body(s.body, d)
        elif isinstance(s, ast.IfStmt):
            self._index_expr(s.cond, d, s)
            self._index_body(s.body, d)
            if s.orelse:
                self._index_body(s.orelse, d)

    def _index_type(self, tt: ast.TensorTypeExpr, d) -> None:
        for dim in tt.dims or ():
            if isinstance(dim, ast.Name) and not any(
                    b.name == dim.id for b in self.bindings.get(id(d), ())):
                a, b = self.index.span_offsets(dim.span)
                self._bind(d, dim.id, a, b, b, "dim", tt)
            elif not isinstance(dim, ast.EllipsisExpr):
                self._index_expr(dim, d, tt)

    def _index_expr(self, e, d, parent) -> None:
        stack = [(e, parent)]
        while stack:
            n, par = stack.pop()
            if not isinstance(n, ast.Node) or n.span is None or n.span.file != self.file:
                continue
            a, b = self.index.span_offsets(n.span)
            self.sites.append(Site(a, b, "expr", n, getattr(n, "id", ""), d, par))
            self.parents[id(n)] = par
            for v in vars(n).values():
                if isinstance(v, ast.Node):
                    stack.append((v, n))
                elif isinstance(v, tuple):
                    stack.extend((x, n) for x in v if isinstance(x, ast.Node))

    # ------------------------------------------------------------------ lookups
    def site_at(self, offset: int) -> Site | None:
        """The smallest site holding ``offset`` (a name's end counts as in it)."""
        best = None
        for s in self.sites:
            if s.start > offset:
                break
            if s.start <= offset <= s.end and (best is None or s.end - s.start < best.end -
                                               best.start or (s.end - s.start == best.end -
                                                              best.start and s.kind != "expr")):
                best = s
        return best

    def _binding_for(self, name: str, owner, offset: int) -> Binding | None:
        found = [b for b in self.bindings.get(id(owner), ()) if b.name == name]
        if not found:
            return None
        before = [b for b in found if b.effective <= offset]
        return before[-1] if before else found[0]

    def definition_of(self, name: str):
        if self.program is None:
            return None
        return self.program.definitions.get(name)

    def _node_index(self):
        if self._nodes is None:
            nodes, blocks = {}, {}
            for el in self.elaborators:
                g = el.root
                if g is None:
                    continue
                for n in g:
                    if n.span is not None and n.span.file == self.file:
                        nodes.setdefault(_key(n.span), []).append((g, n))
                for graph, start, end, qual, block, span, _ in el.block_calls:
                    if span is not None and span.file == self.file:
                        blocks.setdefault(_key(span), []).append((graph, start, end, qual, block))
            self._nodes, self._blocks = nodes, blocks
        return self._nodes, self._blocks

    def application(self, span: Span, count: int = 1) -> dict | None:
        """What the layer or block application written at ``span`` made: its scopes, its
        parameters (trainable elements created there) and FLOPs (at batch 1), and how often it
        was applied (``count``: how often it was evaluated, for a function without weights).
        None when it made no graph nodes."""
        nodes, blocks = self._node_index()
        k = _key(span)
        made: list = []
        scopes: list = []
        regions = blocks.get(k, ())
        for graph, start, end, qual, block in regions:
            made.extend((graph, n) for n in list(graph)[start:end])
            scopes.append(qual)
        for g, n in nodes.get(k, ()):
            made.append((g, n))
            if n.op == "param" and n.scope not in scopes and not regions:
                scopes.append(n.scope)
        if not made:
            return None
        params, flops, seen = 0, 0, set()
        symbolic = False
        for g, n in made:
            if id(n) in seen:
                continue
            seen.add(id(n))
            if n.op == "param":
                if n.attr.get("trainable"):
                    params += _numel(n.type)
                continue
            f = self._node_flops(g, n)
            if f is None:
                symbolic = True
            else:
                flops += f
        return {"params": params, "flops": flops, "flops_known": not symbolic,
                "scopes": scopes, "applied": len(regions) or len(scopes) or count}

    def _node_flops(self, g, n) -> int | None:
        key = (id(g), n.name)
        if key in self._flops:
            return self._flops[key]
        try:
            from nndsl.ir.ops import SIGNATURES
            from nndsl.ir.ops import flops as op_flops
            from nndsl.ir.symbols import bind_symbols
            from nndsl.ir.types import evaluate_dim
            env = self._flops.get(("env", id(g)))
            if env is None:
                env = self._flops[("env", id(g))] = bind_symbols(g, 1)
            ins = [g.type_of(v) if v is not None else None for v in n.inputs]
            f = op_flops(n.op, ins, n.types, {**SIGNATURES[n.op].attrs, **n.attr})
            out = int(evaluate_dim(f, env))
        except Exception:   # noqa: BLE001 - a count we cannot make is left out
            out = None
        self._flops[key] = out
        return out

    def _scope_params(self, scope: str) -> int:
        """Trainable parameter elements of a layer or block instance (its scope)."""
        total = 0
        for el in self.elaborators:
            if el.root is not None:
                total += sum(_numel(n.type) for n in el.root.params()
                             if n.attr.get("trainable") and n.under(scope))
        return total

    def producer(self, rec: Record):
        """The graph node that made a recorded tensor value."""
        v = rec.value
        if not isinstance(v, TensorVal) or rec.graph is None:
            return None
        try:
            return rec.graph.node(v.value.node)
        except KeyError:
            return None

    # ------------------------------------------------------------------ hover
    def hover(self, offset: int) -> tuple[str, tuple[int, int]] | None:
        """Markdown for what is at ``offset``, and the stretch of text it is about."""
        if not self.ok:
            return None
        site = self.site_at(offset)
        if site is None:
            return None
        text = None
        if site.kind == "expr":
            text = self._hover_expr(site)
        elif site.kind == "bind":
            text = self._hover_binding(site)
        elif site.kind == "def":
            text = describe_definition(site.node, self)
        elif site.kind == "import":
            text = self._hover_import(site.node)
        elif site.kind == "section":
            d = self.definition_of(site.name)
            text = describe_definition(d, self) if d is not None else None
        if not text:
            return None
        return text, (site.start, site.end)

    def _value_text(self, name: str, rec: Record | None) -> str | None:
        if rec is None:
            return None
        v = rec.value
        if isinstance(v, TensorVal):
            types = rec.types or [str(v.type)]
            head = f"{name}: {types[0]}" if name else types[0]
            lines = [_code(head)]
            if len(types) > 1:
                lines.append("takes " + ", ".join(f"`{t}`" for t in types) +
                             (" ..." if len(types) >= MAX_TYPES else "") +
                             f" over {rec.count} evaluations")
            elif rec.count > 1:
                lines.append(f"evaluated {rec.count} times")
            p = self.producer(rec)
            if p is not None:
                lines.append(_provenance(p, self))
            return "\n\n".join(lines)
        if isinstance(v, Instance):
            callee = v.callee
            what = "block" if isinstance(callee, ast.Definition) else "layer"
            opts = ", ".join(f"{k}={_show(x)}" for k, x in v.args.items()
                             if not isinstance(x, TensorVal))
            lines = [_code(f"{name}: {what} {callee.name}({opts})" if name else
                           f"{what} {callee.name}({opts})")]
            if v.qualname:
                n = self._scope_params(v.qualname)
                lines.append(f"scope `{v.qualname}`, applied {v.applied} "
                             f"time{'s' if v.applied != 1 else ''}" +
                             (f"  \nparameters: {_count(n)}" if n else ""))
            return "\n\n".join(lines)
        if isinstance(v, Surface):
            return describe_surface(v)
        if isinstance(v, ast.Definition):
            return describe_definition(v, self)
        if isinstance(v, Builtin):
            return describe_builtin(v.name)
        if isinstance(v, Partial):
            opts = ", ".join(f"{k}={_show(x)}" for k, x in v.args.items())
            return _code(f"{name + ': ' if name else ''}{v.callee.name}({opts})") + \
                "\n\nwaiting for its tensor operands"
        shown = f"{_kind(v)}" if isinstance(v, SymDim) and str(v) == name else \
            f"{_kind(v)} = {_show(v)}"
        return _code(f"{name + ': ' if name else ''}{shown}") + \
            (f"\n\nevaluated {rec.count} times" + (" (first value shown)" if rec.count > 1
                                                     else "") if rec.count > 1 else "")

    def _hover_expr(self, site: Site) -> str | None:
        n = site.node
        par = site.extra
        k = _key(n.span)
        parts = []
        # the callee of a call or a pipeline stage: its documentation, then what it made
        app_span = None
        result = None
        if isinstance(n, ast.Name):
            rec = self.values.get(k)
            callee_like = rec is not None and isinstance(
                rec.value, (Surface, ast.Definition, Builtin, Instance, Partial))
            if rec is None:
                static = self._static_name(n.id)
                if static:
                    parts.append(static)
                else:
                    b = self._binding_for(n.id, site.owner, site.start)
                    parts.append(_code(n.id) + "\n\n(not evaluated with the default "
                                 "parameters)" if b is not None else _code(n.id))
            else:
                parts.append(self._value_text(n.id, rec))
            if callee_like:
                if isinstance(par, ast.Call) and par.func is n:
                    app_span = par.span
                    result = self.stages.get(_key(par.span)) or self.values.get(_key(par.span))
                    named = self.parents.get(id(par))
                    if result is None and isinstance(named, ast.Named):   # `f(...) as name`
                        result = self.stages.get(_key(named.span))
                elif k in self.stages:
                    app_span, result = n.span, self.stages[k]
        elif isinstance(n, (ast.Call, ast.Named)):
            inner = n.value if isinstance(n, ast.Named) else n
            app_span = inner.span
            result = self.stages.get(k) or self.values.get(k)
            if result is None and isinstance(n, ast.Named):
                result = self.stages.get(_key(inner.span)) or self.values.get(_key(inner.span))
            if result is None:
                return None
        else:
            rec = self.stages.get(k) or self.values.get(k)
            if rec is None:
                return None
            parts.append(self._value_text("", rec))
        if app_span is not None:
            count = result.count if result is not None else 1
            app = self.application(app_span, count)
            if app is None and app_span is not n.span and isinstance(n, ast.Named):
                app = self.application(n.span, count)   # `x |> f as name`: the stage's span
            if result is not None and isinstance(result.value, TensorVal | tuple):
                parts.append("**result** " + _result_text(result))
            if app is not None:
                parts.append(_application_text(app))
        return "\n\n---\n\n".join(p for p in parts if p)

    def _static_name(self, name: str) -> str | None:
        d = self.definition_of(name)
        if d is not None:
            return describe_definition(d, self)
        if name in library.SURFACE:
            return describe_surface(library.SURFACE[name])
        if name in BUILTINS:
            return describe_builtin(name)
        return None

    def _hover_binding(self, site: Site) -> str | None:
        b: Binding = site.node
        s = b.stmt
        rec = None
        if isinstance(s, (ast.AssignStmt, ast.OutputStmt)):
            rec = self.values.get(_key(s.value.span))
            if rec is not None and isinstance(s, ast.AssignStmt) and len(s.targets) > 1:
                v = rec.value
                item = v[b.index] if isinstance(v, tuple) and b.index < len(v) else None
                rec = Record(rec.node, item, rec.count, [], rec.graph) if item is not None \
                    else None
                if rec is not None and isinstance(item, TensorVal):
                    rec.types = [str(item.type)]
        elif isinstance(s, ast.ForStmt):
            it = self.values.get(_key(s.iterable.span))
            if it is not None and isinstance(it.value, tuple) and it.value:
                items = it.value
                vals = [x[b.index] if len(s.targets) > 1 and isinstance(x, tuple) and
                        b.index < len(x) else x for x in items]
                shown = ", ".join(_show(v) for v in vals[:8]) + (" ..." if len(vals) > 8
                                                                  else "")
                return _code(f"{b.name}: loop variable") + f"\n\ntakes {shown}"
        elif isinstance(s, ast.InputStmt):
            t = self._input_type(s)
            if t is not None:
                return _code(f"{b.name}: {t}") + "\n\ninput" + (
                    f" drawn from `{self.text_of(s.dist.span)}`" if s.dist is not None else "")
        elif isinstance(s, ast.ParamStmt):
            node = self._node_at(s.span, "param")
            if node is not None:
                return _code(f"{b.name}: {node.type}") + f"\n\nparameter `{node.name}`, " \
                    f"{_numel(node.type):,} elements"
        elif isinstance(s, ast.ParamDef):
            owner = site.owner
            head = _code(f"{b.name}: {self.text_of(s.span)}")
            val = None
            for el in self.elaborators:
                if el.model_defn is owner and el.root is not None:
                    val = el.root.meta.get("params", {}).get(b.name)
                    break
            return head + (f"\n\nvalue when compiled: `{_show(val)}`" if val is not None
                           else "")
        elif isinstance(s, ast.TensorTypeExpr):
            return _code(f"{b.name}: dim") + "\n\na size named by the input's type"
        if rec is None:
            rec = self._first_use(b, site.owner)
        text = self._value_text(b.name, rec)
        if text is None:
            return _code(b.name) + f"\n\n{b.what} (not evaluated with the default parameters)"
        return (f"{b.what}\n\n" if isinstance(s, ast.InputStmt) else "") + text

    def _first_use(self, b: Binding, owner) -> Record | None:
        """The value of the first recorded use of a name after it is bound (a block's input,
        whose value comes from each application)."""
        for site in self.sites:
            if site.kind == "expr" and site.owner is owner and site.start >= b.end and \
                    isinstance(site.node, ast.Name) and site.node.id == b.name:
                if self._binding_for(b.name, owner, site.start) is b:
                    rec = self.values.get(_key(site.node.span))
                    if rec is not None:
                        return rec
        return None

    def _input_type(self, s: ast.InputStmt):
        node = self._node_at(s.span, "input")
        return node.type if node is not None else None

    def _node_at(self, span: Span, op: str):
        nodes, _ = self._node_index()
        for _, n in nodes.get(_key(span), ()):
            if n.op == op:
                return n
        return None

    def _hover_import(self, imp: ast.Import) -> str:
        target = imp.target
        if imp.is_file:
            head = f'import "{target}"'
            where = self._import_path(imp)
        else:
            head = f"import {target}"
            where = stdlib_path(target.split(".")[-1]) if target.startswith("std.") else None
        lines = [_code(head)]
        if where:
            lines.append(f"`{where}`")
        if self.program is not None:
            mine = [d for d in self.program.definitions.values()
                    if d.span is not None and where and _same_file(d.span.file, where)]
            if mine:
                lines.append("defines " + ", ".join(f"{d.kind} `{d.name}`" for d in mine))
        return "\n\n".join(lines)

    def _import_path(self, imp: ast.Import) -> str | None:
        base = Path(self.base) if self.base else Path(".")
        p = base / imp.target
        return os.path.normpath(p) if p.exists() else None

    def text_of(self, span: Span) -> str:
        if span.source is not None and span.file != self.file:
            return Text(span.source.text).slice(span)
        return self.index.slice(span)

    # ------------------------------------------------------------------ definition
    def definition(self, offset: int) -> Location | None:
        if not self.ok:
            return None
        site = self.site_at(offset)
        if site is None:
            return None
        if site.kind == "import":
            imp = site.node
            if imp.is_file:
                p = self._import_path(imp)
                return Location(p) if p else None
            mod = imp.target.split(".")[-1]
            p = stdlib_path(mod) if imp.target.startswith("std.") else None
            return Location(p) if p else None
        if site.kind in ("def", "bind"):
            if site.kind == "def":
                return self._location(site.node.name_span)
            b = site.node
            return Location(self.file, Span(self.file, *self.index.nn_position(b.start),
                                            *self.index.nn_position(b.end)), self.text)
        if site.kind == "section":
            d = self.definition_of(site.name)
            return self._location(d.name_span) if d is not None else None
        n = site.node
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name):
            n = n.func
        elif isinstance(n, ast.Named) and isinstance(n.value, ast.Call) and \
                isinstance(n.value.func, ast.Name):
            n = n.value.func
        if not isinstance(n, ast.Name):
            return None
        b = self._binding_for(n.id, site.owner, site.start)
        if b is not None:
            return Location(self.file, Span(self.file, *self.index.nn_position(b.start),
                                            *self.index.nn_position(b.end)), self.text)
        d = self.definition_of(n.id)
        if d is not None:
            return self._location(d.name_span)
        return None

    def _location(self, span: Span | None) -> Location | None:
        if span is None:
            return None
        if span.file == self.file:
            return Location(self.file, span, self.text)
        path = file_of(span.file, self.base)
        if path is None:
            return None
        return Location(path, span, span.source.text if span.source is not None else None)

    # ------------------------------------------------------------------ symbols
    def symbols(self) -> list[Symbol]:
        if not self.ok:
            return []
        out = []
        m = self.module
        for d in m.definitions:
            children = []
            for s in d.body:
                if isinstance(s, ast.InputStmt):
                    children.append(Symbol(s.name, "input", s.span, s.span,
                                           self.text_of(s.type.span) if s.type else ""))
                elif isinstance(s, ast.OutputStmt):
                    children.append(Symbol(s.name, "output", s.span, s.span))
            out.append(Symbol(d.name, d.kind, d.span, d.name_span or d.span,
                              signature_of(d, self), children))
        for t in m.trains:
            out.append(Symbol(f"train {t.model}", "train", t.span, t.name_span or t.span))
        for o in m.optimizes:
            out.append(Symbol(f"optimize {o.model}", "optimize", o.span, o.name_span or o.span))
        for s in m.searches:
            out.append(Symbol(f"search {s.model}", "search", s.span, s.name_span or s.span))
        return out

    # ------------------------------------------------------------------ inlay hints
    def inlay_hints(self, start: int = 0, end: int | None = None) -> list[Hint]:
        """``: TYPE`` at the end of each assignment (and output) whose value is a tensor."""
        if not self.ok:
            return []
        end = len(self.text) if end is None else end
        out = []
        for site in self.sites:
            if site.kind != "bind" or not (start <= site.start <= end):
                continue
            b = site.node
            if not isinstance(b.stmt, (ast.AssignStmt, ast.OutputStmt)):
                continue
            s = b.stmt
            if isinstance(s, ast.AssignStmt) and b.index != len(s.targets) - 1:
                continue
            rec = self.values.get(_key(s.value.span))
            if rec is None:
                continue
            label = None
            if isinstance(rec.value, TensorVal):
                types = rec.types or [str(rec.value.type)]
                label = types[0] if len(types) == 1 else " | ".join(types[:2]) + (
                    " | …" if len(types) > 2 else "")
            elif isinstance(rec.value, tuple) and rec.value and all(
                    isinstance(x, TensorVal) for x in rec.value):
                label = ", ".join(str(x.type) for x in rec.value[:4]) + (
                    ", …" if len(rec.value) > 4 else "")
            if label:
                _, stmt_end = self.index.span_offsets(s.span)
                out.append(Hint(stmt_end, f": {label}"))
        return out

    # ------------------------------------------------------------------ completion support
    def local_names(self, offset: int) -> list[Binding]:
        """Names bound in the definition around ``offset``."""
        if not self.ok:
            return []
        for d in self.module.definitions:
            a, b = self.index.span_offsets(d.span)
            if a <= offset <= b:
                seen, out = set(), []
                for bnd in self.bindings.get(id(d), ()):
                    if bnd.name not in seen:
                        seen.add(bnd.name)
                        out.append(bnd)
                return out
        return []

    def definitions(self) -> list:
        if self.program is None:
            return []
        return list(self.program.definitions.values())


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.realpath(a) == os.path.realpath(b)
    except (OSError, ValueError):
        return False


def file_of(shown: str, base: str | None) -> str | None:
    """The file a span's file name stands for: a standard-library module (``std/NAME.nn``) is
    its file in the package; a relative name is read from ``base``."""
    if shown.startswith("std/") and shown.count("/") == 1 and not os.path.isabs(shown):
        p = stdlib_path(shown[4:-3])
        if p is not None and not (base and os.path.exists(os.path.join(base, shown))):
            return p
    if shown.startswith("<"):
        return None
    p = Path(shown)
    if not p.is_absolute() and base:
        p = Path(base) / p
    return str(p)


# ------------------------------------------------------------------------------ describing

def _code(text: str) -> str:
    return f"```nndsl\n{text}\n```"


def _numel(t: TensorType) -> int:
    n = 1
    for d in t.shape:
        if not isinstance(d, int):
            return 0
        n *= d
    return n


def _kind(v) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "str"
    if isinstance(v, SymDim):
        return "dim"
    if isinstance(v, tuple):
        return "list"
    if isinstance(v, DType):
        return "dtype"
    if v is None:
        return "none"
    return type(v).__name__


def _show(v, depth: int = 0) -> str:
    if v is REQUIRED:
        return "…"
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, str):
        return '"' + v.replace('"', '\\"') + '"' if len(v) < 60 else f'"{v[:57]}..."'
    if isinstance(v, float):
        return "inf" if v == math.inf else repr(v)
    if isinstance(v, TensorVal):
        return str(v.type)
    if isinstance(v, tuple):
        if depth > 2:
            return "[...]"
        items = [_show(x, depth + 1) for x in v[:8]]
        return "[" + ", ".join(items) + (", ..." if len(v) > 8 else "") + "]"
    if isinstance(v, (Surface, ast.Definition, Builtin)):
        return v.name
    if isinstance(v, Instance):
        return v.qualname or v.name or v.callee.name
    return str(v)


def _count(n: int) -> str:
    for unit, k in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= k:
            return f"{n:,} ({n / k:.3g} {unit})"
    return f"{n:,}"


def _result_text(rec: Record) -> str:
    v = rec.value
    if isinstance(v, tuple):
        return "`(" + ", ".join(_show(x) for x in v[:6]) + ")`"
    types = rec.types or [str(v.type)]
    return ", ".join(f"`{t}`" for t in types) + (" ..." if len(types) >= MAX_TYPES else "")


def _application_text(app: dict) -> str:
    n = app["applied"]
    scopes = app["scopes"]
    lines = []
    shown = ", ".join(f"`{s}`" for s in scopes[:4]) + (" ..." if len(scopes) > 4 else "")
    if n > 1:
        lines.append(f"applied {n} times" + (f": {shown}" if scopes else ""))
    elif scopes:
        lines.append(f"scope {shown}")
    total = " in all" if n > 1 else ""
    lines.append(f"parameters{total}: {_count(app['params'])}" if app["params"]
                 else "parameters: none of its own")
    lines.append(f"FLOPs{total} (batch 1): {_count(app['flops'])}" +
                 ("" if app["flops_known"] else " (some ops not counted)"))
    return "  \n".join(lines)


def _provenance(node, analysis: Analysis) -> str:
    what = "model input" if node.op == "input" else f"`{node.op}`"
    where = ""
    if node.span is not None:
        f = "" if node.span.file == analysis.file else f"{node.span.file}, "
        where = f", {f}line {node.span.line}"
    name = f" `{node.name}`" if node.op != "input" else f" `{node.name}`"
    return f"from {what}{name}{where}"


def _param_text(p) -> str:
    if p.kind in ("tensor", "tensors", "operand") and p.default is REQUIRED:
        return p.name
    text = f"{p.name}: {p.kind}"
    if p.default is not REQUIRED:
        text += f" = {_show(p.default)}"
    return text


def surface_signature(s: Surface) -> str:
    return f"{s.name}({', '.join(_param_text(p) for p in s.params)})"


def describe_surface(s: Surface) -> str:
    what = "layer" if s.weights else "function"
    out = _code(surface_signature(s)) + f"\n\nbuilt-in {what}"
    if s.doc:
        out += f": {s.doc}"
    return out


BUILTIN_DOCS = {
    "range": ("range(stop) / range(start, stop[, step])", "the integers of a range, as a list "
              "(compile time)"),
    "len": ("len(v)", "the length of a list or string, or a tensor's first dim"),
    "enumerate": ("enumerate(xs)", "the pairs (index, item) of a list"),
    "zip": ("zip(xs, ys, ...)", "the tuples of items at the same index of several lists"),
    "reversed": ("reversed(xs)", "a list in reverse order"),
    "int": ("int(v)", "a number as an int (truncated)"),
    "float": ("float(v)", "a number as a float"),
    "floor": ("floor(v)", "the largest int not above v"),
    "ceil": ("ceil(v)", "the smallest int not below v"),
    "round": ("round(v)", "v rounded to the nearest int"),
    "inf": ("inf", "positive infinity (a float)"),
    "pi": ("pi", "π (a float)"),
}


def describe_builtin(name: str) -> str:
    if name in BUILTIN_DOCS:
        sig, doc = BUILTIN_DOCS[name]
        return _code(sig) + f"\n\nbuiltin: {doc}"
    v = BUILTINS.get(name)
    if isinstance(v, DType):
        return _code(name) + "\n\na dtype"
    return _code(name) + "\n\nbuiltin"


def _source_text(span: Span, analysis: Analysis | None) -> str:
    if analysis is not None:
        return analysis.text_of(span)
    return Text(span.source.text).slice(span) if span.source is not None else ""


def signature_of(d: ast.Definition, analysis: Analysis | None = None) -> str:
    """``block basic_block(x, c: int, stride: int = 1)``: a block's tensor inputs, then its
    parameters as written."""
    items = []
    if d.kind == "block":
        items += [s.name for s in d.body if isinstance(s, ast.InputStmt)]
    items += [" ".join(_source_text(p.span, analysis).split()) for p in d.params]
    return f"{d.kind} {d.name}({', '.join(items)})"


def doc_comment(d: ast.Definition) -> str:
    """The comment lines right above a definition, without their ``#``."""
    src = d.span.source
    if src is None:
        return ""
    lines = []
    i = d.span.line - 1
    while i >= 1:
        ln = src.line(i)
        if ln is None or not ln.lstrip().startswith("#"):
            break
        lines.append(ln.lstrip()[1:].strip())
        i -= 1
    return "\n".join(reversed(lines)).strip()


def describe_definition(d: ast.Definition, analysis: Analysis | None = None) -> str:
    out = [_code(signature_of(d, analysis))]
    if analysis is not None and d.span is not None and d.span.file != analysis.file:
        out.append(f"defined in `{d.span.file}`, line {d.span.line}")
    doc = doc_comment(d)
    if doc:
        out.append(doc)
    if d.kind == "block":
        rets = [s for s in d.body if isinstance(s, ast.InputStmt) and s.type is not None]
        if rets:
            out.append("inputs: " + ", ".join(
                f"`{s.name}: {_source_text(s.type.span, analysis)}`" for s in rets))
    if d.kind == "model" and analysis is not None:
        c = analysis.compiled.get(d.name)
        if c is not None:
            try:
                ins = ", ".join(f"`{n}: {t}`" for n, t in c.input_types.items())
                outs = ", ".join(f"`{n}: {t}`" for n, t in c.output_types.items())
                out.append(f"inputs: {ins}  \noutputs: {outs}  \n"
                           f"parameters: {_count(c.param_count())}  \n"
                           f"FLOPs (batch 1): {_count(_model_flops(c, analysis))}")
            except Exception:   # noqa: BLE001 - a summary we cannot make is left out
                pass
    return "\n\n".join(out)


def _model_flops(c, analysis: Analysis) -> int:
    key = ("model", id(c))
    if key not in analysis._flops:
        analysis._flops[key] = c.flops()
    return analysis._flops[key]


# ------------------------------------------------------------------------------ completion

KEYWORDS = ("model", "block", "import", "input", "output", "param", "return", "assert", "for",
            "in", "repeat", "if", "else", "as", "train", "optimize", "search", "target", "true",
            "false", "none", "and", "or", "not")


@dataclass
class Completion:
    label: str
    kind: str            # function, layer, builtin, dtype, block, model, variable, keyword, module
    detail: str = ""
    doc: str = ""
    snippet: str | None = None   # LSP snippet text to insert


def _snippet(s: Surface) -> str:
    req = [p for p in s.params if p.default is REQUIRED and p.kind not in
           ("tensor", "tensors", "operand")]
    if not req:
        return s.name
    return s.name + "(" + ", ".join(f"${{{i + 1}:{p.name}}}" for i, p in enumerate(req)) + ")"


_STD_PREFIX = re.compile(r"^\s*import\s+std\.([A-Za-z0-9_]*)$")
_IMPORT_PREFIX = re.compile(r"^\s*import\s+([A-Za-z0-9_]*)$")


def completions(line_prefix: str, analysis: Analysis | None, offset: int | None = None
                ) -> list[Completion]:
    """What may be written at a position whose line so far is ``line_prefix``: standard-library
    modules after ``import std.``, else built-in functions and layers (with their arguments),
    builtins, the blocks and models in scope (from the last analysis), the names bound in the
    enclosing definition and the keywords."""
    if _STD_PREFIX.match(line_prefix):
        return [Completion(m, "module", f"std.{m}", _std_doc(m)) for m in std_modules()]
    if _IMPORT_PREFIX.match(line_prefix):
        return [Completion(f"std.{m}", "module", "standard library", _std_doc(m))
                for m in std_modules()]
    out = []
    for name, s in sorted(library.SURFACE.items()):
        out.append(Completion(name, "layer" if s.weights else "function", surface_signature(s),
                              s.doc, _snippet(s)))
    for name, v in BUILTINS.items():
        if isinstance(v, DType):
            out.append(Completion(name, "dtype", "dtype"))
        else:
            sig, doc = BUILTIN_DOCS.get(name, (name, ""))
            out.append(Completion(name, "builtin", sig, doc))
    if analysis is not None:
        for d in analysis.definitions():
            out.append(Completion(d.name, d.kind, signature_of(d, analysis), doc_comment(d)))
        if offset is not None:
            for b in analysis.local_names(offset):
                out.append(Completion(b.name, "variable", b.what))
    out.extend(Completion(k, "keyword") for k in KEYWORDS)
    seen, unique = set(), []
    for c in out:
        if c.label not in seen:
            seen.add(c.label)
            unique.append(c)
    return unique


def _std_doc(name: str) -> str:
    from nndsl.elab.loader import std_source
    text = std_source(name) or ""
    first = []
    for ln in text.split("\n"):
        if not ln.startswith("#"):
            break
        first.append(ln[1:].strip())
    blocks = re.findall(r"^\s*(?:block|model)\s+([A-Za-z_][A-Za-z0-9_]*)", text, re.M)
    doc = " ".join(first)
    if blocks:
        doc += ("\n\n" if doc else "") + "defines " + ", ".join(f"`{b}`" for b in blocks)
    return doc


# ------------------------------------------------------------------------------ entry

def analyze(text: str, path: str | None = None, *, cancel: threading.Event | None = None,
            lib=()) -> Analysis:
    """Compile ``text`` as the file at ``path`` (None: an unsaved buffer without a file, read
    from the working folder) and index it. Raises :class:`Cancelled` when ``cancel`` is set
    while it runs; every other failure becomes a diagnostic."""
    a = Analysis(text, os.path.abspath(path) if path else None)
    try:
        return a.run(cancel, lib)
    except Cancelled:
        raise
    except Exception as e:   # noqa: BLE001 - the last line of defence
        a.add_internal(e, "analysing the document")
        return a
