"""Drawing a compiled graph: Graphviz DOT text, SVG through Graphviz's ``dot``, one HTML page.

    to_dot(graph)      deterministic DOT text: one box per op, edges labelled with the tensor
                       type that flows along them, blocks as nested clusters following scopes
    to_svg(graph)      ``dot -Tsvg`` on that text (raises :class:`GraphvizError` without ``dot``)
    to_html(compiled)  one self-contained page: the drawing inline, a sortable, filterable
                       table of nodes with their parameters and FLOPs, and the spec's source
                       (highlighted by the Pygments lexer of ``nndsl.editor.lexer`` when
                       Pygments is installed); selecting a node marks its source lines

Parameters and buffers are not drawn as nodes: each op's label counts the ones it reads.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from dataclasses import dataclass

from nndsl.errors import ArgumentError, NndslError, source_lines
from nndsl.ir.graph import Graph, Node, Value, body_of
from nndsl.ir.ops import SIGNATURES
from nndsl.ir.printer import fmt_attr
from nndsl.ir.types import SymDim, TensorType
from nndsl.report import op_label, symbol_values

FORMATS = ("dot", "svg", "html")
SUFFIXES = {".dot": "dot", ".gv": "dot", ".svg": "svg", ".html": "html", ".htm": "html"}
DOT_TIMEOUT_S = 300
FONT = "Helvetica,Arial,sans-serif"

INSTALL_HINT = ("install Graphviz (Debian/Ubuntu: `apt-get install graphviz`; macOS: "
                "`brew install graphviz`), or use --format dot or --format html")


class GraphvizError(NndslError):
    """Graphviz's ``dot`` program is missing or failed."""

    code = "E1300"


# ---- what each op reads -------------------------------------------------------------------

@dataclass
class _Counts:
    params: int = 0        # trainable elements first read by this op (as Compiled.layers counts)
    buffers: int = 0       # non-trainable elements (batch-norm statistics, ...)
    shared: tuple = ()     # names of trainable parameters an earlier op already read (tied)


def _numel(t: TensorType) -> int | None:
    n = 1
    for d in t.shape:
        if isinstance(d, SymDim):
            return None
        n *= d
    return n


def _param_counts(graph: Graph) -> dict[str, _Counts]:
    counted: set[str] = set()
    out: dict[str, _Counts] = {}
    for node in graph:
        if node.op in ("param", "input"):
            continue
        c = _Counts()
        shared: list[str] = []
        seen: set[str] = set()
        for v in node.inputs:
            if v is None or v.node in seen:
                continue
            seen.add(v.node)
            p = graph.node(v.node)
            if p.op != "param":
                continue
            n = _numel(p.type) or 0
            if not p.attr.get("trainable", True):
                c.buffers += n
            elif p.name in counted:
                shared.append(p.name)
            else:
                counted.add(p.name)
                c.params += n
        c.shared = tuple(shared)
        out[node.name] = c
    return out


# ---- escaping -----------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def dot_string(s: str) -> str:
    """A DOT quoted string (IDs and escString attributes) for any text."""
    s = _CONTROL.sub(" ", str(s))
    s = s.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "").replace("\n", "\\n")
    return f'"{s}"'


def html_text(s) -> str:
    """Text inside a Graphviz HTML-like label (an XML fragment) or an HTML page."""
    s = _CONTROL.sub(" ", str(s)).replace("\r", "").replace("\n", " ")
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&#39;"))


# ---- DOT ----------------------------------------------------------------------------------

# Fill colours by kind of op; anything else is white.
_FILL = {"layer": "#dbe7fb", "norm": "#dcf2e3", "activation": "#fdf0d2", "pool": "#ece3f7",
         "movement": "#f1f2f4"}     # by the op's kind (nndsl/ir/ops/signatures.py)
_FILL_OF = {op: _FILL[sig.kind] for op, sig in SIGNATURES.items() if sig.kind in _FILL}


def _op_label(node: Node, counts: _Counts | None) -> str:
    head = f"<B>{html_text(op_label(node))}</B>"
    extra = []
    if node.op == "scalar":
        extra.append(html_text(fmt_attr(node.attr.get("value"))))
    if counts is not None:
        if counts.params:
            extra.append(f"{counts.params:,} params")
        if counts.buffers:
            extra.append(f"+{counts.buffers:,} buffer")
        if counts.shared:
            extra.append("tied " + html_text(", ".join(counts.shared)))
    if extra:
        head += ' <FONT COLOR="#4b5563">· ' + " · ".join(extra) + "</FONT>"
    types = "<BR/>".join(html_text(t) for t in node.types)
    return (f"<{head}<BR/><FONT POINT-SIZE=\"10\">{html_text(node.name)}</FONT>"
            f"{_body_label(node)}"
            f"<BR/><FONT POINT-SIZE=\"9\" COLOR=\"#4b5563\">{types}</FONT>>")


