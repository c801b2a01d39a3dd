"""Constant-subgraph folding (``fold_constant_tensors``, O1): masks and position tables over static
shapes become buffers computed in NumPy, equal to what the backends compute, never expected in
a checkpoint; symbolic shapes, trivial and unfoldable constants stay computed."""

import textwrap

import numpy as np
import onnxruntime as ort
import pytest
import torch
from safetensors.torch import load_file, save_file

import nndsl
from nndsl.backends.torch.lowering import TORCH_LOWERINGS
from nndsl.ir import evaluate
from nndsl.ir.derive import is_constant
from nndsl.ir.ops import SIGNATURES
from nndsl.passes import fold

from zoo import zoo

TABLES = """
import std.positions
model tables() {
    input x: f32[N, 8, 16]
    s = x @ transpose(x, -2, -1)
    causal = tril(ones([8, 8], bool))
    output scores = masked_fill(s, not causal, 0.0)
    output encoded = x |> sinusoidal_encoding as positions
}
"""

# every op of the evaluator's common cases in one static subgraph
OPS = """
model ops() {
    input x: f32[N, 6, 8]
    r = arange(6)
    c = arange(8)
    rel = unsqueeze(c, 0) - unsqueeze(r, 1)
    q = (rel // 3) * 2 + rel % 4 - abs(rel) + maximum(rel, 0) - minimum(rel, -1)
    m = (rel > 0) and not (rel == 2) or (rel <= -3)
    band = tril(ones([6, 8], bool), 1) and triu(ones([6, 8], bool), -2)
    f = cast(q, f32) * 0.25 + exp(cast(rel, f32) * -0.1) - log(cast(abs(rel) + 1, f32)) / 3.0
    g = sqrt(cast(abs(rel), f32)) + sin(cast(rel, f32)) * cos(cast(rel, f32) * 0.5)
        - (-cast(rel, f32)) ** 2.0 / 16.0
    h = where(m, f, g) |> masked_fill(band, -2.5)
    t = permute(reshape(h, [2, 3, 8]), [1, 0, 2]) |> flatten(0, 1) |> transpose(0, 1)
        |> transpose(0, 1)
    u = concat([t[:, 0::2], t[:, 1::2]], dim=-1) |> unsqueeze(0) |> squeeze(0)
    mm = (cast(r, f32) |> unsqueeze(1)) @ cast(unsqueeze(c, 0), f32)
    output y = x + u + mm / 10.0 + cast(m, f32) + cast(band, f32) * 2.0 + cast(rel, f32) / 7.0
}
"""

TRANSCENDENTAL = ("exp", "log", "sin", "cos", "sqrt", "rsqrt", "tanh", "sigmoid", "pow",
                  "matmul")


def compiled(text, **kw):
    return nndsl.compile(textwrap.dedent(text), **kw)


def ops(c):
    return [n.op for n in c.graph]


def constants(c):
    return [n for n in c.graph.params() if is_constant(n)]


def program(node):
    return dict(node.attr["derive"][2])["program"]


def outs(y):
    return y if isinstance(y, tuple) else (y,)


def torch_outputs(c, xs, weights=None):
    with torch.no_grad():
        return outs(c.to_torch(weights=weights).eval()(**xs))


