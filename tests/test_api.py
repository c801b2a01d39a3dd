"""The public contract of nndsl.compile / Compiled / the torch module."""

import math
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

import nndsl

CNN = "specs/vision/mnist_cnn.nn"
BN_NET = """
model net() { input x: f32[N, 3, 8, 8]
    output y = x |> conv2d(4, 3) as conv |> batch_norm as bn |> relu |> global_avg_pool }
"""


@pytest.fixture(autouse=True)
def _chdir(root, monkeypatch):
    monkeypatch.chdir(root)


def test_compile_from_path_and_from_text_agree(root):
    a = nndsl.compile(CNN)
    b = nndsl.compile((root / CNN).read_text())
    assert a.ir().replace("mnist_cnn.nn", "X") == b.ir().replace("<string>", "X")
    assert a.input_names == ["image"] and a.output_names == ["logits"]


def test_every_user_mistake_is_an_nndsl_error():
    with pytest.raises(nndsl.NndslError):
        nndsl.compile("model m( {")
    with pytest.raises(nndsl.ShapeError):
        nndsl.compile("model m() { input x: f32[N, 3]  output y = x @ x }")
    with pytest.raises(nndsl.SourceFileError):
        nndsl.compile("no/such/file.nn")
    with pytest.raises(nndsl.ArgumentError):
        nndsl.compile(CNN, opt="O9")


def test_default_init_matches_torch_layer_defaults():
    c = nndsl.compile(BN_NET + "\nmodel lin() { input x: f32[N, 50]  output y = x |> linear(30) "
                      "|> embedding_free }".replace(" |> embedding_free", ""), model="lin")
    sd = c.to_torch().state_dict()
    bound = 1 / math.sqrt(50)
    assert sd["linear_0.weight"].abs().max() <= bound
    assert sd["linear_0.weight"].abs().max() > 0.9 * bound      # uniform over the whole range
    assert abs(float(sd["linear_0.weight"].std()) - bound / math.sqrt(3)) < 0.01
    bn = nndsl.compile(BN_NET).to_torch().state_dict()
    assert torch.equal(bn["bn.weight"], torch.ones(4)) and torch.equal(bn["bn.bias"], torch.zeros(4))
    assert torch.equal(bn["bn.running_var"], torch.ones(4))
    assert bn["bn.num_batches_tracked"].dtype == torch.int64


def test_seeded_initialisation_is_deterministic():
    c = nndsl.compile(CNN)
    a, b, other = (c.to_torch().state_dict(), c.to_torch().state_dict(),
                   c.to_torch(seed=1).state_dict())
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv1.weight"], other["conv1.weight"])


def test_parameters_registered_in_spec_order_with_spec_names():
    m = nndsl.compile(CNN).to_torch()
    assert [k for k, _ in m.named_parameters()] == [
        "conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
        "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]


def test_weights_from_state_dict_and_safetensors(tmp_path):
    c = nndsl.compile(BN_NET)
    src = c.to_torch(seed=3)
    src.train()(torch.randn(8, 3, 8, 8))                 # move the BN statistics
    sd = {k: v.clone() for k, v in src.state_dict().items()}
    m = c.to_torch(weights=sd)
    assert all(torch.equal(m.state_dict()[k], sd[k]) for k in sd)
    path = tmp_path / "w.safetensors"
    save_file(sd, str(path))
    m2 = c.to_torch(weights=str(path)).eval()
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(m2(x), src.eval()(x))
    del sd["bn.num_batches_tracked"]                     # optional
    c.to_torch(weights=sd)


def test_strict_loading_lists_every_problem_in_one_error():
    c = nndsl.compile(BN_NET)
    sd = dict(c.to_torch().state_dict())
    del sd["conv.bias"]
    sd["extra.weight"] = torch.zeros(1)
    sd["bn.weight"] = torch.zeros(5)
    with pytest.raises(nndsl.WeightsError) as e:
        c.to_torch(weights=sd)
    msg = str(e.value)
    assert "missing: conv.bias" in msg and "unexpected: extra.weight" in msg
    assert "bn.weight: expected [4], got [5]" in msg


def test_weights_file_errors(tmp_path):
    c = nndsl.compile(BN_NET)
    with pytest.raises(nndsl.WeightsError, match="not found"):
        c.to_torch(weights=str(tmp_path / "nope.safetensors"))
    bad = tmp_path / "w.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(nndsl.WeightsError, match="safetensors"):
        c.to_torch(weights=str(bad))
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 16)
    with pytest.raises(nndsl.WeightsError, match="not a readable"):
        c.to_torch(weights=str(junk))