def _body_label(node: Node) -> str:
    """For a scan: how many steps it runs and the ops of one step, in order of first use."""
    body = body_of(node)
    if body is None:
        return ""
    a = node.attr
    counts: dict[str, int] = {}
    for n in body.graph:
        if n.op not in ("input", "scalar"):
            counts[op_label(n)] = counts.get(op_label(n), 0) + 1
    ops = ", ".join(op + (f" ×{k}" if k > 1 else "") for op, k in counts.items())
    steps = f"over dim {a.get('dim', 1)}" if a.get("n_over") else f"{a.get('steps')} steps"
    return (f"<BR/><FONT POINT-SIZE=\"9\" COLOR=\"#4b5563\">each step ({html_text(steps)}): "
            f"{html_text(ops or 'no ops')}</FONT>")


def _io_label(kind: str, name: str, t: TensorType) -> str:
    return (f"<<B>{kind}</B>&#160;{html_text(name)}<BR/>"
            f"<FONT POINT-SIZE=\"9\" COLOR=\"#4b5563\">{html_text(t)}</FONT>>")


def _output_id(name: str) -> str:
    return f"output:{name}"


def _scope_parts(scope: str) -> tuple:
    return tuple(scope.split(".")) if scope else ()


class _Cluster:
    """One scope: the nodes directly in it and its sub-scopes, in order of first appearance."""

    def __init__(self, parts: tuple):
        self.parts = parts
        self.nodes: list[str] = []                  # DOT statements of nodes directly here
        self.children: dict[tuple, _Cluster] = {}
        self.items: list = []                       # node statements and sub-scopes, in order

    def child(self, part: str) -> "_Cluster":
        key = self.parts + (part,)
        if key not in self.children:
            self.children[key] = _Cluster(key)
            self.items.append(self.children[key])
        return self.children[key]

    def add(self, stmt: str) -> None:
        self.nodes.append(stmt)
        self.items.append(stmt)

    def drawn(self) -> bool:
        """A scope gets a box when it holds nodes itself or groups several sub-scopes."""
        return bool(self.parts) and (bool(self.nodes) or len(self.children) > 1)


def _drawn_nodes(graph: Graph) -> list[Node]:
    """Every node except parameters (unless a parameter is itself a model output)."""
    out_params = {v.node for _, v in graph.outputs if graph.node(v.node).op == "param"}
    return [n for n in graph if n.op != "param" or n.name in out_params]


def _cluster_label(scope: str, regions: dict) -> str:
    label = f"<<B>{html_text(scope)}</B>"
    r = regions.get(scope)
    if r and r.get("block"):
        args = ", ".join(f"{k}={fmt_attr(v)}" for k, v in (r.get("params") or {}).items())
        label += f' <FONT COLOR="#4b5563">{html_text(r["block"])}({html_text(args)})</FONT>'
    return label + ">"


_CLUSTER_FILLS = ("#f7f9fc", "#eef2f8", "#e5ebf4", "#dde4ef")


