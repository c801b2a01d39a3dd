"""The canonical layout of ``.nn`` specs: ``nndsl fmt``.

The formatter lays out the tokens of a spec again; it never rewrites the program. It parses the
text twice: with the compiler's parser (:func:`nndsl.syntax.parse`), for the usual located
errors and the AST, and with the same grammar keeping every token (lark's ``keep_all_tokens``),
for the concrete tree it prints. Comments, which the grammar skips, are read back from the text
between consecutive tokens, so each stays after the token it followed (a trailing comment) or
on its own line before the token it preceded.

The style (docs/LANGUAGE.md, "Formatting") is the zoo's:

- one statement a line, indented by 4 spaces a level; a loop's or an `if`'s body written on one
  line (``repeat n { x = f(x) }``) stays on one line when it holds one simple statement, no
  comment, and fits the width; every other body opens with ``{`` at the end of its header line
  and closes with ``}`` on a line of its own (``} else {`` on one line);
- spaces around binary operators, ``|>``, ``=`` (but not a keyword argument's), ``~`` and the
  keywords; one after a comma or a type's colon; none inside brackets, before a call's ``(`` or an
  index's ``[``, around ``.``, a slice's ``:`` or after a unary minus; ``{ x }`` inside braces;
- a statement keeps the line breaks its author put where a line may break (before ``|>``, a
  binary operator, ``as`` or an if-expression's ``else``, after a comma or an opening bracket;
  a break after an operator moves before it, others are dropped), and a line longer than the
  width (default 100) is broken at such a place that leaves the line within the width, and the
  rest of the statement too where one does: the outermost, then the loosest (a comma before an
  operator, looser operators before tighter ones), then the last; a bracket is left open at
  the end of a line only as a last resort, and then closes on a line of its own;
- a continuation line starting with ``|>`` lines up under the first ``|>`` of its pipeline when
  the pipeline's first operand is one token, else under that operand; ``as`` under what it
  names, ``else`` under its ``if``, another operator under its left operand; any other inside
  brackets after the innermost open bracket, or 4 spaces in from that bracket's line when the
  bracket ends its line; elsewhere 4 spaces past the statement;
- blank lines: one between top-level definitions (and after the imports), at most one kept
  between statements or comments, none at the start of a body or before its ``}``;
- a trailing comment keeps its column when its line holds what the author's line held and the
  code leaves room for it (two spaces at least), else follows two spaces after the code; an
  own-line comment takes the indentation of what follows it; trailing whitespace goes, one
  newline ends the file.

The output is checked before it is returned: it must parse to the same AST (spans aside) with the
same comments, else the formatter refuses (``E1401``) and nothing is written.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
import stat
import sys
from pathlib import Path

from lark import Lark, Token, Tree

from nndsl.errors import NndslError
from nndsl.syntax import ast
from nndsl.syntax.parser import (SPEC_SUFFIX, decode_source, grammar_text, max_source_bytes, parse,
                                 read_source, too_large)

DEFAULT_WIDTH = 100
MIN_WIDTH, MAX_WIDTH = 40, 1000
INDENT = 4
_WS = " \t\f\r"          # what the grammar skips besides newlines
_COMMENT_GAP = 2         # least spaces between code and a trailing comment

_OPENERS = {"(": ")", "[": "]", "{": "}"}
_CLOSERS = frozenset(_OPENERS.values())
_COMPOUND = frozenset({"for_stmt", "repeat_stmt", "if_stmt"})
# How loosely a line break binds where it may be inserted: a comma first, then the operators from
# the loosest to the tightest. Breaks go before an operator and after a comma or an opening bracket.
_AFTER_COMMA, _ELSE, _OR, _AND, _COMPARE, _PIPE, _SUM, _PRODUCT, _POWER, _HANG = range(10)


class FormatError(NndslError):
    """The formatter would change what a spec means: it refuses, and writes nothing."""

    code = "E1401"


@functools.lru_cache(maxsize=1)
def _concrete() -> Lark:
    """The grammar with every token kept in the tree (keywords and punctuation included)."""
    return Lark(grammar_text(), parser="lalr", propagate_positions=True, maybe_placeholders=False,
                keep_all_tokens=True)


class _Tok:
    __slots__ = ("text", "type", "rule", "start", "end", "line", "anchor")

    def __init__(self, tok: Token, rule: str):
        self.text = str(tok)
        self.type = tok.type
        self.rule = rule                 # the grammar rule the token belongs to
        self.start, self.end, self.line = tok.start_pos, tok.end_pos, tok.line
        self.anchor = None               # what a line starting with this token lines up under


class _Gap:
    """What lies between two tokens: a trailing comment of the first, comments on their own lines,
    blank lines, line breaks."""

    __slots__ = ("trail", "trail_col", "own", "blank", "newline")

    def __init__(self):
        self.trail = None                # comment text on the previous token's line
        self.trail_col = 0               # its column there (0-based)
        self.own: list[tuple[bool, str]] = []   # (a blank line before it, comment text)
        self.blank = False               # a blank line just before the next token
        self.newline = False             # any line break in the gap


def _tokens(tree: Tree) -> list[_Tok]:
    out, stack = [], [(tree, "start")]
    while stack:
        node, rule = stack.pop()
        if isinstance(node, Token):
            out.append(_Tok(node, rule))
        else:
            stack.extend((c, node.data) for c in reversed(node.children))
    return out


def _subtrees(tree: Tree):
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(c for c in reversed(node.children) if isinstance(c, Tree))


def _start(node) -> int:
    return node.start_pos if isinstance(node, Token) else node.meta.start_pos


def _gaps(text: str, toks: list[_Tok]) -> list[_Gap]:
    """``gaps[i]``: what lies before token ``i`` (``gaps[len(toks)]``: after the last one)."""
    gaps = []
    prev_end = 0
    for i in range(len(toks) + 1):
        end = toks[i].start if i < len(toks) else len(text)
        piece = text[prev_end:end]
        g = _Gap()
        segs = piece.split("\n")
        g.newline = len(segs) > 1
        if i > 0:
            first = segs[0]
            if "#" in first:
                at = first.index("#")
                g.trail = first[at:].rstrip(_WS)
                pos = prev_end + at
                g.trail_col = pos - (text.rfind("\n", 0, pos) + 1)
            full = segs[1:] if i == len(toks) else segs[1:-1]
        else:
            full = segs if i == len(toks) else segs[:-1]
        blank = False
        for ln in full:
            s = ln.strip(_WS)
            if not s:
                blank = True
            else:
                g.own.append((blank, s.rstrip(_WS)))
                blank = False
        g.blank = blank
        gaps.append(g)
        if i < len(toks):
            prev_end = toks[i].end
    return gaps


def _space(a: _Tok, b: _Tok) -> str:
    """The space between two tokens on one line."""
    at, bt = a.text, b.text
    if bt in (",", ")", "]"):
        return ""
    if at in ("(", "["):
        return ""
    if at == ",":
        return " "
    if (at == ":" and a.rule == "slice") or (bt == ":" and b.rule == "slice"):
        return ""
    if bt == ":":                         # `x: f32`, `label: for`
        return ""
    if bt == ".":
        return " " if a.type == "NUMBER" else ""   # `1 .x` must not become the number `1.`
    if at == ".":
        return ""
    if bt == "(" and b.rule in ("call", "block_def", "model_def"):
        return ""
    if bt == "[" and b.rule in ("index", "tensor_type"):
        return ""
    if (at == "=" and a.rule == "kwarg") or (bt == "=" and b.rule == "kwarg"):
        return ""
    if at == "-" and a.rule == "neg":
        return ""
    if at == "{" and bt == "}":
        return ""
    return " "


def _break_before(t: _Tok) -> int | None:
    """How loosely a break before ``t`` binds, where one may be inserted before it."""
    if t.text == "|>":
        return _PIPE
    if t.rule == "binary":
        return _SUM if t.type == "ADD_OP" else _PRODUCT
    if t.rule == "compare_op" and t.type == "COMP_OP":
        return _COMPARE
    if t.rule == "or_op" and t.text == "or":
        return _OR
    if t.rule == "and_op" and t.text == "and":
        return _AND
    if t.rule == "pow_op" and t.text == "**":
        return _POWER
    if t.rule == "if_expr" and t.text == "else":
        return _ELSE
    return None


def _matches(toks: list[_Tok]) -> dict[int, int]:
    """Each opening bracket's closing one."""
    out, stack = {}, []
    for i, t in enumerate(toks):
        if _is_open(t):
            stack.append(i)
        elif _is_close(t) and stack:
            out[stack.pop()] = i
    return out


