"""The Pygments lexer (nndsl/editor/lexer.py): every spec lexes cleanly, agrees with the
grammar's own tokens, and resolves through the entry point."""

import os
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


@pytest.mark.parametrize("path", SPECS, ids=lambda p: str(p.relative_to(ROOT)))
def test_tokens_agree_with_the_parser(path):
    """Each token the parser reads (its lexer is contextual: `as block` reads `block` as a
    name) is a token of the same kind and text here."""
    text = path.read_text(encoding="utf-8")
    mine = {}
    for i, t, v in _tokens(text):
        if t in String and i - 1 in mine and mine[i - 1][0] == "STRING":
            continue   # the rest of a string after an escape
        mine[i] = (_kind(t), v)
    keywords = {t.name for t in _lark().terminals if t.pattern.value in FACTS.keywords}
    in_path = False
    for tok in _lark().parse_interactive(text).iter_parse():
        if tok.type == "IMPORT":
            in_path = True
        elif in_path and tok.type in ("NAME", "DOT"):
            assert mine[tok.start_pos] == ("NAME", tok.value)   # a namespace
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
        "import": Keyword.Namespace, "std": Name.Namespace, "resnet": Name.Namespace,
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
    # where the grammar takes only a name, a keyword is one (the parser's lexer is contextual)
    ("y = x |> f as block\n output z = y",
     [(Name, "y"), (Operator, "="), (Name, "x"), (Operator, "|>"), (Name, "f"), (Keyword, "as"),
      (Name, "block"), (Keyword, "output"), (Name, "z"), (Operator, "="), (Name, "y")]),
    ("{ input model: f32 }", [(Punctuation, "{"), (Keyword, "input"), (Name, "model"),
                              (Punctuation, ":"), (Keyword.Type, "f32"), (Punctuation, "}")]),
    ("f(input, x.output) + return", [
        (Name, "f"), (Punctuation, "("), (Name, "input"), (Punctuation, ","), (Name, "x"),
        (Punctuation, "."), (Name, "output"), (Punctuation, ")"), (Operator, "+"),
        (Name, "return")]),
    ("block b(model: int) {}", [
        (Keyword.Declaration, "block"), (Name.Function, "b"), (Punctuation, "("),
        (Name, "model"), (Punctuation, ":"), (Name.Builtin, "int"), (Punctuation, ")"),
        (Punctuation, "{"), (Punctuation, "}")]),
    ("import a.b.c\nx", [(Keyword.Namespace, "import"), (Name.Namespace, "a"),
                         (Name.Namespace, "."), (Name.Namespace, "b"), (Name.Namespace, "."),
                         (Name.Namespace, "c"), (Name, "x")]),
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
    assert FACTS.definitions == ("block", "model", "optimize", "search", "train")
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


# ---- the editor files (editors/vscode/) ------------------------------------------------------

VSCODE = ROOT / "editors" / "vscode"


