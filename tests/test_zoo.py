"""Every spec under specs/: compiles, has the reference parameter count, runs, and every value
the torch module computes has exactly the shape and dtype the IR declared."""

import pytest
import torch

from nndsl.backends.torch.lowering import DTYPES
from nndsl.ir.symbols import bind_symbols

from helpers import concrete
from zoo import REFERENCE, SPECS, ZOO, zoo_id


def test_spec_file_names_are_unique():
    names = [p.stem for p in SPECS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("z", ZOO, ids=zoo_id)
def test_reference_parameter_count(z):
    c = z.compile(small=False)
    if z.key in REFERENCE:
        assert c.param_count() == REFERENCE[z.key]
    assert c.param_count() > 0


@pytest.mark.parametrize("z", ZOO, ids=zoo_id)
def test_runs_and_every_value_matches_its_declared_type(z):
    c = z.compile()
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


def _targets(cfg, batch: int, gen) -> dict:
    """Random targets of the train section's declared types: class indices 0/1 (valid for any
    number of classes), float targets in [0, 1) (valid for every loss, probabilities too)."""
    out = {}
    for name, t in cfg.targets.items():
        shape = [batch if not isinstance(d, int) else d for d in t.shape]
        if t.dtype.startswith("f"):
            out[name] = torch.rand(shape, generator=gen)
        else:
            out[name] = torch.randint(0, 2, shape, generator=gen)
    return out


@pytest.mark.parametrize("z", ZOO, ids=zoo_id)
def test_a_few_steps_lower_the_loss_on_a_fixed_batch(z):
    """The spec's own loss where it has a train section, else the MSE of every float output
    against a fixed random target of its shape; dropout
    draws the same masks before and after (same seed), so the comparison is exact."""
    from nndsl.train.config import resolve
    from nndsl.train.losses import evaluate_loss
    c = z.compile()
    m = c.to_torch(seed=0).train()
    xs = c.example_inputs(batch=2)
    cfg = resolve(c, c.train_section) if c.train_section is not None else None
    if cfg is not None and cfg.loss is None:   # a recipe's own loss (gan, ddpm): use the default
        cfg = None
    if cfg is not None and any(t.fn == "contractive" for t in cfg.loss_info.terms):
        xs = {k: v.requires_grad_(True) if v.is_floating_point() else v for k, v in xs.items()}
    env_fixed, fixed_out = dict(xs), []
    if cfg is not None:
        env_fixed.update(_targets(cfg, 2, torch.Generator().manual_seed(1)))

    def loss_now():
        torch.manual_seed(7)
        out = m(**xs)
        outs = out if isinstance(out, tuple) else (out,)
        if cfg is None:
            floats = [o for o in outs if o.is_floating_point()]
            if not fixed_out:
                g = torch.Generator().manual_seed(2)
                fixed_out.extend(torch.randn(o.shape, generator=g) for o in floats)
            return sum(torch.nn.functional.mse_loss(o.float(), t) for o, t in zip(floats, fixed_out))
        env = {**env_fixed, **dict(zip(c.output_names, outs))}
        return evaluate_loss(cfg.loss, env)[0]

    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    first = None
    for _ in range(3):
        opt.zero_grad()
        loss = loss_now()
        first = float(loss.detach()) if first is None else first
        loss.backward()
        for name, p in m.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
        opt.step()
    last = float(loss_now().detach())     # (with gradients: a contractive loss needs them)
    assert last < first, (first, last)


@pytest.mark.parametrize("z", ZOO, ids=zoo_id)
def test_trains_a_step(z):
    c = z.compile()
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
        # A step below f32 resolution leaves a weight as it was: a batch norm scale whose output
        # feeds only batch norms (DenseNet's norm0) is cancelled by them up to eps, so its gradient
        # is ~1e-7. Such a weight must still get a nonzero gradient.
        tiny = bool(p.grad.any()) and float(p.grad.abs().max()) < 1e-6
        assert tiny or not torch.equal(p.detach(), before[name]), f"{name} did not change"


@pytest.mark.parametrize("z", ZOO, ids=zoo_id)
def test_names_and_ir_are_deterministic(z):
    a = z.compile()
    b = z.compile()
    assert a.ir() == b.ir()
    m = a.to_torch()
    assert list(m.state_dict()) == [n.name for n in a.graph.params()]
    for (k, v), (k2, v2) in zip(m.state_dict().items(), b.to_torch().state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