def _is_open(t: _Tok) -> bool:
    return t.text in _OPENERS and t.type != "STRING"


def _is_close(t: _Tok) -> bool:
    return t.text in _CLOSERS and t.type != "STRING"


class _Printer:
    def __init__(self, text: str, tree: Tree, width: int):
        self.width = width
        self.toks = toks = _tokens(tree)
        self.gaps = _gaps(text, toks)
        self.first = {t.start: i for i, t in enumerate(toks)}
        self.last = {t.end: i for i, t in enumerate(toks)}
        self.col = [0] * len(toks)
        self.out: list[str] = []
        self._anchors(tree)
        self.match = _matches(toks)
        n = len(toks)
        self.cand = [None] * (n + 1)      # an inserted break before token i: its looseness
        self.author = [False] * (n + 1)   # the author's break before token i, where one may be
        self.forced = [False] * (n + 1)   # a comment ends the line before token i
        for i in range(1, n):
            t, p = toks[i], toks[i - 1]
            c = _break_before(t)
            if c is None and p.text == "," and p.rule not in ("targets", "loop_target"):
                c = _AFTER_COMMA
            if c is None and _is_open(p) and (p.text != "{" or p.rule == "if_expr") \
                    and not _is_close(t):
                c = _HANG
            self.cand[i] = c
            g = self.gaps[i]
            self.forced[i] = g.trail is not None or bool(g.own)
            if g.newline:
                if c is not None or (t.text == "as" and t.rule == "named") or \
                        (p.text == "," and p.rule in ("targets", "loop_target")) or _is_close(t):
                    self.author[i] = True
                elif i > 1 and (_break_before(p) is not None
                                or (p.text == "as" and p.rule == "named")):
                    self.author[i - 1] = True   # `a +` / `b`: the break goes before the operator

    def _anchors(self, tree: Tree) -> None:
        """What a continuation line lines up under when it starts with an operator: a `|>`
        under the first `|>` of its pipeline when the pipeline starts with one token, else under
        the pipeline's first token; another binary operator under its left operand; `as` under
        what it names; an if-expression's `else` under its `if`."""
        toks, seen = self.toks, set()
        for node in _subtrees(tree):
            kids = node.children
            if node.data == "pipe_op" and id(node) not in seen:
                spine = [node]
                while isinstance(spine[-1].children[0], Tree) and \
                        spine[-1].children[0].data == "pipe_op":
                    spine.append(spine[-1].children[0])
                deepest = spine[-1]
                head = self._a(deepest.children[0])
                first_bar = self.first[deepest.children[1].start_pos]
                one = self._b(deepest.children[0]) == head
                for s in spine:
                    seen.add(id(s))
                    bar = self.first[s.children[1].start_pos]
                    toks[bar].anchor = first_bar if one and bar != first_bar else head
            elif node.data in ("binary", "compare_op", "and_op", "or_op", "pow_op", "named") \
                    and len(kids) == 3:
                toks[self.first[kids[1].start_pos]].anchor = self._a(kids[0])
            elif node.data == "if_expr":
                at_if = self._a(node)
                for c in kids:
                    if isinstance(c, Token) and c == "else" and c.type != "NAME":
                        toks[self.first[c.start_pos]].anchor = at_if

    # ---- helpers over tree nodes ----
    def _a(self, node) -> int:
        return self.first[_start(node)]

    def _b(self, node) -> int:
        return self.last[node.end_pos if isinstance(node, Token) else node.meta.end_pos]

    def _flat(self, a: int, b: int) -> int:
        toks = self.toks
        return sum(len(toks[i].text) for i in range(a, b + 1)) + \
            sum(len(_space(toks[i - 1], toks[i])) for i in range(a + 1, b + 1))

    def _quiet(self, a: int, b: int) -> bool:
        """No comment between tokens ``a`` and ``b``."""
        return not any(self.gaps[i].trail is not None or self.gaps[i].own
                       for i in range(a + 1, b + 1))

    # ---- lines ----
    def _comments(self, i: int, indent: int, at_start: bool, closing: bool = False) -> None:
        """The comments on their own lines before token ``i``, and the blank lines kept."""
        g = self.gaps[i]
        for blank, text in g.own:
            if blank and not at_start:
                self.out.append("")
            self.out.append(" " * indent + text)
            at_start = False
        if g.blank and not at_start and not closing:
            self.out.append("")

    def _continuation(self, j: int, stack: list, base: int) -> int:
        t = self.toks[j]
        if t.anchor is not None:
            return self.col[t.anchor]
        if stack:
            o = stack[-1]
            if _is_close(t):
                return o[2]
            return o[2] + INDENT if o[3] else o[1]
        return base + INDENT

    def _pick(self, cands: list, end: int | None) -> int:
        """Where to break a line too long: among the places that leave this line within the
        width, those that also leave the rest of it within the width if there are any, the
        outermost and loosest, the last of equals; where no place leaves this line within the
        width, the first place. ``end``: the column the line ends at, unbroken."""
        width = self.width
        fitting = [c for c in cands if c[3] <= width]
        if not fitting:
            return cands[0][2]
        good = [c for c in fitting if end is not None and c[4] + end - self.col[c[2]] <= width]
        return min(good or fitting, key=lambda c: (c[0], c[1], -c[2]))[2]

    def line(self, a: int, b: int, indent: int) -> None:
        """Lay out tokens ``a``..``b`` (one statement, or a header up to its ``{``) from
        ``indent``, breaking lines where the author did and where the width needs it."""
        toks, width, col_of = self.toks, self.width, self.col
        inserted = set()
        # the open brackets: [token, column of its content, its line's indent, ends its line]
        stack: list[list] = []
        j = a
        while True:
            if j > a and stack and stack[-1][0] == j - 1:
                stack[-1][3] = True     # the bracket ends its line
            ind = indent if j == a else self._continuation(j, stack, indent)
            saved = [e[:] for e in stack]
            while True:                 # lay out one line; again if a break was inserted
                stack = [e[:] for e in saved]
                col, k, cands, over, whole = ind, j, [], False, False
                while True:
                    t = toks[k]
                    if k > j:
                        col += len(_space(toks[k - 1], t))
                    col_of[k] = col
                    if stack and stack[-1][1] is None and stack[-1][0] == k - 1 and k > j:
                        stack[-1][1] = col
                    col += len(t.text)
                    if _is_open(t):
                        stack.append([k, None, ind, False])
                    elif _is_close(t) and stack:
                        stack.pop()
                    over = over or col > width
                    nxt = k + 1
                    if nxt > b or nxt in inserted or self.forced[nxt] or (
                            self.author[nxt] and (not _is_close(toks[nxt])
                                                  or (stack and stack[-1][3]))):
                        whole = True
                        break
                    c = self.cand[nxt]
                    if c is not None:   # (depth, looseness, where, line so far, next line's indent)
                        nind = ind + INDENT if _is_open(t) else \
                            self._continuation(nxt, stack, indent)
                        cands.append((len(stack), c, nxt, col, nind))
                    if over and cands and col > 3 * width:
                        break           # no break this far on leaves a line that fits
                    k = nxt
                if over and cands:
                    pick = self._pick(cands, col if whole else None)
                    inserted.add(pick)
                    if _is_open(toks[pick - 1]):    # a bracket left open at the end of a line
                        inserted.add(self.match[pick - 1])    # closes on a line of its own
                    continue
                break
            end = k + 1
            if j > a:
                self._comments(j, ind, at_start=True)
            text = " " * ind + toks[j].text + "".join(
                _space(toks[i - 1], toks[i]) + toks[i].text for i in range(j + 1, end))
            trail = self.gaps[end].trail if end <= len(toks) else None
            if trail is not None:
                # the author's column, when the line holds what the author's line held
                same = self.gaps[j].newline and toks[j].line == toks[end - 1].line
                room = self.gaps[end].trail_col - len(text) if same else 0
                text += " " * max(_COMMENT_GAP, room) + trail
            self.out.append(text)
            if end > b:
                return
            j = end

    # ---- statements ----
    def _container(self, node: Tree):
        """The ``{``, the statements (or entries) and the ``}`` of a body or a section."""
        kids = node.children
        o = next(i for i, c in enumerate(kids) if isinstance(c, Token) and c == "{")
        stmts = [c for c in kids[o + 1:] if isinstance(c, Tree)]
        return self.first[kids[o].start_pos], stmts, self.last[kids[-1].end_pos]

    def _contents(self, stmts: list, close: int, indent: int) -> None:
        at_start = True
        for s in stmts:
            self._comments(self._a(s), indent, at_start)
            self._stmt(s, indent)
            at_start = False
        self._comments(close, indent, at_start, closing=True)

    def _bodies(self, node: Tree) -> list[Tree]:
        out, cur = [], node
        while True:
            body = cur.children[-1] if cur.data != "if_stmt" else cur.children[2]
            out.append(body)
            if cur.data == "if_stmt" and len(cur.children) > 3:
                other = cur.children[4]
                if other.data == "body":
                    out.append(other)
                    return out
                cur = other
                continue
            return out

    def _one_line(self, node: Tree, indent: int) -> bool:
        a, b = self._a(node), self._b(node)
        if self.toks[a].line != self.toks[b].line or not self._quiet(a, b):
            return False
        for body in self._bodies(node):
            stmts = [c for c in body.children if isinstance(c, Tree)]
            if len(stmts) > 1 or any(s.data in _COMPOUND for s in stmts):
                return False
        return indent + self._flat(a, b) <= self.width

    def _stmt(self, node: Tree, indent: int) -> None:
        a, b = self._a(node), self._b(node)
        if node.data not in _COMPOUND or self._one_line(node, indent):
            self.line(a, b, indent)
            return
        start, cur = a, node
        while True:
            body = cur.children[2] if cur.data == "if_stmt" else cur.children[-1]
            o, stmts, c = self._container(body)
            self.line(start, o, indent)
            self._contents(stmts, c, indent + INDENT)
            if cur.data == "if_stmt" and len(cur.children) > 3:
                start = c
                if self.forced[c + 1]:      # a comment between `}` and `else`
                    self.line(c, c, indent)
                    self._comments(c + 1, indent, at_start=True)
                    start = c + 1
                other = cur.children[4]
                if other.data == "body":
                    o2, stmts2, c2 = self._container(other)
                    self.line(start, o2, indent)
                    self._contents(stmts2, c2, indent + INDENT)
                    self.line(c2, c2, indent)
                    return
                cur = other
                continue
            self.line(c, c, indent)
            return

    def _item(self, node: Tree) -> None:
        a, b = self._a(node), self._b(node)
        if node.data in ("import_file", "import_std"):
            self.line(a, b, 0)
            return
        holder = node.children[-1] if node.data in ("block_def", "model_def") else node
        o, stmts, c = self._container(holder)
        if not stmts and self._quiet(o, c):
            self.line(a, c, 0)
            return
        self.line(a, o, 0)
        self._contents(stmts, c, INDENT)
        self.line(c, c, 0)

    def module(self, tree: Tree) -> str:
        items = [c for c in tree.children if isinstance(c, Tree)]
        prev = None
        for item in items:
            a = self._a(item)
            if prev is None:
                self._comments(a, 0, at_start=True)
            elif prev.data.startswith("import") and item.data.startswith("import"):
                self._comments(a, 0, at_start=False)
            else:
                self._after_item(a)
            self._item(item)
            prev = item
        end = len(self.toks)
        if self.gaps[end].own:
            self._after_item(end)
        return "\n".join(ln.rstrip(_WS) for ln in self.out) + "\n"

    def _after_item(self, i: int) -> None:
        """One blank line after a definition (or the imports), then the comments before token
        ``i`` with their own blank lines."""
        self.out.append("")
        g = self.gaps[i]
        for n, (blank, text) in enumerate(g.own):
            if blank and n:
                self.out.append("")
            self.out.append(text)
        if g.blank and g.own and i < len(self.toks):
            self.out.append("")


