"""nndsl explain / nndsl robust, and GraphModule's capture=: values by name, attributions
checked against their definitions, attention maps against an independent softmax, attacks
lowering accuracy, pictures and errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("captum")

import nndsl  # noqa: E402
from nndsl.errors import NndslError  # noqa: E402
from nndsl.explain import Samples, explain, load_samples, robustness  # noqa: E402
from nndsl.explain.attention import attention_nodes  # noqa: E402
from nndsl.explain.cli_commands import main_for_tests as cli  # noqa: E402

CNN = """
model tiny_cnn() {
    input image: f32[N, 1, 8, 8]
    x = image |> conv2d(8, 3, padding=1) as conv1 |> relu |> conv2d(16, 3) as conv2 |> relu
    output logits = x |> flatten |> linear(10) as fc
}

train tiny_cnn {
    target label: i64[N]
    data = digits
    loss = cross_entropy(logits, label)
    optimizer = adamw(lr=3e-3)
    metrics = [accuracy]
    val_split = 0.1
    test_split = 0.2
    seed = 0
}
"""

# the same layers, stopped after conv2 (before its relu): a truncated model
CNN_FEATURES = """
model features() {
    input image: f32[N, 1, 8, 8]
    output f = image |> conv2d(8, 3, padding=1) as conv1 |> relu |> conv2d(16, 3) as conv2
}
"""

LINEAR = """
model lin() {
    input x: f32[N, 6]
    output logits = x |> linear(2) as fc
}