def test_example_inputs_contract():
    c = nndsl.compile("specs/transformers/gpt_mini.nn", params={"layers": 1, "vocab": 97})
    xs = c.example_inputs(batch=3, T=12)
    assert list(xs) == ["tokens"] and xs["tokens"].shape == (3, 12)
    assert xs["tokens"].dtype == torch.int64
    assert 0 <= int(xs["tokens"].min()) and int(xs["tokens"].max()) < 97
    again = c.example_inputs(batch=3, T=12)
    assert torch.equal(xs["tokens"], again["tokens"])
    assert not torch.equal(xs["tokens"], c.example_inputs(batch=3, T=12, seed=1)["tokens"])
    with pytest.raises(nndsl.ArgumentError, match="no symbolic dim `Q`"):
        c.example_inputs(Q=3)
    with pytest.raises(nndsl.ArgumentError, match="context"):
        c.example_inputs(T=2000)                       # breaks `assert T <= ctx`


def test_inputs_by_name_or_position_and_input_errors():
    c = nndsl.compile("""model two() { input a: f32[N, 4]  input b: i64[N]
        output y = a * (cast(b, f32) |> unsqueeze(1)) }""")
    m = c.to_torch()
    a, b = torch.randn(2, 4), torch.tensor([1, 2])
    torch.testing.assert_close(m(a, b), m(b=b, a=a))
    torch.testing.assert_close(m(a, b), a * b[:, None].float())
    with pytest.raises(nndsl.InputError, match="missing input b"):
        m(a)
    with pytest.raises(nndsl.InputError, match="no input `c`"):
        m(a, b, c=a)
    with pytest.raises(nndsl.InputError, match="rank 2"):
        m(torch.randn(4), b)
    with pytest.raises(nndsl.InputError, match="dim 1 is 5, not 4"):
        m(torch.randn(2, 5), b)
    with pytest.raises(nndsl.InputError, match="`N` is 2 in one input and 3"):
        m(a, torch.tensor([1, 2, 3]))


def test_json_and_summary():
    c = nndsl.compile(CNN, opt="O0")
    assert nndsl.compile(CNN).flops() == c.flops()      # fusing the epilogues keeps the count
    j = c.to_json()
    assert j["params"] == 121_930 and j["inputs"][0]["shape"] == ["N", 1, 28, 28]
    conv1 = next(n for n in j["nodes"] if n["name"] == "conv1")
    assert conv1["flops"] == 32 * 26 * 26 * (2 * 9 + 1)
    assert conv1["params"] == 320
    fc1 = next(n for n in j["nodes"] if n["name"] == "fc1")
    assert fc1["flops"] == 64 * (2 * 1600 + 1)
    assert j["flops"] == c.flops()
    text = c.summary()
    assert "conv1" in text and "121,930" in text


def test_autograd_and_torch_compile():
    c = nndsl.compile(CNN)
    m = c.to_torch()
    xs = c.example_inputs(batch=4)
    eager = m.eval()(**xs)
    compiled = torch.compile(m)
    torch.testing.assert_close(compiled(**xs), eager, rtol=1e-4, atol=1e-5)
    m.train()
    m(**xs).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())


