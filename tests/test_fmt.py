"""``nndsl fmt``: the canonical layout of ``.nn`` specs (nndsl/editor/fmt.py).

- The zoo, the standard library and examples/ are formatted (``fmt --check`` passes).
- Formatting keeps the program: every zoo model compiles to the same IR (locations aside) and
  the same parameter names from its formatted text, with the standard library formatted too,
  from scrambled whitespace and at a narrow width alike; fmt(fmt(x)) == fmt(x) throughout.
- Comments stay where they were; a messy spec gets exactly the expected layout; long lines
  break at the width.
- The command: in place (atomically, mode kept), ``--check`` (exit 1 and a diff), folders,
  ``-`` for stdin; bad input gets the located error, exit 1, and nothing is written.
- Random models of the fuzzer and parsing mutants of the zoo format without a refusal.
"""

from __future__ import annotations

import importlib.util
import io
import os
import random
import re
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nndsl
from nndsl.cli import main
from nndsl.editor import fmt
from nndsl.editor.fmt import FormatError, comments_of, format_text
from nndsl.elab import loader
from nndsl.errors import NndslError, ParseError
from nndsl.syntax import parse

from zoo import ZOO

ROOT = Path(__file__).resolve().parents[1]
STDLIB = sorted((ROOT / "nndsl" / "stdlib").glob("*.nn"))
CORPUS = sorted((ROOT / "specs").rglob("*.nn")) + STDLIB + sorted((ROOT / "examples").glob("*.nn"))


def _rel(p: Path) -> str:
    return p.relative_to(ROOT).as_posix()


def scramble(text: str, rng: random.Random, join: bool = False) -> str:
    """The same tokens and comments with other whitespace: random spaces and line breaks between
    tokens (``join``: one space, every statement on one line), comments on lines of their own
    or after the token they followed."""
    tree = fmt._concrete().parse(text)
    toks = fmt._tokens(tree)
    gaps = fmt._gaps(text, toks)
    out = []
    for i in range(len(toks) + 1):
        g = gaps[i]
        if i and g.trail is not None:
            out.append(" " * rng.randrange(1, 4) + g.trail + "\n")
        for _, c in g.own:
            out.append("\n" + " " * rng.randrange(6) + c + "\n")
        if i == len(toks):
            break
        if i:
            out.append(" " if join else rng.choice([" ", "  ", "\n", "\n\n ", "\t", " \n   "]))
        out.append(toks[i].text)
    return "".join(out)


_LOCATION = re.compile(r"  # \S+:\d+:\d+$", re.M)


def _program(c) -> tuple[str, list[str]]:
    """What must not change: the IR text without source locations, and the parameter names."""
    return _LOCATION.sub("", c.ir()), [n.name for n in c.graph.params()]


# ---- the corpus ----

@pytest.mark.parametrize("path", CORPUS, ids=_rel)
def test_corpus_is_formatted(path):
    text = path.read_text(encoding="utf-8")
    out = format_text(text, _rel(path))
    assert out == text, f"{_rel(path)} is not formatted (nndsl fmt {_rel(path)}):\n" + \
        fmt.diff(text, out, _rel(path))


def test_check_passes_on_the_corpus(capsys):
    assert main(["fmt", "--check", str(ROOT / "specs"), str(ROOT / "nndsl" / "stdlib"),
                 str(ROOT / "examples")]) == 0
    out, err = capsys.readouterr()
    assert out == "" and f"{len(CORPUS)} files already formatted" in err


def test_formatting_keeps_every_zoo_program(monkeypatch):
    """From scrambled text and at a narrow width, the formatted zoo compiles as the original
    (its standard-library imports read formatted modules too)."""
    rng = random.Random(7)
    original = {z.key: _program(z.compile()) for z in ZOO}
    for variant in ("scrambled", "narrow"):
        std = {}
        for p in STDLIB:
            text = p.read_text(encoding="utf-8")
            std[p.stem] = (format_text(scramble(text, rng), _rel(p)) if variant == "scrambled"
                           else format_text(text, _rel(p), width=60))
        assert any(std[p.stem] != p.read_text(encoding="utf-8") for p in STDLIB)
        monkeypatch.setattr(loader, "std_source", lambda name: std.get(name))
        loader._parse_std.cache_clear()
        texts = {}
        for z in ZOO:
            if z.path not in texts:
                text = z.path.read_text(encoding="utf-8")
                texts[z.path] = (format_text(scramble(text, rng), _rel(z.path))
                                 if variant == "scrambled" else
                                 format_text(text, _rel(z.path), width=60))
            c = nndsl.compile(source=texts[z.path], name=z.path, model=z.model,
                              params=z.small or None)
            assert _program(c) == original[z.key], f"{z.key} ({variant}) compiles differently"
        monkeypatch.undo()
        loader._parse_std.cache_clear()


