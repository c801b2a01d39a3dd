"""The zoo specs against hand-written PyTorch models (``tests/reference_models.py``).

For each spec: (a) the parameter count is the published one, for the compiled model and for the
hand-written one; (b) output shapes; (c) with the same weights, eval-mode outputs are equal;
(d) in train mode, one SGD step from the same weights gives the same loss, gradients, updated
weights and batch-norm running statistics (``num_batches_tracked`` included).

Weights are moved between the two models with the key mappings of ``reference_models``; they are
perturbed first so that no parameter or buffer keeps a constant initial value (batch-norm and
layer-norm affine parameters, running statistics), which would hide a swapped or ignored tensor.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nndsl

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_models as R  # noqa: E402

SPECS = Path(__file__).resolve().parent.parent / "specs"
RTOL, ATOL = 1e-4, 1e-5
BATCH = 2


def _classification(out: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    target = torch.randint(0, out.shape[-1], out.shape[:-1], generator=gen)
    return F.cross_entropy(out.reshape(-1, out.shape[-1]), target.reshape(-1))


def _binary(out: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    target = (torch.rand(out.shape, generator=gen) < 0.5).to(out.dtype)
    return F.binary_cross_entropy_with_logits(out, target)


@dataclass(frozen=True)
class Case:
    name: str
    spec: str
    ref: Callable[..., nn.Module]
    params: int                      # reference parameter count at the default sizes
    full: dict = field(default_factory=dict)     # params for the count check
    small: dict = field(default_factory=dict)    # params for the numerical checks
    train: dict = field(default_factory=dict)    # extra params for the train-mode check
    out_shape: Callable[[dict], tuple] = lambda xs: ()
    loss: Callable = _classification


def _tokens_shape(vocab: int):
    return lambda xs: (BATCH, xs["tokens"].shape[1], vocab)


CASES = [
    Case("perceptron", "fundamentals/perceptron.nn", R.Perceptron, 5, full={"features": 4},
         out_shape=lambda xs: (BATCH, 1), loss=_binary),
    Case("mlp", "fundamentals/mlp.nn", R.MLP, 235_914, train={"p": 0.0},
         out_shape=lambda xs: (BATCH, 10)),
    Case("mnist_cnn", "vision/mnist_cnn.nn", R.MnistCNN, 121_930,
         out_shape=lambda xs: (BATCH, 10)),
    Case("lenet5", "vision/lenet5.nn", R.LeNet5, 61_706, out_shape=lambda xs: (BATCH, 10)),
    Case("resnet18", "vision/resnet18.nn", R.ResNet18, 11_689_512,
         small={"classes": 10, "width": 16}, out_shape=lambda xs: (BATCH, 10)),
    Case("resnet50", "vision/resnet50.nn", R.ResNet50, 25_557_032,
         small={"classes": 10, "width": 16}, out_shape=lambda xs: (BATCH, 10)),
    Case("lstm_sentiment", "sequence/lstm_sentiment.nn", R.LSTMSentiment, 1_329_729,
         train={"p": 0.0}, out_shape=lambda xs: (BATCH, 1), loss=_binary),
    Case("gpt_mini", "transformers/gpt_mini.nn", R.GPT, 4_470_272, small={"layers": 2},
         train={"p": 0.0}, out_shape=_tokens_shape(4096)),
]
IDS = [c.name for c in CASES]


_COMPILED: dict = {}


def compiled(case: Case, params: dict):
    """``nndsl.compile`` of the case's spec, once per distinct set of params."""
    key = (case.spec, repr(sorted(params.items())))
    if key not in _COMPILED:
        _COMPILED[key] = nndsl.compile(SPECS / case.spec, params=params)
    return _COMPILED[key]


@torch.no_grad()
def perturb_(module: nn.Module, seed: int = 0) -> None:
    """Give every constant-initialised tensor random values, in place (shared tensors once)."""
    gen = torch.Generator().manual_seed(seed)
    seen = set()
    for name, t in module.state_dict().items():
        if t.data_ptr() in seen:
            continue
        seen.add(t.data_ptr())
        if name.endswith("num_batches_tracked"):
            t.fill_(7)
        elif name.endswith("running_var"):
            t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
        elif t.is_floating_point() and t.numel() > 0 and bool((t == t.flatten()[0]).all()):
            t.add_(0.1 * torch.randn(t.shape, generator=gen))


def pair(case: Case, params: dict, source: str):
    """The compiled module and the hand-written one, holding the same weights.

    ``source`` says whose (perturbed) initial weights both start from: ``"nndsl"`` loads the
    compiled model's state into the reference model, ``"reference"`` the other way round.
    """
    c = compiled(case, params)
    m = c.to_torch()
    ref = case.ref(**params)
    if source == "nndsl":
        perturb_(m)
        ref.load_state_dict(R.to_reference(ref, m.state_dict()), strict=True)
    else:
        perturb_(ref)
        m.load_weights(R.to_nndsl(ref, ref.state_dict(), list(m.state_dict())))
    return c, m, ref


def _call(m: nn.Module, ref: nn.Module, xs: dict):
    (x,) = xs.values()
    return m(**xs), ref(x)


