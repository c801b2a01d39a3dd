"""Text -> AST. The grammar is ``grammars/nndsl.lark`` (installed as ``nndsl.grammars``)."""

from __future__ import annotations

import functools
import importlib.resources
import os
import stat
from pathlib import Path

from lark import Lark, Token, Tree, v_args
from lark.exceptions import (UnexpectedCharacters, UnexpectedEOF, UnexpectedInput,
                             UnexpectedToken, VisitError)
from lark.visitors import Transformer_NonRecursive

from nndsl.errors import (DefinitionError, LimitError, ParseError, Source, SourceFileError, SourceRegistry, Span,
                          source_lines)
from nndsl.syntax import ast

MAX_NESTING = 200
MAX_INT_DIGITS = 309   # an integer literal beyond 10^309 (about 2^1024) is refused when parsed


def _abbrev(text: str) -> str:
    """A number's text, shortened to its first and last digits when long."""
    return text if len(text) <= 24 else f"{text[:10]}...{text[-6:]}"


def grammar_text() -> str:
    """The grammar, read from the installed package (``nndsl/grammars/nndsl.lark``)."""
    return importlib.resources.files("nndsl.grammars").joinpath("nndsl.lark").read_text("utf-8")


class _KeywordEnds:
    """A keyword must end where a word ends. Where the grammar expects only keywords (the top
    level, or after a loop's target), the contextual lexer would otherwise split ``modelfoo``
    into ``model`` and ``foo`` and accept a misspelling; here a keyword run straight into a
    name or number is a located error."""

    always_accept = ()

    def process(self, stream):
        prev = None
        for tok in stream:
            if (prev is not None and tok.start_pos == prev.end_pos and prev.type != "NAME"
                    and prev.value.isalpha() and (tok.value[:1].isalnum() or tok.value[:1] == "_")):
                raise _RunOn(prev, tok)
            prev = tok
            yield tok


class _RunOn(Exception):
    def __init__(self, keyword, tok):
        self.keyword, self.tok = keyword, tok


@functools.lru_cache(maxsize=1)
def _lark() -> Lark:
    return Lark(grammar_text(), parser="lalr", propagate_positions=True, maybe_placeholders=True,
                postlex=_KeywordEnds())


MAX_SOURCE_BYTES = 1 << 20   # 1 MiB: about 130 times the largest spec of the zoo (8 KB)
LIMIT_ENV = "NNDSL_MAX_SOURCE_BYTES"
SPEC_SUFFIX = ".nn"
_WS = " \t\f\r"   # what the grammar skips besides newlines (common.WS)


def max_source_bytes() -> int:
    """The largest spec file (in bytes) read or parsed: 1 MiB unless ``NNDSL_MAX_SOURCE_BYTES``
    says otherwise."""
    v = os.environ.get(LIMIT_ENV)
    if v is None or not v.strip():
        return MAX_SOURCE_BYTES
    try:
        n = int(v.strip()) if len(v) <= 20 else 0
    except ValueError:
        n = 0
    if n <= 0:
        raise LimitError(f"{LIMIT_ENV} must be a positive number of bytes, got {v[:20]!r}",
                         code="E0616", hint=f"for example {LIMIT_ENV}={4 << 20} for 4 MiB, or "
                                            f"unset it for the default ({MAX_SOURCE_BYTES:,})")
    return n


def _size(n: int) -> str:
    return f"{n:,} bytes" + (f" ({n / (1 << 20):.3g} MiB)" if n >= 1 << 20 else "")


def too_large(file, size: int | None = None, limit: int | None = None) -> LimitError:
    """The error for a spec over the size limit (``size`` None: more than the limit)."""
    limit = max_source_bytes() if limit is None else limit
    what = f"is {_size(size)}" if size is not None else f"is more than {_size(limit)}"
    return LimitError(f"{file} {what}: a spec may be at most {_size(limit)}", code="E0606",
                      hint=f"specs are written by hand and far smaller; if this one really is "
                           f"that large, raise the limit with the environment variable "
                           f"{LIMIT_ENV}=BYTES (parsing takes some 20 s and 450 MB per MiB)")


_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str:
    return next((what for test, what in _KINDS if test(mode)), "not a regular file")


