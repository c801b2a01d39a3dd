"""Generated PyTorch writes one class per block: the values that differ between a block's
applications are constructor arguments, and a structural difference (a projection shortcut in
some) is an ``if`` on them; the result computes what the compiled module computes."""

import importlib.util
import itertools
import re
import textwrap

import pytest
import torch

import nndsl
from nndsl.backends.torch.codegen import generate_source, param_variants
from nndsl.backends.torch.codegen.loops import loop_lines

from conftest import ROOT
from zoo import ZOO, zoo_id

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


# ---- the model's parameters as constructor arguments ----

def with_variants(path, **params):
    """A spec compiled, and compiled again with each integer parameter changed (the first
    proposed value that compiles), as a caller of generate_source(variants=...) does."""
    c = nndsl.compile(path, params=params or None)
    variants = []
    for name, values in param_variants(dict(c.graph.meta["params"])).items():
        for v in values:
            try:
                variants.append(nndsl.compile(path, params={**params, name: v}))
                break
            except nndsl.NndslError:
                continue
    return c, variants


@pytest.fixture(scope="module")
def resnet_free():
    c, variants = with_variants(ROOT / "specs/vision/resnet18.nn")
    return c, variants, generate_source(c.graph, variants=variants)


@pytest.mark.parametrize("params", [{"classes": 10}, {"width": 16}, {}])
def test_resnet18_takes_its_parameters_without_recompiling(resnet_free, tmp_path, params):
    """Resnet18(classes=10) is what nndsl compiles with --param classes=10: the same
    parameters (names, shapes, count) and the same outputs."""
    _, _, src = resnet_free
    model = load(tmp_path, src).Resnet18(**params).eval()
    want = nndsl.compile(ROOT / "specs/vision/resnet18.nn", params=params or None)
    ref = want.to_torch().eval()
    model.load_state_dict(ref.state_dict(), strict=True)
    assert sum(p.numel() for p in model.parameters()) == want.param_count()
    x = want.example_inputs(batch=1)
    got, expected = model(*x.values()), ref(**x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_free_parameters_read_as_expressions(resnet_free):
    _, _, src = resnet_free
    assert "def __init__(self, classes=1000, width=64):" in src
    assert "self.fc = nn.Linear(8 * width, classes)" in src
    assert "BasicBlock(width, 2 * width, 2)" in src and "self.stem = ResnetStem(width)" in src
    assert "_check_params" not in src and "_SPEC" not in src  # nothing is fixed: no check
    assert "logits = self.fc(flatten)  # (N, classes)" in src
    assert max(len(ln) for ln in src.splitlines()) <= 99


def test_parameters_that_change_the_structure_stay_checked(tmp_path):
    c, variants = with_variants(ROOT / "specs/vision/unet.nn")
    src = generate_source(c.graph, variants=variants)
    mod = load(tmp_path, src)
    assert '_check_params(self, {"depth": depth}, {"depth": 3})' in src
    with pytest.raises(ValueError, match="--param depth=4"):
        mod.Unet(depth=4)
    model = mod.Unet(classes=3, width=8).eval()
    want = nndsl.compile(ROOT / "specs/vision/unet.nn", params={"classes": 3, "width": 8})
    ref = want.to_torch().eval()
    model.load_state_dict(ref.state_dict(), strict=True)
    x = want.example_inputs(batch=1)
    torch.testing.assert_close(model(*x.values()), ref(**x), rtol=1e-5, atol=1e-5)


def test_variants_give_deterministic_source(resnet_free):
    c, variants, src = resnet_free
    assert generate_source(c.graph, variants=variants) == src


# ---- lists of blocks as loops ----

def test_a_list_of_blocks_is_a_loop(resnet):
    _, src = resnet
    assert "        for layer in self.layers:\n" \
           "            x = layer[\"b0\"](x)\n            x = layer[\"b1\"](x)\n" in src
    assert "self.layers[" not in src
    assert "F.adaptive_avg_pool2d(x, 1)" in src


def test_identical_list_items_are_built_in_a_comprehension_and_their_count_is_free(tmp_path):
    path = ROOT / "specs/transformers/gpt_mini.nn"
    c, variants = with_variants(path)
    src = generate_source(c.graph, variants=variants)
    assert "for _ in range(layers)" in src and "for layer in self.h:" in src
    mod = load(tmp_path, src)
    for params in ({"layers": 2}, {}):
        model = mod.GptMini(**params).eval()
        want = nndsl.compile(path, params=params or None)
        ref = want.to_torch().eval()
        model.load_state_dict(ref.state_dict(), strict=True)
        x = want.example_inputs(batch=2)
        torch.testing.assert_close(model(*x.values()), ref(**x), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="--param width=128"):
        mod.GptMini(width=128)


def test_a_run_whose_middle_value_is_read_later_stays_as_it_is():
    lines = ["a = self.h[0](x)  # (N, 4)", "b = self.h[1](a)  # (N, 4)", "c = a + b  # (N, 4)"]
    assert loop_lines(lines, "c", {"h": 2}, {"x"}) == (lines, "c")
    # all of the list, in order: a loop; the result read after it is the loop's variable
    got = loop_lines(lines[:2] + ["c = b * 2  # (N, 4)"], "c", {"h": 2}, {"x"})
    assert got == (["h = x", "for layer in self.h:", "    h = layer(h)  # (N, 4)",
                    "c = h * 2  # (N, 4)"], "c")
    # not every element of the list: no loop
    assert loop_lines(lines[:2], "b", {"h": 3}, {"x"}) == (lines[:2], "b")


def test_a_block_is_general_only_where_the_blocks_it_builds_are(tmp_path):
    """gpt_block builds causal_self_attention, whose class stays specialized (its reshape
    sizes are written in forward): gpt_block's class is not merged over the width either,
    though the variant compiled with another width has the same text under its own names."""
    c, variants = with_variants(ROOT / "specs/transformers/gpt_mini.nn")
    src = generate_source(c.graph, variants=variants)
    defined = set(classes(src))
    called = set(re.findall(r"(?<![\w.])([A-Z]\w*)\(", src)) - {"ValueError"}
    assert called <= defined
    assert "def __init__(self, in_features" not in src
    assert 'GptBlock(heads=8, mlp=4, p=0.0, approximate="none")' in src


# ---- names and arguments as the spec writes them ----

def test_unpacked_results_carry_the_spec_names_and_sdpa_its_default_scale():
    src = generate_source(nndsl.compile(ROOT / "specs/transformers/gpt_mini.nn").graph)
    assert "q, k, v = c_attn.split(256, dim=-1)" in src and "split_0" not in src
    attention = next(ln for ln in src.splitlines() if "scaled_dot_product_attention" in ln)
    assert "scale=" not in attention  # 1/sqrt(head dim) is SDPA's own


def test_a_scale_other_than_the_default_is_written(tmp_path):
    spec = textwrap.dedent("""
        import std.attention
        model m() {
            input x: f32[N, 5, 16]
            output y = multi_head_attention(x, x, x, heads=2, scaled=false) as attn
        }""")
    c = nndsl.compile(source=spec)
    src = generate_source(c.graph)
    attention = [ln for ln in src.splitlines() if "scaled_dot_product_attention" in ln]
    assert attention and all("scale=1.0" in ln for ln in attention)
    mod = load(tmp_path, src)
    model = mod.M().eval()
    ref = c.to_torch().eval()
    model.load_state_dict(ref.state_dict(), strict=True)
    x = c.example_inputs(batch=2)
    torch.testing.assert_close(model(*x.values()), ref(**x), rtol=1e-5, atol=1e-6)


# ---- the whole zoo with variants ----

@pytest.mark.parametrize("z", ZOO, ids=zoo_id)
def test_every_free_parameter_builds_what_nndsl_compiles(z, tmp_path):
    """Each zoo model written with its variants: at its defaults it computes what the compiled
    module computes, and every parameter the constructor takes freely builds, at the variant's
    value, what nndsl compiles with that value (the others refuse it)."""
    c = z.compile()
    variants, changed = [], []
    for name, values in param_variants(dict(c.graph.meta.get("params") or {})).items():
        for v in values:
            try:
                variants.append(z.compile(params={name: v}))
                changed.append({name: v})
                break
            except nndsl.NndslError:
                continue
    src = generate_source(c.graph, variants=variants)
    mod = load(tmp_path, src)
    cls = getattr(mod, classes(src)[-1])
    same_module(cls(), c)
    for variant, params in zip(variants, changed):
        try:
            model = cls(**params)
        except ValueError:
            continue  # still specialized to the value it was compiled with
        same_module(model, variant)


def same_module(model, c):
    ref = c.to_torch().eval()
    model.eval()
    model.load_state_dict(ref.state_dict(), strict=True)
    x = c.example_inputs(batch=2)
    torch.manual_seed(0)  # the same draws where a model samples (noise, a latent)
    want = ref(**x)
    torch.manual_seed(0)
    got = model(*x.values())
    want = want if isinstance(want, tuple) else (want,)
    got = got if isinstance(got, tuple) else (got,)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5, equal_nan=True)


def test_the_command_line_writes_a_model_that_takes_its_parameters(tmp_path):
    from nndsl.cli import main
    assert main(["compile", str(ROOT / "specs/vision/resnet18.nn"), "--to", "torch",
                 "-o", str(tmp_path / "r18")]) == 0
    source = (tmp_path / "r18" / "model.py").read_text()
    mod = load(tmp_path, source)
    net = mod.Resnet18(classes=10)
    want = nndsl.compile(ROOT / "specs/vision/resnet18.nn", params={"classes": 10})
    assert sum(p.numel() for p in net.parameters()) == want.param_count() == 11_181_642
    net.load_state_dict(want.to_torch(seed=0).state_dict(), strict=True)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x), want.to_torch(seed=0).eval()(image=x),
                                   rtol=1e-5, atol=1e-5)
