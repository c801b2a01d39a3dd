"""The optimizer: every pipeline on every zoo spec (verify, numerics, idempotence, gradients,
ONNX), and each pass on small before/after specs written in .nn text."""

import os
import textwrap

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import nndsl
from nndsl.passes import PASSES, PIPELINES
from nndsl.ir import verify
from nndsl.ir.derive import is_constant

from conftest import ROOT
from zoo import ZOO, zoo, zoo_id

# dropout off so that train-mode outputs and gradients are deterministic
NO_DROPOUT = {"lstm_sentiment": {"p": 0.0}, "distill_teacher": {"p": 0.0}, "mlp": {"p": 0.0}}
GOLDEN = ROOT / "tests" / "golden"


# golden IR is kept for these (a change to their IR is a deliberate one)
GOLDEN_SPECS = ["perceptron", "mlp", "mnist_cnn", "lenet5", "resnet18", "resnet50",
                "lstm_sentiment", "gpt_mini"]


def params_for(z):
    return {**z.small, **NO_DROPOUT.get(z.key, {})}


def _outs(y):
    return y if isinstance(y, tuple) else (y,)


@pytest.mark.parametrize("z", ZOO, ids=zoo_id)
def test_pipelines_preserve_the_function(z):
    ref = z.compile(params=params_for(z), opt="O0")
    weights = ref.to_torch(seed=3).state_dict()
    xs = ref.example_inputs(batch=2)
    with torch.no_grad():
        want = _outs(ref.to_torch(weights=weights).eval()(**xs))
    for level in ("O1", "O2"):
        c = z.compile(params=params_for(z), opt=level)
        assert [r.name for r in c.passes] == list(PIPELINES[level])
        for record in c.passes:
            verify(record.graph)
            again, changed = PASSES[record.name].fn(record.graph)
            assert not changed, f"{record.name} changed its own output on {z.key}"
        m = c.to_torch(weights=weights).eval()
        with torch.no_grad():
            got = _outs(m(**xs))
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5 * max(1.0, float(w.abs().max())))
        assert g.is_contiguous()
    # O2's ONNX export passes the checker and agrees with O0
    model = z.compile(params=params_for(z), opt="O2").to_onnx(weights=weights)
    onnx.checker.check_model(model, full_check=True)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for g, w in zip(sess.run(None, {k: v.numpy() for k, v in xs.items()}), want):
        np.testing.assert_allclose(g, w.numpy(), rtol=1e-4,
                                   atol=1e-5 * max(1.0, float(w.abs().max())))


@pytest.mark.parametrize("z", ZOO, ids=zoo_id)
def test_o1_keeps_parameters_and_gradients(z):
    o0 = z.compile(params=params_for(z), opt="O0")
    o1 = z.compile(params=params_for(z), opt="O1")
    # the spec's parameters stay; folded constants are added as buffers
    assert [(n.name, n.type) for n in o1.graph.params() if not is_constant(n)] == \
        [(n.name, n.type) for n in o0.graph.params()]
    assert not any(n.attr["trainable"] for n in o1.graph.params() if is_constant(n))
    weights = o0.to_torch(seed=4).state_dict()
    xs = o0.example_inputs(batch=3)
    grads = []
    for c in (o0, o1):
        m = c.to_torch(weights=weights).train()
        loss = sum(o.float().pow(2).mean() for o in _outs(m(**xs)))
        loss.backward()
        grads.append({k: p.grad for k, p in m.named_parameters()})
    for k, g in grads[0].items():
        torch.testing.assert_close(grads[1][k], g, rtol=1e-4, atol=1e-6, msg=k)


