"""Budgets fail fast, located, with the limit named and how to raise it (nndsl/limits.py).

A spec is a program run at compile time: values that double in a loop, blocks that apply the
next block twice, loops nested six deep, parameters and inputs of terabytes. Each case must end
in a LimitError at the place that crossed the limit, quickly and without allocating what it
asked for. Budgets are passed small here so that reaching them takes milliseconds."""

from __future__ import annotations

import time

import pytest

import nndsl
from nndsl.cli import main
from nndsl.elab import Elaborator, load_program
from nndsl.errors import LimitError
from nndsl.limits import DEFAULT, LIMITS, Limits, Progress, parse_size, raise_hint


@pytest.fixture(autouse=True)
def _chdir(root, monkeypatch):
    monkeypatch.chdir(root)


def _check(tmp_path, capsys, text: str) -> str:
    """`nndsl check` on ``text`` fails as a user error (exit 1), no traceback; its stderr."""
    f = tmp_path / "bad.nn"
    f.write_text(text, encoding="utf-8")
    t = time.perf_counter()
    assert main(["check", str(f)]) == 1
    assert time.perf_counter() - t < 10
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, err
    return err


def _elaborate(text: str, **limits):
    """Elaborate the model ``m`` of ``text`` with the given budgets; the LimitError raised."""
    program = load_program(text, "spec.nn")
    el = Elaborator(program, Limits(**limits))
    t = time.perf_counter()
    with pytest.raises(LimitError) as e:
        el.elaborate("m")
    assert time.perf_counter() - t < 5
    return e.value, el


def _model(body: str) -> str:
    return f"model m() {{\n    input x: f32[N, 4]\n{body}\n    output y = x |> linear(4)\n}}\n"


# 1. compile-time values ----------------------------------------------------------------------

def test_an_integer_squared_in_a_loop_stops_at_2_to_the_1024(tmp_path, capsys):
    err = _check(tmp_path, capsys, _model("    k = 2\n    repeat 64 { k = k * k }"))
    assert err.startswith("error[E0601]: the result of `*` is an integer of about 309 digits: "
                          "compile-time integers lie within ±2^1024"), err
    assert "bad.nn:4:21" in err and len(err) < 2000


@pytest.mark.parametrize("body, what", [
    ('    s = "ab"\n    repeat 64 { s = s + s }', "a string of 131,072 characters"),
    ("    l = [1, 2]\n    repeat 64 { l = l + l }", "a list of 131,072 items"),
])
def test_doubling_strings_and_lists_is_refused_before_it_is_built(tmp_path, capsys, body, what):
    err = _check(tmp_path, capsys, _model(body))
    assert err.startswith(f"error[E0603]: {what} (limit 100,000)"), err
    assert "bad.nn:4:21" in err
    flag = "--max-string 200000" if "string" in what else "--max-list 200000"
    assert flag in err and "limits=Limits(" in err


def test_a_list_repeated_past_the_limit(tmp_path, capsys):
    err = _check(tmp_path, capsys, _model("    l = [0] * 10**12"))
    assert err.startswith("error[E0603]: a list of 1,000,000,000,000 items"), err
    assert "bad.nn:3:9" in err


def test_a_symbolic_dim_squared_in_a_loop(tmp_path, capsys):
    err = _check(tmp_path, capsys, "model m() {\n    input x: f32[N, 4]\n    d = N + 1\n"
                 "    repeat 64 { d = d * d }\n    output y = x\n}\n")
    assert err.startswith("error[E0601]: the result of `*` is a symbolic dim too large"), err
    assert "bad.nn:4:21" in err


@pytest.mark.parametrize("use", ['    assert false, l', "    k = sum(l)"])
def test_a_list_that_shares_its_items_is_never_written_out(tmp_path, capsys, use):
    """``l = [l, l]`` sixty times is tiny in memory but 2^60 items long when printed."""
    err = _check(tmp_path, capsys, _model("    l = [1]\n    repeat 60 { l = [l, l] }\n" + use))
    assert "a list of 2" in err and len(err) < 2000, err


def test_the_limits_on_lists_follow_the_budget():
    e, _ = _elaborate(_model("    l = range(50)"), max_list=10)
    assert e.code == "E0603" and "range of 50 values (limit 10)" in e.message
    assert "--max-list 20" in e.hint
    program = load_program(_model("    l = [1] * 50 + [2]"), "spec.nn")
    Elaborator(program, Limits(max_list=51)).elaborate("m")   # at the limit is fine


# 2. expansion: loops, block applications, nodes ----------------------------------------------