train lin {
    target label: i64[N]
    loss = cross_entropy(logits, label)
    optimizer = adam(lr=0.05)
    val_split = 0.0
    test_split = 0.5
}
"""

GPT = dict(vocab=32, ctx=8, width=16, heads=2, layers=2)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models are many small ops: one thread runs them fastest (and alongside others)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _fit(module, x, y, steps=150, lr=1e-2):
    torch.manual_seed(0)
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    module.train()
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(module(x), y).backward()
        opt.step()
    module.eval()
    return module


@pytest.fixture(scope="module")
def cnn(tmp_path_factory, one_thread):
    """The tiny CNN trained on all of digits (a few seconds), its spec and weights file."""
    from safetensors.torch import save_file
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    y = torch.tensor(d.target)
    folder = tmp_path_factory.mktemp("cnn")
    spec = folder / "tiny_cnn.nn"
    spec.write_text(CNN)
    c = nndsl.compile(spec)
    m = _fit(c.to_torch(), x, y)
    weights = folder / "best.safetensors"
    save_file({k: v.detach().contiguous() for k, v in m.state_dict().items()}, str(weights))
    return {"spec": spec, "compiled": c, "module": m, "weights": weights, "folder": folder}


@pytest.fixture(scope="module")
def digits16(cnn):
    return load_samples(cnn["compiled"], data="digits", samples=16)


# ------------------------------------------------------------------ capture

def test_capture_matches_a_truncated_model_and_changes_nothing(cnn):
    m = cnn["module"]
    x = torch.rand(5, 1, 8, 8)
    trunc = nndsl.compile(source=CNN_FEATURES, opt="O0").to_torch(
        weights={k: v for k, v in m.state_dict().items() if k.startswith("conv")}).eval()
    with torch.no_grad():
        plain = m(x)
        out, cap = m(x, capture=["conv2", "conv1", "image", "fc.weight"])
        expected = trunc(x)
    assert torch.equal(out, plain)                       # capturing changes no output
    assert list(cap) == ["conv2", "conv1", "image", "fc.weight"]
    # at O1 relu is fused into conv2: its value is relu of the truncated model's output
    torch.testing.assert_close(cap["conv2"], torch.relu(expected), rtol=1e-5, atol=1e-6)
    assert cap["image"] is x and cap["fc.weight"] is m.fc.weight
    o0 = nndsl.compile(cnn["spec"], opt="O0").to_torch(weights=str(cnn["weights"])).eval()
    with torch.no_grad():
        _, cap0 = o0(x, capture="conv2")                 # O0: the conv itself, before relu
    torch.testing.assert_close(cap0["conv2"], expected, rtol=1e-5, atol=1e-6)


def test_capture_keeps_gradients_and_hooks_replace_values(cnn):
    m = cnn["module"]
    x = torch.rand(3, 1, 8, 8)
    out, cap = m(x, capture=["conv1"])
    g, = torch.autograd.grad(out.sum(), cap["conv1"])
    assert g.shape == cap["conv1"].shape and float(g.abs().sum()) > 0
    seen = []
    out2, cap2 = m(x, capture={"conv2": lambda v: seen.append(v.shape) or torch.zeros_like(v)})
    assert seen == [torch.Size([3, 16, 6, 6])] and float(cap2["conv2"].abs().sum()) == 0
    torch.testing.assert_close(out2, m.fc.bias.expand(3, -1))   # zero features: only the bias


def test_capture_names_outputs_of_multi_output_nodes():
    c = nndsl.compile("specs/transformers/gpt_mini.nn", params=GPT)
    m = c.to_torch().eval()
    t = torch.randint(0, 32, (2, 5))
    with torch.no_grad():
        _, cap = m(t, capture=["h.0.block.attn.split", "h.0.block.attn.split#1"])
    assert isinstance(cap["h.0.block.attn.split"], tuple)
    assert torch.equal(cap["h.0.block.attn.split#1"], cap["h.0.block.attn.split"][1])


def test_unknown_capture_name_is_a_located_error_with_close_names(cnn):
    m = cnn["module"]
    with pytest.raises(NndslError) as e:
        m(torch.rand(1, 1, 8, 8), capture=["conv3"])
    assert e.value.code == "E1701"
    assert "no value named `conv3`" in e.value.message and "conv2" in e.value.hint


# ------------------------------------------------------------------ attributions

def test_saliency_is_the_input_gradient(cnn, digits16):
    c, m = cnn["compiled"], cnn["module"]
    e = explain(c, "saliency", digits16, module=m, target="label")
    x = digits16.inputs["image"].clone().requires_grad_(True)
    y = digits16.labels
    score = m(x).gather(1, y[:, None]).sum()
    g, = torch.autograd.grad(score, x)
    np.testing.assert_allclose(e.maps["image"], g.abs().numpy(), rtol=1e-5, atol=1e-7)
    assert np.array_equal(e.targets, y.numpy())


def test_integrated_gradients_completeness(cnn, digits16):
    """Σ attributions = f(x) − f(0) up to the quadrature's error, which for a ReLU network
    is far below 2% of f(x) − f(0) at 64 steps (measured: about 0.5%)."""
    c, m = cnn["compiled"], cnn["module"]
    e = explain(c, "integrated_gradients", digits16, module=m, steps=64)
    x = digits16.inputs["image"]
    t = torch.as_tensor(e.targets)[:, None]
    with torch.no_grad():
        change = (m(x).gather(1, t) - m(torch.zeros_like(x)).gather(1, t))[:, 0].numpy()
    total = e.maps["image"].reshape(len(x), -1).sum(1)
    assert np.all(np.abs(total - change) <= 0.02 * np.abs(change) + 1e-6), (total, change)
    assert e.info["max_relative_completeness_error"] < 0.02


def test_grad_cam_has_the_layers_spatial_shape(cnn, digits16):
    c, m = cnn["compiled"], cnn["module"]
    e = explain(c, "grad_cam", digits16, module=m)          # default: the last conv layer
    assert e.info["layer"] == "conv2" and e.maps["conv2"].shape == (16, 1, 6, 6)
    assert e.maps["image"].shape == (16, 1, 8, 8)           # upsampled over the input
    e1 = explain(c, "grad_cam", digits16, module=m, layer="conv1")
    assert e1.maps["conv1"].shape == (16, 1, 8, 8) and (e1.maps["conv1"] >= 0).all()
    with pytest.raises(NndslError) as err:
        explain(c, "grad_cam", digits16, module=m, layer="conv_2")
    assert err.value.code == "E1701" and "conv2" in err.value.hint
    with pytest.raises(NndslError) as err:
        explain(c, "grad_cam", digits16, module=m, layer="fc")
    assert err.value.code == "E1703" and "conv1, conv2" in err.value.hint


def test_perturbation_methods_run_batched_and_keep_shapes(cnn, digits16):
    c, m = cnn["compiled"], cnn["module"]
    few = Samples({"image": digits16.inputs["image"][:4]}, digits16.labels[:4], "digits")
    for method in ("input_x_gradient", "occlusion", "lime", "kernel_shap"):
        e = explain(c, method, few, module=m, n_samples=40, window=2)
        assert e.maps["image"].shape == (4, 1, 8, 8), method
        assert np.isfinite(e.maps["image"]).all(), method


def test_permutation_importance_finds_the_informative_features():
    """Only features 0 and 3 decide the label; a linear spec trained a few steps finds them."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(600, 6, generator=gen)
    y = (x[:, 0] - 2 * x[:, 3] > 0).long()
    c = nndsl.compile(source=LINEAR)
    m = _fit(c.to_torch(), x[:300], y[:300], steps=100, lr=0.05)
    e = explain(c, "permutation", Samples({"x": x[300:]}, y[300:], "synthetic"), module=m,
                repeats=4)
    imp = e.maps["importance"]
    assert set(np.argsort(-imp)[:2]) == {0, 3}, imp
    assert imp[[0, 3]].min() > 0.1 and np.abs(imp[[1, 2, 4, 5]]).max() < 0.03, imp
    assert e.info["metric"] == "accuracy" and e.info["baseline_metric"] > 0.9


