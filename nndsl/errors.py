"""Typed, located errors and warnings with stable codes.

Every user mistake raises a subclass of :class:`NndslError`. An error carries a code
(``E0102``), a message, an optional :class:`Span` pointing into the user's ``.nn`` text,
an optional hint, and optional notes (extra located lines). ``render()`` prints it the
way rustc does::

    error[E0301]: linear expects f32[*, 512] but got f32[N, 256]
     --> mlp.nn:7:9
      |
    7 |     y = x |> linear(10)
      |              ^^^^^^^^^^
      = hint: ...

A :class:`NndslWarning` is a located finding that is not an error (a layer whose result nothing
uses, an unused input or model parameter): it has a ``W`` code from :data:`WARNINGS` and
renders the same way under a ``warning[W0101]`` header. Compiling succeeds with warnings;
``--deny-warnings`` turns them into :class:`WarningsDenied`.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field


class Source:
    """The text of one parsed file, kept by every :class:`Span` that points into it, so an error
    quotes the text it was raised on (not whatever a later compile read under the same name).
    Immutable; copies share it."""

    __slots__ = ("file", "text", "_lines")

    def __init__(self, file: str, text: str):
        self.file = file
        self.text = text
        self._lines: list[str] | None = None

    def line(self, line: int) -> str | None:
        if self._lines is None:
            self._lines = source_lines(self.text)
        if 1 <= line <= len(self._lines):
            return self._lines[line - 1]
        return None

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def __repr__(self) -> str:
        return f"Source({self.file!r}, {len(self.text)} chars)"


@dataclass(frozen=True)
class Span:
    """A region of a source file: 1-based line/column of start and end (end exclusive), and the
    :class:`Source` it lies in (not part of a span's identity: equal spans may carry different
    copies of the same text)."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int
    source: Source | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


def span_line(span: Span, line: int) -> str | None:
    """Line ``line`` of the text ``span`` points into, or None when the span carries no text."""
    return span.source.line(line) if span.source is not None else None


class SourceRegistry:
    """The text last parsed under each file name. Kept for older callers only: an error quotes
    the text its own span carries (:func:`span_line`), never this table, since a later compile
    may read another text under the same name."""

    _texts: dict[str, str] = {}

    @classmethod
    def add(cls, file: str, text: str) -> None:
        cls._texts[file] = text

    @classmethod
    def line(cls, file: str, line: int) -> str | None:
        text = cls._texts.get(file)
        if text is None:
            return None
        lines = source_lines(text)
        if 1 <= line <= len(lines):
            return lines[line - 1]
        return None


def source_lines(text: str) -> list[str]:
    """The lines of a spec as the parser counts them: split at ``\n`` only (a form feed or a
    Unicode line separator inside a line does not start a new one), without the ``\r`` of
    CRLF endings, and no empty last line after a final newline (as ``str.splitlines``)."""
    lines = [ln[:-1] if ln.endswith("\r") else ln for ln in text.split("\n")]
    if len(lines) > 1 and lines[-1] == "":
        lines.pop()
    return lines if text else []