def _fanout(levels: int) -> str:
    lines = ["block b0() {\n    input x: f32[N, 4]\n    return x |> relu\n}"]
    for i in range(1, levels):
        lines.append(f"block b{i}() {{\n    input x: f32[N, 4]\n    y = x |> b{i - 1}\n"
                     f"    return y |> b{i - 1}\n}}")
    lines.append(f"model m() {{\n    input x: f32[N, 4]\n    output y = x |> b{levels - 1}\n}}")
    return "\n".join(lines) + "\n"


def test_exponential_block_fan_out_is_stopped_by_the_step_budget():
    e, el = _elaborate(_fanout(40), max_steps=2000)
    assert e.code == "E0603" and "more than 2,000 steps in all" in e.message
    assert el.steps <= 2000 and "--max-steps 4000" in e.hint
    assert (e.span.line, e.span.col) == (12, 14)   # `x |> b1` in b2: it crossed the budget
    notes = [n for n, _ in e.notes]
    assert "... 32 more block applications ..." in notes and len(notes) <= 8, notes


def test_nested_loops_are_refused_before_they_run(tmp_path, capsys):
    err = _check(tmp_path, capsys, _model("    repeat 40000 { repeat 40000 { x = x } }"))
    assert err.startswith("error[E0603]: the loops and block applications of this model take "
                          "more than 50,000 steps in all"), err
    assert "bad.nn:3:20" in err and "in iteration 2 of this loop" in err
    err = _check(tmp_path, capsys, _model("    repeat 10**15 { x = x }"))
    assert err.startswith("error[E0603]: a loop of 1,000,000,000,000,000 iterations"), err


def test_six_nested_loops_stop_at_the_step_budget():
    body = "x = x |> relu"
    for _ in range(6):
        body = f"repeat 100 {{ {body} }}"
    e, el = _elaborate(_model("    " + body), max_steps=5000)
    assert e.code == "E0603" and el.steps <= 5000 and el.nodes < 5000
    assert [n for n, _ in e.notes][0].startswith("in iteration ")


def test_the_node_budget_points_at_the_op_that_crossed_it():
    e, el = _elaborate(_model("    repeat 999 { repeat 999 { x = x |> relu } }"),
                       max_nodes=3000)
    assert e.code == "E0607" and e.message == "the model grows past 3,000 graph nodes"
    assert (e.span.line, e.span.col) == (3, 40)
    assert [n for n, _ in e.notes] == ["in iteration 3 of this loop",
                                       "in iteration 4 of this loop"]
    assert el.nodes == 3001 and "--max-nodes 6000" in e.hint


def test_scan_bodies_count_as_nodes():
    from nndsl.ir.graph import body_of
    text = ("import std.recurrent\nmodel m() {\n    input x: f32[2, T, 4]\n"
            "    h0 = zeros([2, 8])\n"
            "    h, hs = scan(rnn_step(8) as rnn, over=x, init=h0)\n    output y = hs\n}\n")
    program = load_program(text, "spec.nn")
    el = Elaborator(program)
    g = el.elaborate("m")
    inner = sum(len(body_of(n).graph) for n in g if body_of(n) is not None)
    assert inner > 0 and el.nodes >= len(g) + inner - sum(   # body inputs are not ops
        1 for n in g if body_of(n) is not None for b in body_of(n).graph if b.op == "input")
    e, _ = _elaborate(text, max_nodes=len(g))   # the model's graph alone would fit
    assert e.code == "E0607"


def test_defaults_hold_a_large_legal_model():
    """Every budget of the defaults is far above what the zoo needs."""
    program = load_program((__import__("pathlib").Path("specs/vision/resnet152.nn")
                            ).read_text(), "resnet152.nn")
    el = Elaborator(program)
    el.elaborate("resnet152")
    assert el.nodes * 100 < DEFAULT.max_nodes and el.steps * 100 < DEFAULT.max_steps


# 3. parameters and inputs --------------------------------------------------------------------

_TEN = "".join(f"    param p{i}: f32[2**33] = zeros\n" for i in range(10))
_TEN_SPEC = f"model m() {{\n    input x: f32[N, 4]\n{_TEN}    output y = x + p0[0:4] + p9[0:4]\n}}\n"


def test_ten_huge_parameters_fail_check_at_the_one_that_crosses(tmp_path, capsys):
    err = _check(tmp_path, capsys, _TEN_SPEC)
    assert err.startswith("error[E0608]: parameter `p2` (f32[8589934592], 32 GiB) takes the "
                          "model's parameters past 64 GiB"), err
    assert "bad.nn:5:5" in err and "--max-param-bytes 128G" in err


def test_raised_parameter_limit_lets_check_pass_but_not_allocation():
    program = load_program(_TEN_SPEC, "spec.nn")
    g = Elaborator(program, Limits(max_param_bytes=2**40)).elaborate("m")
    assert g.meta["limits"].max_param_bytes == 2**40
    from nndsl.backends.torch import GraphModule
    g.meta["limits"] = Limits(max_param_bytes=40 * 2**30)   # the module checks what it builds
    t = time.perf_counter()
    with pytest.raises(LimitError) as e:
        GraphModule(g)
    assert time.perf_counter() - t < 2
    assert e.value.code == "E0608" and "`p1`" in e.value.message and e.value.span.line == 4


