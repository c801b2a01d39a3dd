"""nndsl import: ONNX models as .nn specs.

- the light models of the onnx wheel (with random weights: their own are one value each)
  import, and the spec's torch module and its ONNX re-export reproduce onnxruntime on the file;
- models exported by torch.onnx.export from PyTorch written here reproduce the module's outputs
  and parameter count;
- zoo specs go out through nndsl's ONNX export and come back with the same outputs and
  parameters; importing the export of an imported spec gives the same text (a fixed point);
- bad input: one located error, exit 1, nothing written, no traceback.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import nndsl
from helpers import torch_export
from nndsl.cli import main
from nndsl.importer import ImportFailure, import_onnx
from nndsl.importer import conformance as cf

LIGHT = cf.light_models()
# AlexNet, VGG-19 and ZFNet-512 (60-140M weights), ResNet-50 and DenseNet-121 (the slowest to
# run at 224 x 224) run in benchmarks/import_conformance.py; these four keep the tests fast
FAST_LIGHT = ("squeezenet", "inception_v1", "inception_v2", "shufflenet")
BN_STATS = ("running_mean", "running_var", "num_batches_tracked")


def _params(imported) -> int:
    return sum(int(v.size) for k, v in imported.weights.items() if not k.endswith(BN_STATS))


def test_light_models_are_all_there():
    assert sorted(LIGHT) == ["bvlc_alexnet", "densenet121", "inception_v1", "inception_v2",
                             "resnet50", "shufflenet", "squeezenet", "vgg19", "zfnet512"]


@pytest.mark.parametrize("name", FAST_LIGHT)
def test_light_model_reproduces_onnxruntime(name):
    model = cf.randomize_weights(onnx.load(str(LIGHT[name])), seed=1)
    feeds = cf.random_inputs(model, seed=2)
    want = cf.run_ort(model, feeds)
    imported = import_onnx(model)
    compiled = imported.compile()
    torch_out = cf.compare(cf.run_torch(imported, feeds, compiled), want)
    ort_out = cf.compare(cf.run_reexport(imported, feeds, compiled), want)
    assert torch_out.ok, torch_out.detail
    assert ort_out.ok, ort_out.detail
    # fewer lines than the graph has nodes (its weights made by ConstantOfShape left out)
    assert imported.lines < imported.onnx_nodes, (imported.lines, imported.onnx_nodes)
    assert compiled.param_count() == _params(imported)


def test_light_model_file_as_shipped():
    """The file itself (its weights made by ConstantOfShape), read from its path."""
    path = LIGHT["squeezenet"]
    model = onnx.load(str(path))
    feeds = cf.random_inputs(model)
    imported = import_onnx(path)
    assert imported.opset == 9 and imported.onnx_nodes == len(model.graph.node)
    r = cf.compare(cf.run_torch(imported, feeds), cf.run_ort(model, feeds))
    assert r.ok, r.detail
    assert "conv2d(64, 3, stride=2) as conv1" in imported.text


def test_randomized_weights_make_the_comparison_sensitive():
    """A wrong weight is caught: the check is not vacuous on these models."""
    model = cf.randomize_weights(onnx.load(str(LIGHT["squeezenet"])), seed=1)
    feeds = cf.random_inputs(model)
    want = cf.run_ort(model, feeds)
    imported = import_onnx(model)
    key = next(k for k in imported.weights if k.endswith("conv10.weight"))
    imported.weights[key] = imported.weights[key] * np.float32(1.001)
    assert not cf.compare(cf.run_torch(imported, feeds), want).ok


# ---- torch.onnx.export of modules written here ----

class Block(torch.nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(cout)
        self.conv2 = torch.nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = torch.nn.Sequential(torch.nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            torch.nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (x if self.down is None else self.down(x)))


class SmallResNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, 1, 1)
        self.layer1 = torch.nn.Sequential(Block(8, 8, 1), Block(8, 16, 2))
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.layer1(torch.relu(self.stem(x)))), 1))


class TinyTransformer(torch.nn.Module):
    """Token embedding, one pre-norm block (causal SDPA attention, GELU MLP), a head tied to
    the embedding."""

    def __init__(self, vocab=50, d=32, heads=4, t=8):
        super().__init__()
        self.heads = heads
        self.tok = torch.nn.Embedding(vocab, d)
        self.pos = torch.nn.Parameter(torch.randn(t, d) * 0.1)
        self.ln1 = torch.nn.LayerNorm(d)
        self.qkv = torch.nn.Linear(d, 3 * d)
        self.proj = torch.nn.Linear(d, d)
        self.ln2 = torch.nn.LayerNorm(d)
        self.fc1 = torch.nn.Linear(d, 4 * d)
        self.fc2 = torch.nn.Linear(4 * d, d)
        self.head = torch.nn.Linear(d, vocab)
        self.head.weight = self.tok.weight          # tied: one parameter, read twice

    def forward(self, ids):
        b, t = ids.shape
        x = self.tok(ids) + self.pos
        q, k, v = self.qkv(self.ln1(x)).split(x.shape[-1], dim=-1)
        q, k, v = (z.reshape(b, t, self.heads, -1).transpose(1, 2) for z in (q, k, v))
        a = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, -1))
        x = x + self.fc2(torch.nn.functional.gelu(self.fc1(self.ln2(x))))
        return self.head(x)


class LSTMTagger(torch.nn.Module):
    """Embedding, a bidirectional LSTM, a tag per token."""

    def __init__(self, vocab=30, embed=16, hidden=24, tags=5):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, embed)
        self.lstm = torch.nn.LSTM(embed, hidden, batch_first=True, bidirectional=True)
        self.out = torch.nn.Linear(2 * hidden, tags)

    def forward(self, ids):
        h, _ = self.lstm(self.emb(ids))
        return self.out(h)



def _randomize_bn(module):
    g = torch.Generator().manual_seed(0)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)


@pytest.mark.parametrize("make, args", [
    (SmallResNet, lambda: (torch.randn(2, 3, 16, 16),)),
    (TinyTransformer, lambda: (torch.randint(0, 50, (2, 8)),)),
    (LSTMTagger, lambda: (torch.randint(0, 30, (2, 7)),)),
], ids=["resnet", "transformer", "lstm_tagger"])
def test_torch_export_reproduces_module(make, args):
    torch.manual_seed(0)
    module = make().eval()
    with torch.no_grad():
        _randomize_bn(module)
        inputs = args()
        want = module(*inputs).numpy()
    # TrainingMode.PRESERVE keeps the batch norms (eval export folds them into the convs)
    model = torch_export(module, inputs, training=torch.onnx.TrainingMode.PRESERVE,
                    do_constant_folding=False)
    imported = import_onnx(model)
    feeds = {"x": inputs[0].numpy()}
    r = cf.compare(cf.run_torch(imported, feeds), [want])
    assert r.ok, r.detail
    assert _params(imported) == sum(p.numel() for p in module.parameters())


def test_tied_embedding_comes_back_tied():
    torch.manual_seed(0)
    module = TinyTransformer().eval()
    model = torch_export(module, (torch.randint(0, 50, (2, 8)),), do_constant_folding=False)
    imported = import_onnx(model)
    found = re.search(r"(\w+) = embedding\(50, 32\)", imported.text)
    assert found and f"weight={found[1]}.weight) as head" in imported.text, imported.text
    assert _params(imported) == sum(p.numel() for p in module.parameters())


def test_layer_norm_written_out_comes_back_as_a_layer():
    """Before opset 17 torch writes LayerNorm as mean, sub, pow, mean, add, sqrt, div, mul,
    add: one layer_norm with its weights."""
    torch.manual_seed(0)
    module = TinyTransformer().eval()
    with torch.no_grad():
        module.ln2.weight.uniform_(0.5, 1.5)
        module.ln2.bias.uniform_(-0.5, 0.5)
    ids = torch.randint(0, 50, (2, 8))
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (ids,), f, dynamo=False, opset_version=14,
                          input_names=["x"], output_names=["y"], do_constant_folding=False)
    model = onnx.load_from_string(f.getvalue())
    assert not any(n.op_type == "LayerNormalization" for n in model.graph.node)
    imported = import_onnx(model)
    assert "layer_norm as ln1" in imported.text and "layer_norm as ln2" in imported.text
    assert "sqrt" not in imported.text, imported.text
    with torch.no_grad():
        want = module(ids).numpy()
    r = cf.compare(cf.run_torch(imported, {"x": ids.numpy()}), [want])
    assert r.ok, r.detail
    assert _params(imported) == sum(p.numel() for p in module.parameters())


class RMSNormHead(torch.nn.Module):
    """LLaMA's RMSNorm as it is written (torch's exporter has no rms_norm before opset 23)."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.rand(16) + 0.5)
        self.out = torch.nn.Linear(16, 4)

    def forward(self, x):
        h = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight
        return self.out(h)


