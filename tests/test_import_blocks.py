"""nndsl import folds repeated module instances into blocks.

A ResNet and a GPT exported by torch.onnx.export (tests/reference_models.py) decompile to a
spec that defines a block once and applies it per instance (a loop where the instances
chain); the text is shorter than the flat one, and the spec still reproduces the module's
outputs and parameter count, with the weights under the block's scoped names.
"""

from __future__ import annotations

import re

import numpy as np
import onnx
import pytest
import torch

import reference_models as rm
from helpers import torch_export
from nndsl.importer import import_onnx
from nndsl.importer import conformance as cf
from nndsl.importer.blocks import tokens

BN_STATS = ("running_mean", "running_var", "num_batches_tracked")




def _params(imported) -> int:
    return sum(int(v.size) for k, v in imported.weights.items() if not k.endswith(BN_STATS))


def _randomize_bn(module):
    g = torch.Generator().manual_seed(0)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)


def _check(module, inputs, model, unread: int = 0):
    with torch.no_grad():
        want = module(*inputs).numpy()
    flat = import_onnx(model, blocks=False)
    imported = import_onnx(model)
    r = cf.compare(cf.run_torch(imported, {"x": inputs[0].numpy()}), [want])
    assert r.ok, r.detail
    ref = sum(p.numel() for p in module.parameters())
    assert _params(imported) == _params(flat) == ref - unread
    assert imported.lines < flat.lines, (imported.lines, flat.lines)
    return imported, flat


def test_resnet50_bottlenecks_are_two_blocks():
    """ResNet-50's sixteen bottlenecks: the first of each stage (its stride and downsampling
    shortcut) and the others, each a block; the stride is a parameter of the first (layer1's
    omits it: the default stands in), the rest of a stage one loop."""
    torch.manual_seed(0)
    module = rm.ResNet50(classes=10, width=8).eval()
    with torch.no_grad():
        _randomize_bn(module)
    x = torch.randn(1, 3, 64, 64)
    model = torch_export(module, (x,), training=torch.onnx.TrainingMode.PRESERVE,
                    do_constant_folding=False)
    imported, flat = _check(module, (x,), model)
    text = imported.text
    assert len(re.findall(r"^block \w+\(", text, re.M)) == 2, text
    assert "stride=conv2_stride" in text, text
    for stage, n in ((1, 2), (2, 3), (3, 5), (4, 2)):
        assert re.search(rf"layer{stage}: repeat {n} \{{", text), text
        assert re.search(rf"\|> layer_block\(\d+, \d+, \d\) as layer{stage}_0\b", text), text
    # the weights follow the names: layer1.1 is iteration 0 of the loop `layer1`
    assert "layer1.0.b.conv1.weight" in imported.weights
    assert "layer1_0.downsample_0.weight" in imported.weights
    assert np.array_equal(imported.weights["layer1.0.b.conv1.weight"],
                          module.layer1[1].conv1.weight.detach().numpy())
    assert imported.lines * 2 < flat.lines


def test_resnet18_basic_blocks():
    torch.manual_seed(0)
    module = rm.ResNet18(classes=10, width=8).eval()
    x = torch.randn(2, 3, 32, 32)
    model = torch_export(module, (x,), training=torch.onnx.TrainingMode.PRESERVE,
                    do_constant_folding=False)
    imported, _ = _check(module, (x,), model)
    assert "block layer_block(" in imported.text


def test_gpt_layers_are_one_block_repeated():
    torch.manual_seed(0)
    module = rm.GPT(vocab=64, ctx=16, width=32, heads=4, layers=3).eval()
    ids = torch.randint(0, 64, (2, 8))
    # the exporter gathers the 8 positions of the 16 it has: the other rows are not in the file
    imported, flat = _check(module, (ids,), torch_export(module, (ids,), do_constant_folding=False),
                            unread=8 * 32)
    text = imported.text
    assert re.search(r"^block h_block\(\) \{", text, re.M), text
    assert re.search(r"h: repeat 3 \{ (\w+) = \1 \|> h_block\(\) as b \}", text), text
    assert "layer_norm as ln_1" in text and "h.2.b.mlp_c_fc.weight" in imported.weights
    # the tied head still reads the embedding outside the blocks
    assert "weight=transformer_wte.weight" in text


