"""`nndsl graph`: DOT text, SVG through Graphviz, and the HTML page checked in headless Chromium."""

import html
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

import nndsl
from nndsl.cli import main
from nndsl.draw import GraphvizError, to_dot, to_html, to_svg
from nndsl.ir.graph import Graph, Node
from nndsl.ir.types import SymDim, TensorType

RESNET = "specs/vision/resnet18.nn"
MLP = "specs/fundamentals/mlp.nn"

TINY = """
block res(c: int) {
    input x: f32[N, C]
    y = x |> linear(c) as fc |> layer_norm as norm
    return relu(y + x)
}
model tiny(width: int = 8) {
    input x: f32[N, width]
    h = x
    layers: for i in [1, 2] {
        h = h |> res(width) as b0 |> res(width) as b1
    }
    output y = h |> linear(3) as head
}
"""


@pytest.fixture(autouse=True)
def _chdir(root, monkeypatch):
    monkeypatch.chdir(root)


@pytest.fixture(scope="module")
def resnet():
    return nndsl.compile(Path(__file__).resolve().parents[1] / RESNET, params={"classes": 10})


def _require(program: str, package: str) -> str:
    path = shutil.which(program)
    if path is None:
        pytest.fail(f"`{program}` is not installed: apt-get install {package} (CI installs it)")
    return path


# ---- DOT --------------------------------------------------------------------------------------

def _placement(dot: str) -> dict:
    """Node id -> the clusters around its statement, outermost first."""
    stack, where = [], {}
    for line in dot.splitlines():
        s = line.strip()
        m = re.match(r'subgraph "(cluster_[^"]*)" \{$', s)
        if m:
            stack.append(m.group(1))
        elif s == "}":
            if stack:
                stack.pop()
        else:
            m = re.match(r'"((?:[^"\\]|\\.)*)" \[', s)
            if m:
                where[m.group(1)] = list(stack)
    return where


def test_dot_draws_ops_in_nested_scope_clusters():
    dot = to_dot(nndsl.compile(TINY).graph)
    assert dot.startswith('digraph "tiny" {\n') and dot.endswith("}\n")
    where = _placement(dot)
    assert where["layers.1.b0.fc"] == ["cluster_layers", "cluster_layers.1", "cluster_layers.1.b0"]
    assert where["layers.0.b1.relu"] == ["cluster_layers", "cluster_layers.0",
                                         "cluster_layers.0.b1"]
    assert where["x"] == [] and where["head"] == [] and where["output:y"] == []
    # clusters are labelled with their scope (and the block they apply)
    assert 'label=<<B>layers.1.b0</B> <FONT COLOR="#4b5563">res(c=8)</FONT>>;' in dot
    # parameters are counted on their op, never drawn as nodes
    assert not any(".weight" in n or ".bias" in n for n in where)
    assert "· 72 params" in dot and "· 16 params" in dot and "· 27 params" in dot
    # one node per op, inputs and outputs with shapes of their own
    assert len(where) == 1 + 16 + 1 + 1
    assert '"x" [shape=invhouse' in dot and '"output:y" [shape=house' in dot


def test_dot_edges_carry_the_tensor_type(resnet):
    dot = to_dot(resnet.graph)
    assert '"stem.max_pool2d" -> "layers.0.b0.conv1" [label="f32[N, 64, 56, 56]"];' in dot
    assert '"layers.3.b1.relu_1" -> "adaptive_avg_pool2d" [label="f32[N, 512, 7, 7]"];' in dot
    assert '"fc" -> "output:logits" [label="f32[N, 10]"];' in dot
    edges = re.findall(r'^  "[^"]+" -> "[^"]+" \[label="([^"]*)"\];$', dot, re.M)
    assert edges and all(re.fullmatch(r"(#\d+ )?(f32|i64|bool)\[.*\]", e) for e in edges)
    assert "conv2d</B> <FONT COLOR=\"#4b5563\">· 9,408 params" in dot
    assert "batch_norm</B> <FONT COLOR=\"#4b5563\">· 128 params · +129 buffer" in dot