@pytest.mark.parametrize("variant", ["scrambled", "narrow"])
def test_idempotent_on_the_corpus(variant):
    rng = random.Random(5)
    width = 100 if variant == "scrambled" else 60
    for path in CORPUS:
        text = path.read_text(encoding="utf-8")
        once = format_text(scramble(text, rng) if variant == "scrambled" else text, _rel(path),
                           width=width)
        assert format_text(once, _rel(path), width=width) == once, _rel(path)
        assert comments_of(once) == comments_of(text)


def test_long_lines_are_broken():
    """Every statement of the corpus written on one line comes out within the width (trailing
    comments aside), and formatting that again changes nothing."""
    rng = random.Random(3)
    for path in CORPUS:
        out = format_text(scramble(path.read_text(encoding="utf-8"), rng, join=True), _rel(path))
        assert format_text(out, _rel(path)) == out, _rel(path)
        for ln in out.split("\n"):
            found = comments_of(ln)
            code = ln[:len(ln) - len(found[0])].rstrip() if found else ln
            assert len(code) <= 100, f"{_rel(path)}: {ln}"


# ---- the layout ----

MESSY = '''

# header comment
import   std.resnet
import "other.nn"
block  mlp( hidden:int=64 ,p : float=0.1 ){
  input x : f32[ N , C ]


  # a comment before h
  h=x|>linear(hidden)as fc1|>relu     # trailing
  h = h |>
     dropout( p )
  return h|>linear( C , bias = false )
}
model m(k: int=2){
input x: f32[N, 8] ~ normal()
     layers : repeat k {   x = x|>mlp(16)   }
  if k>1 { x = x |> relu } else { x = x |> gelu }
  for (a,b) in [(1,2),(3,4)]{
     x = x |> linear(8) as l      # c1
     # own line before close

  }
  y = x[:, 1 : -1, :: 2, ...]
  z = if x.shape [0] == 1 { - x } else { not true }
  output out = x|>linear(8,bias=false,init=normal(0.02))|>linear(8,bias=false,init=normal(0.02))|>relu
}
train m { target label: i64[N]
  loss = mse(out, x) }
# end comment'''

MESSY_FORMATTED = '''# header comment
import std.resnet
import "other.nn"

block mlp(hidden: int = 64, p: float = 0.1) {
    input x: f32[N, C]

    # a comment before h
    h = x |> linear(hidden) as fc1 |> relu  # trailing
    h = h
        |> dropout(p)
    return h |> linear(C, bias=false)
}

model m(k: int = 2) {
    input x: f32[N, 8] ~ normal()
    layers: repeat k { x = x |> mlp(16) }
    if k > 1 { x = x |> relu } else { x = x |> gelu }
    for (a, b) in [(1, 2), (3, 4)] {
        x = x |> linear(8) as l   # c1
        # own line before close
    }
    y = x[:, 1:-1, ::2, ...]
    z = if x.shape[0] == 1 { -x } else { not true }
    output out = x |> linear(8, bias=false, init=normal(0.02))
                   |> linear(8, bias=false, init=normal(0.02)) |> relu
}

train m {
    target label: i64[N]
    loss = mse(out, x)
}

# end comment
'''


def test_messy_spec_gets_the_canonical_layout():
    assert format_text(MESSY, "messy.nn") == MESSY_FORMATTED
    assert format_text(MESSY_FORMATTED, "messy.nn") == MESSY_FORMATTED


