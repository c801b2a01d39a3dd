"""Zoo specs against their reference implementations, on the details that are easy to get wrong
and that parameter counts cannot see: where dropout sits in VGG's classifier (and in AlexNet's),
EfficientNet-B0's batch-norm eps, GPT-2's tanh GELU, how GCN and GAT treat the self-loops an
edge list already holds (torch_geometric's GCNConv and GATConv), and torchvision's
``transform_input`` for GoogLeNet and Inception-v3.

The references are written out in plain PyTorch in ``tests/reference_models.py`` (torchvision's
and torch_geometric's layouts and semantics); the weights of the compiled model are copied into
them by name, after every constant-initialised tensor has been perturbed (batch-norm statistics
included, so that eps shows). Every comparison's bound is relative to the magnitude of the
reference's output: ``max |got - want| <= REL * max |want|``.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

import nndsl

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_models as R  # noqa: E402

SPECS = Path(__file__).resolve().parent.parent / "specs"
REL = 1e-5          # f32 rounding of the same arithmetic in two orders, relative
REL_DEEP = 1e-4     # a few dozen layers (EfficientNet, the Inception nets)


def max_rel_diff(got: torch.Tensor, want: torch.Tensor) -> float:
    """max |got - want| / max |want|."""
    scale = float(want.abs().max())
    assert scale > 0
    return float((got - want).abs().max()) / scale


def assert_rel_close(got: torch.Tensor, want: torch.Tensor, rel: float = REL, what: str = ""):
    assert got.shape == want.shape, (what, got.shape, want.shape)
    d = max_rel_diff(got, want)
    assert d <= rel, f"{what}: max |got - want| / max |want| = {d:.3g} > {rel:g}"


@torch.no_grad()
def perturb_(module: nn.Module, seed: int = 0) -> None:
    """Random values for every constant-initialised tensor (biases, norm affines, running
    statistics), so that a swapped, ignored or differently-used tensor shows."""
    gen = torch.Generator().manual_seed(seed)
    for name, t in module.state_dict().items():
        if name.endswith("num_batches_tracked"):
            t.fill_(7)
        elif name.endswith("running_var"):
            t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
        elif name.endswith("running_mean"):
            t.copy_(0.2 * torch.randn(t.shape, generator=gen))
        elif t.is_floating_point() and t.numel() > 0 and bool((t == t.flatten()[0]).all()):
            t.add_(0.1 * torch.randn(t.shape, generator=gen))


@torch.no_grad()
def settle_batch_norms_(c: nndsl.Compiled, m: nn.Module, xs: dict) -> None:
    """Give every batch norm of the compiled module ``m`` the statistics of its input on
    ``xs``, from one train-mode pass (there each batch norm normalizes with the batch's own
    statistics, so the inputs do not depend on the running ones). Default weights shrink the
    signal layer by layer; with these statistics the eval-mode network renormalizes it as a
    trained one does, so its output depends on its input, not only on the biases."""
    m.train()
    vals = m.run_all(**xs)
    state = m.state_dict()
    for node in c.graph:
        if node.op != "batch_norm":
            continue
        x = vals[node.inputs[0].node]
        x = x[node.inputs[0].index] if isinstance(x, tuple) else x
        dims = [d for d in range(x.dim()) if d != 1]
        state[node.inputs[3].node].copy_(x.mean(dims))
        state[node.inputs[4].node].copy_(x.var(dims))
    m.eval()


def compiled_pair(spec: str, params: dict, ref: nn.Module, opt: str = "O1",
                  settle: dict | None = None):
    """The compiled spec's torch module (perturbed; batch norms settled on the inputs
    ``settle``) and ``ref`` holding the same weights."""
    c = nndsl.compile(SPECS / spec, params=params, opt=opt)
    m = c.to_torch()
    perturb_(m)
    if settle is not None:
        settle_batch_norms_(c, m, settle)
    ref.load_state_dict(R.to_reference(ref, m.state_dict()), strict=True)
    return c, m, ref


def _session(model):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


# ------------------------------------------------------------------ VGG and AlexNet: dropout

VGG_SMALL = {"classes": 10, "width": 8, "hidden": 64, "p": 0.5}
HEADS = [
    ("vgg16", "vision/vgg16.nn", {**VGG_SMALL, "blocks": [1, 1, 2, 1, 1]}, R.VGG),
    ("vgg19", "vision/vgg19.nn", {**VGG_SMALL, "blocks": [1, 1, 1, 2, 1]}, R.VGG),
    ("alexnet", "vision/alexnet.nn", {"classes": 10, "width": 8, "hidden": 64, "p": 0.5},
     R.AlexNet),
]


@pytest.mark.parametrize("name, spec, params, ref_cls", HEADS, ids=[h[0] for h in HEADS])
def test_classifier_dropout_sits_where_torchvision_puts_it(name, spec, params, ref_cls):
    """In train mode, from one torch seed, dropout draws the same masks in both models only if
    the dropouts come in the same order on tensors of the same shapes: VGG's are after the
    first two relus (on the hidden features), AlexNet's before the first two linears (the
    pooled features, then the hidden ones). Eval mode (no dropout) agrees either way."""
    c, m, ref = compiled_pair(spec, params, ref_cls(**params))
    x = c.example_inputs(batch=2)["image"]
    m.train(), ref.train()
    with torch.no_grad():
        torch.manual_seed(0)
        got = m(image=x)
        torch.manual_seed(0)
        want = ref(x)
    assert_rel_close(got, want, what=f"{name} train mode")
    m.eval(), ref.eval()
    with torch.no_grad():
        got_eval, want_eval = m(image=x), ref(x)
    assert_rel_close(got_eval, want_eval, what=f"{name} eval mode")
    assert max_rel_diff(want, want_eval) > 0.01     # the dropouts did something


@pytest.mark.parametrize("ref, count", [
    (lambda: R.AlexNet(), 61_100_840), (lambda: R.VGG(), 138_357_544),
    (lambda: R.VGG(blocks=(2, 2, 4, 4, 4)), 143_667_240), (lambda: R.EfficientNet(), 5_288_548)],
    ids=["alexnet", "vgg16", "vgg19", "efficientnet_b0"])
def test_references_have_torchvision_counts(ref, count):
    with torch.device("meta"):
        assert R.unique_param_count(ref()) == count


# ------------------------------------------------------------------ EfficientNet-B0: eps

EFFICIENTNET_SMALL = {"classes": 10, "width": 0.25, "depth": 0.25, "p": 0.0, "sd": 0.0}


@pytest.mark.parametrize("eps", [None, 0.001])
def test_efficientnet_b0_batch_norm_eps(eps):
    """torchvision's efficientnet_b0 builds its batch norms with nn.BatchNorm2d's default eps
    1e-5 (its B5-B7 and V2 use 1e-3); with running statistics that are not (0, 1) the eval-mode
    outputs show it. ``eps`` is also a parameter of the spec."""
    params = dict(EFFICIENTNET_SMALL) if eps is None else {**EFFICIENTNET_SMALL, "eps": eps}
    ref_eps = 1e-5 if eps is None else eps
    calibration = {"image": torch.randn(2, 3, 224, 224,
                                        generator=torch.Generator().manual_seed(1))}
    c, m, ref = compiled_pair("vision/efficientnet_b0.nn", params,
                              R.EfficientNet(**EFFICIENTNET_SMALL, eps=ref_eps),
                              settle=calibration)
    assert {bn.eps for bn in ref.modules() if isinstance(bn, nn.BatchNorm2d)} == {ref_eps}
    x = c.example_inputs(batch=2)["image"]
    m.eval(), ref.eval()
    with torch.no_grad():
        got, want = m(image=x), ref(x)
    assert_rel_close(got, want, REL_DEEP, what=f"efficientnet_b0 eps={ref_eps:g}")
    # the other eps is well outside the bound: the check can tell them apart
    other = R.EfficientNet(**EFFICIENTNET_SMALL, eps=1e-3 if ref_eps == 1e-5 else 1e-5)
    other.load_state_dict(ref.state_dict())
    with torch.no_grad():
        assert max_rel_diff(other.eval()(x), want) > 20 * REL_DEEP


def test_efficientnet_b0_stochastic_depth_in_training():
    """torchvision's rate grows as sd · block / blocks over all the blocks; in training each
    residual MBConv draws one mask of [N, 1, 1, 1], in block order, so from one torch seed both
    models drop the same samples' branches."""
    params = {**EFFICIENTNET_SMALL, "depth": 0.5, "sd": 0.6}
    c, m, ref = compiled_pair("vision/efficientnet_b0.nn", params, R.EfficientNet(**params))
    x = c.example_inputs(batch=4)["image"]
    m.train(), ref.train()
    with torch.no_grad():
        torch.manual_seed(5)
        got = m(image=x)
        torch.manual_seed(5)
        want = ref(x)
        torch.manual_seed(6)
        other_draw = ref(x)
    assert_rel_close(got, want, REL_DEEP, what="efficientnet_b0 stochastic depth")
    assert max_rel_diff(other_draw, want) > 20 * REL_DEEP      # the masks matter


