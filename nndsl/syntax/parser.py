"""Text -> AST. The grammar is ``grammars/nndsl.lark`` (installed as ``nndsl.grammars``)."""

from __future__ import annotations

import functools
import importlib.resources
from pathlib import Path

from lark import Lark, Token, Tree, v_args
from lark.exceptions import (UnexpectedCharacters, UnexpectedEOF, UnexpectedInput,
                             UnexpectedToken, VisitError)
from lark.visitors import Transformer_NonRecursive

from nndsl.errors import LimitError, ParseError, SourceFileError, SourceRegistry, Span, source_lines
from nndsl.syntax import ast

MAX_NESTING = 200
MAX_INT_DIGITS = 309   # an integer literal beyond 10^309 (about 2^1024) is refused when parsed


def _abbrev(text: str) -> str:
    """A number's text, shortened to its first and last digits when long."""
    return text if len(text) <= 24 else f"{text[:10]}...{text[-6:]}"


def grammar_text() -> str:
    """The grammar, read from the installed package (``nndsl/grammars/nndsl.lark``)."""
    return importlib.resources.files("nndsl.grammars").joinpath("nndsl.lark").read_text("utf-8")


@functools.lru_cache(maxsize=1)
def _lark() -> Lark:
    return Lark(grammar_text(), parser="lalr", propagate_positions=True, maybe_placeholders=True)