def test_comments_stay_where_they_were():
    src = ('# top\n\n\n# second paragraph\nmodel m(a: int,  # the a\n'
           '        b: int = 2) {  # open\n'
           '    input x: f32[N, 8]\n    y = f(x,  # first\n2)\n    z = x  # left\n + y\n'
           '    if a > 1 {\n        y = x\n    }  # closed\n    # before else\n    else {\n'
           '        y = -x\n    }\n    q = [1,\n    # inside\n    2]\n    output o = y  # out\n'
           '}  # the end\n# after\n')
    want = ('# top\n\n# second paragraph\nmodel m(a: int,  # the a\n        b: int = 2) {  # open\n'
            '    input x: f32[N, 8]\n    y = f(x,  # first\n          2)\n    z = x  # left\n'
            '        + y\n    if a > 1 {\n        y = x\n    }  # closed\n    # before else\n'
            '    else {\n        y = -x\n    }\n    q = [1,\n         # inside\n         2]\n'
            '    output o = y  # out\n}  # the end\n\n# after\n')
    out = format_text(src, "c.nn")
    assert out == want
    assert comments_of(out) == comments_of(src)
    assert format_text(out, "c.nn") == out


def test_trailing_comments_keep_their_column():
    src = "model m() {\n    input x: f32[N, 8]\n    y = x  |>  relu            # aligned\n" \
          "    output z = y |> gelu      # aligned\n}\n"
    out = format_text(src, "c.nn")
    assert out == "model m() {\n    input x: f32[N, 8]\n" \
                  "    y = x |> relu              # aligned\n" \
                  "    output z = y |> gelu      # aligned\n}\n"
    # a comment whose line was joined or split follows the code by two spaces
    assert format_text("model m() { input x: f32[N]  output y = x }      # c\n", "c.nn") == \
        "model m() {\n    input x: f32[N]\n    output y = x\n}  # c\n"


def test_strings_and_numbers_are_kept():
    src = 'model m() { input x: f32[N]\n assert 1_000 == 1000, "a # in a string"  # real\n' \
          ' output y = x * 1e-3 + 1 .real }'
    out = format_text(src, "s.nn")
    assert '"a # in a string"  # real' in out and "1_000" in out and "1e-3" in out
    assert "1 .real" in out          # `1.real` would read as the number `1.`
    assert comments_of(out) == ["# real"]


def test_long_lines_break_at_the_width():
    src = ("block bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb(aaaaaaaaaaa: int, bbbbbbbbbbbbbbb: float = 0.5, "
           "ccccccccccccccc: str = \"x\", ddddddd: bool = true) {\n    input x: f32[N, 8]\n"
           "    y = some_really_long_function_name(first_argument_value, second_argument_value, "
           "third_argument_value, fourth=4)\n"
           "    y = y |> linear(8, bias=false) as first |> relu |> linear(8, bias=false) as second "
           "|> dropout(0.1)\n"
           "    z = if some_condition_that_is_long and another_condition_long { y |> linear(8) as "
           "first_projection } else { y }\n"
           "    return y + (z |> layer_norm as first_norm |> linear(8, bias=false) as projection "
           "|> dropout(0.1))\n}\n")
    want = '''\
block bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb(aaaaaaaaaaa: int, bbbbbbbbbbbbbbb: float = 0.5,
                                     ccccccccccccccc: str = "x", ddddddd: bool = true) {
    input x: f32[N, 8]
    y = some_really_long_function_name(first_argument_value, second_argument_value,
                                       third_argument_value, fourth=4)
    y = y |> linear(8, bias=false) as first |> relu |> linear(8, bias=false) as second
          |> dropout(0.1)
    z = if some_condition_that_is_long
           and another_condition_long { y |> linear(8) as first_projection } else { y }
    return y
           + (z |> layer_norm as first_norm |> linear(8, bias=false) as projection |> dropout(0.1))
}
'''
    out = format_text(src, "long.nn")
    assert out == want
    assert format_text(out, "long.nn") == out
    narrow = format_text(src, "long.nn", width=40)
    assert format_text(narrow, "long.nn", width=40) == narrow
    assert max(len(ln) for ln in narrow.split("\n")) < max(len(ln) for ln in out.split("\n"))


def test_author_breaks_are_kept_where_a_line_may_break():
    src = ("model m() {\n    input x: f32[N, 8]\n    y = x\n        |> relu\n"
           "    z = concat(\n        [y, y],\n        dim=-1\n    )\n"
           "    w = y +\n  z\n    v = f\n(w)\n    output o = v\n}\n")
    assert format_text(src, "b.nn") == (
        "model m() {\n    input x: f32[N, 8]\n    y = x\n        |> relu\n"
        "    z = concat(\n        [y, y],\n        dim=-1\n    )\n"
        "    w = y\n        + z\n    v = f(w)\n    output o = v\n}\n")