def read_source(path: str | Path, *, limit: int | None = None, name: str | None = None) -> str:
    """Read a ``.nn`` spec file as UTF-8 text, with clear errors for a missing, binary, empty or
    oversized file. Only a regular file whose name ends in ``.nn`` is opened: it is checked
    (``stat``) before it is opened, so a device, a FIFO or a socket is never read, and at most
    ``limit + 1`` bytes are read (default :func:`max_source_bytes`). ``name`` is how messages
    show the file (default: ``path``)."""
    p = Path(path)
    shown = name or str(path)
    limit = max_source_bytes() if limit is None else limit
    if not p.name.endswith(SPEC_SUFFIX) or p.name == SPEC_SUFFIX:
        if p.is_dir():
            raise SourceFileError(f"{shown} is a directory, not a .nn file", code="E0001")
        raise SourceFileError(f"{shown} is not a .nn file", code="E0006",
                              hint="a spec's file name ends in `.nn`")
    try:
        st = os.stat(p)
    except (FileNotFoundError, NotADirectoryError):
        raise SourceFileError(f"file not found: {shown}", code="E0001",
                              hint="check the path; specs live under specs/<family>/NAME.nn") from None
    except OSError as e:
        raise SourceFileError(f"cannot read {shown}: {e.strerror or e}", code="E0001") from None
    except ValueError as e:   # a NUL in the name
        raise SourceFileError(f"cannot read {shown}: {e}", code="E0001") from None
    if stat.S_ISDIR(st.st_mode):
        raise SourceFileError(f"{shown} is a directory, not a .nn file", code="E0001")
    if not stat.S_ISREG(st.st_mode):
        raise SourceFileError(f"{shown} is {_kind(st.st_mode)}, not a .nn file", code="E0005",
                              hint="a spec is a regular file; nndsl does not read devices, "
                                   "pipes or sockets")
    if st.st_size > limit:
        raise too_large(shown, st.st_size, limit)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | \
        getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(p, flags)
    except OSError as e:
        raise SourceFileError(f"cannot read {shown}: {e.strerror or e}", code="E0001") from None
    try:
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            raise SourceFileError(f"{shown} changed while it was opened", code="E0008",
                                  hint="run the command again")
        chunks, got = [], 0
        while got <= limit:
            chunk = os.read(fd, min(1 << 16, limit + 1 - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
    except OSError as e:
        raise SourceFileError(f"cannot read {shown}: {e.strerror or e}", code="E0001") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:   # it grew since it was checked
        raise too_large(shown, None, limit)
    return decode_source(data, shown)


def decode_source(data: bytes, file: str) -> str:
    """A spec's bytes as text; a binary file or bad UTF-8 is an error (bad UTF-8 located at
    its first bad byte, shown escaped)."""
    if b"\x00" in data:
        raise SourceFileError(f"{file} is a binary file, not .nn text", code="E0002",
                              hint="a .nn spec is UTF-8 text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        start = data.rfind(b"\n", 0, e.start) + 1
        line = data.count(b"\n", 0, e.start) + 1
        col = len(data[start:e.start].decode("utf-8")) + 1
        shown = data.decode("utf-8", "backslashreplace")
        width = 4 * max(1, e.end - e.start)   # each bad byte is quoted as \xNN
        span = Span(file, line, col, line, col + width, Source(file, shown))
        raise SourceFileError(f"{file} is not valid UTF-8: byte 0x{data[e.start]:02x} at line "
                              f"{line}, column {col}", span=span, code="E0003",
                              hint="save the file as UTF-8") from None


def is_blank(text: str) -> bool:
    """Whether ``text`` holds nothing but whitespace and comments, as the grammar sees them
    (so a file of control characters is not blank: the parser points at the first one)."""
    for ln in text.split("\n"):
        ln = ln.lstrip(_WS)
        if ln and not ln.startswith("#"):
            return False
    return True


def _text_size(text: str, limit: int) -> int | None:
    """The UTF-8 size of ``text`` if it is over ``limit`` bytes, else None (cheap when short)."""
    if len(text) <= limit // 4:
        return None
    n = len(text.encode("utf-8", "surrogatepass"))
    return n if n > limit else None


def parse(text: str, file: str = "<string>") -> ast.Module:
    """Parse .nn source text into an :class:`ast.Module`; every span of it carries the text."""
    limit = max_source_bytes()
    if text.startswith("\ufeff"):   # a byte-order mark some editors write: not part of the text
        text = text[1:]
    size = _text_size(text, limit)
    if size is not None:
        raise too_large(file, size, limit)
    SourceRegistry.add(file, text)
    src = Source(file, text)
    if is_blank(text):
        raise ParseError(f"{file} is empty: it defines no model"
                         + (" (it holds only comments)" if text.strip(_WS + "\n") else ""),
                         code="E0104",
                         hint="write `model NAME() { input x: f32[N, 4]  output y = x |> linear(2) }`")
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as e:
        raise _friendly(e, src) from None
    except _RunOn as e:
        kw, tok = e.keyword, e.tok
        word = kw.value + tok.value
        span = Span(file, kw.line, kw.column, tok.end_line, tok.end_column, src)
        raise ParseError(f"`{_abbrev(word)}` runs the keyword `{kw.value}` into "
                         f"`{_abbrev(tok.value)}`", span=span, code="E0100",
                         hint=f"write a space after `{kw.value}`: `{kw.value} "
                              f"{_abbrev(tok.value)}`") from None
    _check_depth(tree, src)
    try:
        return _ToAst(src).transform(tree)
    except VisitError as e:   # a located mistake found while building the AST
        if isinstance(e.orig_exc, (ParseError, LimitError, DefinitionError)):
            raise e.orig_exc from None
        raise


def _check_depth(tree: Tree, src: Source) -> None:
    """Refuse absurdly deep nesting, pointing at the statement that holds it. A pipeline
    ``x |> f |> g ...`` is a flat chain, not nesting: its stages do not count."""
    stack = [(tree, 1, None)]
    while stack:
        node, depth, stmt = stack.pop()
        if depth > MAX_NESTING:
            m = (stmt if stmt is not None else node).meta
            span = _span(src, m) if not m.empty else None
            raise LimitError(f"expression nested more than {MAX_NESTING} levels deep", span=span,
                             code="E0602", hint="split the expression into several assignments")
        if node.data.endswith("_stmt"):
            stmt = node
        for i, child in enumerate(node.children):
            if isinstance(child, Tree):
                chain = node.data == "pipe_op" and i == 0 and child.data == "pipe_op"
                stack.append((child, depth if chain else depth + 1, stmt))


# What a terminal of the grammar is called in a message; literal terminals (keywords and
# punctuation) are shown as written. tests/test_source_limits.py checks every terminal has a name.
_NAMED = {
    "NAME": "a name", "NUMBER": "a number", "STRING": "a string",
    "COMP_OP": "a comparison such as `<` or `==`", "ADD_OP": "`+` or `-`",
    "MUL_OP": "`*`, `/`, `//`, `%` or `@`", "POW": "`**`", "ELLIPSIS": "`...`",
    "WS": "whitespace", "COMMENT": "a comment", "$END": "the end of the file",
}
# the binary operators of expressions, by an example each: several at once read as one phrase
_OPERATORS = {"ADD_OP": "`+`", "MUL_OP": "`*`", "POW": "`**`", "COMP_OP": "`<`"}


@functools.lru_cache(maxsize=1)
def terminal_names() -> dict[str, str]:
    """Every terminal of the grammar, by lark's name, in words for a message."""
    from lark.lexer import PatternStr
    out = {}
    for t in _lark().terminals:
        if t.name in _NAMED:
            out[t.name] = _NAMED[t.name]
        elif isinstance(t.pattern, PatternStr):
            out[t.name] = f"`{t.pattern.value}`"
    return {**out, "$END": _NAMED["$END"]}


def _describe(expected: set[str]) -> str:
    names = terminal_names()
    ops = [t for t in _OPERATORS if t in expected]
    head = ""
    if len(ops) > 1:   # `**` goes without saying once `+`, `*` or `<` is named
        examples = [_OPERATORS[t] for t in ops if t != "POW" or len(ops) == 2]
        head = "an operator such as " + (", ".join(examples[:-1]) + " or " + examples[-1])
        expected = expected - set(ops)
    rest = sorted({names.get(t, "another token") for t in expected})
    if len(rest) > 8:
        rest = rest[:8] + ["..."]
    if head and rest:
        return head + ", or " + ("one of " if len(rest) > 1 else "") + ", ".join(rest)
    return head or ", ".join(rest)


def _friendly(e: UnexpectedInput, src: Source) -> ParseError:
    text, file = src.text, src.file
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
        return ParseError(msg, span=Span(file, last, col, last, col + 1, src), code="E0101", hint=hint)
    if isinstance(e, UnexpectedCharacters):
        ch = text[e.pos_in_stream] if e.pos_in_stream < len(text) else ""
        span = Span(file, e.line, e.column, e.line, e.column + 1, src)
        if ch == '"':
            return ParseError("unterminated string", span=span, code="E0102",
                              hint='close the string with `"` on the same line')
        if ch == ";":
            return ParseError("unexpected `;`", span=span, code="E0103",
                              hint="statements need no separator: remove the `;`")
        if ch.isdigit() or ch.isspace():   # a look-alike of an ASCII digit or space
            what = "digit" if ch.isdigit() else "space"
            return ParseError(f"unexpected character `{ch}` (U+{ord(ch):04X}), a non-ASCII "
                              f"{what}", span=span, code="E0103",
                              hint="numbers are written with the ASCII digits 0-9" if ch.isdigit()
                              else "replace it with an ordinary space")
        expected = _describe(set(e.allowed or ()))
        return ParseError(f"unexpected character `{ch}`", span=span, code="E0103",
                          hint=f"expected {expected}" if expected else None)
    assert isinstance(e, UnexpectedToken)
    tok = e.token
    span = Span(file, tok.line, tok.column, tok.end_line or tok.line,
                (tok.end_column or tok.column + len(str(tok))), src)
    expected = set(e.expected or ())
    value = str(tok)
    if len(value) > 40:   # a very long name or string: the caret shows where it is
        value = value[:30] + "..."
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


def _span(src: Source, meta) -> Span:
    return Span(src.file, meta.line, meta.column, meta.end_line, meta.end_column, src)


def _tok_span(src: Source, tok: Token) -> Span:
    return Span(src.file, tok.line, tok.column, tok.end_line, tok.end_column, src)


@v_args(meta=True)
class _ToAst(Transformer_NonRecursive):
    """Turns lark's parse tree into :mod:`nndsl.syntax.ast` nodes (without recursion, so a long
    pipeline cannot exhaust Python's stack)."""

    def __init__(self, src: Source):
        super().__init__()
        self.src = src
        self.file = src.file

    def _s(self, meta) -> Span:
        return _span(self.src, meta)

    # top level
    def start(self, meta, items):
        imports = tuple(i for i in items if isinstance(i, ast.Import))
        defs = tuple(i for i in items if isinstance(i, ast.Definition))
        trains = tuple(i for i in items if isinstance(i, ast.TrainDef))
        optimizes = tuple(i for i in items if isinstance(i, ast.OptimizeDef))
        searches = tuple(i for i in items if isinstance(i, ast.SearchDef))
        return ast.Module(Span(self.file, 1, 1, 1, 1, self.src), self.file, imports, defs, trains,
                          optimizes, searches)

    def import_file(self, meta, ch):
        return ast.Import(self._s(meta), _unquote(ch[0]), True)

    def import_std(self, meta, ch):
        return ast.Import(self._s(meta), ch[0], False)

    def dotted_name(self, meta, ch):
        return ".".join(str(c) for c in ch)

    def _definition(self, kind, meta, ch):
        name, params, body = ch
        return ast.Definition(self._s(meta), kind, str(name), tuple(params or ()), body,
                              name_span=_tok_span(self.src, name))

    def block_def(self, meta, ch):
        return self._definition("block", meta, ch)

    def model_def(self, meta, ch):
        return self._definition("model", meta, ch)

    def train_def(self, meta, ch):
        name, *entries = ch
        targets = tuple(e for e in entries if isinstance(e, ast.TrainTarget))
        sets = tuple(e for e in entries if isinstance(e, ast.TrainEntry))
        return ast.TrainDef(self._s(meta), str(name), targets, sets,
                            name_span=_tok_span(self.src, name))

    def optimize_def(self, meta, ch):
        name, *entries = ch
        return ast.OptimizeDef(self._s(meta), str(name), tuple(entries),
                               name_span=_tok_span(self.src, name))

    def search_def(self, meta, ch):
        name, *limits = ch
        return ast.SearchDef(self._s(meta), str(name), tuple(limits),
                             name_span=_tok_span(self.src, name))

    def search_limit(self, meta, ch):
        name, op, value = ch
        return ast.SearchLimit(self._s(meta), str(name), str(op), value,
                               quantity_span=_tok_span(self.src, name))

    def train_target(self, meta, ch):
        kw, name, type_ = ch
        if str(kw) != "target":
            hint = "declare a target as `target NAME: TYPE`; set an entry as `NAME = value`"
            raise ParseError(f"unexpected `{kw}`: a train section holds `target NAME: TYPE` and "
                             f"`NAME = value` lines", span=_tok_span(self.src, kw), code="E0100",
                             hint=("did you mean `target`? " if str(kw) in (
                                 "targe", "taget", "tagret", "targets", "traget") else "") + hint)
        return ast.TrainTarget(self._s(meta), str(name), type_)

    def train_set(self, meta, ch):
        return ast.TrainEntry(self._s(meta), str(ch[0]), ch[1],
                              name_span=_tok_span(self.src, ch[0]))

    def params(self, meta, ch):
        out = [c for c in ch if c is not None]
        seen = {}
        for p in out:
            if p.name in seen:
                raise DefinitionError(f"parameter `{p.name}` is declared twice", span=p.span,
                                      code="E0501", notes=[("first declared here", seen[p.name])],
                                      hint=f"rename or remove the second `{p.name}`")
            seen[p.name] = p.span
        return out

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