def test_dot_marks_outputs_of_multi_output_ops_and_tied_weights():
    c = nndsl.compile("specs/transformers/gpt_mini.nn", params={"layers": 1}, opt="O0")
    dot = to_dot(c.graph)
    assert ('"h.0.block.attn.split" -> "h.0.block.attn.reshape_1" '
            '[label="#1 f32[N, T, 256]"];') in dot
    assert "tied wte.weight" in dot   # the output head reads the embedding's weight


def test_dot_is_deterministic():
    a = to_dot(nndsl.compile(TINY).graph)
    b = to_dot(nndsl.compile(TINY).graph)
    assert a.encode() == b.encode()


def _odd_graph() -> Graph:
    g = Graph('we"ird <model> & \\N')
    t = TensorType("f32", (SymDim.symbol("N"), 4))
    x = g.add(Node.make('in"put<&>', "input", [], {"name": "x"}, [t]))
    r = g.add(Node.make('blk."q".re\\lu<b>&amp;', "relu", [x.out()], {}, [t], scope='blk."q"'))
    g.set_output('out"<put>\n', r.out())
    return g


def test_dot_escapes_every_name():
    dot = to_dot(_odd_graph())
    assert 'digraph "we\\"ird <model> & \\\\N" {' in dot
    assert 'subgraph "cluster_blk.\\"q\\"" {' in dot
    assert "blk.&quot;q&quot;.re\\lu&lt;b&gt;&amp;amp;" in dot     # inside an HTML-like label
    assert '"output:out\\"<put>\\n" [shape=house' in dot             # newline as \n, quote escaped
    assert "\n\n" not in dot


# ---- SVG --------------------------------------------------------------------------------------

def test_svg_from_graphviz_names_every_op(resnet):
    _require("dot", "graphviz")
    svg = to_svg(resnet.graph)
    assert "<svg" in svg and svg.rstrip().endswith("</svg>")
    titles = set(re.findall(r"<title>([^<]*)</title>", svg))
    for row in resnet.layers():
        assert row.name in titles
    assert {"image", "output:logits", "cluster_layers.1.b0"} <= titles
    assert "stem.conv.weight" not in titles
    assert "f32[N, 128, 28, 28]" in svg and "9,408 params" in svg
    assert to_svg(resnet.graph) == svg


def test_svg_survives_odd_names():
    _require("dot", "graphviz")
    svg = to_svg(_odd_graph())
    assert "blk.&quot;q&quot;.re\\lu&lt;b&gt;&amp;amp;" in svg


def test_missing_dot_is_a_clear_error(monkeypatch, tmp_path, resnet):
    monkeypatch.setenv("PATH", str(tmp_path))   # an empty folder: no `dot` anywhere
    with pytest.raises(GraphvizError) as info:
        to_svg(resnet.graph)
    err = info.value
    assert isinstance(err, nndsl.NndslError) and err.code == "E1300"
    assert "not installed" in err.message
    assert "apt-get install graphviz" in err.hint and "--format dot" in err.hint
    # the HTML page still works: a notice and the DOT text instead of the drawing
    page = to_html(resnet)
    assert "<svg" not in page and 'class="notice"' in page
    assert "apt-get install graphviz" in page and "digraph &quot;resnet18&quot;" not in page
    assert 'digraph "resnet18" {' in page and '"fc" -&gt; "output:logits"' in page


# ---- HTML -------------------------------------------------------------------------------------

def test_html_is_one_self_contained_deterministic_page(resnet):
    _require("dot", "graphviz")
    page = to_html(resnet)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "http://" not in page and "https://" not in page and "//cdn" not in page
    assert not re.search(r"<(link|img|iframe)\b|\bsrc=", page)
    assert page.count("<svg") == 1 and "<?xml" not in page and "<!DOCTYPE svg" not in page
    assert page.count('<tr data-node="') == len(resnet.layers())
    assert "11,181,642" in page
    assert to_html(resnet) == page


