"""The language server (`nndsl lsp`), driven over stdio by a real LSP client (pytest-lsp).

One server runs for the module (a session the tests share, as an editor's would be); one more
checks inlay hints enabled through initialization options. The server is started through a
small wrapper that makes the compiler crash on a spec containing ``CRASH_THE_COMPILER``, so a
compiler bug can be shown to leave the server answering.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("pygls")
pytest_lsp = pytest.importorskip("pytest_lsp")

from lsprotocol import types  # noqa: E402
from pytest_lsp import ClientServerConfig, LanguageClient  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

_WRAPPER = """
import nndsl.api as api
_compile = api.compile
def compile(*args, **kwargs):
    if "CRASH_THE_COMPILER" in (kwargs.get("source") or ""):
        raise RuntimeError("an internal error")
    return _compile(*args, **kwargs)
api.compile = compile
from nndsl.editor.lsp import main
raise SystemExit(main([]))
"""

SERVER = ClientServerConfig(server_command=[sys.executable, "-c", _WRAPPER])
PLAIN = ClientServerConfig(server_command=[sys.executable, "-m", "nndsl.editor.lsp"])

ASYNC = pytest.mark.asyncio(loop_scope="module")

SHAPE_ERROR = """\
# é ünïcode comment
model m() {
    input x: f32[N, 8]
    h = x |> linear(5)
    output y = if "😀é" == "😀é" { h + x } else { x }
}
"""
FIXED = SHAPE_ERROR.replace("linear(5)", "linear(8)")

BLOCKS = """\
# A linear layer and a ReLU.
block unit(c: int) {
    input x: f32[N, C]
    return x |> linear(c) |> relu
}
"""

USES_BLOCKS = """\
import "blocks.nn"
model net() {
    input x: f32[N, 16]
    h = x |> unit(32)
    output y = h |> linear(4) as head
}
"""


def caps() -> types.ClientCapabilities:
    return types.ClientCapabilities(
        text_document=types.TextDocumentClientCapabilities(
            completion=types.CompletionClientCapabilities(
                completion_item=types.ClientCompletionItemOptions(
                    snippet_support=True, documentation_format=[types.MarkupKind.Markdown])),
            hover=types.HoverClientCapabilities(
                content_format=[types.MarkupKind.Markdown]),
            document_symbol=types.DocumentSymbolClientCapabilities(
                hierarchical_document_symbol_support=True)),
        workspace=types.WorkspaceClientCapabilities(configuration=False))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("specs")
    (d / "blocks.nn").write_text(BLOCKS, encoding="utf-8")
    (d / "latin1.nn").write_bytes(b"# caf\xe9\nblock b() { input x: f32[N]\n return x }\n")
    (d / "cycle_a.nn").write_text('import "cycle_b.nn"\nblock a() { input x: f32[N]\n '
                                  'return x }\n', encoding="utf-8")
    (d / "cycle_b.nn").write_text('import "cycle_a.nn"\nblock b2() { input x: f32[N]\n '
                                  'return x }\n', encoding="utf-8")
    return d


@pytest_lsp.fixture(config=SERVER, scope="module")
async def client(lsp_client: LanguageClient, folder):
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=caps(), root_uri=folder.as_uri()))
    yield
    await lsp_client.shutdown_session()


@pytest_lsp.fixture(config=PLAIN, scope="module")
async def hints_client(lsp_client: LanguageClient, folder):
    await lsp_client.initialize_session(types.InitializeParams(
        capabilities=caps(), root_uri=folder.as_uri(),
        initialization_options={"inlayHints": True}))
    yield
    await lsp_client.shutdown_session()


_versions: dict = {}


async def open_doc(client: LanguageClient, path: Path, text: str,
                   timeout: float = 30) -> list[types.Diagnostic]:
    uri = path.as_uri()
    _versions[uri] = 1
    client.diagnostics.pop(uri, None)
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        types.TextDocumentItem(uri, "nndsl", 1, text)))
    return await diagnostics(client, uri, timeout)


async def change_doc(client: LanguageClient, path: Path, text: str) -> list[types.Diagnostic]:
    uri = path.as_uri()
    _versions[uri] += 1
    client.diagnostics.pop(uri, None)
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        types.VersionedTextDocumentIdentifier(version=_versions[uri], uri=uri),
        [types.TextDocumentContentChangeWholeDocument(text)]))
    return await diagnostics(client, uri)


async def diagnostics(client: LanguageClient, uri: str, timeout: float = 30):
    end = time.monotonic() + timeout
    while uri not in client.diagnostics:
        if time.monotonic() > end:
            raise AssertionError(f"no diagnostics for {uri} in {timeout} s")
        await asyncio.sleep(0.02)
    return list(client.diagnostics[uri])


async def hover(client, path: Path, line: int, char: int) -> str | None:
    h = await client.text_document_hover_async(types.HoverParams(
        types.TextDocumentIdentifier(path.as_uri()), types.Position(line, char)))
    return None if h is None else h.contents.value


def utf16(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


@ASYNC
async def test_diagnostics_range_code_and_fix(client: LanguageClient, folder):
    path = folder / "shape.nn"
    diags = await open_doc(client, path, SHAPE_ERROR)
    assert len(diags) == 1, diags
    d = diags[0]
    assert d.code == "E0303" and d.source == "nndsl"
    assert d.severity == types.DiagnosticSeverity.Error
    assert "do not broadcast" in d.message and "hint:" in d.message
    line = SHAPE_ERROR.split("\n")[4]
    start = utf16(line[:line.index("h + x")])   # the emoji before it counts two UTF-16 units
    assert (d.range.start.line, d.range.start.character) == (4, start)
    assert (d.range.end.line, d.range.end.character) == (4, start + len("h + x"))
    related = d.related_information or []
    assert any(r.location.range.start.line == 3 and "linear" in r.message for r in related)
    assert await change_doc(client, path, FIXED) == []


@ASYNC
async def test_warnings_and_errors_of_several_models(client: LanguageClient, folder):
    text = ("model a() {\n    input x: f32[N, 4]\n    unused = x |> linear(3)\n"
            "    output y = x |> relu\n}\n"
            "model b() {\n    input x: f32[N, 4]\n    h = x |> linear(5)\n    output y = h + x\n}\n"
            "model c() {\n    input x: f32[N, 4]\n    output y = x |> nosuch\n}\n")
    diags = await open_doc(client, folder / "several.nn", text)
    codes = sorted(str(d.code) for d in diags)
    assert codes == ["E0201", "E0303", "W0101"], codes
    w = next(d for d in diags if d.code == "W0101")
    assert w.severity == types.DiagnosticSeverity.Warning and w.range.start.line == 2


@ASYNC
async def test_hover_types_and_layer_counts(client: LanguageClient, folder):
    path = folder / "uses.nn"
    assert await open_doc(client, path, USES_BLOCKS) == []
    text = await hover(client, path, 3, 4)   # `h`
    assert "h: f32[N, 32]" in text
    text = await hover(client, path, 4, 21)   # `linear` of the head
    assert "linear(x, out: pos_int" in text and "f32[N, 4]" in text
    assert "parameters: 132" in text and "FLOPs (batch 1): 260" in text
    text = await hover(client, path, 3, 14)   # the block `unit`
    assert "block unit(x, c: int)" in text and "A linear layer and a ReLU." in text
    assert "parameters: 544" in text
    text = await hover(client, path, 1, 7)    # the model's name
    assert "outputs: `y: f32[N, 4]`" in text


@ASYNC
async def test_definition_sibling_std_and_variable(client: LanguageClient, folder):
    path = folder / "uses.nn"
    await open_doc(client, path, USES_BLOCKS)
    loc = await client.text_document_definition_async(types.DefinitionParams(
        types.TextDocumentIdentifier(path.as_uri()), types.Position(3, 14)))
    assert loc.uri == (folder / "blocks.nn").as_uri()
    assert loc.range.start.line == 1 and loc.range.start.character == 6
    loc = await client.text_document_definition_async(types.DefinitionParams(
        types.TextDocumentIdentifier(path.as_uri()), types.Position(4, 15)))   # `h`
    assert loc.uri == path.as_uri() and loc.range.start.line == 3
    loc = await client.text_document_definition_async(types.DefinitionParams(
        types.TextDocumentIdentifier(path.as_uri()), types.Position(0, 10)))   # the import
    assert loc.uri == (folder / "blocks.nn").as_uri()

    spec = ROOT / "specs" / "vision" / "resnet18.nn"
    text = spec.read_text(encoding="utf-8")
    await open_doc(client, spec, text)
    line = next(i for i, ln in enumerate(text.split("\n")) if "basic_block(c, s)" in ln)
    char = text.split("\n")[line].index("basic_block")
    loc = await client.text_document_definition_async(types.DefinitionParams(
        types.TextDocumentIdentifier(spec.as_uri()), types.Position(line, char + 2)))
    std = (ROOT / "nndsl" / "stdlib" / "resnet.nn")
    assert loc.uri == std.as_uri()
    std_line = std.read_text(encoding="utf-8").split("\n")[loc.range.start.line]
    assert std_line.startswith("block basic_block(")
    loc = await client.text_document_definition_async(types.DefinitionParams(
        types.TextDocumentIdentifier(spec.as_uri()), types.Position(1, 10)))   # import std.resnet
    assert loc.uri == std.as_uri()


@ASYNC
async def test_document_symbols(client: LanguageClient):
    spec = ROOT / "specs" / "fundamentals" / "mlp.nn"
    await open_doc(client, spec, spec.read_text(encoding="utf-8"))
    syms = await client.text_document_document_symbol_async(types.DocumentSymbolParams(
        types.TextDocumentIdentifier(spec.as_uri())))
    names = [(s.name, s.kind) for s in syms]
    assert ("mlp", types.SymbolKind.Class) in names
    assert ("train mlp", types.SymbolKind.Event) in names
    mlp = next(s for s in syms if s.name == "mlp")
    assert [c.name for c in mlp.children] == ["x", "logits"]


@ASYNC
async def test_completion(client: LanguageClient, folder):
    path = folder / "complete.nn"
    text = "import std.resnet\nmodel m() {\n    input x: f32[N, 4]\n    y = x |> li\n" \
           "    output z = y\n}\n"
    await open_doc(client, path, text)
    got = await client.text_document_completion_async(types.CompletionParams(
        types.TextDocumentIdentifier(path.as_uri()), types.Position(3, 15)))
    items = {i.label: i for i in got.items}
    assert "linear" in items and "conv2d" in items and "range" in items
    assert "linear(x, out: pos_int" in items["linear"].detail
    assert items["linear"].insert_text == "linear(${1:out})"
    assert "basic_block" in items and "x" in items   # a std block in scope, a local
    # after `import std.`: the standard library's modules
    text2 = text.replace("import std.resnet", "import std.")
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        types.VersionedTextDocumentIdentifier(version=2, uri=path.as_uri()),
        [types.TextDocumentContentChangeWholeDocument(text2)]))
    got = await client.text_document_completion_async(types.CompletionParams(
        types.TextDocumentIdentifier(path.as_uri()), types.Position(0, 11)))
    labels = {i.label for i in got.items}
    assert {"resnet", "transformer", "attention"} <= labels and "linear" not in labels


@ASYNC
async def test_inlay_hints_off_by_default(client: LanguageClient, folder):
    path = folder / "uses.nn"
    await open_doc(client, path, USES_BLOCKS)
    got = await client.text_document_inlay_hint_async(types.InlayHintParams(
        types.TextDocumentIdentifier(path.as_uri()),
        types.Range(types.Position(0, 0), types.Position(10, 0))))
    assert not got


async def inlay_hints(client, path: Path) -> dict:
    got = await client.text_document_inlay_hint_async(types.InlayHintParams(
        types.TextDocumentIdentifier(path.as_uri()),
        types.Range(types.Position(0, 0), types.Position(10, 0))))
    return {(h.position.line, h.position.character): h.label for h in got or ()}


@ASYNC
async def test_inlay_hints_when_enabled(hints_client: LanguageClient, folder):
    path = folder / "uses.nn"
    await open_doc(hints_client, path, USES_BLOCKS)
    hints = await inlay_hints(hints_client, path)
    lines = USES_BLOCKS.split("\n")
    assert hints[(3, len(lines[3]))] == ": f32[N, 32]"
    assert hints[(4, len(lines[4]))] == ": f32[N, 4]"
    # a workspace setting turns them off and on again
    hints_client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"nndsl": {"inlayHints": False}}))
    assert await inlay_hints(hints_client, path) == {}
    hints_client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"nndsl": {"inlayHints": True}}))
    assert len(await inlay_hints(hints_client, path)) == 2


@ASYNC
async def test_typing_fast_publishes_the_last_text(client: LanguageClient, folder):
    path = folder / "typing.nn"
    uri = path.as_uri()
    await open_doc(client, path, SHAPE_ERROR)
    client.diagnostics.pop(uri, None)
    for i in range(6):   # keystrokes closer together than the debounce
        _versions[uri] += 1
        text = SHAPE_ERROR.replace("linear(5)", f"linear({3 + i})")   # the last: linear(8)
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            types.VersionedTextDocumentIdentifier(version=_versions[uri], uri=uri),
            [types.TextDocumentContentChangeWholeDocument(text)]))
    assert await diagnostics(client, uri) == []   # only the last text was compiled


BAD_INPUTS = {
    "not_utf8": 'import "latin1.nn"\nmodel m() {\n    input x: f32[N, 4]\n    output y = x\n}\n',
    "cycle": 'import "cycle_a.nn"\nmodel m() {\n    input x: f32[N, 4]\n    output y = x\n}\n',
    "limit": "model m() {\n    input x: f32[N, 4]\n    h = x\n    repeat 100000000 { h = h |> relu }"
             "\n    output y = h\n}\n",
    "crash": "# CRASH_THE_COMPILER\nmodel m() {\n    input x: f32[N, 4]\n    output y = x\n}\n",
    "huge": "model m() {\n    input x: f32[N, 4]\n    output y = x\n}\n" + "#" * (1 << 20) + "\n",
    "parse": "model m( {\n",
}
EXPECTED = {"not_utf8": "E0003", "cycle": "E0503", "limit": "E0603", "crash": "internal",
            "huge": "E0606", "parse": "E0101"}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
@ASYNC
async def test_bad_input_gives_a_diagnostic_and_the_server_stays(client: LanguageClient,
                                                                 folder, case):
    diags = await open_doc(client, folder / f"bad_{case}.nn", BAD_INPUTS[case])
    assert [d.code for d in diags][:1] == [EXPECTED[case]], diags
    if case in ("not_utf8", "cycle"):   # found in an imported file: shown at the import
        assert diags[0].range.start.line == 0 and diags[0].related_information
    path = folder / "uses.nn"
    await open_doc(client, path, USES_BLOCKS)
    assert "h: f32[N, 32]" in await hover(client, path, 3, 4)


@ASYNC
async def test_latency_on_zoo_specs(client: LanguageClient):
    """After the first compile, requests are served from the cached analysis."""
    for rel, probe in (("specs/vision/resnet18.nn", "basic_block(c, s)"),
                       ("specs/transformers/gpt2.nn", "gpt_block(heads")):
        spec = ROOT / rel
        text = spec.read_text(encoding="utf-8")
        await open_doc(client, spec, text)
        lines = text.split("\n")
        line = next(i for i, ln in enumerate(lines) if probe in ln)
        pos = types.Position(line, lines[line].index(probe) + 2)
        doc = types.TextDocumentIdentifier(spec.as_uri())
        worst = {"hover": 0.0, "definition": 0.0, "completion": 0.0}
        for _ in range(5):
            for what, call, params in (
                    ("hover", client.text_document_hover_async, types.HoverParams(doc, pos)),
                    ("definition", client.text_document_definition_async,
                     types.DefinitionParams(doc, pos)),
                    ("completion", client.text_document_completion_async,
                     types.CompletionParams(doc, pos))):
                t = time.perf_counter()
                got = await call(params)
                worst[what] = max(worst[what], time.perf_counter() - t)
                assert got is not None
        print(f"\n{rel}, worst of 5 round trips: " +
              ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in worst.items()))
        assert max(worst.values()) < 1.0


@ASYNC
async def test_a_slow_compilation_is_cancelled_by_a_newer_text(client: LanguageClient, folder):
    path = folder / "slow.nn"
    uri = path.as_uri()
    slow = ("model m() {\n    input x: f32[N, 4]\n    h = x\n"
            "    repeat 30000 { h = h |> relu }\n    output y = h\n}\n")
    _versions[uri] = 1
    client.diagnostics.pop(uri, None)
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        types.TextDocumentItem(uri, "nndsl", 1, slow)))
    await asyncio.sleep(0.3)   # it is compiling now
    t = time.perf_counter()
    fixed = slow.replace("30000", "3").replace("h = x\n", "h = x |> nosuch\n")
    assert [d.code for d in await change_doc(client, path, fixed)] == ["E0201"]
    print(f"\ndiagnostics of the new text {(time.perf_counter() - t) * 1000:.0f} ms after it")


def test_main_without_pygls_says_how_to_install_it():
    import subprocess
    code = ("import sys; sys.modules['pygls'] = None; sys.modules['pygls.lsp'] = None; "
            "from nndsl.editor.lsp import main; sys.exit(main([]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip() == 'error: the language server needs pygls: pip install "nndsl[lsp]"'
    assert r.stdout == ""