class NndslError(Exception):
    """Root of every error nndsl raises for a user mistake."""

    code = "E0000"
    kind = "error"

    def __init__(self, message: str, span: Span | None = None, hint: str | None = None,
                 notes: list[tuple[str, Span | None]] | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.span = span
        self.hint = hint
        self.notes = list(notes or [])
        if code is not None:
            self.code = code

    def with_span(self, span: Span | None) -> "NndslError":
        """Attach a span if the error has none yet (inner code raises, outer code locates)."""
        if self.span is None and span is not None:
            self.span = span
        return self

    def __str__(self) -> str:
        return self.render()

    def render(self) -> str:
        return _render("error", self.code, self.message, self.span, self.notes, self.hint)


# Bidirectional-text controls: they reorder what a terminal shows ("Trojan source").
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _unsafe(c: str) -> bool:
    o = ord(c)
    if o < 0x80:
        return (o < 0x20 and c != "\t") or o == 0x7f
    # C1 controls, invisible format characters (zero-width spaces and joiners, the byte-order
    # mark, bidirectional overrides), line and paragraph separators, surrogates
    return c in _BIDI or unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs")


def escape_controls(text: str) -> str:
    """``text`` with control characters (ESC, BEL, CR, DEL, C1 controls, bidirectional
    overrides...) written as escapes (``\\x1b``, ``\\u202e``), so a spec's text cannot drive
    the terminal an error is printed on. Tabs and ordinary Unicode are kept."""
    if not any(_unsafe(c) for c in text):
        return text
    return "".join((f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")
                   if _unsafe(c) else c for c in text)


def _render(kind: str, code: str, message: str, span: Span | None, notes, hint) -> str:
    out = [f"{kind}[{code}]: " + escape_controls(message)]
    if span is not None:
        out.extend(_quote(span))
    for text, note_span in notes:
        out.append(escape_controls(f"  = note: {text}" + (f" ({note_span})" if note_span
                                                           else "")))
    if hint:
        out.append(escape_controls(f"  = hint: {hint}"))
    return "\n".join(out)


MAX_QUOTE = 100  # longest stretch of a source line quoted under an error


def _quote(span: Span) -> list[str]:
    lines = [escape_controls(f" --> {span}")]
    src = span_line(span, span.line)
    if src is None:
        return lines
    num = str(span.line)
    pad = " " * len(num)
    width = (span.end_col - span.col) if span.end_line == span.line else len(src) - span.col + 1
    width = max(1, width)
    col = span.col
    if len(src) > MAX_QUOTE:  # show a window of a very long line around the caret
        start = max(0, min(col - 1 - MAX_QUOTE // 3, len(src) - MAX_QUOTE))
        end = start + MAX_QUOTE
        prefix = "..." if start > 0 else ""
        src = prefix + src[start:end] + ("..." if end < len(src) else "")
        col = len(prefix) + col - start
        width = max(1, min(width, end - (span.col - 1)))
    # control characters are shown escaped; the caret moves with the text it points at
    before, under = src[:col - 1], src[col - 1:col - 1 + width]
    col = len(escape_controls(before)) + 1
    width = max(1, len(escape_controls(under)))
    src = escape_controls(src)
    lines.append(f"{pad} |")
    lines.append(f"{num} | {src}")
    lines.append(f"{pad} | " + " " * (col - 1) + "^" * width)
    return lines


class ParseError(NndslError):
    code = "E0100"


class SourceFileError(NndslError):
    """The file cannot be read: missing, not UTF-8, binary, empty."""

    code = "E0001"


class UnknownNameError(NndslError):
    code = "E0200"


class ArgumentError(NndslError):
    code = "E0210"


class ShapeError(NndslError):
    code = "E0300"


class SpecAssertionError(NndslError):
    code = "E0400"


class DefinitionError(NndslError):
    """Duplicate definitions, recursion, import cycles, bad model selection."""

    code = "E0500"


class LimitError(NndslError):
    """Absurd sizes, too-deep nesting."""

    code = "E0600"


class VerifyError(NndslError):
    code = "E0700"


class PassError(NndslError):
    code = "E0800"


class LoweringError(NndslError):
    code = "E0900"


class WeightsError(NndslError):
    code = "E1000"


class InputError(NndslError):
    """A runtime input of the wrong dtype or shape for the compiled model."""

    code = "E1100"


class TrainError(NndslError):
    """A mistake in a `train` section or in what training was asked to do."""

    code = "E1200"


class WarningsDenied(NndslError):
    """``--deny-warnings``: a spec that compiles with warnings is refused."""

    code = "E0010"


# The warning codes: W01xx unused values, W02xx unused inputs, W03xx unused model parameters.
WARNINGS = {
    "W0101": "a layer or block whose result no output depends on (its parameters are counted "
             "but affect nothing)",
    "W0102": "a `param` that no output depends on",
    "W0103": "a value computed but never used",
    "W0201": "a model input that no output depends on",
    "W0301": "a model parameter never read while elaborating (its value changes nothing)",
}


@dataclass
class NndslWarning:
    """A located finding that is not an error: ``code`` (``W0101``), ``message``, ``span``,
    ``hint`` and ``notes`` as an :class:`NndslError` has them, and the name it is about."""

    code: str
    message: str
    span: Span | None = None
    hint: str | None = None
    notes: list = field(default_factory=list)
    subject: str | None = None   # what it is about: a layer, input or parameter name

    kind = "warning"

    def render(self) -> str:
        return _render("warning", self.code, self.message, self.span, self.notes, self.hint)

    def __str__(self) -> str:
        return self.render()


def deny(warnings: list, what: str = "--deny-warnings") -> None:
    """Raise :class:`WarningsDenied` when there are ``warnings``."""
    if warnings:
        n = len(warnings)
        codes = ", ".join(dict.fromkeys(w.code for w in warnings))
        raise WarningsDenied(f"{n} warning{'s' if n != 1 else ''} ({codes}) denied by {what}",
                             code="E0010", hint="fix what the warnings point at, or compile "
                                                f"without {what}")