def test_html_shows_the_highlighted_source(resnet):
    page = to_html(resnet)
    text = (Path(__file__).resolve().parents[1] / RESNET).read_text(encoding="utf-8")
    assert '<section id="source-pane"' in page and '<main class="nosource">' not in page
    lines = re.findall(r'<span class="line" id="src-(\d+)" data-line="\1">', page)
    assert lines == [str(i) for i in range(1, len(text.splitlines()) + 1)]
    # highlighted by the nndsl lexer, its colours inline in the page's style sheet
    assert '<span class="kd">model</span><span class="w"> </span><span class="nf">resnet18</span>' \
        in page
    assert '<span class="kn">import</span>' in page and '<span class="nn">std.resnet</span>' in page
    assert '<span class="nb">linear</span>' in page and '<span class="kt">f32</span>' in page
    assert re.search(r"^\.src \.kd \{ [^}]+\}", page, re.M)
    # rows of nodes written in this file name their lines; the rest come from std/resnet.nn
    assert '<tr data-node="fc" data-i="68" data-line="10" data-end="10">' in page
    assert '<tr data-node="stem.conv" data-i="0">' in page
    # the plain text, line by line, is exactly the spec's
    shown = re.sub(r"<[^>]+>", "", page[page.index('<pre id="source"'):page.index("</pre>",
                   page.index('<pre id="source"'))])
    assert html.unescape(shown) == text


HOSTILE = """# <b>bold</b> & </script><script>alert(1)</script>
model m() {
    input x: f32[N, 4]
    output y = x |> relu   # "quoted" 'single'
}"""


def test_html_source_is_escaped_and_keeps_its_lines():
    page = to_html(nndsl.compile(HOSTILE))
    assert "<b>bold</b>" not in page and "alert(1)</script>" not in page
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; &lt;/script&gt;" in page
    assert page.count("<script>") == 1
    assert re.findall(r'id="src-(\d+)"', page) == ["1", "2", "3", "4", "5"]
    assert '<span class="line" id="src-5" data-line="5"><span class="p">}</span>\n</span>' in page


def test_html_source_without_pygments_is_plain_text(resnet, monkeypatch):
    import nndsl.draw as draw
    monkeypatch.setattr(draw, "_pygments", lambda: None)
    page = to_html(resnet)
    assert '<span class="kd">' not in page and ".src .kd" not in page
    assert '<span class="line" id="src-4" data-line="4">model resnet18(classes: int = 1000, ' \
           'width: int = 64) {\n</span>' in page


def test_html_of_a_bare_graph_has_no_source_pane():
    page = to_html(_odd_graph())
    assert 'id="source-pane"' not in page and '<main class="nosource">' in page
    assert '<pre id="source"' not in page and not re.search(r"<tr [^>]*data-line=", page)


# ---- the command line -------------------------------------------------------------------------

def test_cli_writes_all_three_formats(tmp_path, capsys, resnet):
    _require("dot", "graphviz")
    args = [RESNET, "--param", "classes=10"]
    assert main(["graph", *args, "-o", str(tmp_path / "r.dot")]) == 0
    assert (tmp_path / "r.dot").read_text() == to_dot(resnet.graph)
    assert main(["graph", *args, "-o", str(tmp_path / "r.svg")]) == 0
    svg = (tmp_path / "r.svg").read_text()
    assert svg.startswith("<?xml") and "<title>layers.1.b0.conv1</title>" in svg
    assert main(["graph", *args, "-o", str(tmp_path / "r.html")]) == 0
    same = nndsl.compile(RESNET, params={"classes": 10})   # the same file name in the header
    assert (tmp_path / "r.html").read_text() == to_html(same)
    assert main(["graph", *args, "--format", "dot", "-o", str(tmp_path / "r.txt")]) == 0
    assert (tmp_path / "r.txt").read_text() == to_dot(resnet.graph)
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'r.svg'} (svg)" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.dot", "r.html", "r.svg", "r.txt"]


def test_cli_prints_dot_by_default_and_takes_spec_options(tmp_path, capsys):
    assert main(["graph", MLP]) == 0
    assert capsys.readouterr().out == to_dot(nndsl.compile(MLP).graph)
    two = tmp_path / "two.nn"
    two.write_text(TINY + "model other() { input z: f32[N, 2]  output w = z |> relu }\n")
    assert main(["graph", str(two), "--model", "other", "-O0"]) == 0
    assert capsys.readouterr().out.startswith('digraph "other" {')
    assert main(["graph", str(two), "--model", "tiny", "--param", "width=4", "-O2"]) == 0
    assert "f32[N, 4]" in capsys.readouterr().out