def test_a_long_pipeline_needs_no_recursion():
    src = "model m() {\n    input x: f32[N, 8]\n    output y = x" + " |> relu" * 3000 + "\n}\n"
    out = format_text(src, "p.nn")
    assert format_text(out, "p.nn") == out
    assert max(len(ln) for ln in out.split("\n")) <= 100


def test_byte_order_mark_crlf_and_tabs():
    src = "\ufeffmodel m() {\r\n\tinput x: f32[N, 8]\r\n\toutput y = x |> relu\t# c\r\n}"
    assert format_text(src, "w.nn") == "model m() {\n    input x: f32[N, 8]\n" \
                                       "    output y = x |> relu  # c\n}\n"


def test_a_layout_that_changes_the_program_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(fmt, "_space", lambda a, b: "")     # `model m` would become `modelm`
    with pytest.raises(FormatError) as e:
        format_text("model m() { input x: f32[N]  output y = x }", "r.nn")
    assert e.value.code == "E1401" and "left as it is" in e.value.message
    path = tmp_path / "r.nn"
    path.write_text("model m() { input x: f32[N]  output y = x }")
    assert main(["fmt", str(path)]) == 1
    assert path.read_text() == "model m() { input x: f32[N]  output y = x }"


# ---- the command ----

UGLY = "model m() {\n  input x: f32[N, 4]\n  output y = x|>linear(2)\n}\n"
NICE = "model m() {\n    input x: f32[N, 4]\n    output y = x |> linear(2)\n}\n"


def test_in_place(tmp_path, capsys):
    path = tmp_path / "a.nn"
    path.write_text(UGLY)
    os.chmod(path, 0o640)
    assert main(["fmt", str(path)]) == 0
    assert path.read_text() == NICE
    assert (path.stat().st_mode & 0o777) == 0o640
    assert f"reformatted {path}" in capsys.readouterr().out
    assert main(["fmt", str(path)]) == 0
    assert "0 files reformatted, 1 already formatted" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["a.nn"]     # no temporary left behind


def test_check_prints_a_diff_and_writes_nothing(tmp_path, capsys):
    path = tmp_path / "a.nn"
    path.write_text(UGLY)
    before = path.stat().st_mtime_ns
    assert main(["fmt", "--check", str(path)]) == 1
    out, err = capsys.readouterr()
    assert f"--- {path}\n+++ {path} (formatted)\n" in out
    assert "-  output y = x|>linear(2)\n+    input x: f32[N, 4]\n" \
           "+    output y = x |> linear(2)\n" in out
    assert "1 of 1 file would be reformatted" in err
    assert path.read_text() == UGLY and path.stat().st_mtime_ns == before
    path.write_text(NICE)
    assert main(["fmt", "--check", str(path)]) == 0
    assert capsys.readouterr().out == ""