# ---- checking the output ----

def _same(x, y) -> bool:
    """Two ASTs are equal, spans aside (without recursion: a pipeline may be long)."""
    stack = [(x, y)]
    while stack:
        p, q = stack.pop()
        if type(p) is not type(q):
            return False
        if isinstance(p, ast.Node):
            for f in dataclasses.fields(p):
                if f.compare:
                    stack.append((getattr(p, f.name), getattr(q, f.name)))
        elif isinstance(p, (tuple, list)):
            if len(p) != len(q):
                return False
            stack.extend(zip(p, q))
        elif p != q:
            return False
    return True


def comments_of(text: str) -> list[str]:
    """The comments of a spec that parses, in order (a ``#`` outside a string starts one)."""
    out = []
    for ln in text.split("\n"):
        i, n, in_str = 0, len(ln), False
        while i < n:
            c = ln[i]
            if in_str:
                if c == "\\":
                    i += 1
                elif c == '"':
                    in_str = False
            elif c == '"':
                in_str = True
            elif c == "#":
                out.append(ln[i:].rstrip(_WS))
                break
            i += 1
    return out


def _refuse(file: str, why: str) -> FormatError:
    return FormatError(f"formatting {file} would {why}; the file is left as it is",
                       hint="this is a bug in nndsl fmt: please report it with the file")