def test_grammar_ships_inside_the_installed_package(tmp_path):
    code = ("import importlib.resources, nndsl; "
            "t = importlib.resources.files('nndsl.grammars').joinpath('nndsl.lark').read_text(); "
            "assert 'start:' in t; print(nndsl.compile('model m() { input x: f32[N, 2] "
            "output y = x }').name)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "m"


def test_tied_weights_load_under_either_name():
    c = nndsl.compile("""model lm() { input t: i64[N, T]
        wte = embedding(11, 4)
        output y = wte(t) |> linear(11, bias=false, weight=wte.weight) as head }""")
    w = torch.randn(11, 4)
    for name in ("wte.weight", "head.weight"):
        m = c.to_torch(weights={name: w})
        assert torch.equal(m.state_dict()["wte.weight"], w)


@pytest.mark.parametrize("spec,params", [
    ("specs/vision/resnet18.nn", {"classes": 10, "width": 8}),
    ("specs/transformers/gpt_mini.nn", {"layers": 2, "p": 0.1}),
])
def test_gradient_checkpointing_per_block(spec, params):
    c = nndsl.compile(spec, params=params)
    xs = c.example_inputs(batch=2)
    runs = []
    for ckpt in (False, True):
        m = c.to_torch(seed=5).train().checkpoint_blocks(ckpt)
        assert len(m._segments) >= 2                       # one per outermost block
        torch.manual_seed(0)                               # the same dropout masks
        loss = m(**xs).float().pow(2).mean()
        loss.backward()
        runs.append((loss.detach(), {k: p.grad for k, p in m.named_parameters()},
                     {k: v.clone() for k, v in m.state_dict().items()}))
    (l0, g0, s0), (l1, g1, s1) = runs
    torch.testing.assert_close(l1, l0)
    for k in g0:
        torch.testing.assert_close(g1[k], g0[k], rtol=1e-5, atol=1e-6, msg=k)
    for k in s0:                                           # running stats updated exactly once
        torch.testing.assert_close(s1[k], s0[k], msg=k)


RANDOM_SPEC = """
model noisy(latent: int = 4, steps: int = 50) {
    input x: f32[N, 8]
    input eps: f32[N, latent] ~ normal(mean=3.0, std=0.5)
    input t: i64[N] ~ randint(10, steps)
    input keep: bool[N, 8] ~ bernoulli(0.25)
    input u: f32[N] ~ uniform(-2, 2)
    output y = (x * cast(keep, f32) |> linear(latent) as proj) + eps
    output e = t |> embedding(steps, 2) as emb
    output v = u * 1.0
}
"""


def test_random_inputs_are_drawn_from_their_declared_distributions():
    c = nndsl.compile(RANDOM_SPEC)
    assert c.random_inputs == {
        "eps": {"dist": "normal", "mean": 3.0, "std": 0.5},
        "t": {"dist": "randint", "low": 10, "high": 50},
        "keep": {"dist": "bernoulli", "p": 0.25},
        "u": {"dist": "uniform", "low": -2.0, "high": 2.0}}
    xs = c.example_inputs(batch=4000, seed=5)
    assert abs(float(xs["eps"].mean()) - 3.0) < 0.03
    assert abs(float(xs["eps"].std()) - 0.5) < 0.02
    assert int(xs["t"].min()) == 10 and int(xs["t"].max()) == 49
    assert xs["keep"].dtype == torch.bool and abs(float(xs["keep"].float().mean()) - 0.25) < 0.01
    assert -2 <= float(xs["u"].min()) and float(xs["u"].max()) < 2
    assert abs(float(xs["u"].mean())) < 0.05
    again = c.example_inputs(batch=4000, seed=5)
    assert all(torch.equal(xs[k], again[k]) for k in xs)
    assert "%eps: f32[N, 4] ~ normal(mean=3.0, std=0.5)" in c.ir()


def test_the_module_draws_random_inputs_it_is_not_given():
    c = nndsl.compile(RANDOM_SPEC)
    m = c.to_torch(seed=0)
    x = torch.randn(6, 8)
    given = c.example_inputs(batch=6)
    y, e, v = m(x=x, eps=given["eps"], t=given["t"], keep=given["keep"], u=given["u"])
    want = (x * given["keep"].float()) @ m.proj.weight.T + m.proj.bias + given["eps"]
    torch.testing.assert_close(y, want)
    torch.manual_seed(0)
    y1, e1, v1 = m(x=x)                     # every random input drawn, sized by x's batch
    assert y1.shape == (6, 4) and e1.shape == (6, 2) and v1.shape == (6,)
    assert not torch.equal(y1, y)
    torch.manual_seed(0)
    y2, _, _ = m(x=x)
    torch.testing.assert_close(y1, y2)      # torch's global generator: seeded, reproducible
    with pytest.raises(nndsl.NndslError, match="missing input x"):
        m(eps=given["eps"])


def test_random_input_distributions_travel_with_the_onnx_export(tmp_path):
    import json

    from nndsl.cli import main
    c = nndsl.compile(RANDOM_SPEC)
    model = c.to_onnx()
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["nndsl.input_dists"])["t"] == {"dist": "randint", "low": 10,
                                                         "high": 50}
    spec = tmp_path / "noisy.nn"
    spec.write_text(RANDOM_SPEC)
    assert main(["compile", str(spec), "--to", "onnx", "-o", str(tmp_path / "n.onnx")]) == 0
    assert main(["run", str(tmp_path / "n.onnx"), "--batch", "3",
                 "--save", str(tmp_path / "a.npz")]) == 0
    assert main(["run", str(spec), "--batch", "3", "--save", str(tmp_path / "b.npz")]) == 0
    import numpy as np
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    for k in ("y", "e", "v"):
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-5)


def test_flops_of_fused_attention_with_a_symbolic_value_width():
    c = nndsl.compile("model m() { input q: f32[N, 8]  input k: f32[K, 8]  input v: f32[K, V]\n"
                      "output y = softmax(q @ k.T, dim=-1) @ v }")
    assert any(n.op == "attention" for n in c.graph)
    # N·K scores, each: q·k (2·8), the weighted sum of values (2·V), softmax and scaling (6)
    assert c.flops(batch=2, K=3, V=5) == 2 * 3 * (2 * 8 + 2 * 5 + 6)


def test_state_dict_follows_the_spec_order_for_params_declared_after_layers():
    c = nndsl.compile("model order() {\n input x: f32[N, 4]\n y = x |> linear(4) as fc\n"
                      " param p: f32[1, 4] = zeros\n output y2 = y + p\n}")
    m = c.to_torch(seed=0)
    assert list(m.state_dict()) == ["fc.weight", "fc.bias", "p"] == \
        [n.name for n in c.graph.params()]
    m2 = c.to_torch(seed=1)
    m2.load_state_dict(m.state_dict())          # strict loading still works
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(),
                                                  m2.state_dict().values()))
