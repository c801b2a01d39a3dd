"""The language server's analysis without LSP: positions, diagnostics, the hover index."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from nndsl.editor.lsp.analysis import Cancelled, analyze, completions
from nndsl.editor.lsp.positions import UTF8, UTF16, UTF32, Text

ROOT = Path(__file__).resolve().parent.parent


def test_positions_count_utf16_units_and_keep_line_breaks_apart():
    text = "\ufeffab😀c\r\nx\ré\nz"
    t = Text(text)
    # the parser does not count the byte-order mark: its column 3 is the emoji
    off = t.offset(1, 3)
    assert text[off] == "😀"
    assert t.lsp_position(off, UTF16) == (0, 3)
    assert t.lsp_position(off + 1, UTF16) == (0, 5)   # the emoji is two UTF-16 units
    assert t.lsp_position(off + 1, UTF8) == (0, 3 + 4 + 2)   # BOM: 3 bytes, emoji: 4
    assert t.lsp_position(off + 1, UTF32) == (0, 4)
    # a lone \r ends a line for LSP, not for the parser: line 2 is "x\ré"
    off = t.offset(2, 3)
    assert text[off] == "é" and t.lsp_position(off) == (2, 0)
    assert t.lsp_offset(2, 0) == off
    assert t.lsp_offset(0, 5) == text.index("c")
    assert t.lsp_offset(9, 0) == len(text) and t.lsp_offset(0, 99) == text.index("\r")


SPEC = """\
block twice(k: int) {
    input x: f32[N, F]
    y = x |> linear(k) |> relu
    return y
}
model m(width: int = 16) {
    input x: f32[N, 8]
    layers: for w in [width, 2 * width] {
        x = x |> twice(w)
    }
    output y = x |> linear(3) as head
}
"""


def at(text: str, needle: str, k: int = 0, shift: int = 1) -> int:
    i = -1
    for _ in range(k + 1):
        i = text.index(needle, i + 1)
    return i + shift


def test_hover_definition_and_hints(tmp_path):
    a = analyze(SPEC, str(tmp_path / "m.nn"))
    assert a.diagnostics == []
    text, _ = a.hover(at(SPEC, "x = x"))
    assert "x: f32[N, 16]" in text and "f32[N, 32]" in text   # two iterations, two types
    text, _ = a.hover(at(SPEC, "twice(w)"))
    assert "block twice(x, k: int)" in text and "applied 2 times" in text
    assert "parameters in all: 688" in text   # 8*16+16 + 16*32+32
    text, _ = a.hover(at(SPEC, "width, 2"))
    assert "int = 16" in text
    text, _ = a.hover(at(SPEC, "head"))
    assert "f32[N, 3]" in text and "parameters: 99" in text
    loc = a.definition(at(SPEC, "twice(w)"))
    assert loc.span.line == 1 and loc.span.col == 7
    loc = a.definition(at(SPEC, "x |> linear(3)"))   # the loop's last assignment of x
    assert loc.span.line == 9
    hints = {SPEC.count("\n", 0, h.offset): h.label for h in a.inlay_hints()}
    assert hints[8] == ": f32[N, 16] | f32[N, 32]" and hints[10] == ": f32[N, 3]"
    assert [(s.name, s.kind) for s in a.symbols()] == [("twice", "block"), ("m", "model")]


def test_errors_of_models_are_collected_independently():
    text = ("model a() {\n input x: f32[N, 4]\n output y = x |> nosuch\n}\n"
            "model b() {\n input x: f32[N, 4]\n h = x |> linear(5)\n output y = h + x\n}\n")
    a = analyze(text)
    assert sorted(d.code for d in a.diagnostics) == ["E0201", "E0303"]
    e = next(d for d in a.diagnostics if d.code == "E0303")
    assert e.span.line == 8 and any("linear" in t for t, _ in e.related)


def test_buffer_imports_siblings_and_errors_in_imports_show_at_the_import(tmp_path):
    (tmp_path / "lib.nn").write_text("block b() {\n input x: f32[N]\n return x |> nosuch\n}\n")
    text = 'import "lib.nn"\nmodel m() {\n input x: f32[N]\n output y = x |> b\n}\n'
    a = analyze(text, str(tmp_path / "main.nn"))
    [d] = a.diagnostics
    assert d.code == "E0201" and d.span.line == 4   # where the block is applied
    assert str(tmp_path / "lib.nn") in d.message
    assert any(s.file == str(tmp_path / "lib.nn") for _, s in d.related)


def test_cancel_stops_a_compilation():
    ev = threading.Event()
    ev.set()
    with pytest.raises(Cancelled):
        analyze(SPEC, cancel=ev)


def test_completion_contexts():
    a = analyze(SPEC)
    labels = {c.label for c in completions("    y = x |> ", a, at(SPEC, "relu"))}
    assert {"linear", "conv2d", "twice", "m", "range", "f32", "k", "x"} <= labels
    assert {c.label for c in completions("import std.", None)} >= {"resnet", "transformer"}
    assert "std.resnet" in {c.label for c in completions("import ", None)}


@pytest.mark.parametrize("rel", ["specs/vision/resnet18.nn", "specs/transformers/gpt2.nn"])
def test_zoo_specs_index(rel):
    path = ROOT / rel
    text = path.read_text(encoding="utf-8")
    a = analyze(text, str(path))
    assert a.diagnostics == []
    model = a.module.definitions[-1]
    hover, _ = a.hover(a.index.span_offsets(model.name_span)[0])
    assert "parameters:" in hover and "FLOPs" in hover


def test_a_library_of_blocks_is_not_an_error_and_instances_count_parameters():
    a = analyze("block b() {\n input x: f32[N, 4]\n return x |> relu\n}\n")
    assert a.diagnostics == [] and a.ok
    text = ("model m() {\n input t: i64[N]\n emb = embedding(10, 4)\n"
            " output y = emb(t)\n}\n")
    a = analyze(text)
    hover, _ = a.hover(text.index("emb(t)") + 1)
    assert "layer embedding(num=10, dim=4" in hover and "parameters: 40" in hover


def test_names_torch_reserves_are_errors_as_in_check(tmp_path):
    a = analyze("model m() {\n    input x: f32[N, 4]\n    output y = x |> linear(3) as train\n}\n",
                str(tmp_path / "m.nn"))
    (d,) = a.diagnostics
    assert d.code == "E0902" and (d.span.line, d.span.col) == (3, 21)