def to_dot(graph: Graph) -> str:
    """The graph as Graphviz DOT text; the same graph always gives the same bytes."""
    counts = _param_counts(graph)
    root = _Cluster(())
    for node in _drawn_nodes(graph):
        if node.op == "input":
            stmt = (f"{dot_string(node.name)} [shape=invhouse, fillcolor=\"#d6efd9\", "
                    f"label={_io_label('input', node.name, node.type)}];")
        elif node.op == "param":
            stmt = (f"{dot_string(node.name)} [shape=ellipse, fillcolor=\"#f3f4f6\", "
                    f"label={_io_label('param', node.name, node.type)}];")
        else:
            fill = _FILL_OF.get(node.op, "#ffffff")
            small = ", fontsize=10, margin=\"0.08,0.03\"" if node.op == "scalar" else ""
            stmt = (f"{dot_string(node.name)} [fillcolor=\"{fill}\"{small}, "
                    f"label={_op_label(node, counts.get(node.name))}];")
        c = root
        for part in _scope_parts(node.scope if node.op != "input" else ""):
            c = c.child(part)
        c.add(stmt)

    regions = {r.get("qualname"): r for r in graph.meta.get("regions", []) or []
               if isinstance(r, dict)}
    lines = [f"digraph {dot_string(graph.name)} {{",
             f"  graph [rankdir=TB, fontname={dot_string(FONT)}, fontsize=12, nodesep=0.25, "
             "ranksep=0.32, labelloc=t, labeljust=l, "
             f"label={_title_label(graph)}];",
             f"  node [shape=box, style=\"rounded,filled\", fontname={dot_string(FONT)}, "
             "fontsize=11, color=\"#6b7280\", penwidth=0.8, margin=\"0.12,0.05\"];",
             f"  edge [fontname={dot_string(FONT)}, fontsize=9, fontcolor=\"#4b5563\", "
             "color=\"#7b8594\", arrowsize=0.6, penwidth=0.9];"]

    def emit(c: _Cluster, indent: str, depth: int) -> None:
        inner = indent
        if c.drawn():
            scope = ".".join(c.parts)
            fill = _CLUSTER_FILLS[min(depth, len(_CLUSTER_FILLS) - 1)]
            lines.append(f"{indent}subgraph {dot_string('cluster_' + scope)} {{")
            inner = indent + "  "
            lines.append(f"{inner}label={_cluster_label(scope, regions)};")
            lines.append(f"{inner}style=\"rounded,filled\"; fillcolor=\"{fill}\"; "
                         f"color=\"#b6c0cf\"; penwidth=0.8; fontsize=10;")
            depth += 1
        for item in c.items:
            if isinstance(item, _Cluster):
                emit(item, inner, depth)
            else:
                lines.append(inner + item)
        if c.drawn():
            lines.append(f"{indent}}}")

    emit(root, "  ", 0)
    for name, v in graph.outputs:
        lines.append(f"  {dot_string(_output_id(name))} [shape=house, fillcolor=\"#fde3cf\", "
                     f"label={_io_label('output', name, graph.type_of(v))}];")

    drawn = {n.name for n in _drawn_nodes(graph)}
    for node in graph:
        if node.name not in drawn:
            continue
        for v in node.inputs:
            if v is not None and v.node in drawn:
                lines.append(f"  {dot_string(v.node)} -> {dot_string(node.name)} "
                             f"[label={dot_string(_edge_label(graph, v))}];")
    for name, v in graph.outputs:
        lines.append(f"  {dot_string(v.node)} -> {dot_string(_output_id(name))} "
                     f"[label={dot_string(_edge_label(graph, v))}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _edge_label(graph: Graph, v: Value) -> str:
    t = graph.type_of(v)
    multi = len(graph.node(v.node).types) > 1
    return f"#{v.index} {t}" if multi else str(t)


def _title_label(graph: Graph) -> str:
    return f"<<B>{html_text(graph.name)}</B>>"


# ---- SVG ----------------------------------------------------------------------------------

def dot_program() -> str | None:
    """The path of Graphviz's ``dot``, or None when it is not installed."""
    return shutil.which("dot")


def to_svg(graph: Graph | str) -> str:
    """The drawing as an SVG document, made by Graphviz's ``dot`` (a graph or DOT text)."""
    dot_text = graph if isinstance(graph, str) else to_dot(graph)
    exe = dot_program()
    if exe is None:
        raise GraphvizError("cannot draw SVG: Graphviz's `dot` program is not installed "
                            "(not found on PATH)", hint=INSTALL_HINT)
    try:
        proc = subprocess.run([exe, "-Tsvg"], input=dot_text.encode("utf-8"),
                              capture_output=True, timeout=DOT_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise GraphvizError(f"Graphviz's `dot` took longer than {DOT_TIMEOUT_S} s",
                            code="E1301", hint="use --format dot and lay it out separately"
                            ) from None
    except OSError as e:
        raise GraphvizError(f"cannot run Graphviz's `dot` ({exe}): {e.strerror or e}",
                            hint=INSTALL_HINT) from None
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise GraphvizError(f"Graphviz's `dot` failed (exit {proc.returncode})"
                            + (f": {err[-1]}" if err else ""), code="E1301",
                            hint="use --format dot to get the DOT text")
    return proc.stdout.decode("utf-8", "replace")


def _inline_svg(svg: str) -> str:
    """An SVG document as an element for an HTML page: no XML prolog, doctype or namespaces."""
    start = svg.find("<svg")
    body = svg[start:] if start >= 0 else svg
    end = body.find(">")
    head = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", body[:end])
    return head + body[end:].rstrip() + "\n"


# ---- HTML ---------------------------------------------------------------------------------

def to_html(graph, batch: int = 1) -> str:
    """One self-contained HTML page: the drawing (when ``dot`` is installed) and a node table.

    ``graph`` is a :class:`~nndsl.api.Compiled` or a :class:`Graph`. FLOPs are at ``batch``.
    """
    from nndsl.api import Compiled
    compiled = graph if isinstance(graph, Compiled) else Compiled(graph, "", "")
    g = compiled.graph
    dot_text = to_dot(g)
    try:
        drawing = _inline_svg(to_svg(dot_text))
        notice = ""
    except GraphvizError as e:
        drawing = ""
        notice = e.message + ". Install Graphviz (`apt-get install graphviz`) to see the " \
                             "drawing here; its DOT text follows."
    rows = compiled.layers(batch)
    params, buffers = compiled.param_count(), compiled.buffer_count()
    flops = sum(r.flops for r in rows)
    ins = ", ".join(f"{n}: {t}" for n, t in compiled.input_types.items())
    outs = ", ".join(f"{n}: {t}" for n, t in compiled.output_types.items())
    where = " · ".join(x for x in (compiled.file, compiled.opt) if x)

    source = _source_of(g)
    body = []
    for i, r in enumerate(rows):
        node = g.node(r.name)
        types = "<br>".join(html_text(t) for t in node.types)
        lines = _line_attrs(node, source)
        body.append(
            f'<tr data-node="{html_text(r.name)}" data-i="{i}"{lines}>'
            f'<td class="name">{html_text(r.name)}</td><td class="scope">{html_text(r.scope)}</td>'
            f'<td class="op">{html_text(op_label(g.node(r.name)))}</td><td class="type">{types}</td>'
            f'<td class="num{"" if r.params else " zero"}" data-v="{r.params}">{r.params:,}</td>'
            f'<td class="num{"" if r.flops else " zero"}" data-v="{r.flops}">{r.flops:,}</td></tr>')
    if drawing:
        graph_html = f'<div id="graph" class="graph">{drawing}</div>'
    else:
        graph_html = (f'<div id="graph" class="graph nodraw"><p class="notice">'
                      f'{html_text(notice)}</p><pre class="dot">'
                      f'{html.escape(dot_text, quote=False)}</pre>'
                      '</div>')
    flops_note = "at " + symbol_values(g, batch, hint=False)
    page = _PAGE.format(
        title=html_text(g.name),
        where=html_text(where),
        params=f"{params:,}", buffers=f"{buffers:,}", flops=f"{flops:,}",
        flops_note=html_text(flops_note), short_flops=_short(flops), n=len(rows),
        ins=html_text(ins), outs=html_text(outs),
        graph=graph_html, rows="\n".join(body),
        source=_source_pane(source), layout="" if source else ' class="nosource"',
        css=_CSS + _source_css(source), js=_JS)
    return page


# ---- the spec's source --------------------------------------------------------------------

def _source_of(graph: Graph) -> tuple[str, str] | None:
    """The file name and text of the spec the graph was compiled from (the text the parser
    read, carried by the model's span), or None for a graph built otherwise."""
    span = graph.meta.get("model_span")
    src = getattr(span, "source", None)
    if src is None or not isinstance(src.text, str):
        return None
    return span.file, src.text


def _line_attrs(node: Node, source: tuple[str, str] | None) -> str:
    """``data-line``/``data-end``: the source lines of the spec a node was written on (none for
    a node from an imported file)."""
    span = node.span
    if source is None or span is None or span.file != source[0]:
        return ""
    return f' data-line="{span.line}" data-end="{max(span.line, span.end_line)}"'


def _pygments():
    """The lexer and HTML formatter, or None when Pygments is not installed."""
    try:
        from pygments.formatters import HtmlFormatter

        from nndsl.editor.lexer import NndslLexer
    except ImportError:
        return None
    return NndslLexer(stripnl=False, ensurenl=False), HtmlFormatter(nowrap=True)


def _source_lines_html(text: str) -> list[str]:
    """Each line of the spec as HTML, as the parser counts lines (split at ``\n`` only)."""
    lines = source_lines(text)
    tools = _pygments()
    if tools is None:
        return [html.escape(ln, quote=False) for ln in lines]
    import io

    from pygments import format as pygments_format
    lexer, formatter = tools
    # the lexer's positions are the text's: a lone \r (no line break for the parser) shows as
    # a space, so the lines stay those of error messages and spans
    flat = "\n".join(ln.replace("\r", " ") for ln in lines)
    out = io.StringIO()
    pygments_format(lexer.get_tokens(flat), formatter, out)
    # the formatter closes every span at the end of a line: each piece is one line
    parts = out.getvalue().split("\n")
    if parts and parts[-1] == "" and len(parts) == len(lines) + 1:
        parts.pop()
    if len(parts) != len(lines):   # not expected; the plain text keeps the lines aligned
        return [html.escape(ln, quote=False) for ln in lines]
    return parts


def _source_pane(source: tuple[str, str] | None) -> str:
    if source is None:
        return ""
    file, text = source
    lines = _source_lines_html(text)
    body = "".join(f'<span class="line" id="src-{i}" data-line="{i}">{ln}\n</span>'
                   for i, ln in enumerate(lines, 1))
    return (f'<section id="source-pane" aria-label="source">\n'
            f'<div class="toolbar"><span class="label">Source</span>'
            f'<span class="hint">{html_text(file)} · click a line to find its node</span></div>\n'
            f'<div class="sourcewrap"><pre id="source" class="src">{body}</pre></div>\n'
            f'</section>')


def _source_css(source) -> str:
    """The colours of the highlighted source (Pygments' default style), inline in the page."""
    tools = _pygments() if source is not None else None
    if tools is None:
        return ""
    return "\n".join(tools[1].get_token_style_defs(".src")) + "\n"


def _short(n: int) -> str:
    for unit, size in (("T", 10 ** 12), ("G", 10 ** 9), ("M", 10 ** 6), ("k", 10 ** 3)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return str(n)


_CSS = """
:root { --fg:#1f2937; --muted:#6b7280; --line:#e5e7eb; --accent:#2563eb; --bg:#ffffff;
        --panel:#f8fafc; --sel:#fff3bf; }
* { box-sizing: border-box; }
html, body { margin: 0; height: 100%; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Liberation Sans", Arial,
       sans-serif; color: var(--fg); background: var(--bg); display: flex;
       flex-direction: column; }
header { padding: 12px 20px 10px; border-bottom: 1px solid var(--line); background: var(--panel); }
header h1 { font-size: 20px; margin: 0 12px 0 0; display: inline-block; }
header .where { color: var(--muted); font-size: 13px; }
.stats { display: flex; flex-wrap: wrap; gap: 6px 22px; margin: 8px 0 0; padding: 0;
         list-style: none; }
.stats li { font-size: 13px; color: var(--muted); }
.stats b { color: var(--fg); font-weight: 600; font-variant-numeric: tabular-nums; }
.stats code { color: var(--fg); }
main { flex: 1; min-height: 0; display: grid;
       grid-template-columns: minmax(0, 1fr) minmax(0, 1.25fr);
       grid-template-rows: minmax(0, 1.4fr) minmax(0, 1fr); }
section { min-height: 0; display: flex; flex-direction: column; }
#graph-pane { border-right: 1px solid var(--line); grid-row: 1 / 3; }
main.nosource #table-pane { grid-row: 1 / 3; }
#source-pane { border-top: 1px solid var(--line); }
.sourcewrap { flex: 1; overflow: auto; background: var(--panel); }
pre.src { margin: 0; padding: 8px 0; font: 12px/1.5 ui-monospace, "DejaVu Sans Mono", Menlo,
          Consolas, monospace; counter-reset: none; }
pre.src .line { display: block; padding: 0 12px 0 0; cursor: pointer; }
pre.src .line::before { content: attr(data-line); display: inline-block; width: 3.5em;
                        padding-right: 1em; text-align: right; color: #9ca3af;
                        user-select: none; }
pre.src .line:hover { background: #eef2f8; }
pre.src .line.hl { background: var(--sel); }
.toolbar { display: flex; align-items: center; gap: 8px; padding: 8px 12px;
           border-bottom: 1px solid var(--line); }
.toolbar .label { font-weight: 600; margin-right: auto; }
.toolbar .hint { color: var(--muted); font-size: 12px; }
button { font: inherit; }
.toolbar button { border: 1px solid #d1d5db; background: #fff; border-radius: 6px;
                  padding: 2px 10px; cursor: pointer; color: var(--fg); }
.toolbar button:hover { border-color: var(--accent); color: var(--accent); }
.graph { flex: 1; overflow: auto; padding: 12px; background: #fff; }
.graph svg { display: block; margin: 0 auto; height: auto; }
.graph g.node { cursor: pointer; }
.graph g.node.sel path, .graph g.node.sel polygon, .graph g.node.sel ellipse {
    stroke: var(--accent); stroke-width: 2.5px; }
.graph.filtering g.node:not(.hit), .graph.filtering g.edge { opacity: 0.25; }
.notice { margin: 0 0 10px; padding: 10px 12px; border: 1px solid #f0c36d;
          background: #fff8e6; border-radius: 6px; }
pre.dot { font-size: 12px; background: var(--panel); border: 1px solid var(--line);
          padding: 10px; border-radius: 6px; overflow: auto; }
.filterbar { display: flex; align-items: center; gap: 12px; padding: 8px 12px;
             border-bottom: 1px solid var(--line); }
.filterbar input { flex: 1; font: inherit; padding: 5px 10px; border: 1px solid #d1d5db;
                   border-radius: 6px; }
.filterbar input:focus { outline: 2px solid #bfdbfe; border-color: var(--accent); }
#count { color: var(--muted); font-size: 13px; white-space: nowrap;
         font-variant-numeric: tabular-nums; }
.tablewrap { flex: 1; overflow: auto; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
thead th { position: sticky; top: 0; background: var(--panel); z-index: 1;
           border-bottom: 1px solid #d1d5db; text-align: left; padding: 0; }
thead th button { all: unset; box-sizing: border-box; display: block; width: 100%;
                  padding: 6px 8px; cursor: pointer; font-weight: 600; white-space: nowrap; }
thead th button:focus-visible { outline: 2px solid #bfdbfe; }
thead th.num button { text-align: right; }
thead th[aria-sort="ascending"] button::after { content: " \\25B2"; font-size: 10px; }
thead th[aria-sort="descending"] button::after { content: " \\25BC"; font-size: 10px; }
td { padding: 4px 8px; border-bottom: 1px solid #f1f3f5; vertical-align: top;
     white-space: nowrap; }
td.name { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace;
          font-size: 12px; }
td.scope { color: var(--muted); }
td.type { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace;
          font-size: 12px; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.num.zero { color: #c0c6cf; }
tbody tr { cursor: pointer; }
tbody tr:hover { background: #f3f6fb; }
tbody tr.sel { background: var(--sel); }
tbody tr[hidden] { display: none; }
.empty { padding: 16px; color: var(--muted); }
@media (max-width: 900px) {
  main { display: block; overflow: auto; }
  section { height: 70vh; }
}
"""

_JS = r"""
(function () {
  "use strict";
  var table = document.getElementById("nodes");
  var tbody = table.tBodies[0];
  var rows = Array.prototype.slice.call(tbody.rows);
  var box = document.getElementById("filter");
  var count = document.getElementById("count");
  var empty = document.getElementById("empty");
  var graph = document.getElementById("graph");
  var svg = graph.querySelector("svg");
  var shapes = {};   // node name -> <g class="node">
  var rowOf = {};    // node name -> <tr>
  var selected = null;

  rows.forEach(function (tr) { rowOf[tr.getAttribute("data-node")] = tr; });
  if (svg) {
    Array.prototype.forEach.call(svg.querySelectorAll("g.node"), function (g) {
      var t = g.querySelector("title");
      if (t) { shapes[t.textContent] = g; }
    });
  }

  function text(tr) {
    return (tr.getAttribute("data-node") + " " + tr.textContent).toLowerCase();
  }

  function applyFilter(q) {
    var terms = q.toLowerCase().split(/\s+/).filter(function (s) { return s.length > 0; });
    var shown = 0;
    var hits = {};
    var first = null;
    rows.forEach(function (tr) {
      var hay = text(tr);
      var ok = terms.every(function (term) { return hay.indexOf(term) >= 0; });
      tr.hidden = !ok;
      if (ok) { shown += 1; hits[tr.getAttribute("data-node")] = true; }
      if (ok && first === null) { first = tr.getAttribute("data-node"); }
    });
    count.textContent = shown + " of " + rows.length + " nodes";
    empty.hidden = shown > 0;
    if (svg) {
      graph.classList.toggle("filtering", terms.length > 0);
      Object.keys(shapes).forEach(function (name) {
        shapes[name].classList.toggle("hit", terms.length > 0 && hits[name] === true);
      });
      if (terms.length > 0 && first !== null && shapes[first]) {
        shapes[first].scrollIntoView({block: "nearest", inline: "nearest"});
      }
    }
  }

  // The spec's source: each line a <span class="line" data-line="N">; a row names the lines
  // its node was written on (data-line, data-end) when they are in this file.
  var source = document.getElementById("source");
  var marked = [];
  function lineRange(tr) {
    var a = Number(tr.getAttribute("data-line"));
    var b = Number(tr.getAttribute("data-end"));
    return a > 0 ? [a, Math.max(a, b)] : null;
  }
  function markSource(tr, scroll) {
    marked.forEach(function (el) { el.classList.remove("hl"); });
    marked = [];
    var r = tr && source ? lineRange(tr) : null;
    if (!r) { return; }
    for (var n = r[0]; n <= r[1]; n++) {
      var el = document.getElementById("src-" + n);
      if (el) { el.classList.add("hl"); marked.push(el); }
    }
    if (scroll && marked.length > 0) { marked[0].scrollIntoView({block: "nearest"}); }
  }
  function nodeAtLine(n) {
    // the node written most narrowly around line n; the first in the table's order on ties
    var best = null;
    var width = Infinity;
    rows.slice().sort(function (a, b) {
      return Number(a.getAttribute("data-i")) - Number(b.getAttribute("data-i"));
    }).forEach(function (tr) {
      var r = lineRange(tr);
      if (r && r[0] <= n && n <= r[1] && r[1] - r[0] < width) { best = tr; width = r[1] - r[0]; }
    });
    return best ? best.getAttribute("data-node") : null;
  }

  function select(name, from) {
    if (selected !== null) {
      if (rowOf[selected]) { rowOf[selected].classList.remove("sel"); }
      if (shapes[selected]) { shapes[selected].classList.remove("sel"); }
    }
    selected = name;
    var tr = rowOf[name];
    var g = shapes[name];
    if (tr) { tr.classList.add("sel"); }
    if (g) { g.classList.add("sel"); }
    markSource(tr, from !== "source");
    if ((from === "graph" || from === "source") && tr && !tr.hidden) {
      tr.scrollIntoView({block: "nearest"});
    }
    if ((from === "table" || from === "source") && g) {
      g.scrollIntoView({block: "center", inline: "center"});
    }
  }

  var sortKey = null;
  var sortDir = 1;
  function sortBy(th) {
    var col = th.cellIndex;
    var numeric = th.classList.contains("num");
    if (sortKey === col) { sortDir = -sortDir; } else { sortKey = col; sortDir = numeric ? -1 : 1; }
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (c) {
      c.removeAttribute("aria-sort");
    });
    th.setAttribute("aria-sort", sortDir > 0 ? "ascending" : "descending");
    var keyed = rows.map(function (tr) {
      var cell = tr.cells[col];
      var v = numeric ? Number(cell.getAttribute("data-v")) : cell.textContent.toLowerCase();
      return {tr: tr, v: v, i: Number(tr.getAttribute("data-i"))};
    });
    keyed.sort(function (a, b) {
      if (a.v < b.v) { return -sortDir; }
      if (a.v > b.v) { return sortDir; }
      return a.i - b.i;
    });
    keyed.forEach(function (k) { tbody.appendChild(k.tr); });
  }

  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
    var b = th.querySelector("button");
    if (b) { b.addEventListener("click", function () { sortBy(th); }); }
  });
  tbody.addEventListener("click", function (ev) {
    var tr = ev.target.closest("tr");
    if (tr && tr.hasAttribute("data-node")) { select(tr.getAttribute("data-node"), "table"); }
  });
  if (svg) {
    svg.addEventListener("click", function (ev) {
      var g = ev.target.closest("g.node");
      var t = g ? g.querySelector("title") : null;
      if (t) { select(t.textContent, "graph"); }
    });
  }
  if (source) {
    source.addEventListener("click", function (ev) {
      var line = ev.target.closest(".line");
      var name = line ? nodeAtLine(Number(line.getAttribute("data-line"))) : null;
      if (name !== null) { select(name, "source"); }
    });
  }
  box.addEventListener("input", function () { applyFilter(box.value); });

  // Zoom: scale the drawing's natural size; "fit" makes it as wide as the pane.
  var natural = null;
  if (svg) {
    var w = parseFloat(svg.getAttribute("width"));
    var h = parseFloat(svg.getAttribute("height"));
    if (w > 0 && h > 0) { natural = {w: w * 4 / 3, h: h * 4 / 3}; }  // pt -> px
  }
  var scale = 1;
  function zoom(s) {
    if (!natural) { return; }
    scale = Math.max(0.1, Math.min(4, s));
    svg.style.width = Math.round(natural.w * scale) + "px";
    svg.style.height = Math.round(natural.h * scale) + "px";
    var z = document.getElementById("zoom-level");
    if (z) { z.textContent = Math.round(scale * 100) + "%"; }
  }
  function fit() {
    if (!natural) { return; }
    var avail = graph.clientWidth - 24;
    zoom(avail > 0 ? Math.min(1, avail / natural.w) : 1);
  }
  function onTool(id, fn) {
    var el = document.getElementById(id);
    if (el) { el.addEventListener("click", fn); }
  }
  onTool("zoom-in", function () { zoom(scale * 1.25); });
  onTool("zoom-out", function () { zoom(scale / 1.25); });
  onTool("zoom-fit", fit);
  onTool("zoom-reset", function () { zoom(1); });

  // "#filter=conv" in the address applies a filter, so a filtered view can be linked.
  function fromHash() {
    var m = /(?:^#|&)filter=([^&]*)/.exec(location.hash);
    if (!m) { return false; }
    var q = m[1].replace(/\+/g, " ");
    try { q = decodeURIComponent(q); } catch (e) { /* keep the raw text */ }
    box.value = q;
    applyFilter(q);
    return true;
  }
  window.addEventListener("hashchange", fromHash);
  if (!fromHash()) { applyFilter(box.value); }
  fit();
  document.body.setAttribute("data-ready", "1");
})();
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; \
style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<title>{title} · nndsl graph</title>
<style>{css}</style>
</head>
<body>
<header>
<h1>{title}</h1><span class="where">{where}</span>
<ul class="stats">
<li>parameters <b>{params}</b></li>
<li>buffers <b>{buffers}</b></li>
<li>FLOPs <b>{flops}</b> ({short_flops}, {flops_note})</li>
<li>ops <b>{n}</b></li>
<li>in <code>{ins}</code></li>
<li>out <code>{outs}</code></li>
</ul>
</header>
<main{layout}>
<section id="graph-pane" aria-label="drawing">
<div class="toolbar"><span class="label">Graph</span>
<span class="hint">click a node to find it in the table</span>
<button type="button" id="zoom-out" title="zoom out">&#8722;</button>
<span id="zoom-level" class="hint">100%</span>
<button type="button" id="zoom-in" title="zoom in">+</button>
<button type="button" id="zoom-fit" title="fit the width of the pane">fit</button>
<button type="button" id="zoom-reset" title="natural size">1:1</button>
</div>
{graph}
</section>
<section id="table-pane" aria-label="nodes">
<div class="filterbar">
<input id="filter" type="search" \
placeholder="Filter by name, scope, op or type (e.g. conv layers.1)"
 aria-label="filter nodes" autocomplete="off" spellcheck="false">
<span id="count">{n} of {n} nodes</span>
</div>
<div class="tablewrap">
<table id="nodes">
<thead><tr><th><button type="button">name</button></th>\
<th><button type="button">scope</button></th>\
<th><button type="button">op</button></th><th><button type="button">output</button></th>\
<th class="num"><button type="button">params</button></th>\
<th class="num"><button type="button">FLOPs</button></th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
<p id="empty" class="empty" hidden>No node matches the filter.</p>
</div>
</section>
{source}
</main>
<script>{js}</script>
</body>
</html>
"""


# ---- one entry point for the command line -------------------------------------------------

def format_for(path, fmt: str | None) -> str:
    """The output format: ``fmt`` when given, else from the file's suffix, else ``dot``."""
    if fmt:
        if fmt not in FORMATS:
            raise ArgumentError(f"unknown graph format `{fmt}`", code="E0229",
                                hint="use --format dot, svg or html")
        return fmt
    if path is None:
        return "dot"
    from pathlib import Path
    suffix = Path(str(path)).suffix.lower()
    if suffix not in SUFFIXES:
        raise ArgumentError(f"cannot tell the drawing format from `{path}`", code="E0229",
                            hint="name the file .dot, .svg or .html, or pass --format dot|svg|html")
    return SUFFIXES[suffix]


def render(compiled, fmt: str) -> str:
    """The drawing of a compiled model in ``fmt`` (``dot``, ``svg`` or ``html``)."""
    if fmt == "dot":
        return to_dot(compiled.graph)
    if fmt == "svg":
        return to_svg(compiled.graph)
    if fmt == "html":
        return to_html(compiled)
    raise ArgumentError(f"unknown graph format `{fmt}`", code="E0229",
                        hint="use --format dot, svg or html")
