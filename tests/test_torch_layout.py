"""The torch backend's oneDNN mode at O2 (channels-last graphs): 2-d convolutions that autograd
does not follow run as ``torch.ops.mkldnn._convolution_pointwise`` with their weights packed once
(``lowering.onednn_weight``) and their epilogues (act, relu6 clamp, residual add, the relu after
it) as post-ops, in fused plan steps (``module._fused_plan``).

Checked here: the outputs against O0's on the three convnets it is for (at their test sizes,
with every constant tensor perturbed so that a wrong epilogue shows); gradients, which take the
plain ops; the packed weights following the weights through an optimizer step, load_state_dict,
load_weights, an in-place change behind autograd's back followed by ``.eval()``, and input
shapes that change; ``capture=`` and ``run_all`` still seeing every value; O1 untouched.
"""

from __future__ import annotations

import pytest
import torch

from helpers import perturbed
from nndsl.backends.torch import lowering as L
from zoo import zoo

MODELS = ["resnet18", "mobilenet_v2", "efficientnet_b0"]
REL = 1e-4


def rel_diff(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).abs().max()) / max(float(want.abs().max()), 1e-12)


_BUILT: dict = {}


def built(key: str):
    """(O0 module, its perturbed state, the O2 compilation) of a zoo model at its test size."""
    if key not in _BUILT:
        z = zoo(key)
        m0 = z.compile(opt="O0").to_torch(seed=0).eval()
        sd = perturbed(m0)
        m0.load_weights(sd)
        _BUILT[key] = (m0, sd, z.compile(opt="O2"))
    return _BUILT[key]


def image(batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(seed))


def o2(key: str, weights=None):
    """The O2 module; ``weights`` in the spec's names."""
    m0, sd, c2 = built(key)
    return c2.to_torch(weights=sd if weights is None else weights).eval()


def o2_holding(key: str, state: dict):
    """A fresh O2 module holding ``state`` (an O2 module's own, folded, weights), plain ops."""
    m = o2(key)
    m.load_weights(state)
    return m.use_onednn(False)


def test_the_mode_is_on_at_o2_only():
    m0, sd, c2 = built("resnet18")
    m2 = o2("resnet18")
    assert m2._fused is not None
    lows = {step[1] for step in m2._fused}
    assert L.conv2d_chain in lows and L._conv2d_onednn in lows
    assert m0._fused is None and L._conv2d_onednn not in {s[1] for s in m0._plan}
    m1 = zoo("resnet18").compile(opt="O1").to_torch(seed=0)
    assert m1._fused is None and L._conv2d_onednn not in {s[1] for s in m1._plan}


@pytest.mark.parametrize("key", MODELS)
def test_o2_matches_o0(key):
    m0, sd, c2 = built(key)
    m2 = o2(key)
    kinds = {s[2]["onednn"][0:2] if s[1] is L.conv2d_chain else None for s in m2._fused}
    x = image()
    with torch.no_grad():
        want = m0(image=x)
        got = m2(image=x)
        plain = m2.use_onednn(False)(image=x)
    assert want.abs().max() > 0 and want.std() > 1e-3 * want.abs().max()
    assert rel_diff(got, want) <= REL, (key, kinds)
    assert rel_diff(plain, want) <= REL
    assert got.is_contiguous()


def test_each_fused_form_occurs():
    """The three models between them use every fused form: relu6 (hardtanh), residual add
    with and without the relu after it, the conv's own activations; and squeeze-excitation's
    global pooling as a whole-plane avg_pool2d."""
    forms = set()
    for key in MODELS:
        for step in o2(key)._fused:
            if step[1] is L.conv2d_chain:
                forms.add(tuple(step[2]["onednn"][:2]))
            elif step[1] is L._conv2d_onednn:
                forms.add(("act", step[2].get("act")))
            elif step[1] is L.global_avg_pool_nhwc:
                forms.add(("pool", key))
    assert {("unary", "hardtanh"), ("add", "relu"), ("add", None), ("act", "silu"),
            ("act", "sigmoid"), ("act", "relu"), ("pool", "efficientnet_b0")} <= forms