def test_rms_norm_written_out_comes_back_as_a_layer():
    torch.manual_seed(0)
    module = RMSNormHead().eval()
    x = torch.randn(2, 5, 16)
    imported = import_onnx(torch_export(module, (x,)))
    assert "rms_norm(eps=1e-06)" in imported.text and "sqrt" not in imported.text, \
        imported.text
    with torch.no_grad():
        want = module(x).numpy()
    r = cf.compare(cf.run_torch(imported, {"x": x.numpy()}), [want])
    assert r.ok, r.detail
    assert _params(imported) == sum(p.numel() for p in module.parameters())


def test_gelu_and_silu_written_out_come_back_as_one_function():
    class Act(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.gelu(x) + torch.nn.functional.silu(x * 2)

    x = torch.randn(3, 5)
    imported = import_onnx(torch_export(Act(), (x,)))
    assert "|> gelu" in imported.text and "|> silu" in imported.text, imported.text
    assert "erf" not in imported.text and "sigmoid" not in imported.text
    r = cf.compare(cf.run_torch(imported, {"x": x.numpy()}), [Act()(x).numpy()])
    assert r.ok, r.detail


def test_batch_norm_scale_and_shift_fold_into_it():
    """Caffe2's BN + per-channel Mul + Add (inception_v2) is one batch norm."""
    rng = np.random.default_rng(0)
    c = 4
    consts = {"w": rng.standard_normal((c, 3, 3, 3)), "g": rng.uniform(0.5, 1.5, c),
              "b": rng.standard_normal(c), "m": rng.standard_normal(c),
              "v": rng.uniform(0.5, 1.5, c), "s": rng.uniform(0.5, 1.5, (c, 1, 1)),
              "t": rng.standard_normal((c, 1, 1))}
    inits = [numpy_helper.from_array(a.astype(np.float32), k) for k, a in consts.items()]
    nodes = [helper.make_node("Conv", ["x", "w"], ["h"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["h", "g", "b", "m", "v"], ["n"]),
             helper.make_node("Mul", ["n", "s"], ["ns"]),
             helper.make_node("Add", ["ns", "t"], ["nt"]),
             helper.make_node("Relu", ["nt"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                     [2, 3, 6, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4, 6, 6])],
                          initializer=inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    imported = import_onnx(model)
    assert " * " not in imported.text and " + " not in imported.text, imported.text
    feeds = {"x": rng.standard_normal((2, 3, 6, 6)).astype(np.float32)}
    r = cf.compare(cf.run_torch(imported, feeds), cf.run_ort(model, feeds))
    assert r.ok, r.detail


def test_recurrent_layers_come_back_as_layers():
    """The exporter's time-major transposes, shape arithmetic and unread final states go:
    what is left is the layers."""
    torch.manual_seed(0)
    text = import_onnx(torch_export(LSTMTagger().eval(), (torch.randint(0, 30, (2, 7)),))).text
    assert "embedding(30, 16) as emb |> lstm(24, bidirectional=true) as lstm" in text, text
    assert "transpose" not in text and "reshape" not in text, text


def test_torch_export_scopes_name_the_layers():
    torch.manual_seed(0)
    module = SmallResNet().eval()
    model = torch_export(module, (torch.randn(1, 3, 16, 16),),
                    training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    text = import_onnx(model).text
    for layer in ("as layer1_0_conv1", "as layer1_1_down_0", "batch_norm as layer1_1_bn2",
                  "linear(10) as fc"):
        assert layer in text, text
    # exported for inference, batch norms folded into the convs: the names come from the
    # node scopes (/layer1/layer1.1/down/down.0/Conv), the weights being the exporter's
    folded = import_onnx(torch_export(module, (torch.randn(1, 3, 16, 16),))).text
    for layer in ("as layer1_0_conv1", "as layer1_1_down_0", "linear(10) as fc"):
        assert layer in folded, folded
    assert "batch_norm" not in folded


# ---- round trips through nndsl's own ONNX export ----

ROUND_TRIP = ("fundamentals/mlp", "vision/lenet5", "vision/mnist_cnn",
              "generative/autoencoder", "vision/squeezenet", "vision/unet",
              "sequence/gru_tagger", "sequence/bilstm_tagger", "sequence/rnn_classifier",
              "meta/protonet", "meta/matching_net",      # one encoder applied twice
              "meta/siamese",                            # twin towers: convs and a linear
              "graphs/gcn", "graphs/graphsage", "graphs/gat",   # segment sums/max, ScatterND
              "transformers/gpt_mini")                   # a block over symbolic dims


@pytest.mark.parametrize("spec", ROUND_TRIP)
def test_zoo_round_trip(spec, root):
    rt = cf.round_trip(nndsl.compile(root / "specs" / f"{spec}.nn"))
    assert rt.compared.ok, rt.compared.detail
    n0, n1 = rt.params
    assert n1 == n0


SYMBOLIC = """
model sym(c: int = 8) {
    input x: f32[N, 3, H, W]
    h = x |> conv2d(c, 3, padding=1) as conv1 |> relu |> max_pool2d(2)
          |> conv_transpose2d(c, 2, stride=2) as up |> conv2d(c, 3, stride=2) as conv2
    output y = h |> mean(dim=[2, 3])
}
"""


def test_symbolic_spatial_dims_round_trip():
    """Sizes shape inference leaves as unk__ dims: the importer computes them itself."""
    c = nndsl.compile(source=SYMBOLIC)
    proto = c.to_onnx(weights=c.to_torch().state_dict())
    imported = import_onnx(proto)
    assert "input x: f32[N, 3, H, W]" in imported.text, imported.text
    feeds = {"x": np.random.default_rng(0).standard_normal((2, 3, 12, 10)).astype(np.float32)}
    r = cf.compare(cf.run_torch(imported, feeds), cf.run_ort(proto, feeds))
    assert r.ok, r.detail


def test_fixed_point(root):
    """Importing the export of an imported spec gives the same text."""
    c = nndsl.compile(root / "specs" / "vision" / "lenet5.nn")
    first = import_onnx(c.to_onnx(weights=c.to_torch().state_dict()))
    second = import_onnx(first.compile().to_onnx())
    assert second.text == first.text
    # a file from elsewhere: its first import names values after the file's (r4); from the
    # spec's export on, the names are the spec's and stay
    light = import_onnx(cf.randomize_weights(onnx.load(str(LIGHT["squeezenet"]))))
    once = import_onnx(light.compile().to_onnx())
    twice = import_onnx(once.compile().to_onnx())
    assert twice.text == once.text
    assert [k for k in once.weights] == [k for k in light.weights]


# ---- golden decompiled text (refresh with NNDSL_UPDATE_GOLDEN=1) ----

GOLDEN = Path(__file__).parent / "golden" / "import"
GOLDEN_CASES = {
    "light_squeezenet": lambda root: LIGHT["squeezenet"],
    "light_inception_v1": lambda root: LIGHT["inception_v1"],
    "lenet5": lambda root: nndsl.compile(root / "specs/vision/lenet5.nn").to_onnx(),
    "lstm_sentiment": lambda root: nndsl.compile(
        root / "specs/sequence/lstm_sentiment.nn").to_onnx(),
    "gpt_mini": lambda root: nndsl.compile(root / "specs/transformers/gpt_mini.nn",
                                           params={"layers": 1}).to_onnx(),
}


@pytest.mark.parametrize("key", list(GOLDEN_CASES))
def test_golden_decompiled_text(key, root):
    text = import_onnx(GOLDEN_CASES[key](root)).text
    path = GOLDEN / f"{key}.nn"
    if os.environ.get("NNDSL_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no golden file {path}; run with NNDSL_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"the decompiled text changed; new text:\n{text}"


def test_import_is_deterministic(tmp_path):
    path = LIGHT["squeezenet"]
    a, b = tmp_path / "a.nn", tmp_path / "b.nn"
    assert main(["import", str(path), "-o", str(a)]) == 0
    assert main(["import", str(path), "-o", str(b)]) == 0
    assert a.read_text() == b.read_text()
    assert a.with_suffix(".safetensors").read_bytes() == b.with_suffix(".safetensors").read_bytes()


# ---- the command line ----

def test_cli_import_then_inspect_and_compile(tmp_path, capsys):
    out = tmp_path / "sq.nn"
    weights = tmp_path / "w.safetensors"
    assert main(["import", str(LIGHT["squeezenet"]), "-o", str(out),
                 "--weights-out", str(weights)]) == 0
    assert out.is_file() and weights.is_file()
    assert main(["check", str(out), "--weights", str(weights)]) == 0
    onnx_out = tmp_path / "sq.opt.onnx"
    assert main(["compile", str(LIGHT["squeezenet"]), "-O2", "--to", "onnx",
                 "-o", str(onnx_out)]) == 0
    model = onnx.load(str(onnx_out))
    original = onnx.load(str(LIGHT["squeezenet"]))
    feeds = cf.random_inputs(original)
    assert list(feeds) == list(cf.random_inputs(model)) == ["data_0"]
    r = cf.compare(cf.run_ort(model, feeds), cf.run_ort(original, feeds))
    assert r.ok, r.detail
    assert "1,235,496 parameters" in capsys.readouterr().out


def _graph(nodes, inits=(), opset=17, domains=()):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                     [4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 4])],
                          initializer=list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset), *domains])


