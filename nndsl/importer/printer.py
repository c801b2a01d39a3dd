"""A :class:`~nndsl.importer.program.Program` as ``.nn`` text, laid out by ``nndsl fmt``.

Statements become pipelines where the data flows that way: a statement whose only reader is the
next statement's piped input is folded into it (``h = x |> conv2d(...) as conv1 |> relu``), so a
chain of layers reads as one line per chain. The helper blocks a program uses (``lrn``) are
written above the model. The text is then given to the formatter, which breaks long lines the
way the zoo's specs are broken.
"""

from __future__ import annotations

from collections import Counter

from nndsl.importer.program import Program, dims_text

BLOCKS = {
    "lrn": """\
# ONNX LRN: x / (bias + alpha / size · Σ x² over `size` neighbouring channels) ^ beta
block lrn(size: int, alpha: float = 0.0001, beta: float = 0.75, bias: float = 1.0) {
    input x: f32[N, C, H, W]
    lo = (size - 1) // 2
    sq = pad(x * x, [0, 0, 0, 0, lo, size - 1 - lo])
    s = sq[:, 0:C]
    for i in range(1, size) {
        s = s + sq[:, i:i + C]
    }
    return x / (bias + alpha / size * s) ** beta
}
""",
}

_COMPARISONS = (" == ", " != ", " < ", " > ", " <= ", " >= ")


def _expr(stmt, texts: dict) -> str:
    if stmt.head is None:
        return stmt.call
    head = texts.pop(stmt.head, stmt.head)
    if any(c in head for c in _COMPARISONS) and " |> " not in head:
        head = f"({head})"
    return f"{head} |> {stmt.call}"


def chain(prog: Program) -> list[tuple[list, str, str | None]]:
    """The statements with single-use intermediate values folded into their readers'
    pipelines: ``(targets, expression, comment)``; a loop (``kind == "raw"``) has no
    targets and is its text."""
    return chain_stmts(prog.stmts, [var for _, var in prog.outputs])


def chain_stmts(stmts: list, outputs: list) -> list[tuple[list, str, str | None]]:
    uses: Counter = Counter()
    for s in stmts:
        uses.update(s.reads)
    for var in outputs:
        uses[var] += 1
    out: list = []
    pending: dict[str, str] = {}     # a variable folded forward -> its expression
    for i, s in enumerate(stmts):
        expr = _expr(s, pending)
        nxt = stmts[i + 1] if i + 1 < len(stmts) else None
        if len(s.targets) == 1 and nxt is not None and nxt.head == s.targets[0] and \
                uses[s.targets[0]] == 1 and s.comment is None:
            pending[s.targets[0]] = expr
            continue
        out.append((s.targets, expr, s.comment))
    return out


def print_program(prog: Program, width: int = 100) -> str:
    from nndsl.editor.fmt import format_text
    lines = list(prog.header)
    if lines:
        lines.append("")
    for b in prog.blocks:
        lines.append(BLOCKS[b])
    for text in prog.defs:
        lines.append(text)
    lines.append(f"model {prog.name}() {{")
    for name, dtype, dims in prog.inputs:
        lines.append(f"    input {name}: {dtype}{dims_text(dims)}")
    for name, dtype, dims, comment in prog.params:
        c = f"  # {comment}" if comment else ""
        lines.append(f"    param {name}: {dtype}{dims_text(dims)}{c}")
    for targets, expr, comment in chain(prog):
        c = f"  # {comment}" if comment else ""
        lines.append(f"    {', '.join(targets)} = {expr}{c}" if targets else f"    {expr}{c}")
    for name, var in prog.outputs:
        lines.append(f"    output {name} = {var}")
    lines.append("}")
    text = "\n".join(lines) + "\n"
    return format_text(text, width=width)