def format_text(text: str, file: str = "<string>", width: int = DEFAULT_WIDTH) -> str:
    """``text`` in the canonical layout. A spec that does not parse raises the parser's located
    error; an output that would not parse to the same program, or lose a comment, raises
    :class:`FormatError`."""
    if text.startswith("\ufeff"):
        text = text[1:]
    module = parse(text, file)            # the located errors, and the AST to compare with
    tree = _concrete().parse(text)
    out = _Printer(text, tree, width).module(tree)
    shown = f"{file} (formatted)"
    try:
        again = parse(out, shown)
    except NndslError as e:
        raise _refuse(file, f"give text that does not parse ({e.message})") from None
    if not _same(module, dataclasses.replace(again, file=module.file)):
        raise _refuse(file, "change its program")
    if comments_of(out) != comments_of(text):
        raise _refuse(file, "move or lose a comment")
    return out


def diff(old: str, new: str, name: str) -> str:
    """A unified diff from ``old`` to ``new`` (empty when they are equal)."""
    a = old.splitlines(keepends=True)
    if a and not a[-1].endswith("\n"):
        a[-1] += "\n\\ No newline at end of file\n"
    return "".join(difflib.unified_diff(a, new.splitlines(keepends=True), fromfile=name,
                                        tofile=f"{name} (formatted)"))


