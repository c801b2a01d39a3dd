"""Diagnostics beyond errors: warnings (W-codes) for what a spec writes and nothing uses, with
their spans and rustc-style rendering, on the command line (stderr, `--deny-warnings`) and in
the API (`Compiled.warnings`); the zoo is free of them. Also messages that say what to do: a
`range` over a symbolic dim, a pipeline into a block that takes more inputs than it gets, and
did-you-mean suggestions only for likely typos."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import nndsl
from nndsl.cli import main
from nndsl.elab.builtins import _suggest
from nndsl.errors import WARNINGS, NndslWarning

from conftest import ROOT, SPECS, spec_id


def warnings_of(text: str, **kw) -> list[NndslWarning]:
    return nndsl.compile(textwrap.dedent(text), **kw).warnings


def codes(ws) -> list[str]:
    return [w.code for w in ws]


def write(tmp_path, text: str, name: str = "spec.nn"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


# A residual projection computed in every iteration and read by the next one: the last
# iteration's is never read, so its parameters are counted and affect nothing.
RESIDUAL = """\
model m(width: int = 8) {
    input x: f32[N, 8]
    r = x
    stages: for i in range(3) {
        y = (x |> linear(width) as body |> relu) + r
        r = x |> linear(width) as proj
        x = y
    }
    output out = x
}
"""


# ------------------------------------------------------------------ unused layers and values

def test_the_last_iterations_residual_layer_is_w0101_at_the_call():
    ws = warnings_of(RESIDUAL)
    assert codes(ws) == ["W0101"]
    w = ws[0]
    assert w.subject == "stages.2.proj"
    assert w.message == ("the result of layer `stages.2.proj` is never used: its 72 parameters "
                         "are counted but affect no output")
    assert (w.span.line, w.span.col) == (6, 18)
    assert "other iterations of its loop" in w.hint        # the line is used elsewhere
    assert nndsl.compile(RESIDUAL).param_count() == 3 * 72 * 2   # still counted


def test_a_warning_renders_like_an_error():
    text = warnings_of(RESIDUAL)[0].render()
    assert text.splitlines()[:5] == [
        "warning[W0101]: the result of layer `stages.2.proj` is never used: its 72 parameters "
        "are counted but affect no output",
        " --> <string>:6:18",
        "  |",
        "6 |         r = x |> linear(width) as proj",
        "  |                  ^^^^^^^^^^^^^"]
    assert text.splitlines()[5].startswith("  = hint: ")


def test_the_warning_is_computed_before_the_optimizer_prunes_dead_code():
    for opt in ("O0", "O1", "O2"):
        c = nndsl.compile(RESIDUAL, opt=opt)
        assert codes(c.warnings) == ["W0101"]
    o1 = nndsl.compile(RESIDUAL, opt="O1")
    assert not any(n.name == "stages.2.proj" for n in o1.graph)    # pruned, still reported


def test_every_unused_iteration_is_one_warning_naming_them_all():
    ws = warnings_of("""
        model m() {
            input x: f32[N, 8]
            s: for i in range(4) {
                side = x |> linear(8) as side
                x = x |> linear(8) |> relu
            }
            output y = x
        }
        """)
    assert codes(ws) == ["W0101"]
    assert "`s.0.side`, `s.1.side`, `s.2.side` and 1 more" in ws[0].message
    assert "288 parameters" in ws[0].message
    assert "loop" not in ws[0].hint          # no iteration uses it


def test_unused_block_result_and_unused_part_of_a_result_are_reported_at_the_call():
    ws = warnings_of("""
        block two(c: int) {
            input a: f32[N, D]
            h = a |> linear(c)
            return h, h |> linear(c) as tail
        }
        model m() {
            input x: f32[N, 8]
            a, b = two(x, 4)
            dead = two(x, 4) as unused
            output y = a
        }
        """)
    assert codes(ws) == ["W0101", "W0101"]
    partial, whole = ws
    assert partial.message == ("result 2 of the 2 that block `two` (`two_0`) returns is never "
                               "used: its 20 parameters are counted but affect no output")
    assert (partial.span.line, partial.span.col) == (9, 12)
    assert whole.message.startswith("the result of block `two` (`unused`) is never used: its "
                                    "56 parameters")
    assert whole.span.line == 10


def test_a_layer_a_block_computes_and_drops_is_reported_inside_the_block():
    ws = warnings_of("""
        block leaky(c: int) {
            input a: f32[N, D]
            scratch = a |> linear(c) as scratch
            return a |> linear(c) as out
        }
        model m() {
            input x: f32[N, 8]
            output y = x |> leaky(4)
        }
        """)
    assert codes(ws) == ["W0101"]
    assert ws[0].subject == "leaky_0.scratch" and ws[0].span.line == 4


def test_an_unused_scan_and_a_step_that_drops_a_layer():
    ws = warnings_of("""
        block step(hidden: int) {
            input x: f32[N, E]
            input h: f32[N, hidden]
            junk = x |> linear(3) as junk
            h2 = tanh((x |> linear(hidden) as ih) + h)
            return h2, h2
        }
        model m() {
            input seq: f32[N, T, 4]
            input h0: f32[N, 8]
            h, ys = scan(step(8) as used, over=seq, init=h0)
            h2, ys2 = scan(step(8) as spare, over=seq, init=h0)
            output y = ys
        }
        """)
    assert codes(ws) == ["W0101", "W0101"]     # the unused scan's step is not looked into
    inside_used, spare = ws
    assert inside_used.subject == "used.junk" and inside_used.span.line == 5
    assert inside_used.message == ("the result of layer `used.junk` is never used: its 15 "
                                   "parameters are counted but affect no output")
    assert spare.message.startswith("the result of `scan` (`spare`) is never used: its 55 "
                                    "parameters")
    assert spare.span.line == 13


def test_unused_param_value_and_input():
    ws = warnings_of("""
        model m() {
            input x: f32[N, 8]
            input mask: f32[N, 8]
            input extra: f32[N, 8]
            param cls: f32[1, 8] = zeros
            z = x |> relu
            w = extra * 2
            output y = x |> linear(2)
        }
        """)
    assert codes(ws) == ["W0201", "W0201", "W0102", "W0103", "W0103"]
    mask, extra, cls, z, w = ws
    assert mask.message == "input `mask` is never used: no output depends on it"
    assert extra.message == ("input `extra` only feeds values that are never used: no output "
                             "depends on it")
    assert cls.message == ("`param cls` is never used: its 8 parameters are counted but affect "
                           "no output")
    assert z.message == "the result of `relu` is never used" and z.span.line == 7
    assert w.message == "the result of `mul` is never used" and w.span.line == 8
    assert [x.span.line for x in ws] == [4, 5, 6, 7, 8]


def test_a_used_spec_has_no_warnings():
    assert warnings_of("""
        model m() {
            input x: f32[N, 8]
            param cls: f32[1, 8] = zeros
            a, b = x |> split(2, dim=-1)          # b unused: one node, its first result used
            output y = (a |> linear(8)) + cls
        }
        """) == []


# ------------------------------------------------------------------ model parameters

def test_a_model_parameter_never_read_is_w0301():
    ws = warnings_of("""
        model m(width: int = 8, depth: int = 2) {
            input x: f32[N, 8]
            output y = x |> linear(width)
        }
        """)
    assert codes(ws) == ["W0301"]
    assert ws[0].message == "model parameter `depth` is never read: its value changes nothing"
    assert ws[0].subject == "depth" and (ws[0].span.line, ws[0].span.col) == (2, 25)


def test_a_model_parameter_reassigned_before_it_is_read():
    ws = warnings_of("""
        model m(width: int = 8) {
            input x: f32[N, 8]
            width = 16
            output y = x |> linear(width)
        }
        """)
    assert codes(ws) == ["W0301"]
    assert "reassigned before it is read" in ws[0].message
    assert ws[0].notes[0][0] == "reassigned here" and ws[0].notes[0][1].line == 4


@pytest.mark.parametrize("params, use", [
    ("wide: bool = false, width: int = 8",        # the other branch of an if
     "h = if wide { x |> linear(width) } else { x }"),
    ("wide: bool = false, width: int = 8",        # a branch not taken
     "h = x\n    if wide { h = x |> linear(width) }"),
    ("width: int = 8",                            # a loop of no iterations
     "h = x\n    for i in range(0) { h = h |> linear(width) }"),
    ("wide: bool = false, width: int = 8",        # not evaluated by `and`
     "h = if wide and width > 2 { x |> linear(4) } else { x }"),
    ("width: int = 8",                            # read, whichever branch is taken
     "h = x |> linear(if width > 0 { 4 } else { 8 })"),
    ("width: int = 8, width2: int = width * 2",   # read in another's default
     "h = x |> linear(width2)"),
])
def test_a_parameter_that_matters_for_other_values_is_not_reported(params, use):
    assert warnings_of(f"""
        model m({params}) {{
            input x: f32[N, 8]
            {use}
            output y = h
        }}
        """) == []


def test_a_parameter_only_a_train_target_reads_is_used():
    assert warnings_of("""
        model m(classes: int = 3) {
            input x: f32[N, 4]
            output logits = x |> linear(3)
        }
        train m {
            target y: f32[N, classes]
            data = blobs(n=32, classes=3)
            loss = mse(logits, y)
        }
        """) == []


# ------------------------------------------------------------------ the command line

@pytest.fixture
def _root(monkeypatch):
    monkeypatch.chdir(ROOT)


def test_check_prints_warnings_on_stderr_and_succeeds(tmp_path, capsys):
    path = write(tmp_path, RESIDUAL)
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr()
    assert out.out == "ok: m — 432 parameters\n"
    assert out.err.startswith("warning[W0101]: the result of layer `stages.2.proj`")
    assert f" --> {path}:6:18" in out.err


@pytest.mark.parametrize("command", [["check"], ["inspect"], ["inspect", "--diff", "O0", "O2"],
                                     ["compile", "--to", "onnx", "-o", "{tmp}/m.onnx"],
                                     ["graph"]])
def test_every_compiling_command_warns_once(tmp_path, capsys, command):
    path = write(tmp_path, RESIDUAL)
    cmd = [c.replace("{tmp}", str(tmp_path)) for c in command]
    assert main([cmd[0], str(path), *cmd[1:]]) == 0
    err = capsys.readouterr().err
    assert err.count("warning[W0101]") == 1, err


def test_deny_warnings_makes_them_an_error(tmp_path, capsys):
    path = write(tmp_path, RESIDUAL)
    assert main(["check", str(path), "--deny-warnings"]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert "warning[W0101]" in out.err
    assert "error[E0010]: 1 warning (W0101) denied by --deny-warnings" in out.err
    assert main(["compile", str(path), "--deny-warnings", "-o", str(tmp_path / "b")]) == 1
    assert not (tmp_path / "b").exists()


def test_deny_warnings_passes_a_clean_spec(capsys, _root):
    assert main(["check", "specs/vision/mnist_cnn.nn", "--deny-warnings"]) == 0
    assert capsys.readouterr().err == ""


def test_deny_warnings_in_a_real_process(tmp_path):
    path = write(tmp_path, RESIDUAL)
    r = subprocess.run([sys.executable, "-m", "nndsl", "check", str(path), "--deny-warnings"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and r.stdout == ""
    assert "Traceback" not in r.stderr
    assert r.stderr.rstrip().endswith("= hint: fix what the warnings point at, or compile "
                                      "without --deny-warnings")


def test_train_denies_warnings_before_training(tmp_path, capsys):
    path = write(tmp_path, RESIDUAL + textwrap.dedent("""
        train m {
            target t: i64[N]
            data = blobs(n=32, classes=8)
            loss = cross_entropy(out, t)
            epochs = 1
        }
        """))
    rc = main(["train", str(path), "--deny-warnings", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 1 and "error[E0010]" in err and "warning[W0101]" in err
    assert not (tmp_path / "run").exists()


def test_compile_says_how_many_parameters_it_wrote(tmp_path, capsys, _root):
    spec = "specs/vision/resnet18.nn"
    assert main(["compile", spec, "-O2", "-o", str(tmp_path / "r")]) == 0
    assert capsys.readouterr().out == (
        f"wrote {tmp_path}/r/model.py and {tmp_path}/r/weights.safetensors (torch, O2): "
        f"11,684,712 parameters (the spec has 11,689,512)\n")
    assert main(["compile", "specs/vision/mnist_cnn.nn", "-o", str(tmp_path / "m")]) == 0
    assert capsys.readouterr().out.endswith("(torch, O1): 121,930 parameters\n")
    assert main(["compile", "specs/vision/mnist_cnn.nn", "--to", "onnx", "-O2",
                 "-o", str(tmp_path / "m.onnx")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"wrote {tmp_path}/m.onnx (onnx opset ") and ", O2): " in out


def test_every_warning_code_is_documented():
    assert set(WARNINGS) == {"W0101", "W0102", "W0103", "W0201", "W0301"}


# ------------------------------------------------------------------ the zoo

# The warnings judged genuine in the zoo (spec stem -> codes); none at present.
GENUINE: dict[str, list[str]] = {}


@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_the_zoo_has_no_false_warnings(spec):
    from nndsl.api import load
    models = load(spec)[0].models
    found = []
    for model in models:
        found += codes(nndsl.compile(spec, model=model, opt="O0").warnings)
    assert found == GENUINE.get(spec.stem, [])


# ------------------------------------------------------------------ messages that say what to do

def test_range_over_a_symbolic_dim_points_to_scan():
    with pytest.raises(nndsl.NndslError) as err:
        nndsl.compile(textwrap.dedent("""
            model m() {
                input x: f32[N, T, D]
                h = x
                for t in range(T) { h = h |> relu }
                output y = h
            }
            """))
    e = err.value
    assert e.code == "E0245"
    assert e.message.startswith("range needs compile-time integers, but `T` is a symbolic dim")
    assert "scan(step, over=xs)" in e.hint and "steps=T" in e.hint
    assert "Recurrence: scan" in e.hint
    assert (e.span.line, e.span.col) == (5, 14)


def test_range_over_an_expression_of_a_symbolic_dim():
    with pytest.raises(nndsl.NndslError) as err:
        nndsl.compile("model m() { input x: f32[N, T]  for t in range(1, T - 1) { }  "
                      "output y = x }")
    assert "`T - 1` depends on the symbolic dim `T`" in err.value.message


GATE = """\
block gate(c: int = 8) {
    input a: f32[N, D]
    input b: f32[N, D]
    return (a |> sigmoid) * b
}
model m() {
    input x: f32[N, 8]
    h = x |> %s
    output y = h |> relu
}
"""


@pytest.mark.parametrize("stage", ["gate", "gate(4)", "gate as g"])
def test_a_pipeline_into_a_block_missing_inputs_is_an_error_at_the_call(stage):
    with pytest.raises(nndsl.NndslError) as err:
        nndsl.compile(GATE % stage)
    e = err.value
    assert e.code == "E0211"
    assert e.message == ("block `gate` takes 2 tensor inputs (a, b), but the pipeline gives it "
                         "1 (a): `b` is missing")
    assert (e.span.line, e.span.col) == (8, 14)
    assert "`x |> gate(b, ...)` is `gate(x, b, ...)`" in e.hint
    assert e.notes == [("`gate` is defined here", e.notes[0][1])] and e.notes[0][1].line == 1


def test_a_pipeline_that_gives_every_input_works():
    c = nndsl.compile(GATE.replace("input x: f32[N, 8]", "input x: f32[N, 8]\n    input z: "
                                                          "f32[N, 8]") % "gate(z)")
    assert [n.op for n in c.unoptimized if n.op not in ("input",)][-1] == "relu"


def test_a_block_instance_applied_to_too_few_tensors_names_its_inputs():
    with pytest.raises(nndsl.NndslError) as err:
        nndsl.compile(GATE.replace("h = x |> %s", "g = gate(4)\n    h = g(x)"))
    assert err.value.message == "block `gate` takes 2 tensor inputs (a, b), got 1"


@pytest.mark.parametrize("name, candidates, want", [
    ("rleu", ["relu", "elu", "selu"], "relu"),             # a swap of neighbours
    ("linaer", ["linear", "line"], "linear"),
    ("conv2", ["conv1d", "conv2d", "conv3d"], "conv2d"),
    ("hiden", ["hidden", "heads"], "hidden"),
    ("ReLU", ["relu"], "relu"),                              # case aside
    ("maxpool2d", ["max_pool2d", "avg_pool2d"], "max_pool2d"),
    ("pad", ["expand", "add", "relu"], None),               # unrelated names are not offered
    ("einsum", ["sum", "cumsum", "mean"], None),
    ("topk", ["top", "stop"], "top"),
    ("qzx", ["relu", "tanh"], None),
    ("relu", ["relu"], None),                                # the name itself is no typo
])
def test_suggestions_only_for_likely_typos(name, candidates, want):
    assert _suggest(name, candidates) == (f"did you mean `{want}`?" if want else None)


@pytest.mark.parametrize("name, hint", [
    ("reluu", "did you mean `relu`?"),
    ("linaer", "did you mean `linear`?"),
    ("zzqx_unknown", None),
    ("None", "the language spells it `none`"),
])
def test_unknown_names_suggest_only_close_ones(name, hint):
    with pytest.raises(nndsl.NndslError) as err:
        nndsl.compile(f"model m() {{ input x: f32[N, 4]  output y = x |> {name} }}")
    assert err.value.code == "E0201" and err.value.hint == hint