# ------------------------------------------------------------------ GPT-2: tanh GELU

GPT2_SMALL = {"vocab": 64, "ctx": 32, "width": 32, "heads": 4, "layers": 2, "p": 0.0}


def _gpt_pair(spec: str, approximate: str):
    c, m, ref = compiled_pair(spec, GPT2_SMALL, R.GPT(**GPT2_SMALL, approximate=approximate))
    with torch.no_grad():
        # MLP pre-activations of a few units, where the two GELUs differ most, and an MLP
        # output that outweighs the residual stream
        for name, t in m.state_dict().items():
            if ".block.c_fc." in name:
                t.mul_(2.0)
            elif ".block.c_proj." in name:
                t.mul_(10.0)
    ref.load_state_dict(R.to_reference(ref, m.state_dict()), strict=True)
    return c, m.eval(), ref.eval()


@pytest.mark.parametrize("spec, approximate", [("transformers/gpt2.nn", "tanh"),
                                                ("transformers/gpt_mini.nn", "none")])
def test_gpt_mlp_gelu(spec, approximate):
    """GPT-2's MLP uses gelu_new, GELU's tanh approximation (HuggingFace GPT2MLP); gpt_mini is
    nanoGPT's, with the exact GELU. The other approximation is far outside the bound."""
    c, m, ref = _gpt_pair(spec, approximate)
    tokens = c.example_inputs(batch=2, T=16)["tokens"]
    with torch.no_grad():
        got, want = m(tokens=tokens), ref(tokens)
        other = R.GPT(**GPT2_SMALL, approximate="none" if approximate == "tanh" else "tanh")
        other.load_state_dict(ref.state_dict())
        wrong = other.eval()(tokens)
    assert_rel_close(got, want, what=f"{spec} against gelu(approximate={approximate!r})")
    assert max_rel_diff(wrong, want) > 20 * REL


