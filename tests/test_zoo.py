"""Every spec under specs/: compiles, has the reference parameter count, runs, and every value
the torch module computes has exactly the shape and dtype the IR declared."""

import pytest
import torch

import nndsl
from nndsl.backends.torch.lowering import DTYPES
from nndsl.ir.symbols import bind_symbols

from conftest import SPECS, spec_id
from helpers import SMALL, concrete

REFERENCE_PARAMS = {
    "perceptron": 5,
    "mlp": 235_146,
    "mnist_cnn": 121_930,
    "lenet5": 61_706,
    "resnet18": 11_689_512,
    "resnet50": 25_557_032,
    "lstm_sentiment": 1_329_729,
    "gpt_mini": 4_470_272,
}


def test_spec_file_names_are_unique():
    names = [p.stem for p in SPECS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_reference_parameter_count(spec):
    c = nndsl.compile(spec)
    if spec.stem in REFERENCE_PARAMS:
        assert c.param_count() == REFERENCE_PARAMS[spec.stem]
    assert c.param_count() > 0


@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_runs_and_every_value_matches_its_declared_type(spec):
    c = nndsl.compile(spec, params=SMALL.get(spec.stem))
    m = c.to_torch().eval()
    for batch in (1, 3):
        xs = c.example_inputs(batch=batch)
        env = bind_symbols(c.graph, batch)
        with torch.no_grad():
            vals = m.run_all(**xs)
        for node in c.graph:
            if node.op == "scalar":
                continue
            got = vals[node.name]
            got = got if isinstance(got, tuple) else (got,)
            for t, v in zip(node.types, got):
                assert tuple(v.shape) == concrete(t, env), (node.name, t)
                assert v.dtype == DTYPES[t.dtype], (node.name, t, v.dtype)
        out = m(**xs)
        outs = out if isinstance(out, tuple) else (out,)
        assert len(outs) == len(c.output_names)
        assert all(torch.isfinite(o).all() for o in outs if o.is_floating_point())


@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_trains_a_step(spec):
    c = nndsl.compile(spec, params=SMALL.get(spec.stem))
    m = c.to_torch().train()
    xs = c.example_inputs(batch=2)
    out = m(**xs)
    outs = out if isinstance(out, tuple) else (out,)
    loss = sum(o.float().pow(2).mean() for o in outs)
    loss.backward()
    before = {k: v.detach().clone() for k, v in m.named_parameters()}
    torch.optim.SGD(m.parameters(), lr=0.1).step()
    for name, p in m.named_parameters():
        assert p.grad is not None, name
        assert not torch.equal(p.detach(), before[name]), f"{name} did not change"


@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_names_and_ir_are_deterministic(spec):
    a = nndsl.compile(spec, params=SMALL.get(spec.stem))
    b = nndsl.compile(spec, params=SMALL.get(spec.stem))
    assert a.ir() == b.ir()
    m = a.to_torch()
    assert list(m.state_dict()) == [n.name for n in a.graph.params()]
    for (k, v), (k2, v2) in zip(m.state_dict().items(), b.to_torch().state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