def _bad_inputs(tmp_path) -> dict:
    """name -> (file, the code its import fails with)."""
    files = {}
    data = LIGHT["squeezenet"].read_bytes()
    files["truncated"] = (data[: len(data) // 3], "E1601")
    files["not_onnx"] = (b"model m() { }\n", "E1601")
    m = _graph([helper.make_node("Relu", ["x"], ["y"])])
    m.opset_import[0].version = 99
    files["newer_opset"] = (m.SerializeToString(), "E1604")
    m = _graph([helper.make_node("Foo", ["x"], ["y"], domain="com.acme")],
               domains=[helper.make_opsetid("com.acme", 1)])
    files["custom_domain"] = (m.SerializeToString(), "E1605")
    m = _graph([helper.make_node("Det", ["x"], ["a"]), helper.make_node("Det", ["x"], ["b"]),
                helper.make_node("Add", ["a", "b"], ["c"]),
                helper.make_node("Hardmax", ["c"], ["y"])])
    files["unsupported"] = (m.SerializeToString(), "E1620")
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    m = _graph([helper.make_node("MatMul", ["x", "w"], ["y"])], inits=[w])
    w = m.graph.initializer[0]
    w.ClearField("raw_data")
    w.ClearField("float_data")
    w.data_location = TensorProto.EXTERNAL
    w.external_data.add(key="location", value="../outside.data")
    (tmp_path / "outside.data").write_bytes(np.ones(16, np.float32).tobytes())
    files["external_outside"] = (m.SerializeToString(), "E1603")
    folder = tmp_path / "models"
    folder.mkdir()
    paths = {}
    for name, (blob, code) in files.items():
        p = folder / f"{name}.onnx"
        p.write_bytes(blob)
        paths[name] = (p, code)
    return paths


BAD = ("truncated", "not_onnx", "newer_opset", "custom_domain", "unsupported",
       "external_outside")


@pytest.mark.parametrize("name", BAD)
def test_cli_bad_input(name, tmp_path, capsys):
    path, code = _bad_inputs(tmp_path)[name]
    out = tmp_path / "out" / "m.nn"
    out.parent.mkdir()
    assert main(["import", str(path), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"error[{code}]" in err, err
    assert "Traceback" not in err and str(path) in err
    assert list(out.parent.iterdir()) == []
    # the same file given to compile fails the same way
    assert main(["compile", str(path), "--to", "onnx", "-o", str(tmp_path / "out" / "m.onnx")]) \
        == 1
    assert f"error[{code}]" in capsys.readouterr().err
    assert list(out.parent.iterdir()) == []


def test_damaged_files_fail_as_import_errors(root):
    """Bytes changed or cut anywhere: the import succeeds or raises ImportFailure, never
    anything else (the model is data; a damaged one is a located error)."""
    import random
    data = nndsl.compile(root / "specs/vision/lenet5.nn").to_onnx().SerializeToString()
    rng = random.Random(0)
    codes = set()
    for i in range(40):
        b = bytearray(data)
        for _ in range(rng.randint(1, 6)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        if i % 5 == 0:
            b = b[: rng.randrange(len(b))]
        try:
            import_onnx(bytes(b))
        except ImportFailure as e:
            codes.add(e.code)
    assert "E1601" in codes


def test_symbolic_batch_stays_symbolic():
    torch.manual_seed(0)
    module = SmallResNet().eval()
    model = torch_export(module, (torch.randn(2, 3, 16, 16),), dynamic_axes={"x": {0: "batch"}},
                    training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    imported = import_onnx(model)
    assert "input x: f32[batch, 3, 16, 16]" in imported.text, imported.text
    x = torch.randn(5, 3, 16, 16)
    with torch.no_grad():
        want = module(x).numpy()
    r = cf.compare(cf.run_torch(imported, {"x": x.numpy()}), [want])
    assert r.ok, r.detail


def test_cli_compile_onnx_quantized(tmp_path):
    """An ONNX file optimized and quantized directly: int8-dynamic's linear layers."""
    torch.manual_seed(0)
    module = TinyTransformer().eval()
    ids = torch.randint(0, 50, (2, 8))
    src = tmp_path / "tiny.onnx"
    onnx.save(torch_export(module, (ids,), do_constant_folding=False), str(src))
    out = tmp_path / "tiny.int8.onnx"
    assert main(["compile", str(src), "-O2", "--quantize", "int8-dynamic", "--to", "onnx",
                 "-o", str(out)]) == 0
    model = onnx.load(str(out))
    assert any(n.op_type in ("MatMulInteger", "DynamicQuantizeLinear") for n in model.graph.node)
    got = cf.run_ort(model, {model.graph.input[0].name: ids.numpy()})[0]
    with torch.no_grad():
        want = module(ids).numpy()
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()     # int8's error, not a bug


def test_a_huge_constant_is_not_folded():
    """ConstantOfShape of [100000, 100000] would be 40 GB in memory: refused, not computed."""
    shape = numpy_helper.from_array(np.array([100000, 100000], np.int64), "shape")
    m = _graph([helper.make_node("ConstantOfShape", ["shape"], ["big"]),
                helper.make_node("ReduceSum", ["big"], ["s"], keepdims=0),
                helper.make_node("Add", ["x", "s"], ["y"])], inits=[shape])
    with pytest.raises(ImportFailure) as e:
        import_onnx(m)
    assert e.value.code == "E1620" and "ConstantOfShape" in e.value.message
    assert "10,000,000,000 elements" in " ".join(n for n, _ in e.value.notes)


@pytest.mark.parametrize("args", [["-o", "OUT.txt"],
                                  ["-o", "OUT.nn", "--weights-out", "W.pt"]])
def test_cli_import_output_names(args, tmp_path, capsys):
    args = [str(tmp_path / a) if a.startswith(("OUT", "W.")) else a for a in args]
    assert main(["import", str(LIGHT["squeezenet"]), *args]) == 1
    err = capsys.readouterr().err
    assert "error[E1611]" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_unsupported_ops_listed_at_once_with_counts(tmp_path):
    path, _ = _bad_inputs(tmp_path)["unsupported"]
    with pytest.raises(ImportFailure) as e:
        import_onnx(path)
    assert "Det ×2" in e.value.message and "Hardmax ×1" in e.value.message
    assert len(e.value.notes) == 2


def test_external_data_inside_the_folder_is_read(tmp_path):
    w = numpy_helper.from_array(np.arange(16, dtype=np.float32).reshape(4, 4), "w")
    m = _graph([helper.make_node("MatMul", ["x", "w"], ["y"])], inits=[w])
    onnx.save(m, str(tmp_path / "m.onnx"), save_as_external_data=True,
              location="m.data", size_threshold=0)
    imported = import_onnx(tmp_path / "m.onnx")
    x = np.random.default_rng(0).standard_normal((4, 4)).astype(np.float32)
    r = cf.compare(cf.run_torch(imported, {"x": x}), [x @ np.arange(16, dtype=np.float32)
                                                        .reshape(4, 4)])
    assert r.ok, r.detail


def test_import_onnx_api_and_save(tmp_path):
    imported = nndsl.import_onnx(LIGHT["squeezenet"].read_bytes(), name="squeeze")
    assert imported.name == "squeeze" and "model squeeze()" in imported.text
    files = imported.save(tmp_path / "s.nn")
    assert [f.name for f in files] == ["s.nn", "s.safetensors"]
    c = nndsl.compile(tmp_path / "s.nn", weights=str(tmp_path / "s.safetensors"))
    assert c.param_count() == _params(imported)