# ---- files ----

def spec_files(paths) -> list[str]:
    """The files to format: each path given, and every ``.nn`` file below each folder (sorted;
    hidden folders skipped). ``-`` (standard input) is kept as it is."""
    out, seen = [], set()
    for p in paths:
        if p == "-":
            found = ["-"]
        elif os.path.isdir(p):
            found = []
            for root, dirs, files in os.walk(p):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                found.extend(os.path.join(root, f) for f in files if f.endswith(SPEC_SUFFIX)
                             and f != SPEC_SUFFIX and not f.startswith("."))
            found.sort(key=lambda f: Path(f).parts)
        else:
            found = [p]
        for f in found:
            key = f if f == "-" else os.path.realpath(f)
            if key not in seen:
                seen.add(key)
                out.append(f)
    return out


def _read_stdin() -> str:
    limit = max_source_bytes()
    stream = getattr(sys.stdin, "buffer", None)
    data = stream.read(limit + 1) if stream is not None else sys.stdin.read(limit + 1).encode()
    if len(data) > limit:
        raise too_large("<stdin>", None, limit)
    return decode_source(data, "<stdin>")


def write_in_place(path: str, old: str, new: str) -> None:
    """Replace ``path``'s text atomically, keeping its permissions (a link is followed); refused
    when the file changed since it was read."""
    from nndsl.fsutil import clean_stale_temps, create_temp, fsync_dir, remove_quietly, write_fd
    real = Path(os.path.realpath(path))
    try:
        st = os.stat(real)
        if read_source(real, name=path) != old:
            raise NndslError(f"cannot write {path}: it changed while it was formatted",
                             code="E1008", hint="run nndsl fmt again")
        clean_stale_temps(real)
        fd, tmp = create_temp(real)
        try:
            write_fd(fd, [new.encode("utf-8")])
            os.chmod(tmp, stat.S_IMODE(st.st_mode))
            os.replace(tmp, real)
        except BaseException:
            remove_quietly(tmp)
            raise
        fsync_dir(real.parent)
    except (OSError, ValueError) as e:
        from nndsl.fsutil import write_error
        raise write_error(path, e) from None


