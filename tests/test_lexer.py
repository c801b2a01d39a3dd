"""The Pygments lexer (nndsl/editor/lexer.py): every spec lexes cleanly, agrees with the
grammar's own tokens, and resolves through the entry point."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pygments.lexers import get_lexer_by_name, get_lexer_for_filename
from pygments.token import (Comment, Error, Keyword, Name, Number, Operator, Punctuation, String,
                            Whitespace)

from nndsl.editor.lexer import FACTS, NndslLexer, _literal_alternatives
from nndsl.elab.builtins import BUILTINS
from nndsl.elab.library import SURFACE
from nndsl.syntax.parser import _lark

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted(ROOT.glob("specs/**/*.nn")) + sorted((ROOT / "nndsl" / "stdlib").glob("*.nn"))


def _tokens(text: str) -> list:
    return list(NndslLexer().get_tokens_unprocessed(text))


def _types(text: str) -> list:
    """(type, text) of every token but whitespace."""
    return [(t, v) for _, t, v in _tokens(text) if t is not Whitespace]


def test_there_are_specs_to_lex():
    assert len(SPECS) > 40 and any(p.parent.name == "stdlib" for p in SPECS)


@pytest.mark.parametrize("path", SPECS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_spec_lexes_without_errors_and_loses_nothing(path):
    text = path.read_text(encoding="utf-8")
    toks = _tokens(text)
    errors = [(i, v) for i, t, v in toks if t in Error]
    assert errors == []
    assert "".join(v for _, _, v in toks) == text
    pos = 0
    for i, _, v in toks:   # contiguous: each token starts where the last ended
        assert i == pos
        pos += len(v)
    # the formatter's path (newline handling left alone) gives the same text back
    lexer = NndslLexer(stripnl=False, ensurenl=False)
    assert "".join(v for _, v in lexer.get_tokens(text)) == text


def _kind(ttype) -> str:
    for base, kind in ((Keyword.Type, "NAME"), (Name, "NAME"), (Number, "NUMBER"),
                       (String, "STRING"), (Operator.Word, "keyword"), (Keyword, "keyword"),
                       (Operator, "symbol"), (Punctuation, "symbol")):
        if ttype in base:
            return kind
    return str(ttype)


@pytest.mark.parametrize("path", SPECS[::3], ids=lambda p: str(p.relative_to(ROOT)))
def test_tokens_agree_with_the_grammar(path):
    """Each token the grammar's own lexer finds starts a token of the same kind here (an import
    path is one namespace token here, several NAME and DOT tokens there)."""
    text = path.read_text(encoding="utf-8")
    mine = {}
    for i, t, v in _tokens(text):
        if t in String and i - 1 in mine and mine[i - 1][0] == "STRING":
            continue   # the rest of a string after an escape
        mine[i] = (_kind(t), v)
    keywords = {t.name for t in _lark().terminals if t.pattern.value in FACTS.keywords}
    in_path = False
    for tok in _lark().lex(text):
        if tok.type == "IMPORT":
            in_path = True
        elif in_path and tok.type in ("NAME", "DOT"):
            if tok.type == "NAME":
                assert mine.get(tok.start_pos, ("NAME",))[0] == "NAME"
            continue
        else:
            in_path = False
        want = ("keyword" if tok.type in keywords else
                tok.type if tok.type in ("NAME", "NUMBER", "STRING") else "symbol")
        assert tok.start_pos in mine, (tok, text[tok.start_pos - 20:tok.start_pos + 20])
        assert mine[tok.start_pos][0] == want, (tok, mine[tok.start_pos])
        if want != "STRING":
            assert mine[tok.start_pos][1] == tok.value


SAMPLE = '''\
import std.resnet
import "blocks/util.nn"
# a comment
block res(c: int, p: float = 0.1) {
    input x: f32[N, C]
    y = x |> linear(c) as fc |> relu
    return y + x @ x ** 2
}
model tiny(width: int = 1_024) {
    input x: f32[N, width] ~ normal()
    assert width > 0 and not false, "width \\"must\\" be positive\\n"
    h = if width >= 2 { x } else { x |> layer_norm }
    layers: for i in range(2) { h = h |> res(width) }
    output y = h[..., :1] |> cast(i64) * pi + inf + .5 + 1.5e-3 + 2. // 3 % 4
}
train tiny { target label: i64[N]  epochs = 3 }
optimize tiny { quantize = "int8-dynamic" }
'''


def test_a_hand_written_sample_gets_the_expected_types():
    toks = _types(SAMPLE)
    assert [(t, v) for t, v in toks if t in Error] == []
    assert "".join(v for _, _, v in _tokens(SAMPLE)) == SAMPLE

    def types_of(value):
        return {t for t, v in toks if v == value}

    expect = {
        "import": Keyword.Namespace, "std": Name.Namespace, ".resnet": Name.Namespace,
        '"blocks/util.nn"': String.Double, "# a comment": Comment.Single,
        "block": Keyword.Declaration, "model": Keyword.Declaration,
        "train": Keyword.Declaration, "optimize": Keyword.Declaration,
        "tiny": Name.Function,
        "input": Keyword, "return": Keyword, "output": Keyword, "as": Keyword, "for": Keyword,
        "in": Keyword, "if": Keyword, "else": Keyword, "assert": Keyword,
        "and": Operator.Word, "not": Operator.Word, "false": Keyword.Constant,
        "f32": Keyword.Type, "i64": Keyword.Type,
        "linear": Name.Builtin, "relu": Name.Builtin, "layer_norm": Name.Builtin,
        "cast": Name.Builtin, "range": Name.Builtin, "int": Name.Builtin,
        "pi": Name.Constant, "inf": Name.Constant,
        "x": Name, "fc": Name, "width": Name, "normal": Name, "label": Name, "epochs": Name,
        "0.1": Number.Float, "1_024": Number.Integer, ".5": Number.Float,
        "1.5e-3": Number.Float, "2.": Number.Float, "2": Number.Integer, "0": Number.Integer,
        "|>": Operator, "@": Operator, "**": Operator, "+": Operator, ">=": Operator,
        "//": Operator, "%": Operator, "~": Operator, "=": Operator, "...": Operator,
        "*": Operator, ">": Operator,
        "(": Punctuation, "{": Punctuation, "[": Punctuation, ",": Punctuation,
        ":": Punctuation,
        '\\"': String.Escape, "\\n": String.Escape,
    }
    for value, ttype in expect.items():
        assert types_of(value) == {ttype}, value
    # the name a definition introduces is a function name; where it is used, a plain name
    assert (Name.Function, "res") in toks and (Name, "res") in toks


@pytest.mark.parametrize("text, want", [
    ("modelx = 1", [(Name, "modelx"), (Operator, "="), (Number.Integer, "1")]),
    ("import_x", [(Name, "import_x")]),
    ("x.shape", [(Name, "x"), (Punctuation, "."), (Name, "shape")]),
    ("f32x", [(Name, "f32x")]),
    ("model # c\n  m()", [(Keyword.Declaration, "model"), (Comment.Single, "# c"),
                          (Name.Function, "m"), (Punctuation, "("), (Punctuation, ")")]),
    ("model (", [(Keyword.Declaration, "model"), (Punctuation, "(")]),
    ("1_000_000", [(Number.Integer, "1_000_000")]),
    ("1e5", [(Number.Float, "1e5")]),
])
def test_edge_cases(text, want):
    assert _types(text) == want


@pytest.mark.parametrize("text", ["x = 1;", "x\u00a0= 1", 'x = "open', "x = 1 $ 2", "x = \u0661"])
def test_what_the_grammar_refuses_is_an_error_token(text):
    toks = _tokens(text)
    assert any(t in Error for _, t, _ in toks)
    assert "".join(v for _, _, v in toks) == text


def test_facts_come_from_the_grammar_and_the_library():
    from lark.lexer import PatternStr
    words = {t.pattern.value for t in _lark().terminals
             if isinstance(t.pattern, PatternStr) and t.pattern.value.isidentifier()}
    assert set(FACTS.keywords) == words
    assert set(FACTS.keywords) == (set(FACTS.definitions) | set(FACTS.imports)
                                   | set(FACTS.constants) | set(FACTS.word_operators)
                                   | set(FACTS.other_keywords))
    assert FACTS.definitions == ("block", "model", "optimize", "train")
    assert FACTS.imports == ("import",) and FACTS.constants == ("false", "none", "true")
    assert FACTS.word_operators == ("and", "not", "or")
    assert set(SURFACE) <= set(FACTS.layers) | set(FACTS.functions)
    assert set(BUILTINS) == set(FACTS.functions) & set(BUILTINS) | set(FACTS.dtypes) | {
        "inf", "pi"}
    assert "linear" in FACTS.layers and "softmax" in FACTS.functions and "f32" in FACTS.dtypes
    assert {"|>", "**", "//", "==", "@", "~", "..."} <= set(FACTS.operators)
    lengths = [len(s) for s in FACTS.operators]
    assert lengths == sorted(lengths, reverse=True)
    assert FACTS.comment_start == "#" and FACTS.suffix == ".nn"
    assert FACTS.brackets == (("(", ")"), ("[", "]"), ("{", "}"))


@pytest.mark.parametrize("regexp, want", [
    (r"(?:==|!=|<=|>=|<|>)", ("==", "!=", "<=", ">=", "<", ">")),
    (r"(?:\+|\-)", ("+", "-")),
    (r"\*\*", ("**",)),
    (r"[A-Za-z_][A-Za-z_0-9]*", None),
    (r"#[^\n]*", None),
    (r"(?:a|\d)", None),
    (r"(?:[ \t])+", None),
])
def test_literal_alternatives(regexp, want):
    assert _literal_alternatives(regexp) == want


def test_the_entry_point_finds_the_lexer_by_name_and_file_name():
    assert isinstance(get_lexer_by_name("nndsl"), NndslLexer)
    assert isinstance(get_lexer_for_filename("specs/vision/resnet18.nn"), NndslLexer)
    assert NndslLexer.analyse_text(SAMPLE) > 0 and NndslLexer.analyse_text("def f(): pass") == 0


def test_pygmentize_highlights_a_spec(tmp_path):
    exe = shutil.which("pygmentize", path=str(Path(sys.executable).parent)) or \
        shutil.which("pygmentize")
    if exe is None:
        pytest.fail("pygmentize is not installed: pip install -e '.[highlight]'")
    proc = subprocess.run([exe, "-l", "nndsl", "-f", "html", str(ROOT / "specs/fundamentals/mlp.nn")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert '<span class="kd">model</span>' in proc.stdout
    assert '<span class="nf">mlp</span>' in proc.stdout