def _tool():
    import importlib.util
    spec = importlib.util.spec_from_file_location("make_tmlanguage",
                                                  ROOT / "tools" / "make_tmlanguage.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_committed_editor_files_are_up_to_date(capsys):
    assert _tool().main(["--check"]) == 0, capsys.readouterr().out


def _json(name):
    import json
    return json.loads((VSCODE / name).read_text(encoding="utf-8"))


class _TextMate:
    """Enough of a TextMate tokenizer for this grammar: at each position the pattern that
    matches earliest wins (ties: the first listed); begin/end rules with inner patterns."""

    def __init__(self, grammar):
        import re
        self.repo = grammar["repository"]
        self.top = self._flat(grammar["patterns"])
        self.re = {}
        for rule in self._all(grammar):
            for key in ("match", "begin", "end"):
                if key in rule:
                    self.re[rule[key]] = re.compile(rule[key])

    def _all(self, grammar):
        stack = list(grammar["patterns"]) + list(grammar["repository"].values())
        while stack:
            rule = stack.pop()
            yield rule
            stack.extend(rule.get("patterns", ()))

    def _flat(self, patterns):
        out = []
        for p in patterns:
            if "include" in p:
                out.extend(self._flat([self.repo[p["include"][1:]]]))
            elif "match" in p or "begin" in p:
                out.append(p)
            else:
                out.extend(self._flat(p["patterns"]))
        return out

    def _earliest(self, rules, line, pos):
        best = None
        for rule in rules:
            m = self.re[rule.get("match", rule.get("begin"))].search(line, pos)
            if m and (best is None or m.start() < best[1].start()):
                best = (rule, m)
        return best

    def scopes(self, line):
        """(start, end, scope) of every scoped piece of one line (no state across lines)."""
        out, pos = [], 0
        while pos < len(line):
            found = self._earliest(self.top, line, pos)
            if found is None:
                break
            rule, m = found
            if "begin" in rule:
                start, pos = m.start(), m.end()
                inner = self._flat(rule.get("patterns", []))
                end_rx = self.re[rule["end"]]
                while True:
                    e = end_rx.search(line, pos)
                    i = self._earliest(inner, line, pos)
                    if i is not None and (e is None or i[1].start() < e.start()):
                        out.append((i[1].start(), i[1].end(), i[0]["name"]))
                        pos = i[1].end()
                        continue
                    pos = e.end() if e else len(line)
                    break
                out.append((start, pos, rule["name"]))
                continue
            if "name" in rule:
                out.append((m.start(), m.end(), rule["name"]))
            for k, cap in rule.get("captures", {}).items():
                a, b = m.span(int(k))
                if a < 0:
                    continue
                if "name" in cap:
                    out.append((a, b, cap["name"]))
                inner = self._flat(cap.get("patterns", []))
                at = a
                while inner and at < b:   # the captured text, read by the capture's patterns
                    found = self._earliest(inner, line[:b], at)
                    if found is None:
                        break
                    out.append((found[1].start(), found[1].end(), found[0]["name"]))
                    at = found[1].end()
            pos = max(m.end(), pos + 1)
        return out


def _scope_key(ttype) -> str | None:
    for base, key in ((String.Escape, "escape"), (String, "string"), (Comment, "comment"),
                      (Keyword.Declaration, "definition"), (Name.Function, "defined"),
                      (Keyword.Namespace, "import"), (Name.Namespace, "module"),
                      (Keyword.Type, "dtype"), (Keyword.Constant, "constant"),
                      (Operator.Word, "word_operator"), (Keyword, "keyword"),
                      (Name.Builtin, "builtin"), (Name.Constant, "builtin_constant"),
                      (Number, "number"), (Operator, "operator"), (Punctuation, "punctuation")):
        if ttype in base:
            return key
    return None


def test_the_textmate_grammar_colours_every_spec_as_the_lexer_does():
    """The TextMate grammar's regexes compile (Python's `re` reads them as Oniguruma does
    here) and give each token of every spec the scope of its Pygments type."""
    scopes = _tool().SCOPES
    grammar = _json("syntaxes/nndsl.tmLanguage.json")
    assert grammar["scopeName"] == "source.nndsl" and grammar["fileTypes"] == ["nn"]
    tm = _TextMate(grammar)
    checked = 0
    for path in SPECS:
        text = path.read_text(encoding="utf-8")
        starts = [0]
        for ln in text.split("\n"):
            starts.append(starts[-1] + len(ln) + 1)
        per_line = [tm.scopes(ln + "\n") for ln in text.split("\n")]
        for pos, ttype, value in _tokens(text):
            if not value.strip() or value.startswith("."):   # whitespace; a namespace's tail
                continue
            key = _scope_key(ttype)
            n = next(i for i in range(len(starts)) if starts[i + 1] > pos)
            col = pos - starts[n]
            covering = sorted((b - a, s) for a, b, s in per_line[n] if a <= col < b)
            here = [s for _, s in covering]
            innermost = here[0] if here else None   # the narrowest piece
            if key is None:
                assert innermost is None, (path.name, n + 1, value, here)
            elif key == "punctuation":
                assert innermost and innermost.startswith("punctuation."), (path.name, n + 1, value)
            elif key == "string":
                assert scopes["string"] in here, (path.name, n + 1, value, here)
            else:
                assert innermost == scopes[key], (path.name, n + 1, value, here)
            checked += 1
    assert checked > 10000


def test_the_language_configuration_matches_the_lexer():
    conf = _json("language-configuration.json")
    assert conf["comments"] == {"lineComment": FACTS.comment_start}
    assert conf["brackets"] == [list(b) for b in FACTS.brackets]
    assert {"open": '"', "close": '"', "notIn": ["string", "comment"]} in conf["autoClosingPairs"]
    import re
    inc = re.compile(conf["indentationRules"]["increaseIndentPattern"])
    dec = re.compile(conf["indentationRules"]["decreaseIndentPattern"])
    assert inc.match("model m() {") and inc.match("    h = f(   # why") and not inc.match("x = 1")
    assert dec.match("    }") and not dec.match("x = (1)")


def test_the_extension_manifest_is_complete_and_points_at_files_that_exist():
    pkg = _json("package.json")
    for key in ("name", "displayName", "description", "version", "publisher", "engines", "main",
                "contributes", "activationEvents"):
        assert pkg.get(key), key
    assert pkg["engines"]["vscode"].startswith("^1.")
    assert (VSCODE / pkg["main"]).is_file()
    lang, = pkg["contributes"]["languages"]
    assert lang["id"] == "nndsl" and lang["extensions"] == [FACTS.suffix]
    assert (VSCODE / lang["configuration"]).is_file()
    grammar, = pkg["contributes"]["grammars"]
    assert grammar["language"] == "nndsl" and (VSCODE / grammar["path"]).is_file()
    assert grammar["scopeName"] == _json(grammar["path"])["scopeName"]
    assert "onLanguage:nndsl" in pkg["activationEvents"]
    props = pkg["contributes"]["configuration"]["properties"]
    assert props["nndsl.server.path"]["default"] == "nndsl"
    assert props["nndsl.server.args"]["default"] == ["lsp"]
    assert props["nndsl.inlayHints.enabled"]["default"] is False
    source = (VSCODE / "extension.js").read_text(encoding="utf-8")
    for command in pkg["contributes"]["commands"]:
        assert f'registerCommand("{command["command"]}"' in source
    for name in props:   # every setting is read by the extension
        assert f'"{name.split(".", 1)[1]}"' in source, name
    assert (VSCODE / "README.md").is_file()


def _node():
    exe = shutil.which("node")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("CI installs node (.ci/run): the extension's JavaScript must run there")
        pytest.skip("node is not installed: the extension's JavaScript is not run")
    return exe


def test_the_extension_javascript_parses():
    node = _node()
    for name in ("extension.js", "lsp.js", "test/test_extension.js"):
        proc = subprocess.run([node, "--check", str(VSCODE / name)], capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr


def test_the_extension_talks_to_a_language_server(tmp_path):
    """extension.js against a stand-in `vscode` module and a stand-in server: diagnostics,
    hover, definition, symbols, completion, inlay hints (off, then on), formatting, document
    sync, the server's own requests, shutdown; and a missing command is one clear message."""
    node = _node()
    proc = subprocess.run([node, str(VSCODE / "test" / "test_extension.js"), sys.executable,
                           str(tmp_path / "server.json")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout + proc.stderr