def _out(text: str) -> None:
    stream = getattr(sys.stdout, "buffer", None)
    if stream is not None:
        sys.stdout.flush()
        stream.write(text.encode("utf-8"))
        stream.flush()
    else:
        sys.stdout.write(text)


def run(paths, *, check: bool = False, width: int = DEFAULT_WIDTH) -> int:
    """``nndsl fmt``: format files in place (``check``: print the diffs and exit 1 when a file
    is not formatted). Every file is formatted before any is written: one that does not parse
    gets its located error, exit 1, and nothing is written."""
    results, failed = [], False
    for f in spec_files(paths):
        try:
            old = _read_stdin() if f == "-" else read_source(f)
            results.append((f, old, format_text(old, "<stdin>" if f == "-" else f, width)))
        except NndslError as e:
            print(e.render(), file=sys.stderr)
            failed = True
    if failed:
        return 1
    if not results:
        print("note: no .nn files to format", file=sys.stderr)
        return 0
    changed = [(f, old, new) for f, old, new in results if old != new]
    if check:
        for f, old, new in changed:
            _out(diff(old, new, f))
        total = f"{len(results)} file{'s' if len(results) != 1 else ''}"
        print(f"{len(changed)} of {total} would be reformatted" if changed
              else f"{total} already formatted", file=sys.stderr)
        return 1 if changed else 0
    for f, old, new in results:
        if f == "-":
            _out(new)
    for f, old, new in changed:
        if f != "-":
            write_in_place(f, old, new)
            print(f"reformatted {f}")
    files = [r for r in results if r[0] != "-"]
    if files:
        n = sum(1 for r in changed if r[0] != "-")
        print(f"{n} file{'s' if n != 1 else ''} reformatted, {len(files) - n} already formatted",
              file=sys.stderr)
    return 0