def test_permutation_from_the_command_line_on_a_data_file(tmp_path):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(400, 6, generator=gen)
    y = (x[:, 0] + x[:, 3] > 0).long()
    spec = tmp_path / "lin.nn"
    spec.write_text(LINEAR)
    np.savez(tmp_path / "data.npz", x=x.numpy(), label=y.numpy())
    c = nndsl.compile(spec)
    m = _fit(c.to_torch(), x, y, steps=100, lr=0.05)
    from safetensors.torch import save_file
    save_file(dict(m.state_dict()), str(tmp_path / "w.safetensors"))
    rc = cli(["explain", str(spec), "--weights", str(tmp_path / "w.safetensors"), "--data",
              str(tmp_path / "data.npz"), "--method", "permutation", "-o", str(tmp_path / "o"),
              "--json"])
    assert rc == 0
    files = {p.name for p in (tmp_path / "o").iterdir()}
    assert {"permutation.png", "permutation.npz", "permutation.json"} <= files
    report = json.loads((tmp_path / "o" / "permutation.json").read_text())
    assert {r["feature"] for r in report["importance"][:2]} == {0, 3}
    assert report["samples"] == 200          # the test split the train section makes


# ------------------------------------------------------------------ attention

def _gpt(opt):
    return nndsl.compile("specs/transformers/gpt_mini.nn", params=GPT, opt=opt)


def test_attention_maps_are_softmaxes_of_the_captured_queries_and_keys():
    fused, plain = _gpt("O1"), _gpt("O0")
    assert [n.op for _, n in attention_nodes(fused)] == ["attention", "attention"]
    assert [n.op for _, n in attention_nodes(plain)] == ["softmax", "softmax"]
    m1 = fused.to_torch(seed=3).eval()
    m0 = plain.to_torch(weights=dict(m1.state_dict())).eval()
    tokens = torch.randint(0, 32, (3, 7), generator=torch.Generator().manual_seed(0))
    s = Samples({"tokens": tokens})
    e1 = explain(fused, "attention", s, module=m1)
    e0 = explain(plain, "attention", s, module=m0)
    assert list(e1.maps) == ["h.0.block.attn", "h.1.block.attn"] == list(e0.maps)
    for key in e1.maps:
        p = e1.maps[key]
        assert p.shape == (3, 2, 7, 7)
        np.testing.assert_allclose(p.sum(-1), 1.0, rtol=0, atol=1e-5)
        np.testing.assert_allclose(p, e0.maps[key], rtol=1e-4, atol=1e-6)
        assert np.abs(np.triu(p, 1)).max() == 0          # causal: no weight on later keys
    # independently: q and k captured at O0, softmax(q kᵀ / √d) under the causal mask
    with torch.no_grad():
        _, cap = m0(tokens, capture=["h.1.block.attn.transpose", "h.1.block.attn.transpose_1"])
    q, k = cap["h.1.block.attn.transpose"], cap["h.1.block.attn.transpose_1"]
    scores = q @ k.transpose(-2, -1) / np.sqrt(q.shape[-1])
    scores = scores.masked_fill(~torch.ones(7, 7, dtype=torch.bool).tril(), float("-inf"))
    np.testing.assert_allclose(e1.maps["h.1.block.attn"], torch.softmax(scores, -1).numpy(),
                               rtol=1e-4, atol=1e-6)


def test_attention_layer_choice_and_token_inputs(tmp_path):
    c = _gpt("O1")
    m = c.to_torch().eval()
    s = Samples({"tokens": torch.randint(0, 32, (2, 6))})
    e = explain(c, "attention", s, module=m, layer="h.1.block.attn")
    assert list(e.maps) == ["h.1.block.attn"]
    with pytest.raises(NndslError) as err:
        explain(c, "attention", s, module=m, layer="h.2.block.attn")
    assert err.value.code == "E1701" and "h.1.block.attn" in err.value.hint
    with pytest.raises(NndslError) as err:       # integer inputs and no layer to attribute to
        explain(c, "integrated_gradients", s, module=m)
    assert err.value.code == "E1703" and "--layer wte" in err.value.hint
    ig = explain(c, "integrated_gradients", s, module=m, layer="wte", steps=16)
    assert ig.maps["tokens"].shape == (2, 6) and ig.maps["wte"].shape == (2, 6, 16)
    np.save(tmp_path / "t.npy", s.inputs["tokens"].numpy())
    rc = cli(["explain", "specs/transformers/gpt_mini.nn", *sum((["--param", f"{k}={v}"]
              for k, v in GPT.items()), []), "--input", f"tokens={tmp_path / 't.npy'}",
              "--method", "attention", "-o", str(tmp_path / "att")])
    assert rc == 0
    assert {"attention.0.png", "attention.1.png", "attention.npz"} <= \
        {p.name for p in (tmp_path / "att").iterdir()}