def test_example_inputs_are_sized_before_allocating():
    c = nndsl.compile("model m() {\n    input x: f32[N, 1000000000000]\n"
                      "    output y = x |> relu\n}\n")
    with pytest.raises(LimitError) as e:
        c.example_inputs()
    assert e.value.code == "E0609"
    assert "[2, 1000000000000] (f32) would take 7.3 TiB" in e.value.message
    assert "--max-input-bytes 8G" in e.value.hint


def test_run_refuses_a_huge_example_input(tmp_path, capsys):
    f = tmp_path / "big.nn"
    f.write_text("model m() {\n    input x: f32[N, 1000000000000]\n    output y = x |> relu\n}\n")
    assert main(["run", str(f)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error[E0609]:") and "Traceback" not in err, err


def test_random_inputs_the_module_draws_are_sized_first():
    import torch
    c = nndsl.compile("model m() {\n    input x: f32[N, 4]\n"
                      "    input eps: f32[N, 2**31] ~ normal()\n"
                      "    output y = x + eps[:, 0:4]\n}\n")
    m = c.to_torch()
    with pytest.raises(LimitError) as e:
        m(x=torch.zeros(2, 4))
    assert e.value.code == "E0609" and "input `eps`" in e.value.message


# 4. the table of limits, the hints, the progress hook ----------------------------------------

def test_every_limit_has_a_flag_and_a_hint():
    for name, info in LIMITS.items():
        assert hasattr(DEFAULT, name) and info.flag == "--" + name.replace("_", "-")
        hint = raise_hint(name, getattr(DEFAULT, name))
        assert info.flag in hint and f"limits=Limits({name}=" in hint
    with pytest.raises(ValueError):
        Limits(max_nodes=0)
    assert DEFAULT.with_(max_nodes=7, max_steps=None).max_nodes == 7


def test_parse_size():
    assert parse_size("64G") == 64 * 2**30 and parse_size("512MiB") == 512 * 2**20
    assert parse_size("250_000") == 250_000 and parse_size("1,000") == 1000
    for bad in ("", "-1", "0", "1.5G", "lots"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_progress_hears_the_graph_grow():
    seen = []
    progress = Progress(seen.append, after=0.0, interval=0.0)
    progress.every = 64
    program = load_program(_model("    repeat 500 { x = x |> relu }"), "spec.nn")
    Elaborator(program, progress=progress).elaborate("m")
    assert len(seen) >= 5 and seen[0].startswith("elaborating: 64 nodes, "), seen
    progress.phase("pass cse")
    assert seen[-1].startswith("pass cse, ")


# 5. raising them: the command line's flags and compile(limits=...) ------------------------------

def test_the_command_line_raises_and_lowers_the_node_budget(tmp_path, capsys):
    f = tmp_path / "long.nn"
    f.write_text(_model("    h: repeat 300 { x = x |> relu }"))
    assert main(["check", str(f), "--max-nodes", "100"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error[E0607]: the model grows past 100 graph nodes"), err
    assert "`--max-nodes 200`" in err and "Traceback" not in err
    assert main(["check", str(f), "--max-nodes", "1_000"]) == 0
    capsys.readouterr()
    assert main(["check", str(f), "--max-nodes", "lots"]) == 2   # a usage error
    assert "--max-nodes expects a positive number" in capsys.readouterr().err


def test_compile_takes_limits_and_progress():
    text = _model("    h: repeat 300 { x = x |> relu }")
    with pytest.raises(LimitError) as e:
        nndsl.compile(source=text, limits=Limits(max_nodes=100))
    assert e.value.code == "E0607"
    seen = []
    progress = Progress(seen.append, after=0.0, interval=0.0)
    nndsl.compile(source=text, progress=progress)
    assert any(m.startswith("pass ") for m in seen), seen
    with pytest.raises(nndsl.ArgumentError):
        nndsl.compile(source=text, limits={"max_nodes": 100})


def test_a_raised_input_limit_is_what_example_inputs_use():
    text = "model m() {\n    input x: f32[N, 1024]\n    output y = x |> relu\n}\n"
    assert nndsl.compile(source=text).example_inputs(batch=2)["x"].shape == (2, 1024)
    c = nndsl.compile(source=text, limits=Limits(max_input_bytes=4096))
    with pytest.raises(LimitError) as e:
        c.example_inputs(batch=2)
    assert e.value.code == "E0609" and e.value.span.line == 2 and "`x`" in e.value.message