def test_fold_can_be_turned_off_and_is_a_fixed_point():
    torch.manual_seed(0)
    module = rm.ResNet18(classes=10, width=8).eval()
    model = torch_export(module, (torch.randn(1, 3, 32, 32),),
                    training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    assert "block " not in import_onnx(model, blocks=False).text
    once = import_onnx(model)
    twice = import_onnx(once.compile().to_onnx(weights=once.state()))
    thrice = import_onnx(twice.compile().to_onnx(weights=twice.state()))
    assert thrice.text == twice.text
    assert sorted(twice.weights) == sorted(once.weights)


def test_instances_that_differ_in_structure_are_not_one_block():
    """Instances whose layers differ (a relu against a sigmoid) are not folded together;
    identical ones are; and a fold that would not shorten the text is not made."""

    class Unit(torch.nn.Module):
        def __init__(self, act):
            super().__init__()
            self.fc = torch.nn.Linear(8, 8)
            self.act = act

        def forward(self, x):
            return x + self.act(self.fc(x))

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.units = torch.nn.Sequential(*[Unit(torch.nn.ReLU()) for _ in range(6)],
                                             Unit(torch.nn.Sigmoid()))

        def forward(self, x):
            return self.units(x)

    torch.manual_seed(0)
    module = Net().eval()
    x = torch.randn(3, 8)
    imported, _ = _check(module, (x,), torch_export(module, (x,)))
    assert imported.text.count("block ") == 1, imported.text
    assert "units: repeat 6" in imported.text, imported.text
    assert "sigmoid" in imported.text.split("model ", 1)[1], imported.text
    two = torch.nn.Sequential(Unit(torch.nn.ReLU()), Unit(torch.nn.ReLU())).eval()
    assert "block " not in import_onnx(torch_export(two, (x,))).text


def test_tokens():
    assert [t[1] for t in tokens("conv2d(8, 3, stride=2) as c1 |> x * 1e-05")] == \
        ["conv2d", "(", "8", ",", "3", ",", "stride", "=", "2", ")", "as", "c1", "|>", "x",
         "*", "1e-05"]


@pytest.mark.parametrize("name", ["squeezenet", "inception_v1"])
def test_light_models_fold_and_match(name):
    model = cf.randomize_weights(onnx.load(str(cf.light_models()[name])), seed=1)
    feeds = cf.random_inputs(model, seed=2)
    want = cf.run_ort(model, feeds)
    flat = import_onnx(model, blocks=False)
    imported = import_onnx(model)
    assert "block " in imported.text and imported.lines < flat.lines
    r = cf.compare(cf.run_torch(imported, feeds), want)
    assert r.ok, r.detail
    assert _params(imported) == _params(flat)


# ---- attention written out in MatMul/Softmax ----

def _attention_nodes(imported) -> int:
    c = imported.compile(opt="O2")
    return sum(n.op == "attention" for n in c.graph)


@pytest.mark.parametrize("flash", [True, False], ids=["sdpa", "written_out"])
def test_gpt_attention_comes_back_as_attention(flash):
    """SDPA (torch splits √scale over q and kᵀ, adds a causal float mask) and nanoGPT's
    written-out softmax (a product scaled after, ``masked_fill`` of a mask buffer) both read
    ``softmax(q @ k.T * scale ...) @ v``, which nndsl's fusion makes its attention op at O2."""
    torch.manual_seed(0)
    module = rm.GPT(vocab=64, ctx=16, width=32, heads=4, layers=2, flash=flash).eval()
    ids = torch.randint(0, 64, (2, 8))
    model = torch_export(module, (ids,), do_constant_folding=False)
    imported, _ = _check(module, (ids,), model, unread=8 * 32)
    text = imported.text
    assert re.search(r"= \w+ @ \w+\.T \* 0\.353553", text), text
    assert "|> softmax" in text and "permute" not in text, text
    if not flash:
        assert "masked_fill(" in text and "triu(ones([8, 8]), 1)" in text, text
    assert _attention_nodes(imported) == 2


def test_attention_scaled_by_a_divisor_with_an_additive_mask():
    class Att(torch.nn.Module):
        def __init__(self):
            super().__init__()
            mask = torch.zeros(6, 6)
            mask[:, 4:] = -1e9
            self.register_buffer("mask", mask)

        def forward(self, x):
            q, k, v = x, x * 2, x + 1
            s = q @ k.transpose(-1, -2) / 4.0
            return torch.softmax(s + self.mask, dim=-1) @ v

    x = torch.randn(2, 3, 6, 8)
    model = torch_export(Att(), (x,))
    imported = import_onnx(model)
    assert re.search(r"@ \w+\.T \* 0\.25\b", imported.text), imported.text
    r = cf.compare(cf.run_torch(imported, {"x": x.numpy()}), [Att()(x).numpy()])
    assert r.ok, r.detail
    assert _attention_nodes(imported) == 1


def test_zoo_gpt_blocks_bind_symbolic_dims(root):
    """nndsl's own export of gpt_mini (symbolic batch and length) comes back as one block
    whose input pattern binds N and T, repeated over the layers; the same outputs."""
    import nndsl
    c = nndsl.compile(root / "specs" / "transformers" / "gpt_mini.nn")
    proto = c.to_onnx(weights=c.to_torch().state_dict())
    imported = import_onnx(proto)
    text = imported.text
    assert "input x: f32[N, T, _]" in text and "reshape([N, T, 8, 32])" in text, text
    assert re.search(r"h: repeat 4 \{ (\w+) = \1 \|> h_block\(\) as block \}", text), text
    assert imported.lines * 2 < import_onnx(proto, blocks=False).lines
    feeds = {k: v.numpy() for k, v in c.example_inputs(batch=2).items()}
    r = cf.compare(cf.run_torch(imported, feeds), cf.run_ort(proto, feeds))
    assert r.ok, r.detail
    assert imported.compile().param_count() == c.param_count()
    # its export computes the causal mask once, in the first layer, for all four: read back,
    # each block computes its own again, and the four layers are still one loop
    again = import_onnx(imported.compile().to_onnx(weights=imported.state()))
    assert re.search(r"h: repeat 4 \{ (\w+) = \1 \|> h_block\(\) as block \}", again.text), \
        again.text
    block = again.text[again.text.index("block h_block"):again.text.index("model ")]
    assert "triu(1)" in block, again.text


def test_scatter_nd_rows_are_a_segment_sum():
    """ScatterND(add) of whole rows into zeros and into a tensor, and ScatterND(max) (row 3,
    which no update reaches, keeps its data), against onnxruntime."""
    from onnx import TensorProto, helper
    nodes = [helper.make_node("Unsqueeze", ["ids", "one"], ["rows"]),
             helper.make_node("ScatterND", ["zeros", "rows", "u"], ["s"], reduction="add"),
             helper.make_node("ScatterND", ["base", "rows", "u"], ["t"], reduction="add"),
             helper.make_node("ScatterND", ["base", "rows", "u"], ["m"], reduction="max"),
             helper.make_node("Add", ["s", "t"], ["st"]),
             helper.make_node("Add", ["st", "m"], ["y"])]
    inits = [onnx.numpy_helper.from_array(np.array([1], dtype=np.int64), "one"),
             onnx.numpy_helper.from_array(np.zeros((5, 3), np.float32), "zeros")]
    g = helper.make_graph(nodes, "g", [
        helper.make_tensor_value_info("ids", TensorProto.INT64, [7]),
        helper.make_tensor_value_info("u", TensorProto.FLOAT, [7, 3]),
        helper.make_tensor_value_info("base", TensorProto.FLOAT, [5, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5, 3])], initializer=inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    imported = import_onnx(model)
    assert imported.text.count("segment_sum(") == 3, imported.text
    assert "segment_max(" in imported.text, imported.text
    rng = np.random.default_rng(0)
    feeds = {"ids": np.array([0, 4, 4, 1, 0, 2, 4]),
             "u": rng.standard_normal((7, 3)).astype(np.float32),
             "base": rng.standard_normal((5, 3)).astype(np.float32)}
    r = cf.compare(cf.run_torch(imported, feeds), cf.run_ort(model, feeds))
    assert r.ok, r.detail