@pytest.mark.parametrize("key", GOLDEN_SPECS)
@pytest.mark.parametrize("level", ["O0", "O2"])
def test_golden_ir(key, level):
    z = zoo(key)
    text = z.compile(params=NO_DROPOUT.get(key), opt=level).ir() + "\n"
    path = GOLDEN / f"{key}.{level}.ir"
    if os.environ.get("NNDSL_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no golden file {path}; run with NNDSL_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"the IR changed; new text:\n{text}"


def test_o2_module_is_for_inference_only():
    m = nndsl.compile("specs/vision/mnist_cnn.nn", opt="O2").to_torch()
    assert not m.training
    with pytest.raises(nndsl.InputError, match="inference only"):
        m.train()


# ------------------------------------------------------------------ single passes

def compiled(text, **kw):
    return nndsl.compile(textwrap.dedent(text), **kw)


def ops(c):
    return [n.op for n in c.graph if n.op not in ("input", "param", "scalar")]


def same_function(text, level="O1", batch=2, **dims):
    o0 = compiled(text, opt="O0")
    c = compiled(text, opt=level)
    w = o0.to_torch(seed=1).state_dict()
    xs = o0.example_inputs(batch=batch, **dims)
    with torch.no_grad():
        for a, b in zip(_outs(o0.to_torch(weights=w).eval()(**xs)),
                        _outs(c.to_torch(weights=w).eval()(**xs))):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    return c


ATTN = """
model attn() {
    input q: f32[B, H, T, 16]  input k: f32[B, H, T, 16]  input v: f32[B, H, T, 8]
    s = (q @ transpose(k, -2, -1)) / sqrt(16)
    causal = tril(ones([T, T], bool))
    output y = softmax(masked_fill(s, not causal, -inf), dim=-1) @ v
}
"""


def test_fuse_attention_structure_and_numerics():
    c = same_function(ATTN, T=7)
    assert ops(c) == ["attention"]
    node = next(n for n in c.graph if n.op == "attention")
    assert node.attr["causal"] and node.attr["scale"] == pytest.approx(0.25)
    assert node.span.line == 6                      # the span of what it replaced
    assert ops(compiled(ATTN, opt="O1", disable=("fuse_attention",))).count("softmax") == 1


def test_fuse_attention_with_a_padding_mask():
    text = """
    model attn() {
        input q: f32[B, T, 8]  input k: f32[B, S, 8]  input v: f32[B, S, 8]  input pad: bool[B, 1, S]
        output y = softmax(masked_fill(q @ k.T * 0.5, pad, -inf), dim=-1) @ v
    }"""
    o0 = compiled(text, opt="O0")
    c = compiled(text, opt="O1")
    assert "attention" in ops(c) and "softmax" not in ops(c)
    xs = o0.example_inputs(batch=2, T=5, S=6)
    xs["pad"][:, :, 0] = False                       # keep one key per row
    torch.testing.assert_close(c.to_torch()(**xs), o0.to_torch()(**xs), rtol=1e-4, atol=1e-5)


def test_fuse_formulas():
    text = """
    model f() {
        input x: f32[N, 12]
        param g: f32[12] = ones
        param b: f32[12] = zeros
        mu = mean(x, dim=-1, keepdim=true)
        var = mean((x - mu) ** 2, dim=-1, keepdim=true)
        ln = (x - mu) / sqrt(var + 0.00001) * g + b
        gelu_erf = 0.5 * ln * (1 + erf(ln / sqrt(2)))
        gelu_tanh = 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x ** 3)))
        output y = gelu_erf + gelu_tanh + x * sigmoid(x)
    }"""
    c = same_function(text)
    assert sorted(ops(c)) == sorted(["layer_norm", "gelu", "gelu", "silu", "add", "add"])
    ln = next(n for n in c.graph if n.op == "layer_norm")
    assert [c.graph.node(v.node).name for v in ln.inputs[1:]] == ["g", "b"]


def test_fuse_epilogue_and_inplace_relu_keep_gradients():
    text = "model e() { input x: f32[N, 3, 8, 8]  output y = x |> conv2d(4, 3) |> relu |> flatten |> linear(5) |> sigmoid }"
    c = same_function(text)
    assert ops(c) == ["conv2d", "flatten", "linear"]
    assert [n.attr.get("act") for n in c.graph if n.op in ("conv2d", "linear")] == ["relu", "sigmoid"]


def test_cse_constant_fold_and_simplify():
    text = """
    model s() {
        input x: f32[N, 6]
        a = (x - 1) * (2 * 3) / (1 * 1)
        b = (x - 1) * 6
        t = transpose(transpose(a, 0, 1), 0, 1)
        r = t |> reshape([N, 2, 3]) |> reshape([N, 6]) |> dropout(0.0)
        output y = r + b + 0
    }"""
    c = same_function(text)
    assert ops(c) == ["sub", "mul", "add"]
    scalars = sorted(n.attr["value"] for n in c.graph if n.op == "scalar")
    assert scalars == [1.0, 6.0]


def test_dce_removes_unused_work():
    c = compiled("model d() { input x: f32[N, 4]  unused = exp(x) * 3  output y = relu(x) }")
    assert ops(c) == ["relu"]


def test_fold_batch_norm_structure_and_weights():
    text = "model f() { input x: f32[N, 3, 10, 10]  output y = x |> conv2d(8, 3) as conv |> batch_norm as bn |> relu }"
    o0 = compiled(text, opt="O0")
    c = compiled(text, opt="O2")
    assert ops(c) == ["memory_format", "conv2d", "memory_format"]
    assert [n.name for n in c.graph.params()] == ["conv.folded_weight", "conv.folded_bias"]
    src = o0.to_torch(seed=2)
    src.train()(torch.randn(16, 3, 10, 10) * 2 + 1)   # non-trivial running statistics
    w = src.state_dict()
    x = torch.randn(2, 3, 10, 10)
    torch.testing.assert_close(c.to_torch(weights=w)(x), src.eval()(x), rtol=1e-4, atol=1e-5)
    sd = c.to_torch(weights=w).state_dict()
    scale = w["bn.weight"] / torch.sqrt(w["bn.running_var"] + 1e-5)
    torch.testing.assert_close(sd["conv.folded_weight"], w["conv.weight"] * scale[:, None, None, None])
    torch.testing.assert_close(sd["conv.folded_bias"],
                               (w["conv.bias"] - w["bn.running_mean"]) * scale + w["bn.bias"])


def test_merge_parallel_linears():
    text = """
    model qkv() { input x: f32[N, T, 16]
        q = x |> linear(16) as q
        k = x |> linear(16) as k
        v = x |> linear(8) as v
        output y = ((q * k) |> sum(dim=-1, keepdim=true)) * v }"""
    c = same_function(text, level="O2")
    assert ops(c).count("linear") == 1 and "split" in ops(c)
    assert [n.name for n in c.graph.params()] == ["q+k+v.weight", "q+k+v.bias"]


def test_remove_dropout_only_at_o2():
    text = "model d() { input x: f32[N, 4]  output y = x |> linear(4) |> dropout(0.3) }"
    assert "dropout" in ops(compiled(text, opt="O1"))
    assert "dropout" not in ops(same_function(text, level="O2"))


def test_pipeline_options_and_errors():
    text = "model d() { input x: f32[N, 4]  output y = x * 1 |> relu }"
    assert ops(compiled(text, opt="O1", disable=("simplify",))) == ["mul", "relu"]
    c = compiled(text, opt="O1", after="simplify")
    assert [r.name for r in c.passes] == ["constant_fold", "simplify"]
    with pytest.raises(nndsl.ArgumentError, match="unknown pass `simplfy`"):
        compiled(text, disable=("simplfy",))
    with pytest.raises(nndsl.ArgumentError, match="not in the O0 pipeline"):
        compiled(text, opt="O0", after="simplify")


def test_a_crashing_pass_is_reported_with_the_passes_before_it(monkeypatch):
    from nndsl.passes import pipeline

    def boom(graph):
        raise RuntimeError("kaput")
    monkeypatch.setitem(pipeline.PASSES, "cse", pipeline.PASSES["cse"].__class__(
        "cse", boom, "O1", "broken"))
    with pytest.raises(nndsl.PassError) as e:
        compiled("model d() { input x: f32[N, 4]  output y = relu(x) }")
    assert "pass `cse` crashed: RuntimeError: kaput" in str(e.value)
    assert "constant_fold, simplify" in str(e.value)


def test_cli_pass_options(capsys, monkeypatch):
    from nndsl.cli import main
    monkeypatch.chdir(ROOT)
    assert main(["passes"]) == 0
    out = capsys.readouterr().out
    assert "O2: constant_fold -> simplify" in out and "fold_batch_norm" in out
    assert main(["inspect", "specs/vision/mnist_cnn.nn", "-O2", "--ir"]) == 0
    assert "act=relu" in capsys.readouterr().out
    assert main(["inspect", "specs/vision/mnist_cnn.nn", "-O1", "--ir",
                 "--disable-pass", "fuse_epilogue"]) == 0
    assert "act=relu" not in capsys.readouterr().out
    assert main(["inspect", "specs/vision/mnist_cnn.nn", "-O1", "--ir", "--after", "simplify"]) == 0
    assert "act=relu" not in capsys.readouterr().out
    assert main(["check", "specs/vision/mnist_cnn.nn", "-O1", "--print-after", "all"]) == 0
    out = capsys.readouterr().out
    assert out.count("// IR after pass") == len(PIPELINES["O1"]) and "121,930" in out
    assert main(["inspect", "specs/vision/resnet18.nn", "--diff", "O0", "O2"]) == 0
    out = capsys.readouterr().out
    assert "fold_batch_norm: " in out and "parameters derived" in out and "- batch_norm" in out
    assert "nodes" in out and "FLOPs" in out
    assert main(["check", "specs/vision/mnist_cnn.nn", "--disable-pass", "nope"]) == 1
    assert "unknown pass `nope`" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["vision/resnet18.nn", "transformers/gpt_mini.nn"])
def test_generated_source_at_o2(name, tmp_path):
    import importlib.util

    from safetensors.torch import load_file

    from nndsl.backends.torch.codegen import write_package
    spec = ROOT / "specs" / name
    z = zoo(spec.stem)
    c = z.compile(params=params_for(z), opt="O2")
    write_package(c, tmp_path)
    mod_spec = importlib.util.spec_from_file_location(f"gen_o2_{spec.stem}", tmp_path / "model.py")
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    cls = getattr(mod, "".join(p.capitalize() for p in c.name.split("_")))
    net = cls()
    net.load_state_dict(load_file(str(tmp_path / "weights.safetensors")))
    xs = c.example_inputs(batch=2)
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(**xs), c.to_torch()(**xs), rtol=1e-5, atol=1e-5)