def test_folders_are_searched_in_order(tmp_path, capsys):
    for rel in ("b.nn", "a/z.nn", "a/c.nn", ".hidden/h.nn", "notes.txt"):
        p = tmp_path / rel
        p.parent.mkdir(exist_ok=True)
        p.write_text(UGLY)
    assert main(["fmt", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.split("\n")[:-1] == [f"reformatted {tmp_path / r}" for r in ("a/c.nn", "a/z.nn",
                                                                           "b.nn")]
    assert (tmp_path / ".hidden/h.nn").read_text() == UGLY
    assert (tmp_path / "notes.txt").read_text() == UGLY


class _Stdio(io.TextIOWrapper):
    def __init__(self, data: bytes = b""):
        super().__init__(io.BytesIO(data), encoding="utf-8")


def test_stdin_to_stdout(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", _Stdio(UGLY.encode()))
    out = _Stdio()
    monkeypatch.setattr(sys, "stdout", out)
    assert main(["fmt", "-"]) == 0
    assert out.buffer.getvalue().decode() == NICE
    monkeypatch.setattr(sys, "stdin", _Stdio(UGLY.encode()))
    out = _Stdio()
    monkeypatch.setattr(sys, "stdout", out)
    assert main(["fmt", "--check", "-"]) == 1
    assert out.buffer.getvalue().decode().startswith("--- -\n+++ - (formatted)\n")


def test_stdin_errors_are_located(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", _Stdio(b"model m( {\n"))
    assert main(["fmt", "-"]) == 1
    err = capsys.readouterr().err
    assert "error[E0101]" in err and "--> <stdin>:1:10" in err and "Traceback" not in err


@pytest.mark.parametrize("data, code", [
    (b"model m( {\n  input x: f32[N]\n}\n", "E0101"),
    (b"model m() { input x: f32[N]  output y = x }\n# caf\xe9\n", "E0003"),
    (b"model m() {\x00}", "E0002"),
    (b"# only a comment\n", "E0104"),
])
def test_bad_files_get_the_located_error_and_stay_untouched(tmp_path, capsys, data, code):
    good = tmp_path / "good.nn"
    good.write_text(UGLY)
    bad = tmp_path / "bad.nn"
    bad.write_bytes(data)
    assert main(["fmt", str(good), str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"error[{code}]" in err and "Traceback" not in err and "internal error" not in err
    assert bad.read_bytes() == data
    assert good.read_text() == UGLY          # nothing is written when any file fails


def test_parse_errors_point_at_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.nn"
    bad.write_text("model m() {\n    input x: f32[N]\n    y = x |> \n}\n")
    assert main(["fmt", "--check", str(bad)]) == 1
    assert f"--> {bad}:4:1" in capsys.readouterr().err


def test_too_big_missing_and_not_nn(tmp_path, capsys, monkeypatch):
    big = tmp_path / "big.nn"
    big.write_text(NICE)
    monkeypatch.setenv("NNDSL_MAX_SOURCE_BYTES", "20")
    assert main(["fmt", str(big)]) == 1
    assert "error[E0606]" in capsys.readouterr().err
    monkeypatch.delenv("NNDSL_MAX_SOURCE_BYTES")
    assert main(["fmt", str(tmp_path / "missing.nn")]) == 1
    assert "error[E0001]" in capsys.readouterr().err
    (tmp_path / "x.txt").write_text(NICE)
    assert main(["fmt", str(tmp_path / "x.txt")]) == 1
    assert "error[E0006]" in capsys.readouterr().err
    assert big.read_text() == NICE


def test_width_is_checked(capsys):
    assert main(["fmt", "--width", "5", "-"]) == 2
    assert "is not a width" in capsys.readouterr().err


def test_format_text_raises_the_parsers_error():
    with pytest.raises(ParseError) as e:
        format_text("model m() { y = }", "e.nn")
    assert e.value.span is not None and e.value.span.file == "e.nn"
    assert isinstance(e.value, NndslError)


# ---- generated programs ----

def _load_fuzz():
    """tools/fuzz.py, the fuzzer's generators (as tests/test_fuzz.py loads it)."""
    if "nndsl_fuzz" in sys.modules:
        return sys.modules["nndsl_fuzz"]
    spec = importlib.util.spec_from_file_location("nndsl_fuzz", ROOT / "tools" / "fuzz.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["nndsl_fuzz"] = mod
    spec.loader.exec_module(mod)
    return mod


fuzz = _load_fuzz()


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.randoms(use_true_random=False))
def test_random_models_keep_their_program(rng):
    text = fuzz.random_model(rng)
    original = _program(nndsl.compile(source=text))
    for width in (100, 50):
        out = format_text(scramble(text, rng), width=width)
        assert format_text(out, width=width) == out
        assert _program(nndsl.compile(source=out)) == original, out


def test_parsing_mutants_format_without_refusal():
    """Mutants of the zoo that still parse (odd numbers, names, duplicated lines) format, and
    formatting them again changes nothing."""
    rng = random.Random(20240607)
    seeds = [s for s in fuzz.seed_corpus() if not s.name.startswith("std/")][::4]
    formatted = 0
    for seed in seeds:
        for _ in range(6):
            data, _how = fuzz.mutate(seed, rng)
            try:
                text = data.decode("utf-8")
                parse(text, "mutant.nn")
            except (NndslError, UnicodeDecodeError):
                continue
            out = format_text(text, "mutant.nn")
            assert format_text(out, "mutant.nn") == out, data
            formatted += 1
    assert formatted > 20
