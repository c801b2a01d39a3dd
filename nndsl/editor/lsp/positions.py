"""Positions: nndsl spans (1-based lines and columns counted in characters, lines split at
``\\n`` only, a leading byte-order mark not counted) to and from LSP positions (0-based lines
split at ``\\r\\n``, ``\\r`` or ``\\n``; the character offset counted in UTF-16 code units by
default, or in UTF-8 bytes or code points as negotiated).

Both go through offsets into the text, so a line break LSP counts and the parser does not (a
lone ``\\r``) moves nothing out of place.
"""

from __future__ import annotations

import bisect
import re

UTF8, UTF16, UTF32 = "utf-8", "utf-16", "utf-32"

_LSP_BREAK = re.compile(r"\r\n|\r|\n")


def units(text: str, encoding: str = UTF16) -> int:
    """The length of ``text`` in the code units of ``encoding``."""
    if encoding == UTF32:
        return len(text)
    if text.isascii():
        return len(text)
    if encoding == UTF8:
        return len(text.encode("utf-8", "surrogatepass"))
    return len(text) + sum(1 for c in text if ord(c) > 0xFFFF)


class Text:
    """One text, with the line tables both ways of counting need."""

    __slots__ = ("text", "bom", "_nn", "_lsp")

    def __init__(self, text: str):
        self.text = text
        self.bom = text.startswith("\ufeff")
        self._nn: list[int] | None = None
        self._lsp: list[int] | None = None

    @property
    def nn_starts(self) -> list[int]:
        if self._nn is None:
            self._nn = [0] + [m.end() for m in re.finditer("\n", self.text)]
        return self._nn

    @property
    def lsp_starts(self) -> list[int]:
        if self._lsp is None:
            self._lsp = [0] + [m.end() for m in _LSP_BREAK.finditer(self.text)]
        return self._lsp

    # ---- nndsl side
    def _nn_line_end(self, i: int) -> int:
        starts = self.nn_starts
        end = starts[i + 1] - 1 if i + 1 < len(starts) else len(self.text)
        if end > starts[i] and self.text[end - 1] == "\r" and end < len(self.text) and \
                self.text[end] == "\n":
            end -= 1
        return end

    def offset(self, line: int, col: int) -> int:
        """The offset of 1-based ``line``/``col`` as the parser counts them, clamped to the
        line (a span may end one past the last character)."""
        starts = self.nn_starts
        if line < 1:
            return 0
        if line > len(starts):
            return len(self.text)
        i = line - 1
        start = starts[i] + (1 if i == 0 and self.bom else 0)
        return max(starts[i], min(start + max(col, 1) - 1, self._nn_line_end(i)))

    def nn_position(self, offset: int) -> tuple[int, int]:
        """The 1-based line and column (as the parser counts) of ``offset``."""
        starts = self.nn_starts
        i = bisect.bisect_right(starts, offset) - 1
        col = offset - starts[i] + 1 - (1 if i == 0 and self.bom and offset > 0 else 0)
        return i + 1, max(col, 1)

    # ---- LSP side
    def lsp_position(self, offset: int, encoding: str = UTF16) -> tuple[int, int]:
        starts = self.lsp_starts
        offset = max(0, min(offset, len(self.text)))
        i = bisect.bisect_right(starts, offset) - 1
        return i, units(self.text[starts[i]:offset], encoding)

    def lsp_offset(self, line: int, character: int, encoding: str = UTF16) -> int:
        """The offset of an LSP position; past the end of a line is its end."""
        starts = self.lsp_starts
        if line < 0:
            return 0
        if line >= len(starts):
            return len(self.text)
        start = starts[line]
        end = starts[line + 1] if line + 1 < len(starts) else len(self.text)
        while end > start and self.text[end - 1] in "\r\n":
            end -= 1
        if encoding == UTF32:
            return min(start + max(character, 0), end)
        n = 0
        i = start
        while i < end and n < character:
            c = self.text[i]
            n += units(c, encoding)
            i += 1
        return i

    def span_range(self, span, encoding: str = UTF16) -> tuple[tuple[int, int], tuple[int, int]]:
        """An nndsl span as ``((line, char), (line, char))``, LSP's zero-based range."""
        a = self.offset(span.line, span.col)
        b = self.offset(span.end_line, span.end_col)
        if b < a:
            b = a
        return self.lsp_position(a, encoding), self.lsp_position(b, encoding)

    def span_offsets(self, span) -> tuple[int, int]:
        a = self.offset(span.line, span.col)
        return a, max(a, self.offset(span.end_line, span.end_col))

    def slice(self, span) -> str:
        a, b = self.span_offsets(span)
        return self.text[a:b]
