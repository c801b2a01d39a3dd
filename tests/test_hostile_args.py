"""Hostile input gets a located, human error (file:line:col, what is wrong, how to fix): out-of-
range numeric arguments, absurd literals, bad list slices, control characters in a spec, and
out-of-range seeds on the command line; never a traceback, a backend crash or a silent NaN."""

import pytest

import nndsl
from nndsl.cli import main
from nndsl.errors import ArgumentError, LimitError, NndslError, escape_controls


@pytest.fixture(autouse=True)
def _chdir(root, monkeypatch):
    monkeypatch.chdir(root)


def _model(body: str) -> str:
    return f"model m() {{\n    input x: f32[N, 3, 8, 8]\n{body}\n}}\n"


def _pipe(call: str) -> str:
    return _model(f"    output y = x |> {call}")


def _check(tmp_path, capsys, text: str) -> str:
    """Run `nndsl check` on ``text``: it must fail as a user error (exit 1), with no
    traceback; returns stderr."""
    f = tmp_path / "bad.nn"
    f.write_text(text, encoding="utf-8")
    assert main(["check", str(f)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, err
    assert err.startswith("error[E"), err
    return err


# 1. numeric arguments have ranges their kind enforces ---------------------------------------

@pytest.mark.parametrize("call, col, code", [
    ("conv2d(4, 3, stride=2**63)", 34, "E0601"),
    ("conv2d(4, 3, padding=2**41)", 34, "E0601"),
    ("conv2d(4, 2**50)", 31, "E0601"),
    ("max_pool2d(2, stride=10**30)", 35, "E0601"),
    ("tril(10**30)", 26, "E0601"),
    ("triu(-(2**63))", 26, "E0601"),
    ("flatten(start=2**70)", 29, "E0601"),
    ("leaky_relu(1e39)", 32, "E0604"),
    ("leaky_relu(-1e39)", 32, "E0604"),
    ("leaky_relu(inf)", 32, "E0212"),
    ("elu(alpha=-inf)", 25, "E0212"),
    ("masked_fill(x > 0, 1e39)", 40, "E0604"),
])
def test_out_of_range_arguments_are_located(tmp_path, capsys, call, col, code):
    err = _check(tmp_path, capsys, _pipe(call))
    assert err.startswith(f"error[{code}]:"), err
    assert f"bad.nn:3:{col}" in err, err
    assert "out of range" in err or "f32" in err or "finite" in err


@pytest.mark.parametrize("call", ["batch_norm(eps=-1)", "batch_norm(eps=0)",
                                  "layer_norm(eps=-1.0)", "group_norm(1, eps=-1e-5)",
                                  "rms_norm(eps=0.0)", "batch_norm(eps=inf)"])
def test_norm_eps_must_be_positive(tmp_path, capsys, call):
    err = _check(tmp_path, capsys, _pipe(call))
    assert err.startswith("error[E0212]: ") and "argument `eps` must be a " in err, err
    assert "bad.nn:3:" in err and "positive" in err or "finite" in err


def test_nan_is_refused_where_a_float_is_expected(tmp_path, capsys):
    err = _check(tmp_path, capsys, _pipe("leaky_relu(inf - inf)"))
    assert "not NaN" in err and "bad.nn:3:32" in err


def test_error_classes_and_codes():
    with pytest.raises(LimitError) as e:
        nndsl.compile(_pipe("conv2d(4, 3, stride=2**63)"))
    assert e.value.code == "E0601" and e.value.span.line == 3
    with pytest.raises(ArgumentError) as e:
        nndsl.compile(_pipe("batch_norm(eps=-1)"))
    assert e.value.code == "E0212" and e.value.span.line == 3
    with pytest.raises(LimitError) as e:
        nndsl.compile(_pipe("leaky_relu(1e39)"))
    assert e.value.code == "E0604"


def test_in_range_arguments_still_compile():
    for call in ("leaky_relu(0.2)", "masked_fill(x > 0, -inf)", "clamp(min=-inf, max=6)",
                 "tril(-1)", "batch_norm(eps=1e-3)", "layer_norm(eps=1e-12)",
                 "conv2d(4, 3, stride=2, padding=1)", "masked_fill(x > 0, -3.4e38)"):
        nndsl.compile(_pipe(call))


def test_seed_out_of_range_is_a_usage_error(capsys):
    for seed in (str(2**70), "-1", "2**70", "9" * 5000):
        assert main(["run", "specs/vision/mnist_cnn.nn", "--seed", seed]) == 2
        err = capsys.readouterr().err
        assert "argument --seed" in err and "2^63" in err and "Traceback" not in err, err
        assert len(err) < 2000


def test_largest_seed_is_accepted():
    from nndsl.cli_args import _seed
    assert _seed(str(2**63 - 1)) == 2**63 - 1 and _seed("0") == 0


# 2. absurd literals -------------------------------------------------------------------------

def test_huge_integer_literal_is_located(tmp_path, capsys):
    err = _check(tmp_path, capsys, _pipe("linear(" + "9" * 5000 + ")"))
    assert err.startswith("error[E0601]: the integer 9999999999...999999 (5,000 digits) is too "
                          "large"), err
    assert "bad.nn:3:28" in err and len(err) < 2000


def test_huge_float_literal_is_located(tmp_path, capsys):
    err = _check(tmp_path, capsys, _model("    output y = x * 1e400"))
    assert err.startswith("error[E0601]: the number 1e400 is too large for a float"), err
    assert "bad.nn:3:20" in err and "inf" in err


# 3. slices of compile-time lists -------------------------------------------------------------

@pytest.mark.parametrize("sub, col, text", [
    ("0.5:2", 11, "the start of a list slice must be an int, got a float (0.5)"),
    (":2.0", 12, "the stop of a list slice must be an int"),
    ("::true", 13, "the step of a list slice must be an int"),
    ("::0", 13, "a list slice's step cannot be zero"),
])
def test_bad_list_slices_are_located(tmp_path, capsys, sub, col, text):
    body = f"    l = [1, 2, 3]\n    z = l[{sub}]\n    output y = x"
    err = _check(tmp_path, capsys, _model(body))
    assert text in err and f"bad.nn:4:{col}" in err, err


def test_good_list_slices_still_work():
    body = ("    l = [1, 2, 3, 4]\n    assert l[1:3] == [2, 3]\n    assert l[::-1] == [4, 3, 2, 1]"
            "\n    assert l[::2] == [1, 3]\n    output y = x")
    nndsl.compile(_model(body))


# 4. control characters never reach the terminal ---------------------------------------------

def test_control_bytes_in_a_string_are_escaped(tmp_path, capsys):
    err = _check(tmp_path, capsys, _pipe('gelu("\x1b]0;pwn\x07")'))
    assert "\x1b" not in err and "\x07" not in err
    assert '"\\x1b]0;pwn\\x07"' in err and "bad.nn:3:21" in err
    lines = err.splitlines()
    src = next(ln for ln in lines if ln.startswith("3 | "))
    caret = lines[lines.index(src) + 1]
    # the caret still sits under the call, as wide as the escaped text
    assert caret.index("^") == src.index("gelu") and caret.count("^") == len('gelu("\\x1b]0;pwn'
                                                                              '\\x07")')


def test_control_bytes_in_a_name_are_escaped(tmp_path, capsys):
    err = _check(tmp_path, capsys, _pipe("lin\x1bear(2)"))
    assert "\x1b" not in err and "\\x1b" in err and "bad.nn:3:24" in err


def test_escape_controls():
    assert escape_controls("plain\ttext é") == "plain\ttext é"
    assert escape_controls("a\x1b[31mb\rc\x7f\x9b\u202e") == "a\\x1b[31mb\\x0dc\\x7f\\x9b\\u202e"
    err = NndslError("bad \x1b name", hint="rename \x07 it", notes=[("see \x1b", None)])
    text = err.render()
    assert "\x1b" not in text and "\x07" not in text and text.count("\\x1b") == 2


def test_huge_numbers_beside_tensors_are_located(tmp_path, capsys):
    err = _check(tmp_path, capsys, _model("    output y = x + 10**30"))
    assert err.startswith("error[E0601]: the integer (31 digits) is too large to combine with a "
                          "tensor"), err
    assert "bad.nn:3:16" in err
    err = _check(tmp_path, capsys, _model("    output y = x[:, :, 0:2**63]"))
    assert err.startswith("error[E0601]: slice bound 9223372036854775808 is out of range"), err
    assert "bad.nn:3:26" in err
    err = _check(tmp_path, capsys, _model("    output y = x * (inf - inf)"))
    assert err.startswith("error[E0240]: `*` of a tensor and NaN") and "bad.nn:3:16" in err


def test_counts_out_of_range_are_usage_errors(capsys):
    for n in (str(10**20), "0", "-3", "many"):
        assert main(["run", "specs/vision/mnist_cnn.nn", "--batch", n]) == 2
        err = capsys.readouterr().err
        assert "argument --batch" in err and "2^31" in err and "Traceback" not in err, err


def test_a_train_section_seed_out_of_range_is_located(tmp_path, capsys):
    f = tmp_path / "t.nn"
    f.write_text("model m() {\n input x: f32[N, 4]\n output y = x |> linear(2)\n}\n"
                 "train m {\n target t: i64[N]\n data = digits\n loss = cross_entropy(y, t)\n"
                 f" seed = {2**70}\n epochs = 1\n}}\n")
    assert main(["check", str(f)]) == 1
    err = capsys.readouterr().err
    assert "`seed`" in err and "out of range" in err and "t.nn:9:" in err, err
    assert "Traceback" not in err and "internal error" not in err


def test_recurrent_dropout_is_a_probability(tmp_path, capsys):
    err = _check(tmp_path, capsys, "model m() {\n input x: f32[N, T, 4]\n"
                 " output y = x |> lstm(8, layers=2, dropout=1.5)\n}\n")
    assert "probability" in err and "bad.nn:3:" in err


@pytest.mark.parametrize("sep", ["\x0c", "\x0b", "\u2028", "\x1c", "\x85"])
def test_the_quoted_line_is_the_one_the_parser_counts(tmp_path, capsys, sep):
    """Only \\n ends a line: a form feed or a Unicode line separator in a comment must not
    shift the source line quoted under an error."""
    err = _check(tmp_path, capsys, f"# a comment{sep}with a separator\nmodel m() {{\n"
                 "    input x: f32[N, 3]\n    output y = x |> linaer(4)\n}\n")
    assert "bad.nn:4:" in err and "output y = x |> linaer(4)" in err, err