# ------------------------------------------------------------------ robustness

def test_attacks_lower_accuracy_as_eps_grows(cnn):
    c, m = cnn["compiled"], cnn["module"]
    s = load_samples(c, data="digits", samples=128)
    r = robustness(c, s, ["fgsm", "pgd"], [0.05, 0.1, 0.2], module=m, steps=5)
    with torch.no_grad():
        clean = float((m(s.inputs["image"]).argmax(1) == s.labels).float().mean())
    assert r.clean_accuracy == pytest.approx(clean) and clean > 0.8
    for attack in ("fgsm", "pgd"):
        acc = [row["accuracy"] for row in r.rows if row["attack"] == attack]
        assert acc == sorted(acc, reverse=True) and acc[0] <= clean and acc[-1] < clean - 0.2
    assert r.info["bounds"] == [0.0, 1.0]                  # digits lie in [0, 1]
    assert "0 (clean)" in r.table()


def test_robust_command_writes_a_table_and_a_curve(cnn, tmp_path, capsys):
    out = tmp_path / "rb"
    rc = cli(["robust", str(cnn["spec"]), "--weights", str(cnn["weights"]), "--data", "digits",
              "--attack", "fgsm", "--eps", "0.1,0.2", "--samples", "64", "-o", str(out),
              "--json"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["samples"] == 64 and 0.8 < report["clean_accuracy"] <= 1
    assert [(r["attack"], r["eps"]) for r in report["results"]] == [("fgsm", 0.1),
                                                                     ("fgsm", 0.2)]
    assert (out / "robust.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------ command line

def test_explain_writes_deterministic_pictures_only_under_out(cnn, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["explain", str(cnn["spec"]), "--weights", str(cnn["weights"]), "--data", "digits",
            "--method", "integrated_gradients", "--samples", "4"]
    assert cli(args) == 0 and list(tmp_path.iterdir()) == []      # nothing without -o
    assert cli(args + ["-o", "a"]) == 0 and cli(args + ["-o", "b"]) == 0
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["integrated_gradients.image.png", "integrated_gradients.json",
                     "integrated_gradients.npz"]
    for n in names[:1]:
        assert (tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes()
    with np.load(tmp_path / "a" / "integrated_gradients.npz") as z:
        assert z["map.image"].shape == (4, 1, 8, 8) and z["input.image"].shape == (4, 1, 8, 8)


@pytest.mark.parametrize("argv, code, words", [
    (["explain", "--method", "gradients"], "E1702", "unknown method `gradients`"),
    (["robust", "--attack", "fgsm,cw"], "E1702", "unknown attack `cw`"),
    (["robust", "--eps", "0"], "E1704", "(0, 1]"),
    (["robust", "--eps", "1.5"], "E1704", "(0, 1]"),
    (["robust", "--eps", "nan"], "E1704", "(0, 1]"),
    (["explain", "--method", "grad_cam", "--layer", "conv9"], "E1701", "close names"),
    (["explain", "--method", "attention"], "E1703", "no attention"),
    (["explain", "--method", "saliency", "--target", "12"], "E1704", "10 classes"),
])
def test_bad_requests_are_located_errors(cnn, capsys, argv, code, words):
    cmd, *rest = argv
    rc = cli([cmd, str(cnn["spec"]), "--data", "digits", "--samples", "2", *rest])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith(f"error[{code}]") and words in err, err
    assert "Traceback" not in err


def test_weights_that_do_not_match_and_bad_outputs(cnn, tmp_path, capsys):
    from safetensors.torch import save_file
    save_file({"fc.weight": torch.zeros(3, 3)}, str(tmp_path / "bad.safetensors"))
    rc = cli(["explain", str(cnn["spec"]), "--weights", str(tmp_path / "bad.safetensors"),
              "--data", "digits", "--method", "saliency"])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("error[E10") and "Traceback" not in err
    (tmp_path / "file").write_text("x")
    rc = cli(["explain", str(cnn["spec"]), "--data", "digits", "--method", "saliency",
              "-o", str(tmp_path / "file")])
    assert rc == 1 and "error[E1008]" in capsys.readouterr().err
    rc = cli(["explain", str(cnn["spec"]), "--method", "saliency"])
    assert rc == 1 and "error[E1705]" in capsys.readouterr().err