def ort_outputs(c, xs, weights=None):
    sess = ort.InferenceSession(c.to_onnx(weights=weights).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    return sess.run(None, {k: v.numpy() for k, v in xs.items()})


def assert_close(got, want):
    """Within a tolerance relative to the values (the tables' sin/cos differ by an ulp)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * max(1.0, np.abs(want).max()))


class _Runtime:
    training, device = False, "cpu"

    def dim(self, d):
        return d


def torch_replay(prog):
    """A program run step by step with the torch lowerings (what O0 computes)."""
    vals = []
    for op, refs, attrs in prog:
        a = {**SIGNATURES[op].attrs, **dict(attrs)}
        vals.append(TORCH_LOWERINGS[op](_Runtime(), a, [vals[r] for r in refs]))
    return vals


# ---- (1) a causal mask over a static length and a sinusoidal table ----

def test_static_mask_and_table_become_buffers():
    o0, o1 = compiled(TABLES, opt="O0"), compiled(TABLES, opt="O1")
    for op in ("arange", "sin", "cos", "exp", "tril", "logical_not"):
        assert op in ops(o0) and op not in ops(o1), op
    consts = constants(o1)
    assert sorted((n.name, str(n.type)) for n in consts) == \
        [("const", "bool[8, 8]"), ("positions.const", "f32[8, 16]")]
    assert all(not n.attr["trainable"] and n.attr["init"] is None for n in consts)
    text = o1.ir()
    assert "%positions.const: f32[8, 16] = param() {derive=constant(program=[" in text
    assert o1.param_count() == o0.param_count() == 0
    xs = o0.example_inputs(batch=2)
    want = torch_outputs(o0, xs)
    for got in (torch_outputs(o1, xs), ort_outputs(o1, xs)):
        for g, w in zip(got, want):
            assert_close(g, w)
    # the mask (`not causal`, what masked_fill reads) is exact; the table torch's within an ulp
    mask = evaluate.run(program(o1.graph.node("const")))
    assert mask.dtype == np.bool_ and np.array_equal(mask, ~np.tril(np.ones((8, 8), bool)))
    table = evaluate.run(program(o1.graph.node("positions.const")))
    torch_table = torch_replay(program(o1.graph.node("positions.const")))[-1].numpy()
    assert table.dtype == np.float32
    np.testing.assert_allclose(table, torch_table, rtol=0, atol=2.5e-7)


def test_evaluator_matches_torch_bit_for_bit_but_transcendental_ops():
    o0, o1 = compiled(OPS, opt="O0"), compiled(OPS, opt="O1")
    assert len(constants(o1)) >= 1 and "arange" not in ops(o1)
    worst = 0.0
    for node in constants(o1):
        prog = program(node)
        ref = torch_replay(prog)
        inexact = False
        for i, (op, _, _) in enumerate(prog):
            inexact = inexact or op in TRANSCENDENTAL
            if op == "scalar":
                continue
            mine, theirs = evaluate.run(prog[:i + 1]), ref[i].numpy()
            assert mine.dtype == theirs.dtype and mine.shape == theirs.shape, (i, op)
            if inexact:   # an ulp or so (torch's kernels round less well)
                np.testing.assert_allclose(mine, theirs, rtol=3e-7, atol=3e-7)
                worst = max(worst, float(np.abs(mine.astype(np.float64) - theirs).max()))
            else:
                assert np.array_equal(mine, theirs), (i, op)
    assert worst < 5e-7
    xs = o0.example_inputs(batch=2)
    for got in (torch_outputs(o1, xs), ort_outputs(o1, xs)):
        assert_close(got[0], torch_outputs(o0, xs)[0])


# ---- (2) what stays computed ----

def test_symbolic_dims_are_not_folded():
    text = TABLES.replace("f32[N, 8, 16]", "f32[N, T, 16]").replace("[8, 8]", "[T, T]")
    o1 = compiled(text, opt="O1")
    for op in ("arange", "sin", "cos", "tril", "logical_not"):
        assert op in ops(o1), op
    # only the inverse frequencies (over the static width) are a constant
    (inv_freq,) = constants(o1)
    assert inv_freq.name == "positions.const" and str(inv_freq.type) == "f32[1, 8]"
    o0 = compiled(text, opt="O0")
    xs = o0.example_inputs(batch=2, T=5)
    for g, w in zip(torch_outputs(o1, xs), torch_outputs(o0, xs)):
        assert_close(g, w)


def test_trivial_unfoldable_and_huge_constants_stay_computed(monkeypatch):
    text = """
    model m() {
        input x: f32[N, 4]
        input i: i64[N, 4]
        output a = cast(i, f32) + cast(unsqueeze(arange(4), 0), f32)
        output b = i + arange(4) // (arange(4) - 2 + 2)
        output c = x + ones([4], f32)
        output d = x * exp(cast(arange(4), f32))
        output e = sin(cast(arange(3), f32))
    }
    """
    c = compiled(text, opt="O1")
    # a: only moves, nothing computed; b: integer division by zero; c: a source alone;
    # e: a model output
    assert [n.name for n in constants(c)] == ["const"]
    assert "floor_div" in ops(c) and "full" in ops(c) and "exp" not in ops(c) and "sin" in ops(c)
    assert ops(c).count("arange") == 2      # arange(4) (one after CSE, read by a and b), e's
    monkeypatch.setattr(fold, "MAX_ELEMENTS", 3)
    assert constants(compiled(text, opt="O1")) == []


def test_an_expanded_constant_is_stored_before_the_expand():
    text = """
    model m() {
        input x: f32[N, 64, 8]
        output y = x + expand(unsqueeze(exp(cast(arange(8), f32) * -0.5), 0), [64, 8])
    }
    """
    c = compiled(text, opt="O1")
    (const,) = constants(c)
    assert str(const.type) == "f32[1, 8]" and "expand" in ops(c)


def test_the_pass_is_idempotent_and_in_o1_and_o2():
    from nndsl.passes import PIPELINES
    for level in ("O1", "O2"):
        assert "fold_constant_tensors" in PIPELINES[level]
    c = compiled(OPS, opt="O1")
    again, changed = fold.fold_constant_tensors(c.graph)
    assert not changed and again is c.graph
    assert constants(compiled(OPS, opt="O1", disable=("fold_constant_tensors",))) == []


# ---- (3) a zoo spec with position tables ----

@pytest.mark.parametrize("key,gone", [("transformer", 5), ("mae_mini", 31)])
def test_zoo_spec_o0_and_o1_agree(key, gone):
    z = zoo(key)
    o0, o1 = z.compile(opt="O0"), z.compile(opt="O1")
    unfolded = z.compile(opt="O1", disable=("fold_constant_tensors",))
    assert constants(o1) and len(o1.graph) == len(unfolded.graph) - gone
    weights = o0.to_torch(seed=3).state_dict()
    xs = o0.example_inputs(batch=2)
    want = torch_outputs(o0, xs, weights)
    for got in (torch_outputs(o1, xs, weights), ort_outputs(o1, xs, weights)):
        for g, w in zip(got, want):
            assert_close(g, w)


# ---- (4) weights: the spec's checkpoints, saved modules, default init, generated code ----

def test_weights_of_the_unoptimized_spec_load_into_the_o1_model(tmp_path):
    z = zoo("transformer")
    o0, o1 = z.compile(opt="O0"), z.compile(opt="O1")
    (const,) = constants(o1)
    spec = o0.to_torch(seed=5).state_dict()
    assert const.name not in spec
    path = tmp_path / "spec.safetensors"
    save_file({k: v.contiguous() for k, v in spec.items()}, str(path))
    xs = o0.example_inputs(batch=2)
    want = torch_outputs(o0, xs, spec)
    m = o1.to_torch(weights=str(path)).eval()
    assert const.name in m.state_dict() and const.name not in dict(m.named_parameters())
    with torch.no_grad():
        assert_close(m(**xs), want[0])
        m.load_weights(spec)            # the module's own loader: the buffer is not required
        assert_close(m(**xs), want[0])
    assert_close(ort_outputs(o1, xs, str(path))[0], want[0])
    # a module's saved state (buffer included) loads back where the constant is folded
    saved = tmp_path / "saved.safetensors"
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(saved))
    assert const.name in load_file(str(saved))
    for c in (o1, z.compile(opt="O2")):
        assert_close(torch_outputs(c, xs, str(saved))[0], want[0])
        assert_close(ort_outputs(c, xs, str(saved))[0], want[0])
    # default initial weights: the same at both levels, in torch and ONNX
    want = torch_outputs(o0, xs)
    assert_close(torch_outputs(o1, xs)[0], want[0])
    assert_close(ort_outputs(o1, xs)[0], want[0])


def test_generated_package_carries_the_buffer(tmp_path):
    import importlib.util

    from nndsl.backends.torch.codegen import write_package
    o1 = compiled(TABLES, opt="O1")
    write_package(o1, tmp_path)
    weights = load_file(str(tmp_path / "weights.safetensors"))
    assert sorted(weights) == ["const", "positions.const"]
    spec = importlib.util.spec_from_file_location("generated_tables", tmp_path / "model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    net = mod.Tables()
    net.load_state_dict(weights, strict=True)
    xs = o1.example_inputs(batch=2)
    with torch.no_grad():
        for g, w in zip(net.eval()(*xs.values()), torch_outputs(o1, xs)):
            torch.testing.assert_close(g, w, rtol=0, atol=0)


# ---- (5) determinism ----

def test_compiling_twice_gives_the_same_ir_and_onnx_bytes():
    results = []
    for _ in range(2):
        evaluate._CACHE.clear()
        c = zoo("mae_mini").compile(opt="O1")
        results.append((c.ir(), c.to_onnx(seed=1).SerializeToString()))
    assert results[0][0] == results[1][0]
    assert results[0][1] == results[1][1]


# ------------------------------------------------------------------ training runs

TRAINED = """
model digits_pos(classes: int = 10) {
    input image: f32[N, 1, 8, 8]
    ramp = sin(cast(arange(64), f32) * 0.1) |> reshape([1, 64])
    output logits = (image |> flatten) + ramp |> linear(16) as fc1 |> relu
                    |> linear(classes) as fc2
}

train digits_pos {
    target label: i64[N]
    data = digits
    loss = cross_entropy(logits, label)
    optimizer = adam(lr=1e-2)
    epochs = 2
    batch = 64
    val_split = 0.2
    seed = 3
}
"""


def test_a_training_run_keeps_constants_out_of_its_checkpoints(tmp_path):
    """A run at O1 (where the ramp is a folded buffer) writes the spec's parameters only: its
    checkpoints load at O0, resume, and initialise another run."""
    from safetensors.torch import load_file

    from nndsl.train.run import run_training
    path = tmp_path / "pos.nn"
    path.write_text(TRAINED)
    c1 = nndsl.compile(path, opt="O1")
    consts = [n.name for n in c1.graph.params() if n.attr.get("derive")]
    assert consts, "the ramp is folded at O1"
    result = run_training(path, out=tmp_path / "run", quiet=True)
    assert len(result.history) == 2
    best = load_file(str(tmp_path / "run/checkpoints/best.safetensors"))
    assert sorted(best) == ["fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight"]
    x = torch.randn(3, 1, 8, 8)
    outs = []
    for opt in ("O0", "O1", "O2"):
        m = nndsl.compile(path, opt=opt).to_torch(seed=1).eval()
        m.load_weights(tmp_path / "run/checkpoints/best.safetensors")
        with torch.no_grad():
            outs.append(m(image=x))
    for o in outs[1:]:
        torch.testing.assert_close(o, outs[0], rtol=1e-5, atol=1e-5)
    again = run_training(path, resume=tmp_path / "run", overrides={"epochs": 3}, quiet=True)
    assert len(again.history) == 3
