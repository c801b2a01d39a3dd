"""Source handling: size limits, linear cost, located file-level errors, errors that keep their
own text, parse hints in words, and paths kept apart from source text."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import nndsl
from nndsl.cli import main
from nndsl.errors import LimitError, NndslError, ParseError, escape_controls
from nndsl.syntax.parser import MAX_SOURCE_BYTES, _lark, terminal_names

ROOT = Path(__file__).resolve().parents[1]
MODEL = "model m() { input x: f32[N, 4]  output y = x |> linear(2) }\n"


def _check(capsys, *argv) -> tuple[int, str]:
    rc = main(["check", *map(str, argv)])
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, err
    return rc, err


def _peak_mb(code: str) -> tuple[str, float]:
    """Run ``code`` in a fresh interpreter; its output and its peak resident memory in MB (the
    process's own high-water mark: getrusage in a child of a big process reports the parent's)."""
    probe = code + "\nprint('RSS', [ln.split()[1] for ln in open('/proc/self/status')" \
                   " if ln.startswith('VmHWM')][0])"
    r = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    out, rss = r.stdout.rsplit("RSS ", 1)
    return out, float(rss) / 1024


# ---- sizes ----

def test_an_oversized_spec_is_refused_unread(tmp_path, capsys):
    big = tmp_path / "big.nn"
    with open(big, "wb") as f:       # 50 MB, sparse: cheap to make, costly if it were read
        f.truncate(50 << 20)
    rc, err = _check(capsys, big)
    assert rc == 1 and err.startswith(f"error[E0606]: {big} is 52,428,800 bytes"), err
    assert "at most 1,048,576 bytes" in err and "NNDSL_MAX_SOURCE_BYTES" in err


def test_oversized_source_text_and_imports(tmp_path, capsys):
    text = MODEL + "#" * MAX_SOURCE_BYTES
    with pytest.raises(LimitError, match=r"<string> is 1,048,6\d\d bytes"):
        nndsl.compile(source=text)
    (tmp_path / "big.nn").write_text(text)
    (tmp_path / "main.nn").write_text('import "big.nn"\n' + MODEL)
    rc, err = _check(capsys, tmp_path / "main.nn")
    assert rc == 1 and 'error[E0606]: cannot import "big.nn"' in err
    assert f" --> {tmp_path / 'main.nn'}:1:1" in err


def test_the_limit_can_be_raised(tmp_path, capsys, monkeypatch):
    spec = tmp_path / "s.nn"
    spec.write_text(MODEL + "#" * MAX_SOURCE_BYTES)
    assert _check(capsys, spec)[0] == 1
    monkeypatch.setenv("NNDSL_MAX_SOURCE_BYTES", str(2 * MAX_SOURCE_BYTES))
    assert _check(capsys, spec)[0] == 0
    monkeypatch.setenv("NNDSL_MAX_SOURCE_BYTES", "lots")
    rc, err = _check(capsys, spec)
    assert rc == 1 and "error[E0616]: NNDSL_MAX_SOURCE_BYTES must be a positive number" in err


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc/self/status")
def test_a_long_string_literal_costs_linear_memory():
    n = 1_000_000
    code = ("from nndsl.syntax import parse\n"
            f"m = parse('model m() {{ input x: f32[N]  s = \"' + 'a' * {n} + '\"  output y = x }}')\n"
            "print(len(m.definitions[0].body[1].value.value))")
    out, rss = _peak_mb(code)
    assert out.strip() == str(n)
    # the import of the parser alone is ~50 MB; the old STRING rule took ~400 MB here
    assert rss < 150, f"peak RSS {rss:.0f} MB parsing a 1 MB string literal"


# ---- file-level errors get a location ----

def test_invalid_utf8_points_at_the_first_bad_byte(tmp_path, capsys):
    spec = tmp_path / "u.nn"
    spec.write_bytes(b"model m() {\n  input x: f32[N]  # caf\xc3\xa9 \xff\xfe\n  output y = x }\n")
    rc, err = _check(capsys, spec)
    assert rc == 1 and "error[E0003]" in err and "byte 0xff at line 2, column 27" in err, err
    assert f" --> {spec}:2:27" in err
    assert "2 |   input x: f32[N]  # café \\xff\\xfe" in err     # escaped, never raw
    assert "  |                           ^^^^" in err


def test_an_empty_import_points_at_the_import(tmp_path, capsys):
    (tmp_path / "empty.nn").write_text("")
    (tmp_path / "comments.nn").write_text("# nothing here\n")
    for name in ("empty.nn", "comments.nn"):
        spec = tmp_path / "main.nn"
        spec.write_text(f'\nimport "{name}"\n' + MODEL)
        rc, err = _check(capsys, spec)
        assert rc == 1 and f'error[E0504]: cannot import "{name}"' in err and "is empty" in err
        assert f" --> {spec}:2:1" in err and f'2 | import "{name}"' in err


def test_chained_imports_have_a_depth_limit(tmp_path, capsys):
    for i in range(2000):
        (tmp_path / f"f{i}.nn").write_text(f'import "f{i + 1}.nn"\n' if i < 1999 else
                                           "block b() { input x: f32[N]  return x }\n")
    (tmp_path / "main.nn").write_text('import "f0.nn"\n' + MODEL)
    rc, err = _check(capsys, tmp_path / "main.nn")
    assert rc == 1 and err.startswith("error[E0613]: imports nested more than 64 files deep"), err
    assert re.search(r" --> .*f\d+\.nn:1:1", err) and "RecursionError" not in err


@pytest.mark.parametrize("text", ["\x01\x02\x03\n", "\x1c\x1d\x1e\n", "\n\n  \x0b\n"])
def test_control_characters_are_located(tmp_path, capsys, text):
    spec = tmp_path / "ctl.nn"
    spec.write_text(text)
    rc, err = _check(capsys, spec)
    line = next(i for i, ln in enumerate(text.split("\n"), 1) if ln.strip(" \t"))
    assert rc == 1 and "error[E0103]: unexpected character `\\x" in err, err
    assert re.search(rf" --> {re.escape(str(spec))}:{line}:\d+", err)


# ---- an error keeps the text it was raised on ----

def test_an_error_quotes_its_own_text():
    with pytest.raises(ParseError) as first:
        nndsl.compile(source="model first() { input x: f32[N]  output y = x ) }")
    with pytest.raises(ParseError):
        nndsl.compile(source="model second() {\n input x: f32[N]\n output y = x ]\n}")
    shown = first.value.render()
    assert "model first()" in shown and "second" not in shown


def test_an_error_in_a_rewritten_file_quotes_the_old_text(tmp_path):
    spec = tmp_path / "s.nn"
    spec.write_text("model m() { input x: f32[N]  output y = x |> nosuch }\n")
    with pytest.raises(NndslError) as e:
        nndsl.compile(spec)
    spec.write_text("model m() { input x: f32[N]  output y = x |> relu }  # now fine\n")
    nndsl.compile(spec)
    assert "nosuch" in e.value.render() and "now fine" not in e.value.render()


# ---- parse hints in words ----

def test_every_terminal_has_a_name():
    names = terminal_names()
    for t in _lark().terminals:
        assert t.name in names, f"terminal {t.name} has no human name"
        assert not re.search(r"\b[A-Z_]{2,}\b", names[t.name]), names[t.name]


@pytest.mark.parametrize("text", [
    "model m() { input x: f32[N]  output y = x 3 }",
    "model m() { input x: f32[N]  output y = (x) $ }",
    "model m() { input x: f32[N]  output y = x |> linear(3 4) }",
    "model m() { input x: f32[N]  output y = x |> linear(3, }",
    "model m() { input x: f32[N] ~ }",
    "model m() { input x: f32[N, 4] output y = x[1 2] }",
])
def test_hints_name_no_grammar_terminals(text):
    with pytest.raises(ParseError) as e:
        nndsl.compile(source=text)
    shown = e.value.render()
    assert e.value.span is not None and e.value.span.line == 1
    assert not re.search(r"\b(?:[A-Z]+_[A-Z_]+|__ANON\w*|[A-Z]{4,})\b", shown), shown


def test_operators_read_as_one_phrase():
    with pytest.raises(ParseError) as e:
        nndsl.compile(source="model m() { input x: f32[N]  output y = x 3 }")
    assert "an operator such as `+`, `*` or `<`" in e.value.hint


# ---- paths and source text ----

def test_long_single_line_text_is_text_not_a_file_name():
    with pytest.raises(ParseError) as e:
        nndsl.compile("model m() " + "x" * 300)
    assert e.value.span.col == 11 and len(e.value.message) < 80


def test_paths_and_text_are_told_apart(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    odd = tmp_path / "a{b}.nn"
    rc, err = _check(capsys, "a{b}.nn")
    assert rc == 1 and err.startswith("error[E0001]: file not found: a{b}.nn"), err
    odd.write_text(MODEL)
    assert _check(capsys, "a{b}.nn")[0] == 0
    assert nndsl.compile("a{b}.nn").name == "m"
    assert nndsl.compile(path="a{b}.nn").name == "m"
    assert nndsl.compile(odd).name == "m"
    assert nndsl.compile(source=MODEL).name == "m"
    from nndsl.api import compile_source
    assert compile_source(MODEL, params={}).name == "m"
    with pytest.raises(nndsl.SourceFileError, match="cannot read .*: File name too long"):
        nndsl.compile(path="model m() " + "x" * 300 + ".nn")
    with pytest.raises(nndsl.ArgumentError, match="one of"):
        nndsl.compile(odd, source=MODEL)
    with pytest.raises(nndsl.SourceFileError, match="not a .nn file"):
        nndsl.compile(path=tmp_path / "notes.txt")


# ---- look-alikes: what the eye reads is what the parser reads ----

def test_a_keyword_run_into_a_name_is_an_error():
    with pytest.raises(ParseError) as e:
        nndsl.compile(source="modelfoo(t: int = 1) { input x: f32[N, 4]\n output y = x }")
    assert e.value.code == "E0100" and (e.value.span.line, e.value.span.col) == (1, 1)
    assert "`model foo`" in e.value.hint
    with pytest.raises(ParseError) as e:
        nndsl.compile(source="model m() { input x: f32[N, 4]\n"
                             " h: for i inrange(2) { x = x |> relu }\n output y = x }")
    assert (e.value.span.line, e.value.span.col) == (2, 11) and "`in range`" in e.value.hint
    # names that merely start with a keyword are names
    c = nndsl.compile(source="model m(inputs: int = 4) { input x: f32[N, inputs]\n"
                             " modelled = x |> relu\n output y = modelled }")
    assert c.param_count() == 0 and c.name == "m"


def test_only_ascii_digits_make_numbers():
    with pytest.raises(ParseError) as e:
        nndsl.compile(source="model m() { input x: f32[N, 4]\n output y = x |> linear(\uff12) }")
    assert e.value.code == "E0103" and (e.value.span.line, e.value.span.col) == (2, 25)
    assert "U+FF12" in e.value.message and "ASCII digits" in e.value.hint


def test_a_byte_order_mark_is_skipped(tmp_path):
    f = tmp_path / "bom.nn"
    f.write_bytes(b"\xef\xbb\xbf" + MODEL.encode())
    assert nndsl.compile(f).name == "m"
    with pytest.raises(ParseError) as e:   # columns are counted without it
        nndsl.compile(source="\ufeffmodel m() { input x: f32[N, 4]  output y = x |> relu( }")
    assert (e.value.span.line, e.value.span.col) == (1, 55) and "column 53" in e.value.message


def test_invisible_characters_are_shown_escaped():
    with pytest.raises(ParseError) as e:
        nndsl.compile(source="model m() { input x: f32[N, 4]\n output y = x |> relu\u200b }")
    text = e.value.render()
    assert "\\u200b" in text and "\u200b" not in text
    assert escape_controls("a\ufeffb\u2029c\u00a0d") == "a\\ufeffb\\u2029c\u00a0d"


def test_a_one_line_path_without_the_suffix_gets_a_hint():
    with pytest.raises(ParseError) as e:
        nndsl.compile("/dev/null")
    assert "path='/dev/null'" in e.value.hint


def test_a_parameter_declared_twice_is_an_error():
    for src, col in [("model foo(t: int = 1, t: int = 2) { input x: f32[N, 4]\n output y = x }", 23),
                     ("block b(t, t) { return t }\nmodel m() { input x: f32[N, 4]\n output y = x }",
                      12)]:
        with pytest.raises(nndsl.DefinitionError) as e:
            nndsl.compile(source=src)
        assert e.value.code == "E0501" and (e.value.span.line, e.value.span.col) == (1, col)
        assert e.value.notes[0][1].col == (11 if col == 23 else 9)