def test_cli_errors(tmp_path, capsys, monkeypatch):
    assert main(["graph", MLP, "-o", str(tmp_path / "m.png")]) == 1
    assert "error[E0229]: cannot tell the drawing format" in capsys.readouterr().err
    assert main(["graph", MLP, "--format", "pdf"]) == 2
    assert "invalid choice: 'pdf'" in capsys.readouterr().err
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["graph", MLP, "-o", str(tmp_path / "m.svg")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error[E1300]: ") and "apt-get install graphviz" in err
    assert not (tmp_path / "m.svg").exists()
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["graph", MLP, "-o", str(blocker / "m.dot")]) == 1
    assert "error[E1008]: cannot write" in capsys.readouterr().err


# ---- the page in a real browser ---------------------------------------------------------------

CONSOLE = re.compile(r"^.*:CONSOLE[:(].*$", re.M)


def _chromium(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    exe = "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None
    exe = exe or _require("chromium", "chromium")
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--enable-logging=stderr",
           "--v=0", *extra, url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


class _Rows(HTMLParser):
    """Rows of the node table in a DOM dump, and the attributes of <body>."""

    def __init__(self):
        super().__init__()
        self.rows: list[tuple[str, bool]] = []   # (node name, hidden)
        self.body: dict = {}
        self.count = None
        self._in_count = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "data-node" in a:
            self.rows.append((a["data-node"], "hidden" in a))
        elif tag == "body":
            self.body = a
        self._in_count = a.get("id") == "count"

    def handle_data(self, data):
        if self._in_count:
            self.count = data
            self._in_count = False


def _dom(html: str) -> _Rows:
    p = _Rows()
    p.feed(html)
    return p


def test_chromium_reports_console_errors(tmp_path):
    """The console check below is not vacuous: a page that logs an error is caught."""
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><body><script>console.error('boom'); nope();</script>")
    proc = _chromium(page.as_uri(), tmp_path / "profile", "--dump-dom")
    lines = CONSOLE.findall(proc.stderr)
    assert any("boom" in x for x in lines) and any("nope is not defined" in x for x in lines)


@pytest.fixture(scope="module")
def page(resnet, tmp_path_factory):
    _require("dot", "graphviz")
    path = tmp_path_factory.mktemp("html") / "resnet18.html"
    path.write_text(to_html(resnet), encoding="utf-8")
    return path


def test_html_filter_from_the_address_in_chromium(page, resnet, tmp_path):
    proc = _chromium(page.as_uri() + "#filter=conv", tmp_path / "profile", "--dump-dom")
    assert CONSOLE.findall(proc.stderr) == []
    dom = _dom(proc.stdout)
    assert dom.body.get("data-ready") == "1"          # the script ran to the end
    names = [r.name for r in resnet.layers()]
    assert sorted(n for n, _ in dom.rows) == sorted(names)
    want = [r.name for r in resnet.layers()
            if "conv" in f"{r.name} {r.scope} {r.op} {r.shape}".lower()]
    shown = [n for n, hidden in dom.rows if not hidden]
    assert shown == want and "layers.1.b0.down_conv" in shown and "fc" not in shown
    assert dom.count == f"{len(want)} of {len(names)} nodes"


DRIVER = """<script>
(function () {
  "use strict";
  var out = {};
  function rows() {
    return Array.prototype.slice.call(document.querySelectorAll("#nodes tbody tr"));
  }
  function names(list) { return list.map(function (r) { return r.getAttribute("data-node"); }); }
  function shown() { return names(rows().filter(function (r) { return !r.hidden; })); }
  function selectedShapes() {
    return Array.prototype.map.call(document.querySelectorAll("#graph g.node.sel title"),
                                    function (t) { return t.textContent; });
  }
  function shape(name) {
    return Array.prototype.filter.call(document.querySelectorAll("#graph g.node"), function (g) {
      return g.querySelector("title").textContent === name; })[0];
  }
  var heads = document.querySelectorAll("#nodes thead button");
  Array.prototype.forEach.call(heads, function (b) { b.click(); b.click(); });
  heads[4].click();
  out.byParams = names(rows()).slice(0, 3);
  out.sortState = heads[4].parentNode.getAttribute("aria-sort");
  heads[0].click();
  out.byName = names(rows());
  function marked() {
    return Array.prototype.map.call(document.querySelectorAll("#source .line.hl"),
                                    function (l) { return l.getAttribute("data-line"); });
  }
  var row = document.querySelector('#nodes tbody tr[data-node="layers.1.b0.conv1"]');
  row.click();
  out.rowSelected = row.classList.contains("sel");
  out.shapesAfterRowClick = selectedShapes();
  out.markedAfterRowClick = marked();   // written in std/resnet.nn: no line of this file
  shape("fc").querySelector("text").dispatchEvent(new MouseEvent("click", {bubbles: true}));
  out.rowsAfterShapeClick = names(rows().filter(function (r) {
    return r.classList.contains("sel"); }));
  out.markedAfterShapeClick = marked();
  document.getElementById("src-10").querySelector("span").dispatchEvent(
    new MouseEvent("click", {bubbles: true}));
  out.rowsAfterLineClick = names(rows().filter(function (r) {
    return r.classList.contains("sel"); }));
  out.shapesAfterLineClick = selectedShapes();
  shape("image").querySelector("text").dispatchEvent(new MouseEvent("click", {bubbles: true}));
  var box = document.getElementById("filter");
  box.value = "BN layers.2";
  box.dispatchEvent(new Event("input", {bubbles: true}));
  out.filtered = shown();
  out.count = document.getElementById("count").textContent;
  out.hits = Array.prototype.map.call(document.querySelectorAll("#graph g.node.hit title"),
                                      function (t) { return t.textContent; });
  box.value = "no such node";
  box.dispatchEvent(new Event("input", {bubbles: true}));
  out.none = shown().length;
  out.emptyShown = !document.getElementById("empty").hidden;
  box.value = "";
  box.dispatchEvent(new Event("input", {bubbles: true}));
  out.all = shown().length;
  ["zoom-in", "zoom-in", "zoom-out", "zoom-fit", "zoom-reset", "zoom-in"].forEach(function (id) {
    document.getElementById(id).click(); });
  out.zoom = document.getElementById("zoom-level").textContent;
  document.body.setAttribute("data-result", JSON.stringify(out));
})();
</script>
"""


def test_html_clicks_sorting_and_filtering_in_chromium(page, resnet, tmp_path):
    driven = tmp_path / "driven.html"
    driven.write_text(page.read_text(encoding="utf-8").replace("</body>", DRIVER + "</body>"),
                      encoding="utf-8")
    proc = _chromium(driven.as_uri(), tmp_path / "profile", "--dump-dom")
    assert CONSOLE.findall(proc.stderr) == []
    dom = _dom(proc.stdout)
    assert dom.body.get("data-ready") == "1"
    out = json.loads(dom.body["data-result"])
    rows = resnet.layers()
    biggest = sorted(rows, key=lambda r: (-r.params, rows.index(r)))[:3]
    assert out["byParams"] == [r.name for r in biggest] and out["sortState"] == "descending"
    assert out["byName"] == sorted(r.name for r in rows)
    assert out["rowSelected"] and out["shapesAfterRowClick"] == ["layers.1.b0.conv1"]
    assert out["rowsAfterShapeClick"] == ["fc"]
    # the source: a node written in the spec marks its line; a line selects its first node
    assert out["markedAfterRowClick"] == [] and out["markedAfterShapeClick"] == ["10"]
    assert out["rowsAfterLineClick"] == ["adaptive_avg_pool2d"]
    assert out["shapesAfterLineClick"] == ["adaptive_avg_pool2d"]
    want = [r.name for r in rows if r.op == "batch_norm" and r.scope.startswith("layers.2.")]
    assert sorted(out["filtered"]) == sorted(want) and len(want) == 5
    assert out["count"] == f"5 of {len(rows)} nodes" and sorted(out["hits"]) == sorted(want)
    assert out["none"] == 0 and out["emptyShown"] and out["all"] == len(rows)
    assert out["zoom"] == "125%"
