"""The PyTorch source generator: every spec's ``model.py`` runs without nndsl and computes what the
compiled module computes, with the same parameter names, in eval and in train mode."""

import ast
import importlib.util
import itertools
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file, save_file

import nndsl
from nndsl.backends.torch import codegen
from nndsl.backends.torch.codegen import TORCH_CODEGEN, generate_source, write_package
from nndsl.ir.ops import SIGNATURES

from conftest import ROOT
from zoo import SPECS, ZOO, zoo, zoo_id

TOL = dict(rtol=1e-5, atol=1e-6)
_counter = itertools.count()


def camel(name: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in name.split("_"))


def import_file(path):
    spec = importlib.util.spec_from_file_location(f"generated_{next(_counter)}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def imported_modules(source: str) -> set:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
    return names


def as_tuple(out):
    return out if isinstance(out, tuple) else (out,)


def assert_same_behaviour(compiled, generated, batch=2):
    """Same outputs as the compiled module in eval and train mode (same dropout draws), and the
    same buffers after a training step."""
    ref = compiled.to_torch()
    generated.load_state_dict(ref.state_dict(), strict=True)
    xs = compiled.example_inputs(batch=batch)
    for mode in ("eval", "train"):
        getattr(ref, mode)()
        getattr(generated, mode)()
        torch.manual_seed(0)
        want = as_tuple(ref(**xs))
        torch.manual_seed(0)
        got = as_tuple(generated(*xs.values()))
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.dtype == w.dtype and g.shape == w.shape
            torch.testing.assert_close(g, w, equal_nan=True, **TOL)
    sd_ref, sd_gen = ref.state_dict(), generated.state_dict()
    assert sorted(sd_gen) == sorted(sd_ref)
    for k in sd_ref:
        torch.testing.assert_close(sd_gen[k], sd_ref[k], **TOL)


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    """Every spec compiled (small where big) and written as a package, once for this module."""
    out = {}
    for z in ZOO:
        c = z.compile()
        d = tmp_path_factory.mktemp(z.key.replace(":", "_"))
        write_package(c, d)
        out[z.key] = (c, d)
    return out


# ---- the op table ----

def test_every_op_has_a_source_form():
    assert set(TORCH_CODEGEN) == set(SIGNATURES) - {"input", "param"}
    assert set(codegen.LAYER_MODULES) <= set(TORCH_CODEGEN)


# ---- every spec of the zoo ----

@pytest.mark.parametrize("z", ZOO, ids=zoo_id)
def test_generated_package_matches_the_compiled_model(z, packages):
    c, d = packages[z.key]
    source = (d / "model.py").read_text()
    assert imported_modules(source) <= {"torch"}, "model.py must need only torch"
    assert "nndsl" not in imported_modules(source)
    mod = import_file(d / "model.py")
    model = getattr(mod, camel(c.name))()
    weights = load_file(str(d / "weights.safetensors"))
    assert sorted(weights) == sorted(n.name for n in c.graph.params())
    model.load_state_dict(weights, strict=True)
    assert sorted(model.state_dict()) == sorted(n.name for n in c.graph.params())
    assert_same_behaviour(c, model)


def test_packages_run_in_a_python_without_nndsl(packages, tmp_path):
    """Each model.py in a fresh interpreter where importing nndsl fails: load the weights
    strictly, run the example inputs, and return outputs equal to the compiled module's."""
    jobs = []
    for stem, (c, d) in packages.items():
        xs = c.example_inputs(batch=2)
        save_file({k: v.contiguous() for k, v in xs.items()}, str(tmp_path / f"{stem}_in.st"))
        jobs.append({"dir": str(d), "cls": camel(c.name), "inputs": list(xs),
                     "in": str(tmp_path / f"{stem}_in.st"),
                     "out": str(tmp_path / f"{stem}_out.st")})
    script = textwrap.dedent("""
        import importlib.util, json, sys
        sys.modules["nndsl"] = None  # any import of nndsl now raises ImportError
        import torch
        from safetensors.torch import load_file, save_file
        torch.set_num_threads(2)
        for job in json.loads(sys.argv[1]):
            spec = importlib.util.spec_from_file_location("model_" + job["cls"],
                                                          job["dir"] + "/model.py")
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            model = getattr(mod, job["cls"])()
            model.load_state_dict(load_file(job["dir"] + "/weights.safetensors"), strict=True)
            model.eval()
            xs = load_file(job["in"])
            with torch.no_grad():
                out = model(*[xs[k] for k in job["inputs"]])
            out = out if isinstance(out, tuple) else (out,)
            save_file({str(i): o.contiguous() for i, o in enumerate(out)}, job["out"])
        print("done")
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-c", script, json.dumps(jobs)], capture_output=True,
                       text=True, cwd=tmp_path, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    for stem, (c, d) in packages.items():
        ref = c.to_torch().eval()
        with torch.no_grad():
            want = as_tuple(ref(**c.example_inputs(batch=2)))
        got = load_file(str(tmp_path / f"{stem}_out.st"))
        assert len(got) == len(want)
        for i, w in enumerate(want):
            torch.testing.assert_close(got[str(i)], w, **TOL)


# ---- readable, specialized, deterministic ----

def test_source_reads_like_hand_written_pytorch(packages):
    resnet = (packages["resnet18"][1] / "model.py").read_text()
    assert "class Resnet18(nn.Module):" in resnet
    assert "class BasicBlock(nn.Module):" in resnet and "class ResnetStem(nn.Module):" in resnet
    assert "nn.Conv2d(3, 16, kernel_size=7, stride=2, padding=3, bias=False)" in resnet
    assert "self.bn1 = nn.BatchNorm2d(c)" in resnet  # one class for every (c, stride)
    assert "self.fc = nn.Linear(128, 10)" in resnet
    assert "# (N, 16, 56, 56)" in resnet
    assert "logits = self.fc(flatten)  # (N, 10)" in resnet
    gpt = (packages["gpt_mini"][1] / "model.py").read_text()
    assert "class GptMini(nn.Module):" in gpt and "class CausalSelfAttention(nn.Module):" in gpt
    assert "N, T = x.shape[0], x.shape[1]" in gpt  # symbolic dims bound from the block's input
    assert ".reshape(N, T, 8, 32)" in gpt
    assert "T = tokens.shape[1]" in gpt
    assert "F.linear(ln_f, self.wte.weight)" in gpt  # the tied output layer
    assert "self.wte = nn.Embedding(4096, 256)" in gpt
    lstm = (packages["lstm_sentiment"][1] / "model.py").read_text()
    assert "nn.LSTM(128, 64, batch_first=True)" in lstm
    assert "lstm, (lstm_h, lstm_c) = self.lstm(" in lstm


def test_one_class_per_block(packages):
    gpt = (packages["gpt_mini"][1] / "model.py").read_text()
    assert gpt.count("(nn.Module):") == 3  # attention, block, model: both layers share classes
    # the two layers: one module built twice, applied in a loop
    assert gpt.count("GptBlock(heads=8, mlp=4, p=0.0, approximate=\"none\")") == 1
    assert "for _ in range(2)" in gpt and "for layer in self.h:" in gpt
    resnet = (packages["resnet18"][1] / "model.py").read_text()
    # stem + one class for every (c, stride) of basic_block + the model
    assert resnet.count("(nn.Module):") == 1 + 1 + 1


def test_writing_is_deterministic(tmp_path):
    for stem in ("gpt_mini", "lstm_sentiment"):
        a = zoo(stem).compile()
        b = zoo(stem).compile()
        write_package(a, tmp_path / "a")
        write_package(b, tmp_path / "b")
        for name in ("model.py", "weights.safetensors"):
            assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        assert generate_source(a.graph) == generate_source(b.graph)


def test_constructors_refuse_other_parameter_values(packages):
    c, d = packages["mlp"]
    mod = import_file(d / "model.py")
    mod.Mlp()
    mod.Mlp(hidden=[256, 128], classes=10)  # a list is as good as the tuple it was compiled with
    with pytest.raises(ValueError, match=r"generated for classes=10.*--param classes=5"):
        mod.Mlp(classes=5)
    with pytest.raises(ValueError, match=r"--param hidden=\[64,32\]"):
        mod.Mlp(hidden=(64, 32))
    with pytest.raises(ValueError, match="generated for p=0.2"):
        mod.Mlp(p=0.5)
    res = import_file(packages["resnet18"][1] / "model.py")
    with pytest.raises(ValueError, match=r"classes=10.*--param classes=1000"):
        res.Resnet18(classes=1000)
    with pytest.raises(ValueError, match="block `resnet_stem`"):
        res.ResnetStem(c=32)
    assert isinstance(res.BasicBlock(16, 32, 2), torch.nn.Module)  # a block's values are free


def test_cli_compile_writes_the_package(tmp_path):
    def cli(out, hash_seed):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        return subprocess.run([sys.executable, "-m", "nndsl", "compile",
                               str(ROOT / "specs/vision/mnist_cnn.nn"), "--to", "torch", "-o",
                               str(out)], capture_output=True, text=True, cwd=ROOT, env=env,
                              timeout=120)
    r = cli(tmp_path / "pkg", "1")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "pkg"
    assert (out / "model.py").is_file() and (out / "weights.safetensors").is_file()
    mod = import_file(out / "model.py")
    model = mod.MnistCnn()
    model.load_state_dict(load_file(str(out / "weights.safetensors")), strict=True)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    # Another process, another string hash seed: the same bytes.
    assert cli(tmp_path / "again", "2").returncode == 0
    for name in ("model.py", "weights.safetensors"):
        assert (out / name).read_bytes() == (tmp_path / "again" / name).read_bytes()


def test_a_failed_write_leaves_no_files(tmp_path, monkeypatch):
    c = nndsl.compile(next(p for p in SPECS if p.stem == "perceptron"))

    def boom(_):
        raise RuntimeError("disk full")
    monkeypatch.setattr(codegen.generator, "weights_bytes", boom)
    with pytest.raises(RuntimeError):
        write_package(c, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# ---- structure that does not line up: one flat class ----

@pytest.mark.parametrize("damage", ["late_outputs", "inputs_after", "garbage", "none"])
def test_regions_that_do_not_line_up_give_one_flat_class(damage, tmp_path):
    c = nndsl.compile(next(p for p in SPECS if p.stem == "gpt_mini"), params={"layers": 2})
    g = c.graph.copy()
    regions = [dict(r) for r in g.meta["regions"]]
    # The ranges are derived from the graph (nndsl.ir.regions); damage what is recorded.
    if damage == "late_outputs":    # the first application claims the last one's outputs
        regions[0]["outputs"] = list(regions[-1]["outputs"])
    elif damage == "inputs_after":  # it reads values computed after it
        regions[0]["inputs"] = list(regions[-1]["outputs"])
    elif damage == "garbage":
        regions[0]["inputs"] = ["not a value"]
    else:
        regions = []
    g.meta["regions"] = regions
    source = generate_source(g)
    assert source.count("(nn.Module):") == 1
    (tmp_path / "model.py").write_text(source)
    model = import_file(tmp_path / "model.py").GptMini()
    assert_same_behaviour(c, model)


# ---- every op, layer forms, blocks and weight sharing ----

SMALL_SPECS = {
    "elementwise": """
        model elementwise() {
            input x: f32[N, 6]
            input y: f32[N, 6]
            a = exp(x) + log(abs(y) + 1) - sqrt(abs(x)) * rsqrt(abs(y) + 0.5)
            b = erf(x) / (sin(y) + 2) + cos(x) ** 2 - -x + 2 ** y
            c = x // 0.7 + y % 0.3 + maximum(x, 0.1) + minimum(0.2, y) + maximum(x, y)
                - minimum(x, y)
            m = (x > 0) and not (y <= 0.5) or (x == y) or (x != 0.25) and (x < y) and (y >= x)
            d = where(m, a, b) + where(x < 0, 1.0, c)
            e = masked_fill(d, x >= 1, 0.5)
            output o1 = leaky_relu(e, 0.2) + gelu(e, approximate="tanh") + elu(e, 0.5)
                        + softplus(e, 2.0, 10.0) + selu(e) + silu(e) + sigmoid(e) + tanh(e)
                        + relu(e) + leaky_relu(e) + gelu(e) + elu(e) + softplus(e)
            output o2 = cast(m, f32) |> dropout(0.3)
            output o3 = cast(x, f64) * 2
            output o4 = m
        }""",
    "conv_1d_3d": """
        model conv_1d_3d() {
            input s: f32[N, 3, 16]
            input v: f32[N, 2, 6, 6, 6]
            a = s |> conv1d(4, 3, padding=1, bias=false) as c1 |> batch_norm as bn1
                  |> max_pool1d(2) |> avg_pool1d(2, stride=1, padding=1, count_include_pad=false)
            a2 = a |> adaptive_avg_pool1d(3) |> group_norm(2) as gn
                   |> group_norm(4, affine=false) as gn2
            b = v |> conv3d(4, 3, stride=2, padding=1, groups=2) as c3
                  |> batch_norm(affine=false) as bn3
            output oa = a2 |> flatten
            output ob = sum(b, dim=[2, 3, 4])
            output oc = s |> batch_norm as bn_flat |> flatten |> batch_norm as bn_2d
        }""",
    "conv_2d": """
        model conv_2d() {
            input x: f32[N, 4, 8, 8]
            a = x |> conv_transpose2d(6, 3, stride=2, padding=1, output_padding=1, groups=2) as t
                  |> max_pool2d(3, stride=2, padding=1, ceil_mode=true)
            b = a |> avg_pool2d(2, ceil_mode=true) |> layer_norm(bias=false) as ln1
                  |> layer_norm(affine=false) as ln2
            c = b |> adaptive_avg_pool2d([2, 3]) |> layer_norm(shape=[6, 2, 3], eps=0.001) as ln3
            d = x |> conv2d(6, [3, 1], stride=[2, 1], padding=[1, 0], dilation=[1, 2]) as c2
                  |> conv_transpose2d(2, 2, bias=false) as t2 |> max_pool2d(2, dilation=2)
            output y = c |> conv2d(3, 1, padding="same", bias=false) as pw
                         |> batch_norm(eps=0.01, momentum=0.3) as bn
            output z = d
        }""",
    "recurrent": """
        model recurrent() {
            input x: f32[N, T, 5]
            out, h, cell = lstm(x, 7, layers=2, bidirectional=true, state=true) as l
            g, gh = gru(out, 4, state=true, bias=false) as g
            output o1 = out
            output o2 = h
            output o3 = cell
            output o4 = g
            output o5 = gh
            output o6 = x |> rnn(3, nonlinearity="relu") as r
            output o7 = x |> lstm(7, layers=2, bidirectional=true, h0=h, c0=cell) as l2
            output o8 = x |> lstm(7, layers=2, bidirectional=true, h0=h) as l3
            output o9 = x |> gru(4, h0=gh) as g2
            output o10 = x |> rnn(2, layers=3, dropout=0.2) as r2
        }""",
    "shapes": """
        model shapes() {
            input x: f32[N, 4, 6]
            input t: i64[N, 5]
            param scale: f32[6] = normal(0.02)
            param shift: f32[4, 1] = uniform(-1, 1)
            param k: f32[6] = trunc_normal(0.5)
            param c: f32[1] = constant(0.25)
            a = x |> permute([0, 2, 1]) |> unsqueeze(1) |> squeeze(1) |> transpose(1, 2)
            b = a |> reshape([N, 2, 12]) |> flatten(0, 1) |> unsqueeze(0) |> expand([3, 2 * N, 12])
            p, q = split(x, [1, 3], dim=1)
            u, v, w = split(x, 3, dim=-1)
            r = concat([q, p], dim=1) + concat([u, w, v], dim=2) * scale + shift * k + c
            s = r[:, 1:3, ::2] + (r[:, 1:3, -1] |> unsqueeze(-1) |> mean(dim=2, keepdim=true))
            o = tril(x, 1) + triu(x, -1) + tril(x) + softmax(x, dim=1) + log_softmax(x)
            output o1 = b
            output o2 = s
            output o3 = o * (ones([N, 4, 6]) + zeros([4, 6]) + full([6], 2.5))
                        + (arange(6) |> cast(f32)) + arange(6, f32)
            output o4 = sum(x, dim=1) + max(x, dim=1) - min(x, dim=[1], keepdim=false)
            output o5 = prod(x, dim=[0, 2]) + mean(x, dim=[0, 2]) + max(x)
            output o6 = min(x) + prod(x) + sum(x, keepdim=true) |> squeeze
            output o7 = t |> embedding(10, 6, padding_idx=0) as emb
            output o8 = x[:, :-1, 2:] + x[:, 1:, :4] |> unsqueeze(1) |> squeeze(dim=[1])
            output o9 = x @ (x |> transpose(1, 2)) + matmul(x, scale |> unsqueeze(-1))
        }""",
    "blocks": """
        block pair(d: int) {
            input x: f32[B, F]
            h = x |> linear(d) as proj
            return h, relu(h)
        }
        block ident() {
            input x: f32[...]
            return x
        }
        block ramp(n: dim) {
            input x: f32[B, C]
            r = arange(n) |> cast(f32) |> unsqueeze(-1)
            return (x |> unsqueeze(1) |> expand([B, n, C])) * r
        }
        block stack(depth: int, width: int) {
            input x: f32[B, F]
            param gain: f32[width] = ones
            h = x
            inner: repeat depth { h = h |> linear(width) as fc |> ident |> tanh }
            y, z = h |> pair(width) as sub
            return (y + z) * gain
        }
        model blocks(d: int = 5) {
            input a: f32[N, 6]
            input s: f32[N, T, 3]
            e = pair(d)
            h1, r1 = e(a)
            h2, r2 = e(a * 2)
            fc = linear(6)
            h3, r3 = e(fc(a))
            output o1 = h1 + r2 + h3 * r3 |> sum(dim=-1, keepdim=true)
            output o2 = ramp(a, T) + (s |> sum(dim=-1) |> unsqueeze(-1))
            output o3 = a |> stack(2, 4) as st |> ident as id2
            output o4 = fc(a * 3) |> ident
        }""",
    "scans": """
        import std.recurrent
        block attend_step(hidden: int, vocab: int) {
            input y: f32[B, E]
            input h: f32[B, hidden]
            input c: f32[B, hidden]
            input memory: f32[B, S, hidden]
            h2, c2 = lstm_cell(y, h, c, hidden) as cell
            a = (h2 |> unsqueeze(1)) @ memory.T |> softmax(dim=-1)
            ctx = a @ memory |> squeeze(1)
            logits = concat([ctx, h2], dim=-1) |> linear(vocab) as head
            return h2, c2, logits, argmax(logits, dim=-1)
        }
        block feedback(k: float) {
            input h: f32[B, D]
            h2 = h * k |> tanh
            return h2, h2, argmax(h2, dim=1, keepdim=true)
        }
        model scans(hidden: int = 6) {
            input x: f32[N, T, 4]
            input memory: f32[N, S, 6]
            h0 = zeros([N, hidden])
            h, c, logits, words = scan(attend_step(hidden, 5, memory=memory) as dec, over=x,
                                       init=(h0, h0))
            g, gs, picks = scan(feedback(0.5) as fb, init=h, steps=3)
            output o1 = logits
            output o2 = words
            output o3 = gs
            output o4 = picks
            output o5 = c
            output o6 = argmax(memory, dim=1)
        }""",
    "graph_ops": """
        model graph_ops(F: int = 4) {
            input x: f32[N, F]
            input edges: i64[2, E]
            src = edges[0]
            dst = edges[1]
            h = index_select(x, src)
            h3 = x |> unsqueeze(1) |> expand([N, 2, F]) |> index_select(src) |> cumsum(dim=1)
            order = argsort(x, dim=1, descending=true)
            output o1 = segment_sum(h, dst, N) + segment_mean(h, dst, N) + segment_max(h, dst, N)
            output o2 = segment_softmax(h, dst, N)
            output o3 = segment_sum(sum(h, dim=-1), dst, N) + segment_max(h[:, 0], dst, N)
                        + segment_mean(h[:, 1], dst, N)
            output o4 = segment_softmax(h3, dst, N)
                        + index_select(segment_max(h3, dst, N) + segment_mean(h3, dst, N), dst)
            output o5 = gather(x, order, 1) + cumsum(x, dim=0) + index_select(x, order[0], dim=-1)
            output o6 = argsort(x, dim=0)
            output o7 = scatter_add(x, order, x * 2, -1)
                        + scatter_add(x, argsort(x, dim=0)[:1], x[:1], 0)
            output o8 = cumsum(edges, dim=1) + index_select(segment_sum(src, dst, N), dst)
        }""",
    "tensor_ops": """
        model tensor_ops() {
            input x: f32[N, 4, 6, 6]
            input c: i64[N, 5]
            v, i = topk(x, 2, dim=1)
            a, b = chunk(x, 2, dim=1)
            h = x |> pad([1, 1, 2, 0], mode="reflect") |> upsample(2) |> pad([1, 0, 0, 1])
            output o1 = v + cast(i, f32) + stack([a, b], dim=2)[:, :, 0]
            output o2 = h + upsample(h, 1, mode="bilinear", align_corners=true)
            output o3 = pixel_shuffle(x, 2) + roll(flip(pixel_shuffle(x, 2), [2]), [1, -2], [2, 3])
            output o4 = repeat_interleave(x, 2, dim=3) |> clamp(min=-1.0, max=1.0) |> hardswish
                        |> mish |> hardsigmoid
            output o5 = logsumexp(x, dim=[2, 3]) + var(x, dim=[2, 3]) + std(x, correction=0)
                        + cumprod(x, dim=1)[:, :, 0, 0]
            output o6 = einsum("nchw,ncwk->nchk", x, x) |> rms_norm |> drop_path(0.5)
            output o7 = one_hot(c, 7) + one_hot(c, 7, f32) |> clamp(max=3)
            output o8 = clamp(c, min=1)
            output o9 = repeat_interleave(c, 2)
        }""",
    "tied": """
        model tied(vocab: int = 50, d: int = 8) {
            input t: i64[N, T]
            wte = embedding(vocab, d)
            output logits = wte(t) |> linear(vocab, weight=wte.weight) as head
            output nobias = wte(t) |> linear(vocab, bias=false, weight=wte.weight) as head2
        }""",
}


@pytest.mark.parametrize("modules", [True, False], ids=["modules", "functional"])
@pytest.mark.parametrize("name", list(SMALL_SPECS))
def test_small_specs_cover_every_op(name, modules, tmp_path):
    c = nndsl.compile(textwrap.dedent(SMALL_SPECS[name]))
    source = generate_source(c.graph, layers_as_modules=modules)
    assert imported_modules(source) <= {"torch"}
    (tmp_path / "model.py").write_text(source)
    model = getattr(import_file(tmp_path / "model.py"), camel(c.name))()
    assert_same_behaviour(c, model, batch=3)
    if not modules:
        assert "nn.Linear(" not in source and "nn.LSTM(" not in source


def test_ops_in_the_small_specs_cover_the_table():
    """The small specs (unoptimized) and the zoo at O2 (fused attention, memory layout) use
    every op the table knows."""
    ops = set()
    for text in SMALL_SPECS.values():
        ops |= {n.op for n in nndsl.compile(textwrap.dedent(text), opt="O0").graph}
    for spec in ("specs/transformers/gpt_mini.nn", "specs/vision/resnet18.nn"):
        ops |= {n.op for n in nndsl.compile(ROOT / spec, opt="O2").graph}
    for scheme in ("int8-dynamic", "int4-weight"):
        ops |= {n.op for n in nndsl.compile(ROOT / "specs/fundamentals/mlp.nn",
                                            quantize=scheme).graph}
    ops |= {n.op for n in nndsl.compile(ROOT / "specs/fundamentals/mlp.nn", qat="int8").graph}
    ops |= {n.op for n in nndsl.compile(ROOT / "specs/vision/resnet18.nn", opt="O2",
                                        params={"width": 8, "classes": 10},
                                        quantize="int8-static", calibrate="digits",
                                        calibrate_samples=4).graph}
    relu6 = ("model m() {\n    input image: f32[N, 1, 28, 28]\n"
             "    x = image |> conv2d(4, 3) as c1\n"
             "    output y = minimum(maximum(x, 0.0), 6.0) |> flatten |> linear(3) as fc\n}\n")
    ops |= {n.op for n in nndsl.compile(source=relu6, opt="O2", quantize="int8-static",
                                        calibrate="digits", calibrate_samples=4).graph}
    assert ops >= set(TORCH_CODEGEN)


def test_blocks_shared_instances_and_tied_weights_read_naturally():
    # at O0: the optimizer may fuse across block boundaries, so one block's applications can
    # differ (and then get one class each) at higher levels
    source = generate_source(nndsl.compile(textwrap.dedent(SMALL_SPECS["blocks"]),
                                           opt="O0").graph)
    assert source.count("class Pair(nn.Module):") == 1  # pair(d=5), then pair(d=4):
    assert "self.e = Pair(6, 5)" in source and "self.sub = Pair(4, 4)" in source  # (in, d)
    assert source.count("= self.e(") == 3  # one instance, applied three times
    assert "self.ramp_0(a, T=T)" in source  # a dim the block cannot see is passed in
    assert "def forward(self, x, *, T):" in source
    assert "self.gain = nn.Parameter(torch.ones(4))" in source
    tied = generate_source(nndsl.compile(textwrap.dedent(SMALL_SPECS["tied"]), opt="O0").graph)
    assert "F.linear(wte, self.wte.weight, self.head.bias)" in tied


def test_scalar_constants_shared_across_blocks_keep_the_block_classes(tmp_path):
    """CSE (O1) leaves one node per distinct constant: a block's `6.0` may be the model's. A
    number is written where it is used, so it does not tie the block's class to the outside."""
    c = nndsl.compile(textwrap.dedent("""
        block clipped(c: int) {
            input x: f32[N, C]
            return minimum(maximum(x |> linear(c) as fc, 0.0), 6.0)
        }
        model m() {
            input x: f32[N, 4]
            y = minimum(maximum(x, 0.0), 6.0)
            output z = y |> clipped(8) as a |> clipped(8) as b
        }"""), opt="O1")
    assert sum(n.op == "scalar" for n in c.graph) == 2
    source = generate_source(c.graph)
    assert "self.a = Clipped(4, 8)" in source and "self.b = Clipped(8, 8)" in source
    assert source.count("torch.clamp(maximum, max=6.0)") == 2  # the model's, the class's
    (tmp_path / "model.py").write_text(source)
    assert_same_behaviour(c, import_file(tmp_path / "model.py").M(), batch=3)


def test_names_that_every_module_has_are_refused():
    c = nndsl.compile("model m() { input x: f32[N, 4]  output y = x |> linear(3) as train }")
    with pytest.raises(nndsl.NndslError, match="reserved in PyTorch"):
        generate_source(c.graph)
