"""fold_scale (O2): a constant factor after a linear or conv folds into the layer's weights."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import torch

import nndsl
from nndsl.passes.rewrite import explaining

SPEC = """\
model m() {
    input x: f32[N, 3, 8, 8]
    c = x |> conv2d(4, 3, padding=1) as conv
    h = (c * 0.5) |> relu |> flatten |> linear(5) as fc
    output y = 2.0 * h
    output z = (c |> flatten |> linear(3, bias=false) as nb) / 4.0
}
"""


def _outputs(c, weights, x):
    m = c.to_torch(weights=weights).eval()
    with torch.no_grad():
        return [o.numpy() for o in m(x=x)]


def test_the_factor_folds_and_the_model_computes_the_same(tmp_path):
    base = nndsl.compile(source=SPEC, opt="O0")
    weights = base.to_torch(seed=5).state_dict()
    with explaining():
        o2 = nndsl.compile(source=SPEC, opt="O2")
    ops = [n.op for n in o2.graph]
    assert ops.count("mul") == 1 and "div" not in ops   # c · 0.5 stays: c feeds nb too
    # the layers keep their spec names; their weights are derived from the spec's
    for layer in ("fc", "nb"):
        node = o2.graph.node(layer)
        w = o2.graph.node(node.inputs[1].node)
        assert w.name == f"{layer}.scaled_weight"
        assert w.attr["derive"][0] == "scale"
    (rec,) = [r for r in o2.passes if r.name == "fold_scale"]
    assert sum(d.fired for d in rec.decisions) == 2     # fc's ·2 and nb's /4
    declined = {(d.node, d.why) for d in rec.decisions if not d.fired}
    assert declined == {("mul", "declined: `conv`'s result is read elsewhere too (or is an "
                                "output)")}
    x = base.example_inputs(batch=3, seed=2)["x"]
    want = _outputs(base, weights, x)
    got = _outputs(o2, weights, x)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, atol=1e-5 * np.abs(b).max() + 1e-6, rtol=1e-5)
    sess = ort.InferenceSession(o2.to_onnx(weights=weights).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    for a, b in zip(sess.run(None, {"x": x.numpy()}), want):
        np.testing.assert_allclose(a, b, atol=1e-5 * np.abs(b).max() + 1e-6, rtol=1e-5)


def test_a_layer_with_an_activation_or_a_tensor_factor_stays():
    src = ("model m() {\n    input x: f32[N, 4]\n    input s: f32[N, 6]\n"
           "    output y = (x |> linear(6) as fc) * s\n"
           "    output z = (x |> linear(6) as fd |> relu) * 3.0\n}\n")
    c = nndsl.compile(source=src, opt="O2")
    assert [n.op for n in c.graph].count("mul") == 2
    assert c.graph.node("fc").inputs[1].node == "fc.weight"


FOLDED_TWICE = """\
model m() {
    input x: f32[N, 3, 8, 8]
    output y = x |> conv2d(4, 3, padding=1) as conv |> batch_norm as bn1 |> batch_norm as bn2
    output z = ((x |> flatten |> linear(6) as fc) * 2.0) * 3.0
}
"""


def test_a_layer_folded_twice_computes_the_spec_on_every_backend(tmp_path):
    import importlib.util

    from nndsl.backends.torch.codegen import write_package
    base = nndsl.compile(source=FOLDED_TWICE, opt="O0")
    weights = base.to_torch(seed=1).state_dict()
    for k in ("bn1.running_mean", "bn2.running_var", "bn1.weight"):
        weights[k] = torch.rand_like(weights[k]) + 0.5       # statistics that change the output
    x = base.example_inputs(batch=2, seed=4)["x"]
    want = _outputs(base, weights, x)
    o2 = nndsl.compile(source=FOLDED_TWICE, opt="O2")
    names = [n.attr["name"] for n in o2.graph.params()]
    assert len(names) == len(set(names)) == len([n.name for n in o2.graph.params()])
    assert {n.name for n in o2.graph.params()} == set(names)   # node name = parameter name
    assert not any(n.op in ("batch_norm", "mul") for n in o2.graph)
    got = _outputs(o2, weights, x)
    sess = ort.InferenceSession(o2.to_onnx(weights=weights).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    onnx_out = sess.run(None, {"x": x.numpy()})
    write_package(o2, tmp_path / "pkg", weights=weights)
    spec = importlib.util.spec_from_file_location("folded_twice", tmp_path / "pkg" / "model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    from safetensors.torch import load_file
    gen = mod.M()
    gen.load_state_dict(load_file(tmp_path / "pkg" / "weights.safetensors"), strict=True)
    for outs in (got, onnx_out):
        for a, b in zip(outs, want):
            assert float(np.abs(b).max()) > 0.1                # not a model of zeros
            np.testing.assert_allclose(a, b, atol=1e-5 * np.abs(b).max() + 1e-6, rtol=1e-5)
    with torch.no_grad():
        for a, b in zip(gen.eval()(x), want):
            np.testing.assert_allclose(a.numpy(), b, atol=1e-5 * np.abs(b).max() + 1e-6)


def test_factors_that_cannot_fold_are_declined_with_a_reason():
    src = ("model m() {\n    input x: f32[N, 4]\n"
           "    output y = (x |> linear(3) as fa) / 0.0\n"
           "    output z = (x |> linear(3) as fb) * 1e-6\n}\n")
    with explaining():
        c = nndsl.compile(source=src, opt="O2")
    (rec,) = [r for r in c.passes if r.name == "fold_scale"]
    assert {d.why for d in rec.decisions} == {
        "declined: the factor is zero or not finite",
        "declined: a factor this far from 1 could underflow or overflow the weights in half "
        "precision"}
    assert [n.op for n in c.graph].count("div") == 1 and [n.op for n in c.graph].count("mul") == 1