# ------------------------------------------------------------------ GCN and GAT: self-loops

V, FEATURES = 7, 5
GCN_SMALL = {"F": FEATURES, "hidden": 6, "classes": 3, "p": 0.0}
GAT_SMALL = {"F": FEATURES, "hidden": 4, "heads": 3, "classes": 3, "out_heads": 2, "p": 0.0}

# distinct edges j -> i, j != i; node 6 has no incoming edge; 1 -> 0 is given twice
PLAIN = [(1, 0), (2, 0), (0, 1), (3, 1), (1, 2), (4, 2), (5, 3), (0, 4), (2, 5), (3, 5),
         (1, 0), (6, 5)]
# the same with self-loops in between: one at nodes 0, 2 and 6, two at node 4
LOOPED = [(0, 0)] + PLAIN[:4] + [(4, 4), (2, 2)] + PLAIN[4:9] + [(4, 4)] + PLAIN[9:] + [(6, 6)]
GRAPHS = {"without self-loops": PLAIN, "with self-loops": LOOPED}


def _edges(pairs) -> torch.Tensor:
    return torch.tensor(pairs, dtype=torch.int64).T.contiguous()


def _graph_pair(name: str, opt: str = "O1"):
    if name == "gcn":
        return compiled_pair("graphs/gcn.nn", GCN_SMALL, R.PygGCN(**GCN_SMALL), opt)
    return compiled_pair("graphs/gat.nn", GAT_SMALL, R.PygGAT(**GAT_SMALL), opt)


@pytest.mark.parametrize("opt", ["O0", "O1", "O2"])
@pytest.mark.parametrize("graph", list(GRAPHS))
@pytest.mark.parametrize("name", ["gcn", "gat"])
def test_graph_convs_match_torch_geometric(name, graph, opt):
    """GCNConv (add_remaining_self_loops: each node ends with exactly one self-loop of weight 1)
    and GATConv (remove_self_loops, then add_self_loops: each node attends to itself once): an
    edge list that already holds self-loops, one of them twice, gives what one without them
    does. A repeated edge counts twice in both."""
    c, m, ref = _graph_pair(name, opt)
    x = torch.randn(V, FEATURES, generator=torch.Generator().manual_seed(3))
    edges = _edges(GRAPHS[graph])
    m.eval(), ref.eval()
    with torch.no_grad():
        got, want = m(x=x, edge_index=edges), ref(x, edges)
        assert_rel_close(got, want, what=f"{name} {graph} {opt}")
        if graph == "with self-loops":      # the loops given are the ones added
            assert_rel_close(got, ref(x, _edges(PLAIN)), what=f"{name} {graph} {opt}")


