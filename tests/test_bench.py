"""nndsl bench and nndsl run --backend: the paths, their outputs, the statistics, the errors.

Nothing here asserts a speed (the machines are shared and noisy): the tests check what the
benchmark computes from the times it measured, that every path computes the spec's function,
and that the memory it reports covers what the path must hold.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nndsl.bench import Options, bench, fastest_backend
from nndsl.bench.measure import Result, deviation, ratios, time_rounds, verdict
from nndsl.cli import main

SPEC = """\
model wide(width: int = 512) {
    input x: f32[N, 64]
    output y = x |> linear(width) as fc1 |> relu |> linear(10) as fc2
}
"""

CONV = """\
model conv() {
    input x: f32[N, 3, 16, 16]
    output y = x |> conv2d(8, 3, padding=1) as c1 |> batch_norm as bn |> relu
}
"""


@pytest.fixture
def spec(tmp_path):
    p = tmp_path / "wide.nn"
    p.write_text(SPEC)
    return p


# ---- the statistics, on times given by hand ----

def _result(name, times):
    r = Result(name, "")
    r.times = list(times)
    return r


def test_speedup_is_the_median_of_per_round_ratios():
    ref = _result("ref", [1.0, 2.0, 1.0, 4.0, 1.0])
    fast = _result("fast", [0.5, 0.5, 0.25, 1.0, 0.5])     # ratios 2, 4, 4, 4, 2
    ratios([ref, fast], ref)
    assert ref.speedup == 1.0 and ref.low == ref.high == 1.0
    assert fast.speedup == 4.0
    assert (fast.low, fast.high) == (2.0, 4.0)
    # the medians of the times alone would say 2×: the per-round ratio sees the drift
    assert ref.median_s / fast.median_s == 2.0


def test_a_winner_is_named_only_outside_the_noise():
    ref = _result("ref", [1.0] * 8)
    a = _result("a", [0.50, 0.52, 0.49, 0.51, 0.50, 0.50, 0.51, 0.49])
    b = _result("b", [0.80, 0.82, 0.79, 0.81, 0.80, 0.80, 0.79, 0.81])
    ratios([ref, a, b], ref)
    best, ties, noisy = verdict([ref, a, b])
    assert best is a and ties == [] and not noisy
    c = _result("c", [0.51, 0.49, 0.50, 0.52, 0.49, 0.50, 0.51, 0.50])
    ratios([c], ref)
    best, ties, _ = verdict([ref, a, b, c])
    assert {best.name, *(t.name for t in ties)} == {"a", "c"}
    wild = _result("wild", [0.2, 1.5, 0.3, 1.2, 0.9, 2.0, 0.25, 1.0])
    ratios([wild], ref)
    assert verdict([ref, a, wild])[2]          # its middle half is far wider than 15%


def test_rounds_alternate_in_a_rotating_order():
    seen = []
    calls = [lambda k=k: seen.append(k) for k in range(3)]
    out = time_rounds(calls, [lambda: None] * 3, rounds=4, budget_s=0, sample_s=0)
    assert [len(t) for t in out] == [4, 4, 4]
    timed = seen[6:]                           # after two warm-up calls each
    assert timed == [0, 1, 2, 1, 2, 0, 2, 0, 1, 0, 1, 2]


def test_short_calls_are_repeated_within_a_sample():
    n = []
    out = time_rounds([lambda: n.append(1)], [lambda: None], rounds=3, budget_s=0,
                      sample_s=0.001)
    assert len(n) > 2 + 3 * 10                 # a list append is far below a millisecond
    assert all(t < 1e-4 for t in out[0])       # and the time is per call


def test_deviation_is_relative_to_the_reference_scale():
    ref = [np.array([10.0, -20.0]), np.array([1.0])]
    assert deviation([np.array([10.0, -19.0]), np.array([1.0])], ref) == pytest.approx(0.05)
    assert deviation([np.array([1.0, 2.0, 3.0])], [np.array([1.0, 2.0])]) == float("inf")


# ---- the paths, on a real spec ----

def test_every_path_computes_the_spec_and_the_report_is_consistent(spec):
    r = bench(Options(str(spec), batch=16), compile_=False, rounds=6, memory=False)
    names = [x.name for x in r.results]
    assert names == ["torch O0", "torch O1", "torch O2", "onnxruntime O2",
                     "torch O1 int8-dynamic", "onnxruntime O1 int8-dynamic",
                     "onnxruntime O1 int8-dynamic u8s8"]
    assert r.reference == "torch O0" and r.rounds == 6
    by = {x.name: x for x in r.results}
    assert by["torch O0"].speedup == 1.0
    for x in r.results:
        assert x.unavailable is None, x.unavailable
        assert len(x.times) == 6 and all(t > 0 for t in x.times)
        assert x.low <= x.speedup <= x.high
    for name in ("torch O1", "torch O2", "onnxruntime O2"):
        assert by[name].deviation < 1e-5
    for name in ("torch O1 int8-dynamic", "onnxruntime O1 int8-dynamic"):
        assert 1e-5 < by[name].deviation < 0.05    # quantized for real, and still close
    assert r.best is not None and r.best.name in names
    assert all(t.high >= r.best.low for t in r.ties)
    j = r.to_json()
    assert j["fastest"] == r.best.name and len(j["paths"]) == 7
    assert j["paths"][0]["rounds"] == 6 and j["machine"]["torch"] == torch.__version__


def test_peak_memory_covers_the_weights(tmp_path):
    big = tmp_path / "bigger.nn"                  # fc1 alone 16 MiB of f32 weights
    big.write_text(SPEC.replace("input x: f32[N, 64]", "input x: f32[N, 512]")
                   .replace("512)", "8192)"))
    r = bench(Options(str(big), batch=4), schemes=(), compile_=False, rounds=2,
              skip=("O1", "O2", "onnxruntime"))
    (row,) = r.results
    weights = (512 * 8192 + 8192 + 8192 * 10 + 10) * 4
    assert row.name == "torch O0"
    assert weights <= row.peak_bytes < weights * 20


def test_torch_compile_is_timed_apart(spec):
    r = bench(Options(str(spec), batch=8), schemes=(), rounds=3, memory=False,
              skip=("O0", "O2", "onnxruntime"))
    by = {x.name: x for x in r.results}
    assert set(by) == {"torch O1", "torch O1 compile"}
    c = by["torch O1 compile"]
    if c.unavailable is None:
        assert c.compile_s > 0 and c.deviation < 1e-5
        assert r.reference == "torch O1"
    else:                                         # no C++ compiler for inductor: said why
        assert c.unavailable


def test_paths_that_cannot_run_say_why(tmp_path):
    p = tmp_path / "conv.nn"
    p.write_text(CONV)
    r = bench(Options(str(p), batch=2), schemes=("int8-static",), compile_=False, rounds=2,
              memory=False)
    by = {x.name: x for x in r.results}
    assert "--calibrate" in by["torch O1 int8-static"].unavailable
    assert by["torch O2"].unavailable is None
    assert by["torch O2"].deviation < 1e-5         # batch norm folded into the conv


# ---- the command line ----

def test_the_command_prints_the_table_and_the_fastest_command(spec, capsys):
    assert main(["bench", str(spec), "--rounds", "5", "--no-memory", "--no-compile",
                 "--quantize", "none"]) == 0
    out = capsys.readouterr().out
    for name in ("torch O0", "torch O1", "torch O2", "onnxruntime O2"):
        assert name in out
    assert "fastest: " in out and "nndsl " in out.split("fastest: ")[1]
    assert "int8" not in out


def test_json(spec, capsys):
    assert main(["bench", str(spec), "--rounds", "2", "--no-memory", "--no-compile",
                 "--skip", "onnxruntime", "--json", "--dim", "N=3"]) == 0
    j = json.loads(capsys.readouterr().out)
    assert [p["path"] for p in j["paths"]] == ["torch O0", "torch O1", "torch O2",
                                               "torch O1 int8-dynamic"]
    assert j["options"]["dims"] == {"N": 3}


@pytest.mark.parametrize("argv, code", [
    (["--skip", "nosuch"], "E1803"),
    (["--quantize", "int7"], "E1802"),
    (["--skip", "torch", "--skip", "onnxruntime"], "E1803"),
])
def test_bad_options(spec, capsys, argv, code):
    assert main(["bench", str(spec), "--no-memory", "--rounds", "2"] + argv) == 1
    err = capsys.readouterr().err
    assert f"error[{code}]" in err and "Traceback" not in err


def test_cuda_is_refused_clearly_without_a_gpu(spec, capsys):
    rc = main(["bench", str(spec), "--device", "cuda", "--rounds", "2", "--no-memory",
               "--no-compile"])
    if torch.cuda.is_available():
        assert rc == 0 and "cuda" in capsys.readouterr().out
    else:
        assert rc == 1
        err = capsys.readouterr().err
        assert "error[E1801]" in err and "no CUDA device" in err


def test_spec_errors_are_the_compilers(tmp_path, capsys):
    p = tmp_path / "bad.nn"
    p.write_text("model m() {\n    input x: f32[N, 4]\n    output y = x |> nosuch(3)\n}\n")
    assert main(["bench", str(p), "--rounds", "2", "--no-memory"]) == 1
    err = capsys.readouterr().err
    assert "bad.nn:3:" in err and "Traceback" not in err


# ---- nndsl run --backend ----

def test_run_backends_agree(spec, tmp_path, capsys):
    outs = {}
    for b in ("torch", "onnxruntime", "auto"):
        f = tmp_path / f"{b}.npz"
        assert main(["run", str(spec), "--backend", b, "--batch", "3", "--seed", "4",
                     "--save", str(f)]) == 0
        outs[b] = np.load(f)["y"]
    out = capsys.readouterr().out
    assert "(onnxruntime)" in out and "auto: " in out
    scale = np.abs(outs["torch"]).max()
    for b in ("onnxruntime", "auto"):
        np.testing.assert_allclose(outs[b], outs["torch"], atol=1e-5 * scale + 1e-6)


def test_fastest_backend_says_what_it_measured(spec):
    import nndsl
    from nndsl.runner import _runner
    c = nndsl.compile(path=str(spec))
    feeds = c.example_inputs(batch=2)
    backend, line = fastest_backend({b: _runner(b, c, feeds, None)
                                     for b in ("torch", "onnxruntime")}, rounds=5)
    assert backend in ("torch", "onnxruntime")
    assert line.startswith(f"auto: {backend}") and "5 rounds" in line


def test_run_an_onnx_file_with_torch_is_refused(spec, tmp_path, capsys):
    f = tmp_path / "m.onnx"
    assert main(["compile", str(spec), "--to", "onnx", "-o", str(f)]) == 0
    assert main(["run", str(f), "--backend", "torch"]) == 1
    assert "error[E1806]" in capsys.readouterr().err


def test_each_pass_that_changed_the_graph_is_timed_without_it(tmp_path):
    p = tmp_path / "conv.nn"
    p.write_text(CONV)
    r = bench(Options(str(p), batch=2), schemes=(), compile_=False, rounds=2, memory=False,
              passes=True, skip=("onnxruntime",))
    by = {x.name: x for x in r.results}
    row = by["torch O2 without fold_batch_norm"]
    assert row.unavailable is None and row.deviation < 1e-5
    assert "--disable-pass fold_batch_norm" in row.command
    assert "torch O2 without dce" not in by          # bookkeeping passes are not listed
    import nndsl
    changed = {rec.name for rec in nndsl.compile(path=str(p), opt="O2").passes if rec.changed}
    assert {n.removeprefix("torch O2 without ") for n in by if "without" in n} == \
        changed - {"dce", "prune_params"}


def test_the_python_api_runs_on_any_backend(spec):
    import nndsl
    c = nndsl.compile(path=str(spec))
    x = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
    ref = c.run({"x": x})["y"]
    with torch.no_grad():
        want = c.to_torch()(x=torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(ref, want)
    scale = float(np.abs(want).max())
    for backend in ("onnxruntime", "auto"):
        got = c.run({"x": x}, backend=backend)["y"]
        np.testing.assert_allclose(got, want, atol=1e-5 * scale + 1e-6)
    assert c.last_backend.startswith("auto: ")
    assert c.run(batch=3)["y"].shape == (3, 10)


def test_deviation_catches_nan_and_missing_outputs():
    assert deviation([np.array([np.nan, 1.0])], [np.array([1.0, 1.0])]) == float("inf")
    assert deviation([np.array([1.0])], [np.array([1.0]), np.array([5.0])]) == float("inf")
    assert deviation([np.array([np.inf, 2.0])], [np.array([np.inf, 1.0])]) == 1.0
    r = Result("x", "")
    r.deviation = float("inf")
    assert r.to_json()["deviation"] is None                 # JSON has no Infinity


def test_too_few_rounds_name_no_winner_and_ties_pick_the_most_exact(spec, capsys):
    from nndsl.bench.measure import most_exact
    ref = _result("ref", [1.0] * 4)
    fast = _result("fast", [0.1] * 4)
    ratios([ref, fast], ref)
    assert verdict([ref, fast]) == (None, [], False)        # 4 rounds: no claim at all
    assert main(["bench", str(spec), "--rounds", "2", "--no-memory", "--no-compile",
                 "--quantize", "none"]) == 0
    out = capsys.readouterr().out
    assert "too few to name a fastest path" in out and "fastest:" not in out
    a, b = _result("int8", [0.5] * 5), _result("exact", [0.5] * 5)
    a.deviation, b.deviation = 1e-2, 1e-7
    ratios([a, b], _result("ref", [1.0] * 5))
    assert most_exact(a, [b]) is b


def test_a_bad_dim_is_one_located_error(spec, capsys):
    assert main(["bench", str(spec), "--dim", "Q=3", "--rounds", "5", "--no-memory"]) == 1
    err = capsys.readouterr().err
    assert "E1805" not in err and "Q" in err and err.count("error[") == 1


def test_partial_inputs_run_alike_on_every_backend(tmp_path, capsys):
    x = np.random.default_rng(1).standard_normal((3, 64)).astype(np.float32)
    np.save(tmp_path / "image.npy", x)
    outs = {}
    for b in ("torch", "onnxruntime"):
        f = tmp_path / f"{b}.npz"
        assert main(["run", "specs/generative/vae.nn", "--model", "vae", "--input",
                     f"image={tmp_path / 'image.npy'}", "--backend", b, "--seed", "2",
                     "--save", str(f)]) == 0        # eps ~ normal() drawn from --seed
        outs[b] = dict(np.load(f))
    for k in outs["torch"]:
        scale = float(np.abs(outs["torch"][k]).max()) + 1e-6
        np.testing.assert_allclose(outs["onnxruntime"][k], outs["torch"][k],
                                   atol=1e-5 * scale + 1e-6)
    np.save(tmp_path / "eps.npy", np.zeros((3, 8), np.float32))
    assert main(["run", "specs/generative/vae.nn", "--model", "vae", "--input",
                 f"eps={tmp_path / 'eps.npy'}", "--backend", "onnxruntime"]) == 1
    assert "error[E1101]: missing input image" in capsys.readouterr().err