def read_source(path: str | Path) -> str:
    """Read a .nn file as UTF-8 text, with clear errors for missing, binary or empty files."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise SourceFileError(f"file not found: {p}", code="E0001",
                              hint="check the path; specs live under specs/<family>/NAME.nn") from None
    except IsADirectoryError:
        raise SourceFileError(f"{p} is a directory, not a .nn file", code="E0001") from None
    except OSError as e:
        raise SourceFileError(f"cannot read {p}: {e.strerror}", code="E0001") from None
    if b"\x00" in data:
        raise SourceFileError(f"{p} is a binary file, not .nn text", code="E0002",
                              hint="a .nn spec is UTF-8 text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise SourceFileError(f"{p} is not valid UTF-8 (byte 0x{data[e.start]:02x} at line {line})",
                              code="E0003", hint="save the file as UTF-8") from None


def parse(text: str, file: str = "<string>") -> ast.Module:
    """Parse .nn source text into an :class:`ast.Module`."""
    SourceRegistry.add(file, text)
    if not text.strip() or all(
        not ln.strip() or ln.strip().startswith("#") for ln in text.splitlines()
    ):
        raise ParseError(f"{file} is empty: it defines no model"
                         + (" (it holds only comments)" if text.strip() else ""), code="E0104",
                         hint="write `model NAME() { input x: f32[N, 4]  output y = x |> linear(2) }`")
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as e:
        raise _friendly(e, text, file) from None
    _check_depth(tree, file)
    try:
        return _ToAst(file).transform(tree)
    except VisitError as e:   # a located mistake found while building the AST
        if isinstance(e.orig_exc, (ParseError, LimitError)):
            raise e.orig_exc from None
        raise


def _check_depth(tree: Tree, file: str) -> None:
    """Refuse absurdly deep nesting, pointing at the statement that holds it. A pipeline
    ``x |> f |> g ...`` is a flat chain, not nesting: its stages do not count."""
    stack = [(tree, 1, None)]
    while stack:
        node, depth, stmt = stack.pop()
        if depth > MAX_NESTING:
            m = (stmt if stmt is not None else node).meta
            span = Span(file, m.line, m.column, m.end_line, m.end_column) if not m.empty else None
            raise LimitError(f"expression nested more than {MAX_NESTING} levels deep", span=span,
                             code="E0602", hint="split the expression into several assignments")
        if node.data.endswith("_stmt"):
            stmt = node
        for i, child in enumerate(node.children):
            if isinstance(child, Tree):
                chain = node.data == "pipe_op" and i == 0 and child.data == "pipe_op"
                stack.append((child, depth if chain else depth + 1, stmt))


_PRETTY = {
    "RPAR": "`)`", "LPAR": "`(`", "RSQB": "`]`", "LSQB": "`[`", "RBRACE": "`}`", "LBRACE": "`{`",
    "COMMA": "`,`", "EQUAL": "`=`", "COLON": "`:`", "NAME": "a name", "NUMBER": "a number",
    "STRING": "a string", "DOT": "`.`", "MINUS": "`-`", "__ANON_0": "`|>`",
}


def _describe(expected: set[str]) -> str:
    names = sorted({_PRETTY.get(t, f"`{t.lower()}`" if t.isalpha() else t) for t in expected})
    if len(names) > 8:
        names = names[:8] + ["..."]
    return ", ".join(names)


def _friendly(e: UnexpectedInput, text: str, file: str) -> ParseError:
    lines = source_lines(text) or [""]
    if isinstance(e, UnexpectedEOF) or (isinstance(e, UnexpectedToken) and e.token.type == "$END"):
        last = len(lines)
        col = len(lines[-1]) + 1
        opener = _unclosed(text)
        msg = "unexpected end of file"
        hint = None
        if opener:
            ch, ln, cl = opener
            msg += f": `{ch}` opened at line {ln}, column {cl} is never closed"
            hint = f"add the matching `{ {'(': ')', '[': ']', '{': '}'}[ch] }`"
        return ParseError(msg, span=Span(file, last, col, last, col + 1), code="E0101", hint=hint)
    if isinstance(e, UnexpectedCharacters):
        ch = text[e.pos_in_stream] if e.pos_in_stream < len(text) else ""
        span = Span(file, e.line, e.column, e.line, e.column + 1)
        if ch == '"':
            return ParseError("unterminated string", span=span, code="E0102",
                              hint='close the string with `"` on the same line')
        if ch == ";":
            return ParseError("unexpected `;`", span=span, code="E0103",
                              hint="statements need no separator: remove the `;`")
        expected = _describe(set(e.allowed or ()))
        return ParseError(f"unexpected character `{ch}`", span=span, code="E0103",
                          hint=f"expected {expected}" if expected else None)
    assert isinstance(e, UnexpectedToken)
    tok = e.token
    span = Span(file, tok.line, tok.column, tok.end_line or tok.line,
                (tok.end_column or tok.column + len(str(tok))))
    expected = set(e.expected or ())
    value = str(tok)
    hint = f"expected {_describe(expected)}" if expected else None
    if value in (")", "]", "}"):
        opener = _unclosed(text[: e.token.start_pos]) if e.token.start_pos is not None else None
        want = {")": "(", "]": "[", "}": "{"}[value]
        msg = f"unmatched `{value}`: no `{want}` is open here"
        if opener:
            msg = (f"`{value}` does not match `{opener[0]}` opened at line {opener[1]}, "
                   f"column {opener[2]}")
            if opener[0] != want:
                hint = f"remove this `{value}`, or add the `{want}` it was meant to close"
        return ParseError(msg, span=span, code="E0105", hint=hint)
    if "RPAR" in expected or "RSQB" in expected or "RBRACE" in expected:
        opener = _unclosed(text[: e.token.start_pos]) if e.token.start_pos is not None else None
        if opener and len(expected) <= 4:
            closer = {"(": ")", "[": "]", "{": "}"}[opener[0]]
            return ParseError(f"unexpected `{value}`: missing `{closer}`?", span=span, code="E0101",
                              hint=f"`{opener[0]}` opened at line {opener[1]}, column {opener[2]} "
                                   f"is not closed before this token")
    if value in ("+", "-", "*", "/", "//", "%", "@", "**") and "|>" in _line_before(text, tok):
        hint = (f"a pipeline binds more loosely than `{value}`: put it in parentheses, "
                f"e.g. `(x |> f) {value} y`")
    return ParseError(f"unexpected `{value}`", span=span, code="E0100", hint=hint)


def _line_before(text: str, tok) -> str:
    if tok.start_pos is None:
        return ""
    start = text.rfind("\n", 0, tok.start_pos) + 1
    return text[start:tok.start_pos]


def _unclosed(text: str) -> tuple[str, int, int] | None:
    """The innermost bracket left open at the end of ``text`` (skipping strings and comments)."""
    stack: list[tuple[str, int, int]] = []
    line, col, i = 1, 1, 0
    pairs = {")": "(", "]": "[", "}": "{"}
    while i < len(text):
        c = text[i]
        if c == "#":
            while i < len(text) and text[i] != "\n":
                i += 1
            continue
        if c == '"':
            i += 1
            col += 1
            while i < len(text) and text[i] not in '"\n':
                i += 2 if text[i] == "\\" else 1
                col += 1
        elif c in "([{":
            stack.append((c, line, col))
        elif c in ")]}":
            if stack and stack[-1][0] == pairs[c]:
                stack.pop()
        if c == "\n":
            line, col = line + 1, 1
        else:
            col += 1
        i += 1
    return stack[-1] if stack else None


def _span(file: str, meta) -> Span:
    return Span(file, meta.line, meta.column, meta.end_line, meta.end_column)


def _tok_span(file: str, tok: Token) -> Span:
    return Span(file, tok.line, tok.column, tok.end_line, tok.end_column)


@v_args(meta=True)
class _ToAst(Transformer_NonRecursive):
    """Turns lark's parse tree into :mod:`nndsl.syntax.ast` nodes (without recursion, so a long
    pipeline cannot exhaust Python's stack)."""

    def __init__(self, file: str):
        super().__init__()
        self.file = file

    def _s(self, meta) -> Span:
        return _span(self.file, meta)

    # top level
    def start(self, meta, items):
        imports = tuple(i for i in items if isinstance(i, ast.Import))
        defs = tuple(i for i in items if isinstance(i, ast.Definition))
        trains = tuple(i for i in items if isinstance(i, ast.TrainDef))
        optimizes = tuple(i for i in items if isinstance(i, ast.OptimizeDef))
        return ast.Module(Span(self.file, 1, 1, 1, 1), self.file, imports, defs, trains,
                          optimizes)

    def import_file(self, meta, ch):
        return ast.Import(self._s(meta), _unquote(ch[0]), True)

    def import_std(self, meta, ch):
        return ast.Import(self._s(meta), ch[0], False)

    def dotted_name(self, meta, ch):
        return ".".join(str(c) for c in ch)

    def _definition(self, kind, meta, ch):
        name, params, body = ch
        return ast.Definition(self._s(meta), kind, str(name), tuple(params or ()), body,
                              name_span=_tok_span(self.file, name))

    def block_def(self, meta, ch):
        return self._definition("block", meta, ch)

    def model_def(self, meta, ch):
        return self._definition("model", meta, ch)

    def train_def(self, meta, ch):
        name, *entries = ch
        targets = tuple(e for e in entries if isinstance(e, ast.TrainTarget))
        sets = tuple(e for e in entries if isinstance(e, ast.TrainEntry))
        return ast.TrainDef(self._s(meta), str(name), targets, sets,
                            name_span=_tok_span(self.file, name))

    def optimize_def(self, meta, ch):
        name, *entries = ch
        return ast.OptimizeDef(self._s(meta), str(name), tuple(entries),
                               name_span=_tok_span(self.file, name))

    def train_target(self, meta, ch):
        kw, name, type_ = ch
        if str(kw) != "target":
            hint = "declare a target as `target NAME: TYPE`; set an entry as `NAME = value`"
            raise ParseError(f"unexpected `{kw}`: a train section holds `target NAME: TYPE` and "
                             f"`NAME = value` lines", span=_tok_span(self.file, kw), code="E0100",
                             hint=("did you mean `target`? " if str(kw) in (
                                 "targe", "taget", "tagret", "targets", "traget") else "") + hint)
        return ast.TrainTarget(self._s(meta), str(name), type_)

    def train_set(self, meta, ch):
        return ast.TrainEntry(self._s(meta), str(ch[0]), ch[1],
                              name_span=_tok_span(self.file, ch[0]))

    def params(self, meta, ch):
        return [c for c in ch if c is not None]

    def param(self, meta, ch):
        name, type_name, default = ch
        return ast.ParamDef(self._s(meta), str(name), type_name, default)

    def type_name(self, meta, ch):
        return str(ch[0])

    def body(self, meta, ch):
        return tuple(ch)

    # statements
    def input_stmt(self, meta, ch):
        return ast.InputStmt(self._s(meta), str(ch[0]), ch[1], ch[2])

    def param_stmt(self, meta, ch):
        return ast.ParamStmt(self._s(meta), str(ch[0]), ch[1], ch[2])

    def assign_stmt(self, meta, ch):
        return ast.AssignStmt(self._s(meta), ch[0], ch[1])

    def targets(self, meta, ch):
        return tuple(str(c) for c in ch)

    def output_stmt(self, meta, ch):
        return ast.OutputStmt(self._s(meta), str(ch[0]), ch[1])

    def return_stmt(self, meta, ch):
        return ast.ReturnStmt(self._s(meta), tuple(ch))

    def assert_stmt(self, meta, ch):
        return ast.AssertStmt(self._s(meta), ch[0], ch[1])

    def for_stmt(self, meta, ch):
        label, (targets, destructure), iterable, body = ch
        return ast.ForStmt(self._s(meta), str(label) if label else None, targets, destructure,
                           iterable, body)

    def loop_target(self, meta, ch):
        names = tuple(str(c) for c in ch)
        return names, len(names) > 1

    def repeat_stmt(self, meta, ch):
        label, count, body = ch
        return ast.RepeatStmt(self._s(meta), str(label) if label else None, count, body)

    def if_stmt(self, meta, ch):
        cond, body, orelse = ch
        if isinstance(orelse, ast.IfStmt):
            orelse = (orelse,)
        return ast.IfStmt(self._s(meta), cond, body, orelse)

    def tensor_type(self, meta, ch):
        dtype, dims = ch
        return ast.TensorTypeExpr(self._s(meta), str(dtype), dims)

    def dim_list(self, meta, ch):
        return tuple(c for c in ch if c is not None)

    def dim_pat(self, meta, ch):
        return ch[0]

    def dim_ellipsis(self, meta, ch):
        return ast.EllipsisExpr(self._s(meta))

    # expressions
    def if_expr(self, meta, ch):
        return ast.IfExpr(self._s(meta), *ch)

    def or_op(self, meta, ch):
        return ast.BinOp(self._s(meta), "or", ch[0], ch[1])

    def and_op(self, meta, ch):
        return ast.BinOp(self._s(meta), "and", ch[0], ch[1])

    def not_op(self, meta, ch):
        return ast.UnaryOp(self._s(meta), "not", ch[0])

    def compare_op(self, meta, ch):
        return ast.BinOp(self._s(meta), str(ch[1]), ch[0], ch[2])

    def binary(self, meta, ch):
        return ast.BinOp(self._s(meta), str(ch[1]), ch[0], ch[2])

    def pow_op(self, meta, ch):
        return ast.BinOp(self._s(meta), "**", ch[0], ch[2])

    def neg(self, meta, ch):
        return ast.UnaryOp(self._s(meta), "-", ch[0])

    def pipe_op(self, meta, ch):
        return ast.Pipe(self._s(meta), ch[0], ch[1])

    def call(self, meta, ch):
        func, args = ch
        return ast.Call(self._s(meta), func, tuple(args or ()))

    def args(self, meta, ch):
        return [c for c in ch if c is not None]

    def arg(self, meta, ch):
        return ast.Arg(self._s(meta), None, ch[0])

    def kwarg(self, meta, ch):
        return ast.Arg(self._s(meta), str(ch[0]), ch[1])

    def index(self, meta, ch):
        return ast.Index(self._s(meta), ch[0], ch[1])

    def subscripts(self, meta, ch):
        return tuple(c for c in ch if c is not None)

    def subscript(self, meta, ch):
        return ch[0]

    def slice(self, meta, ch):
        return ast.SliceExpr(self._s(meta), ch[0], ch[1], ch[2] if len(ch) > 2 else None)

    def ellipsis(self, meta, ch):
        return ast.EllipsisExpr(self._s(meta))

    def attr(self, meta, ch):
        return ast.Attr(self._s(meta), ch[0], str(ch[1]))

    def named(self, meta, ch):
        return ast.Named(self._s(meta), ch[0], str(ch[1]))

    def number(self, meta, ch):
        text = str(ch[0]).replace("_", "")
        if any(c in text for c in ".eE"):
            value = float(text)
            if value == float("inf"):
                raise LimitError(f"the number {_abbrev(text)} is too large for a float (the "
                                 f"largest is about 1.8e308)", span=self._s(meta), code="E0601",
                                 hint="write `inf` for an unbounded value, or a smaller number")
            return ast.Num(self._s(meta), value)
        digits = len(text.lstrip("0"))
        if digits > MAX_INT_DIGITS:
            raise LimitError(f"the integer {_abbrev(text)} ({digits:,} digits) is too large "
                             f"(at most {MAX_INT_DIGITS} digits)", span=self._s(meta),
                             code="E0601", hint="no size, index or count is that large; check "
                                                "the number")
        return ast.Num(self._s(meta), int(text))

    def string(self, meta, ch):
        return ast.Str(self._s(meta), _unquote(ch[0]))

    def name(self, meta, ch):
        return ast.Name(self._s(meta), str(ch[0]))

    def true(self, meta, ch):
        return ast.Const(self._s(meta), True)

    def false(self, meta, ch):
        return ast.Const(self._s(meta), False)

    def none(self, meta, ch):
        return ast.Const(self._s(meta), None)

    def tuple(self, meta, ch):
        return ast.TupleLit(self._s(meta), tuple(c for c in ch if c is not None))

    def list(self, meta, ch):
        return ast.ListLit(self._s(meta), tuple(c for c in ch if c is not None))


def _unquote(tok) -> str:
    s = str(tok)[1:-1]
    out, i = [], 0
    esc = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s):
            out.append(esc.get(s[i + 1], s[i + 1]))
            i += 2
        else:
            out.append(s[i])
            i += 1
    return "".join(out)
