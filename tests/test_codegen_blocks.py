"""Generated PyTorch writes one class per block: the values that differ between a block's
applications are constructor arguments, and a structural difference (a projection shortcut in
some) is an ``if`` on them; the result computes what the compiled module computes."""

import importlib.util
import itertools
import re

import pytest
import torch

import nndsl
from nndsl.backends.torch.codegen import generate_source

from conftest import ROOT

_counter = itertools.count()


def load(tmp_path, source: str):
    path = tmp_path / f"model_{next(_counter)}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"generated_blocks_{next(_counter)}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def classes(source: str) -> list[str]:
    return re.findall(r"^class (\w+)\(nn\.Module\):", source, re.M)


@pytest.fixture(scope="module")
def resnet():
    c = nndsl.compile(ROOT / "specs/vision/resnet18.nn")
    return c, generate_source(c.graph)


def test_resnet18_has_one_basic_block_class(resnet):
    _, src = resnet
    assert classes(src) == ["ResnetStem", "BasicBlock", "Resnet18"]
    assert "class BasicBlock2" not in src
    assert "def __init__(self, in_c, c, stride):" in src
    assert "self.conv1 = nn.Conv2d(in_c, c, kernel_size=3, stride=stride, padding=1, " \
           "bias=False)" in src
    assert "if stride != 1 or in_c != c:" in src  # the spec's test, found from its values
    assert "if self.down_conv is not None:" in src
    assert "BasicBlock(64, 128, 2)" in src and "BasicBlock(512, 512, 1)" in src
    assert "# (N, c, H // stride, W // stride)" in src  # shape comments in the arguments
    assert "_check_params(\n            self,\n            {\"c\": c, \"stride\"" not in src


def test_resnet18_generic_class_computes_what_nndsl_computes(resnet, tmp_path):
    c, src = resnet
    mod = load(tmp_path, src)
    ref = c.to_torch().eval()
    gen = mod.Resnet18().eval()
    gen.load_state_dict(ref.state_dict(), strict=True)
    x = c.example_inputs(batch=2)
    torch.testing.assert_close(gen(*x.values()), ref(**x), rtol=1e-5, atol=1e-5)


def test_generic_block_takes_values_no_application_had(resnet, tmp_path):
    """BasicBlock(64, 128, 1): more channels without a stride still gets the projection, as
    the spec's `stride != 1 or C != c` says; its parameters are those nndsl creates."""
    mod = load(tmp_path, resnet[1])
    block = mod.BasicBlock(64, 128, 1)
    spec = ("import std.resnet\nmodel m() {\n    input x: f32[N, 64, 8, 8]\n"
            "    output y = x |> basic_block(128) as b\n}\n")
    c = nndsl.compile(source=spec)
    want = {k[len("b."):]: v.shape for k, v in c.to_torch().state_dict().items()}
    assert {k: v.shape for k, v in block.state_dict().items()} == want
    assert block(torch.zeros(2, 64, 8, 8)).shape == (2, 128, 8, 8)
    plain = mod.BasicBlock(128, 128, 1)
    assert plain.down_conv is None and "down_conv.weight" not in plain.state_dict()


def test_unet_double_conv_is_one_class():
    c = nndsl.compile(ROOT / "specs/vision/unet.nn")
    src = generate_source(c.graph)
    names = classes(src)
    assert names.count("DoubleConv") == 1 and not any(n.startswith("DoubleConv2") for n in names)
    assert names.count("UpBlock") == 1
    assert "def __init__(self, in_c, c, dilation):" in src


def test_generic_classes_are_deterministic(resnet):
    c, src = resnet
    assert generate_source(c.graph) == src
    again = nndsl.compile(ROOT / "specs/vision/resnet18.nn")
    assert generate_source(again.graph) == src