# ---- (a) parameter counts ----

@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_param_count(case: Case):
    c = compiled(case, case.full)
    assert c.param_count() == case.params
    m = c.to_torch()
    assert sum(p.numel() for p in m.parameters()) == case.params
    with torch.device("meta"):
        ref = case.ref(**case.full)
    assert R.unique_param_count(ref) == case.params


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_param_count_small_sizes(case: Case):
    params = {**case.small, **case.train}
    c = compiled(case, params)
    assert c.param_count() == R.unique_param_count(case.ref(**params))


def test_gpt_reference_ties_lm_head():
    ref = R.GPT(layers=1)
    assert ref.lm_head.weight is ref.transformer.wte.weight
    assert R.unique_param_count(ref) == sum(p.numel() for p in set(ref.parameters()))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_key_mapping_is_a_bijection(case: Case):
    params = case.small
    m = compiled(case, params).to_torch()
    ref = case.ref(**params)
    mapped = R.to_reference(ref, m.state_dict())
    assert set(mapped) == set(ref.state_dict())
    for k, v in mapped.items():
        assert tuple(v.shape) == tuple(ref.state_dict()[k].shape), k
    back = R.to_nndsl(ref, ref.state_dict(), list(m.state_dict()))
    assert set(back) == set(m.state_dict())


# ---- (b) output shapes ----

@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_output_shape(case: Case):
    c, m, ref = pair(case, case.small, "nndsl")
    xs = c.example_inputs(batch=BATCH)
    m.eval(), ref.eval()
    with torch.no_grad():
        got, want = _call(m, ref, xs)
    assert tuple(got.shape) == case.out_shape(xs)
    assert tuple(want.shape) == case.out_shape(xs)
    (declared,) = c.output_types.values()
    assert declared.rank == got.dim()
    for d, n in zip(declared.shape, got.shape):
        if isinstance(d, int):
            assert d == n
    assert got.dtype == want.dtype == torch.float32


# ---- (c) same weights, same outputs (eval) ----

@pytest.mark.parametrize("source", ["nndsl", "reference"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_eval_outputs_match(case: Case, source: str):
    c, m, ref = pair(case, case.small, source)
    xs = c.example_inputs(batch=BATCH)
    m.eval(), ref.eval()
    with torch.no_grad():
        got, want = _call(m, ref, xs)
    assert got.abs().max() > 0
    torch.testing.assert_close(got, want, rtol=RTOL, atol=ATOL)


def test_gpt_eval_outputs_match_attention_written_out():
    """The same check against the reference GPT that spells attention out (no SDPA)."""
    case = next(c for c in CASES if c.name == "gpt_mini")
    c = compiled(case, case.small)
    m = c.to_torch()
    perturb_(m)
    ref = R.GPT(**case.small, flash=False)
    ref.load_state_dict(R.to_reference(ref, m.state_dict()), strict=True)
    xs = c.example_inputs(batch=BATCH)
    m.eval(), ref.eval()
    with torch.no_grad():
        got, want = _call(m, ref, xs)
    # the two attention forms round differently: the bound scales with the logits' size
    torch.testing.assert_close(got, want, rtol=RTOL,
                               atol=ATOL * max(1.0, float(want.abs().max())))


# ---- (d) one SGD step in train mode ----

@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_train_step_matches(case: Case):
    params = {**case.small, **case.train}
    c, m, ref = pair(case, params, "nndsl")
    xs = c.example_inputs(batch=BATCH, seed=1)
    m.train(), ref.train()
    opt_m = torch.optim.SGD(m.parameters(), lr=0.1)
    opt_r = torch.optim.SGD(ref.parameters(), lr=0.1)

    got, want = _call(m, ref, xs)
    loss_m = case.loss(got, torch.Generator().manual_seed(2))
    loss_r = case.loss(want, torch.Generator().manual_seed(2))
    torch.testing.assert_close(loss_m, loss_r, rtol=RTOL, atol=ATOL)
    opt_m.zero_grad(), opt_r.zero_grad()
    loss_m.backward()
    loss_r.backward()

    # gradients, in the spec's names
    ref_named = dict(ref.named_parameters())
    for name, p in m.named_parameters():
        rp = ref_named[type(ref).from_nndsl_key(name)]
        assert p.grad is not None and rp.grad is not None, name
        torch.testing.assert_close(p.grad, rp.grad, rtol=RTOL, atol=ATOL,
                                   msg=lambda s: f"{name} grad: {s}")

    opt_m.step()
    opt_r.step()
    after_m = m.state_dict()
    after_r = R.to_nndsl(ref, ref.state_dict(), list(after_m))
    assert set(after_m) == set(after_r)
    for name, v in after_m.items():
        if name.endswith("num_batches_tracked"):
            assert v.dtype == after_r[name].dtype == torch.int64, name
            assert int(v) == int(after_r[name]) == 8, name
        else:
            torch.testing.assert_close(v, after_r[name], rtol=RTOL, atol=ATOL,
                                       msg=lambda s: f"{name}: {s}")
