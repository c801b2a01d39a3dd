"""clamp_bounds (O2): constant maximum/minimum bounds become one clamp (ReLU6 written out), or
a relu; the result is the spec's on torch, onnxruntime and the generated source."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import torch

import nndsl
from nndsl.backends.torch.codegen import generate_source
from nndsl.passes.rewrite import explaining

SPEC = """\
model m() {
    input x: f32[N, 3, 8, 8]
    input i: i64[N, 4]
    a = x |> conv2d(4, 3, padding=1) as c1
    r6 = minimum(maximum(a, 0.0), 6.0)
    b = r6 |> conv2d(4, 3, padding=1) as c2
    output y = maximum(b, 0.0) + minimum(-1.5, x |> conv2d(4, 1) as c3)
    output z = maximum(minimum(x, 0.5), -0.25)
    output w = maximum(i, 0.0)
    output v = maximum(x, x * 2.0)
}
"""


def test_bounds_become_clamps_and_relus_that_compute_the_spec():
    with explaining():
        c2 = nndsl.compile(source=SPEC, opt="O2")
    c0 = nndsl.compile(source=SPEC, opt="O0")
    ops = {n.name: n for n in c2.graph}
    clamps = {(n.attr["min"], n.attr["max"]) for n in c2.graph if n.op == "clamp"}
    assert clamps == {(-0.25, 0.5), (0.0, 6.0), (None, -1.5)}
    assert ops["c2"].attr.get("act") == "relu"          # maximum(b, 0) is relu, fused
    # left: the integer one (its result is f32, not i64) and the one with a tensor bound
    assert sorted(n.op for n in c2.graph if n.op in ("maximum", "minimum")) == \
        ["maximum", "maximum"]
    (record,) = [r for r in c2.passes if r.name == "clamp_bounds"]
    whys = {d.why for d in record.decisions if not d.fired}
    assert "declined: the bound changes the result's dtype or shape" in whys   # i64 vs 0.0
    # numbers: the spec's formula from the O0 weights
    w = {k: v.detach() for k, v in c0.to_torch(seed=2).state_dict().items()}
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 3, 8, 8, generator=g) * 4
    i = torch.randint(-5, 5, (3, 4), generator=g)
    with torch.no_grad():
        want = c0.to_torch(weights=w)(x=x, i=i)
        got = c2.to_torch(weights=w)(x=x, i=i)
    for a, b in zip(got, want):
        torch.testing.assert_close(a.float(), b.float(), rtol=1e-5,
                                   atol=1e-5 * float(b.abs().max()) + 1e-7)
    sess = ort.InferenceSession(c2.to_onnx(weights=w).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    outs = sess.run(None, {"x": x.numpy(), "i": i.numpy()})
    for a, b in zip(outs, want):
        np.testing.assert_allclose(a.astype(np.float64), b.double().numpy(), rtol=1e-5,
                                   atol=1e-5 * float(b.abs().max()) + 1e-7)
    ops_onnx = [n.op_type for n in c2.to_onnx(weights=w).graph.node]
    assert ops_onnx.count("Clip") == 3
    assert "torch.clamp(" in generate_source(c2.graph) or ".clamp(" in generate_source(c2.graph)


def test_o1_keeps_maximum_and_minimum():
    c1 = nndsl.compile(source=SPEC, opt="O1")
    assert not any(n.op == "clamp" for n in c1.graph)
    assert sum(n.op in ("maximum", "minimum") for n in c1.graph) >= 6