def test_gradients_take_the_plain_ops():
    m0, sd, c2 = built("mobilenet_v2")
    x = image()
    a, b = o2("mobilenet_v2"), o2("mobilenet_v2").use_onednn(False)
    with torch.no_grad():
        a(image=x)                  # packed weights made first
    ya, yb = a(image=x), b(image=x)
    assert ya.requires_grad
    ya.square().mean().backward()
    yb.square().mean().backward()
    assert rel_diff(ya.detach(), yb.detach()) <= REL
    for (n, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        if pb.grad is not None:
            assert rel_diff(pa.grad, pb.grad) <= 1e-3, n


@pytest.mark.parametrize("key", ["resnet18", "efficientnet_b0"])
def test_an_optimizer_step_repacks(key):
    x = image()
    m = o2(key)
    with torch.no_grad():
        before = m(image=x)         # packs every weight
    opt = torch.optim.SGD(m.parameters(), lr=0.05)
    m(image=x).square().mean().backward()
    opt.step()
    m.eval()
    fresh = o2_holding(key, m.state_dict())
    with torch.no_grad():
        after, want = m(image=x), fresh(image=x)
    assert rel_diff(after, before) > 1e-3, "the step changed nothing"
    assert rel_diff(after, want) <= REL


def test_load_state_dict_and_load_weights_repack():
    key = "resnet18"
    x = image()
    m = o2(key)
    other = o2(key, weights={k: v * 0.9 if v.is_floating_point() else v
                                  for k, v in built(key)[1].items()})
    with torch.no_grad():
        first = m(image=x)
        want = other.use_onednn(False)(image=x)
        m.load_state_dict(other.state_dict())
        assert rel_diff(m(image=x), want) <= REL
        m.load_weights(o2(key).state_dict())
        assert rel_diff(m(image=x), first) <= REL


def test_a_change_behind_autograds_back_is_seen_after_eval():
    """``p.data`` changes in place without the version counter: ``.eval()`` drops the packed
    weights, so the next call packs them again."""
    x = image()
    m = o2("resnet18")
    with torch.no_grad():
        m(image=x)
        for p in m.parameters():
            if p.dim() == 4:
                p.data.mul_(0.5)
        m.eval()
        got = m(image=x)
        want = o2_holding("resnet18", m.state_dict())(image=x)
    assert rel_diff(got, want) <= REL


def test_input_shapes_that_change():
    m = o2("mobilenet_v2")
    plain = o2("mobilenet_v2").use_onednn(False)
    with torch.no_grad():
        for batch in (1, 3, 1, 2):
            x = image(batch, seed=batch)
            assert rel_diff(m(image=x), plain(image=x)) <= REL, batch


def test_capture_and_run_all_see_every_value():
    m0, sd, c2 = built("resnet18")
    m = o2("resnet18")
    x = image()
    with torch.no_grad():
        out, seen = m(image=x, capture=["layers.0.b0.conv2", "layers.0.b0.add"])
        vals = m.run_all(image=x)
        plain = o2("resnet18").use_onednn(False)
        ref, want = plain.run_all(image=x), plain(image=x)
    for name in ("layers.0.b0.conv2", "layers.0.b0.add", "layers.0.b0.relu_1"):
        assert rel_diff(vals[name], ref[name]) <= REL, name
    assert rel_diff(seen["layers.0.b0.add"], ref["layers.0.b0.add"]) <= REL
    assert rel_diff(out, want) <= REL


def test_with_onednn_disabled_by_torch():
    x = image()
    m = o2("efficientnet_b0")
    with torch.no_grad():
        want = m(image=x)
        with torch.backends.mkldnn.flags(enabled=False):
            got = m(image=x)
    assert rel_diff(got, want) <= REL


def test_o2_still_refuses_training():
    from nndsl.errors import InputError
    with pytest.raises(InputError):
        o2("resnet18").train()


SMALL_SPEC = """
model m() {
    input x: f32[N, 3, 16, 16]
    a = x |> conv2d(8, 3, padding=1) as c1
    a = minimum(maximum(a, -1.0), 2.0)
    b = a |> conv2d(8, 3, padding=1) as c2
    b = maximum(b, 0.0)
    c = b |> conv2d(8, 1) as c3
    d = b |> conv2d(8, 1) as c4
    e = maximum(d, 0.5)
    f = a |> conv2d(8, 3, padding="same", groups=8) as dw
    output y = relu(c + a) + e + f
}
"""


def test_every_chain_of_a_small_spec():
    """A clamp to other bounds than relu6's, maximum(conv, 0), a maximum that does not fuse
    (its fallback), an add with the relu after it, `same` padding and a depthwise conv; with
    gradients on but no parameter wanting them, the fused forms run too."""
    import nndsl
    m0 = nndsl.compile(SMALL_SPEC, opt="O0").to_torch(seed=0).eval()
    sd = perturbed(m0)
    m0.load_weights(sd)
    c2 = nndsl.compile(SMALL_SPEC, opt="O2")
    m2 = c2.to_torch(weights=sd).eval()
    forms = [s[2]["onednn"] for s in m2._fused if s[1] is L.conv2d_chain]
    # O2's clamp_bounds made the bounds clamps and maximum(conv, 0) the conv's own relu
    assert ("unary", "hardtanh", [-1.0, 2.0]) in forms
    assert c2.graph.node("c2").attr.get("act") == "relu"
    assert None in forms and ("add", "relu") in forms
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = m0(x=x)
        assert rel_diff(m2(x=x), want) <= REL
    for p in m2.parameters():
        p.requires_grad_(False)
    got = m2(x=x)
    assert not got.requires_grad and rel_diff(got, want) <= REL
    xg = x.clone().requires_grad_(True)
    got = m2(x=xg)
    got.sum().backward()
    assert got.requires_grad and xg.grad is not None and rel_diff(got.detach(), want) <= REL


def test_torch_compile_traces_the_plain_ops():
    """Under torch.compile the fused steps take their plain ops: one graph, no breaks."""
    import nndsl
    import torch._dynamo
    m = nndsl.compile(SMALL_SPEC, opt="O2").to_torch(seed=0).eval()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = m(x=x)
        assert torch._dynamo.explain(m)(x=x).graph_break_count == 0
        got = torch.compile(m, backend="eager")(x=x)
    assert rel_diff(got, want) <= REL
