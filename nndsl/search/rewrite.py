"""A spec written back with chosen values: each searched parameter's default (``choice(...)``,
``range(...)``) is replaced by the value a trial gave it, and nothing else of the text changes,
so the result is an ordinary spec (``best.nn``) that compiles as is."""

from __future__ import annotations

from nndsl.elab.space import spec_literal


def _offset(text: str, line: int, col: int) -> int:
    """The string index of a 1-based line and column (lark's columns count characters)."""
    pos = 0
    for _ in range(line - 1):
        pos = text.index("\n", pos) + 1
    return pos + col - 1


def fill_values(text: str, dims: list, values: dict) -> str:
    """``text`` with the default of each searched parameter of ``dims`` (their spans point into
    ``text``) replaced by ``values[name]``."""
    edits = []
    for d in dims:
        s = d.span
        a, b = _offset(text, s.line, s.col), _offset(text, s.end_line, s.end_col)
        edits.append((a, b, spec_literal(values[d.name])))
    for a, b, new in sorted(edits, reverse=True):
        text = text[:a] + new + text[b:]
    return text
