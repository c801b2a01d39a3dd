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