@pytest.mark.parametrize("name", ["gcn", "gat"])
def test_graph_convs_with_self_loops_in_onnx(name):
    c, m, ref = _graph_pair(name)
    x = torch.randn(V, FEATURES, generator=torch.Generator().manual_seed(4))
    edges = _edges(LOOPED)
    with torch.no_grad():
        want = ref.eval()(x, edges)
    sess = _session(c.to_onnx(weights=m.state_dict()))
    (got,) = sess.run(None, {"x": x.numpy(), "edge_index": edges.numpy()})
    assert np.isfinite(got).all()
    assert_rel_close(torch.from_numpy(got), want, what=f"{name} onnx")


@pytest.mark.parametrize("name", ["gcn", "gat"])
def test_graph_convs_on_example_inputs(name):
    """Example edges are uniform over [0, V)², so they hold self-loops and repeated edges."""
    c, m, ref = _graph_pair(name)
    m.eval(), ref.eval()
    loops = 0
    for seed in range(3):
        xs = c.example_inputs(batch=6, seed=seed, E=40)
        loops += int((xs["edge_index"][0] == xs["edge_index"][1]).sum())
        with torch.no_grad():
            assert_rel_close(m(**xs), ref(xs["x"], xs["edge_index"]), what=f"{name} seed {seed}")
    assert loops > 0


# ------------------------------------------------------------------ GoogLeNet, Inception-v3

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def torchvision_transform_input(x: torch.Tensor) -> torch.Tensor:
    """GoogLeNet._transform_input / Inception3._transform_input, as torchvision writes it."""
    x_ch0 = torch.unsqueeze(x[:, 0], 1) * (0.229 / 0.5) + (0.485 - 0.5) / 0.5
    x_ch1 = torch.unsqueeze(x[:, 1], 1) * (0.224 / 0.5) + (0.456 - 0.5) / 0.5
    x_ch2 = torch.unsqueeze(x[:, 2], 1) * (0.225 / 0.5) + (0.406 - 0.5) / 0.5
    return torch.cat((x_ch0, x_ch1, x_ch2), 1)


def test_imagenet_to_unit_range_maps_a_normalized_image_to_minus_one_one():
    c = nndsl.compile(textwrap.dedent("""
        import std.inception
        model t() {
            input x: f32[N, 3, 4, 4]
            output y = x |> imagenet_to_unit_range
        }"""))
    u = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))   # pixels in [0, 1]
    normalized = (u - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    with torch.no_grad():
        y = c.to_torch()(x=normalized)
    torch.testing.assert_close(y, 2 * u - 1, rtol=0, atol=1e-6)
    torch.testing.assert_close(y, torchvision_transform_input(normalized), rtol=0, atol=1e-6)


INCEPTIONS = [
    ("googlenet", "vision/googlenet.nn", {"classes": 10, "width": 8, "p": 0.0}),
    ("inception_v3", "vision/inception_v3.nn", {"classes": 10, "width": 4, "p": 0.0,
                                                "size": 107}),
]


@pytest.mark.parametrize("name, spec, params", INCEPTIONS, ids=[i[0] for i in INCEPTIONS])
def test_transform_input(name, spec, params):
    """``transform_input=true`` is the model applied to torchvision's transformed input; the
    default is off and leaves the graph as it was (no parameters either way)."""
    plain = nndsl.compile(SPECS / spec, params=params)
    off = nndsl.compile(SPECS / spec, params={**params, "transform_input": False})
    on = nndsl.compile(SPECS / spec, params={**params, "transform_input": True})
    assert plain.ir() == off.ir()
    assert on.param_count() == off.param_count()
    x = plain.example_inputs(batch=2)["image"]
    m_off = off.to_torch()
    perturb_(m_off)
    settle_batch_norms_(off, m_off, {"image": torchvision_transform_input(
        plain.example_inputs(batch=2, seed=1)["image"])})
    m_on = on.to_torch()
    m_on.load_weights(m_off.state_dict())
    m_on.eval(), m_off.eval()
    with torch.no_grad():
        got = m_on(image=x)
        want = m_off(image=torchvision_transform_input(x))
        untransformed = m_off(image=x)
    assert_rel_close(got, want, REL_DEEP, what=f"{name} transform_input")
    assert max_rel_diff(untransformed, want) > 20 * REL_DEEP
