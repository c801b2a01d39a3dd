"""Training building blocks against independent computations: each loss against its formula,
LAMB / Lookahead / SAM against hand-computed steps of their papers' update rules, schedules
against PyTorch's schedulers, metrics against direct scikit-learn calls."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sklearn.metrics as skm
import torch

from nndsl.syntax import ast
from nndsl.train import checkpoint as ckpt
from nndsl.train.choices import Picked
from nndsl.train.extra_optim import SAM, Lamb, Lookahead
from nndsl.train.losses import evaluate_loss, loss_value
from nndsl.train.metrics import MetricSpec, compute
from nndsl.train.optim import OPTIMIZERS, build_optimizer
from nndsl.train.schedules import SCHEDULES, Schedule

G = torch.Generator().manual_seed(0)


def rand(*shape):
    return torch.randn(*shape, generator=G, dtype=torch.float64)


# ------------------------------------------------------------------------------- losses

def test_regression_losses_match_their_formulas():
    a, b = rand(6, 3), rand(6, 3)
    d = a - b
    assert torch.allclose(loss_value("mse", [a, b], {}), (d ** 2).mean())
    assert torch.allclose(loss_value("mae", [a, b], {}), d.abs().mean())
    assert torch.allclose(loss_value("l1", [a, b], {}), d.abs().mean())
    delta = 0.7
    hub = torch.where(d.abs() <= delta, 0.5 * d ** 2, delta * (d.abs() - 0.5 * delta)).mean()
    assert torch.allclose(loss_value("huber", [a, b], {"delta": delta}), hub)
    beta = 0.5
    sl1 = torch.where(d.abs() < beta, 0.5 * d ** 2 / beta, d.abs() - 0.5 * beta).mean()
    assert torch.allclose(loss_value("smooth_l1", [a, b], {"beta": beta}), sl1)


def test_cross_entropy_with_label_smoothing_matches_the_formula():
    x = rand(5, 4)
    y = torch.tensor([0, 3, 1, 1, 2])
    logp = x.log_softmax(1)
    eps = 0.1
    q = torch.full((5, 4), eps / 4, dtype=torch.float64)
    q[torch.arange(5), y] += 1 - eps
    want = -(q * logp).sum(1).mean()
    assert torch.allclose(loss_value("cross_entropy", [x, y], {"smoothing": eps}), want)
    plain = -logp[torch.arange(5), y].mean()
    assert torch.allclose(loss_value("cross_entropy", [x, y], {}), plain)
    assert torch.allclose(loss_value("nll", [logp, y], {}), plain)


def test_cross_entropy_takes_classes_last_sequences():
    x = rand(2, 5, 7)          # [N, T, V]
    y = torch.randint(0, 7, (2, 5), generator=G)
    logp = x.log_softmax(-1)
    want = -logp.gather(-1, y[..., None]).mean()
    assert torch.allclose(loss_value("cross_entropy", [x, y], {}), want)


def test_binary_losses_match_their_formulas():
    z = rand(8, 1)
    t = (rand(8, 1) > 0).double()
    p = torch.sigmoid(z)
    want = -(t * p.log() + (1 - t) * (1 - p).log()).mean()
    assert torch.allclose(loss_value("bce", [z, t], {}), want)
    assert torch.allclose(loss_value("bce_probs", [p, t], {}), want)
    pw = 3.0
    weighted = -(pw * t * p.log() + (1 - t) * (1 - p).log()).mean()
    assert torch.allclose(loss_value("bce", [z, t], {"pos_weight": pw}), weighted)


def test_kl_divergences_match_their_formulas():
    logq = rand(4, 6).log_softmax(1)
    p = rand(4, 6).softmax(1)
    want = (p * (p.log() - logq)).sum(1).mean()
    assert torch.allclose(loss_value("kl_div", [logq, p], {}), want)
    mu, logvar = rand(4, 3), rand(4, 3)
    kl = (0.5 * (mu ** 2 + logvar.exp() - 1 - logvar)).sum(1).mean()
    assert torch.allclose(loss_value("kl_normal", [mu, logvar], {}), kl)


def test_info_nce_matches_the_formula():
    a, b = rand(5, 8), rand(5, 8)
    t = 0.2
    an = a / a.norm(dim=1, keepdim=True)
    bn = b / b.norm(dim=1, keepdim=True)
    s = an @ bn.T / t
    want = -(s.diag() - s.logsumexp(1)).mean()
    assert torch.allclose(loss_value("info_nce", [a, b], {"temperature": t}), want)
    sym = (want - (s.diag() - s.logsumexp(0)).mean()) / 2
    assert torch.allclose(loss_value("info_nce", [a, b], {"temperature": t, "symmetric": True}),
                          sym)


def _call(fn, *names, **kw):
    return ast.Call(None, ast.Name(None, fn), tuple(ast.Arg(None, None, ast.Name(None, n))
                                                     for n in names)
                    + tuple(ast.Arg(None, k, ast.Num(None, v)) for k, v in kw.items()))


def test_weighted_sum_of_losses():
    a, t1, b, t2 = rand(4, 2), rand(4, 2), rand(4, 1), (rand(4, 1) > 0).double()
    e = ast.BinOp(None, "+", ast.BinOp(None, "*", ast.Num(None, 0.5), _call("mse", "a", "t1")),
                  ast.BinOp(None, "/", _call("bce", "b", "t2"), ast.Num(None, 4)))
    total, terms = evaluate_loss(e, {"a": a, "t1": t1, "b": b, "t2": t2})
    want = 0.5 * ((a - t1) ** 2).mean() + \
        torch.nn.functional.binary_cross_entropy_with_logits(b, t2) / 4
    assert torch.allclose(total, want) and len(terms) == 2


# --------------------------------------------------------------------------- optimizers

def _quadratic():
    """A tiny problem: two parameter tensors, loss = sum(c * w^2) + sum(w·v)."""
    w1 = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    w2 = torch.nn.Parameter(torch.tensor([[0.3, -0.7]], dtype=torch.float64))

    def loss():
        return (torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64) * w1 ** 2).sum() + \
            (w2 ** 3).sum() + (w1[0] * w2[0, 1])
    return [w1, w2], loss


def _grads(params, loss):
    for p in params:
        p.grad = None
    loss().backward()
    return [p.grad.clone() for p in params]


def test_lamb_follows_the_paper():
    params, loss = _quadratic()
    ref = [p.detach().clone() for p in params]
    lr, b1, b2, eps, wd = 0.1, 0.9, 0.99, 1e-6, 0.01
    opt = Lamb(params, lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    m = [torch.zeros_like(r) for r in ref]
    v = [torch.zeros_like(r) for r in ref]
    for t in range(1, 4):
        gs = _grads(params, loss)
        opt.step()
        for i, g in enumerate(gs):
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            r = (m[i] / (1 - b1 ** t)) / ((v[i] / (1 - b2 ** t)).sqrt() + eps)
            u = r + wd * ref[i]
            ref[i] = ref[i] - lr * (ref[i].norm() / u.norm()) * u
        for p, r in zip(params, ref):
            assert torch.allclose(p.detach(), r, atol=1e-12), (t, p, r)


def test_lookahead_follows_the_paper():
    params, loss = _quadratic()
    k, alpha, lr = 3, 0.5, 0.05
    opt = Lookahead(torch.optim.SGD(params, lr=lr), k=k, alpha=alpha)
    slow = [p.detach().clone() for p in params]
    fast = [p.detach().clone() for p in params]
    for step in range(1, 8):
        gs = _grads(params, loss)
        opt.step()
        fast = [f - lr * g for f, g in zip(fast, gs)]
        if step % k == 0:
            slow = [s + alpha * (f - s) for s, f in zip(slow, fast)]
            fast = [s.clone() for s in slow]
        for p, f in zip(params, fast):
            assert torch.allclose(p.detach(), f, atol=1e-12), step
    # the state round-trips through a checkpoint
    data, tensors = ckpt.pack(opt.state_dict())
    opt2 = Lookahead(torch.optim.SGD(params, lr=lr), k=k, alpha=alpha)
    opt2.load_state_dict(ckpt.unpack(data, tensors))
    assert opt2.counter == opt.counter and all(torch.equal(a, b)
                                               for a, b in zip(opt2.slow, opt.slow))


@pytest.mark.parametrize("adaptive", [False, True])
def test_sam_follows_the_paper(adaptive):
    params, loss = _quadratic()
    rho, lr = 0.05, 0.1
    opt = SAM(torch.optim.SGD(params, lr=lr), rho=rho, adaptive=adaptive)
    w = [p.detach().clone() for p in params]
    for _ in range(3):
        g = _grads(params, loss)
        if adaptive:
            norm = torch.sqrt(sum(((wi.abs() * gi) ** 2).sum() for wi, gi in zip(w, g)))
            e = [rho * wi ** 2 * gi / norm for wi, gi in zip(w, g)]
        else:
            norm = torch.sqrt(sum((gi ** 2).sum() for gi in g))
            e = [rho * gi / norm for gi in g]
        # the gradient at the perturbed point, computed independently
        probe = [torch.nn.Parameter(wi + ei) for wi, ei in zip(w, e)]
        with torch.no_grad():
            saved = [p.detach().clone() for p in params]
            for p, q in zip(params, probe):
                p.copy_(q)
        g_sam = _grads(params, loss)
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)
        _grads(params, loss)           # the loop leaves the gradient at w in .grad

        def closure():
            opt.zero_grad()
            value = loss()
            value.backward()
            return value
        opt.step(closure)
        w = [wi - lr * gi for wi, gi in zip(w, g_sam)]
        for p, wi in zip(params, w):
            assert torch.allclose(p.detach(), wi, atol=1e-12)


@pytest.mark.parametrize("name", [n for n in OPTIMIZERS if n not in ("lookahead", "sam")])
def test_every_optimizer_builds_and_descends(name):
    params, loss = _quadratic()
    args = dict(OPTIMIZERS[name].kwargs)
    args["lr"] = 0.02
    opt = build_optimizer(Picked(name, args), params)
    before = float(loss().detach())
    for _ in range(5):
        _grads(params, loss)
        opt.step()
    assert float(loss().detach()) < before


# ---------------------------------------------------------------------------- schedules

def _lrs(name, args, total=40, per_epoch=8, base=0.1):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=base)
    full = {**{k: v for k, v in SCHEDULES[name].kwargs.items()}, **args}
    s = Schedule(Picked(name, full), opt, total, per_epoch)
    out = []
    for _ in range(total):
        out.append(s.lr)
        s.step()
    return out


def _torch_lrs(make, total=40, base=0.1, per=None):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=base)
    sched = make(opt)
    out = []
    for t in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        if per is None or (t + 1) % per == 0:
            sched.step()
    return out


S = torch.optim.lr_scheduler


@pytest.mark.parametrize("name,args,make,per", [
    ("step", {"every": 2, "gamma": 0.5}, lambda o: S.StepLR(o, 2, 0.5), 8),
    ("multistep", {"milestones": (1, 3)}, lambda o: S.MultiStepLR(o, [1, 3], 0.1), 8),
    ("exponential", {"gamma": 0.8}, lambda o: S.ExponentialLR(o, 0.8), 8),
    ("cosine", {"min_lr": 0.01}, lambda o: S.CosineAnnealingLR(o, 40, 0.01), None),
    ("cosine_restarts", {"period": 1, "mult": 2, "min_lr": 0.001},
     lambda o: S.CosineAnnealingWarmRestarts(o, 8, 2, 0.001), None),
    ("one_cycle", {"pct_start": 0.25},
     lambda o: S.OneCycleLR(o, 0.1, total_steps=40, pct_start=0.25, cycle_momentum=False),
     None),
    ("linear", {"end": 0.1}, lambda o: S.LinearLR(o, 1.0, 0.1, total_iters=40), None),
])
def test_schedules_match_pytorch(name, args, make, per):
    ours = _lrs(name, args)
    theirs = _torch_lrs(make, per=per)
    assert np.allclose(ours, theirs, rtol=1e-9, atol=1e-12), list(zip(ours, theirs))


def test_warmup_then_schedule():
    ours = _lrs("cosine", {"warmup": 5}, total=45)
    assert np.allclose(ours[:5], [0.1 * (t + 1) / 5 for t in range(5)])
    assert np.allclose(ours[5:], _torch_lrs(lambda o: S.CosineAnnealingLR(o, 40), total=40))
    # PyTorch's LinearLR is the same ramp
    ramp = _torch_lrs(lambda o: S.LinearLR(o, 1 / 5, 1.0, total_iters=4), total=5)
    assert np.allclose(ours[:5], ramp)
    assert _lrs("warmup", {"steps": 4}, total=10) == pytest.approx(
        [0.025, 0.05, 0.075, 0.1] + [0.1] * 6)


def test_schedule_state_round_trips():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    s = Schedule(Picked("cosine", {"min_lr": 0.0, "warmup": 3}), opt, 20, 4)
    for _ in range(7):
        s.step()
    opt2 = torch.optim.SGD([p], lr=0.1)
    s2 = Schedule(Picked("cosine", {"min_lr": 0.0, "warmup": 3}), opt2, 20, 4)
    s2.load_state_dict(s.state_dict())
    assert s2.lr == s.lr and s2.t == 7


# ------------------------------------------------------------------------------ metrics

def _spec(name, task, **kw):
    return MetricSpec(name, name, "p", "t", task, kw)


def test_classification_metrics_match_scikit_learn():
    scores = torch.randn(50, 4, generator=G)
    y = torch.randint(0, 4, (50,), generator=G)
    yhat = scores.argmax(1).numpy()
    probs = scores.double().softmax(1).numpy()
    assert compute(_spec("accuracy", "multiclass"), scores, y) == \
        pytest.approx(skm.accuracy_score(y.numpy(), yhat))
    for name, fn in (("precision", skm.precision_score), ("recall", skm.recall_score),
                     ("f1", skm.f1_score)):
        assert compute(_spec(name, "multiclass"), scores, y) == pytest.approx(
            fn(y.numpy(), yhat, average="macro", zero_division=0))
        assert compute(_spec(name, "multiclass", average="micro"), scores, y) == pytest.approx(
            fn(y.numpy(), yhat, average="micro", zero_division=0))
    assert compute(_spec("roc_auc", "multiclass"), scores, y) == pytest.approx(
        skm.roc_auc_score(y.numpy(), probs, multi_class="ovr"))


def test_binary_metrics_match_scikit_learn():
    z = torch.randn(40, 1, generator=G)
    t = (torch.rand(40, 1, generator=G) > 0.5).float()
    p = torch.sigmoid(z.double()).flatten().numpy()
    yt = t.flatten().long().numpy()
    assert compute(_spec("accuracy", "binary"), z, t) == pytest.approx(
        skm.accuracy_score(yt, (p > 0.5).astype(int)))
    assert compute(_spec("f1", "binary"), z, t) == pytest.approx(
        skm.f1_score(yt, (p > 0.5).astype(int)))
    assert compute(_spec("roc_auc", "binary"), z, t) == pytest.approx(skm.roc_auc_score(yt, p))


def test_regression_metrics_match_scikit_learn():
    p, t = torch.randn(30, 1, generator=G), torch.randn(30, 1, generator=G)
    pn, tn = p.double().numpy(), t.double().numpy()
    assert compute(_spec("mse", "regression"), p, t) == pytest.approx(
        skm.mean_squared_error(tn, pn))
    assert compute(_spec("rmse", "regression"), p, t) == pytest.approx(
        math.sqrt(skm.mean_squared_error(tn, pn)))
    assert compute(_spec("mae", "regression"), p, t) == pytest.approx(
        skm.mean_absolute_error(tn, pn))
    assert compute(_spec("r2", "regression"), p, t) == pytest.approx(skm.r2_score(tn, pn))


def test_ranking_and_text_metrics():
    scores = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.8, 0.3]])
    rel = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    assert compute(_spec("ndcg", "ranking"), scores, rel) == pytest.approx(
        skm.ndcg_score(rel.numpy(), scores.numpy()))
    # query 1: relevant at ranks 1 and 2 -> AP 1, RR 1; query 2: relevant at rank 2 -> 0.5
    assert compute(_spec("map", "ranking"), scores, rel) == pytest.approx((1 + 0.5) / 2)
    assert compute(_spec("mrr", "ranking"), scores, rel) == pytest.approx((1 + 0.5) / 2)
    target = torch.tensor([[1, 2, 3, 4, 5, 6]])
    logits = torch.nn.functional.one_hot(target, 8).float()
    assert compute(_spec("bleu", "text"), logits, target) == pytest.approx(1.0)
    assert compute(_spec("rouge", "text"), logits, target) == pytest.approx(1.0)


def test_checkpoint_state_packs_without_pickle():
    p = torch.nn.Parameter(torch.randn(3, generator=G))
    opt = torch.optim.Adam([p], lr=0.1)
    p.grad = torch.ones(3)
    opt.step()
    data, tensors = ckpt.pack({"opt": opt.state_dict(), "t": (1, 2.5, None), "s": "x"})
    import json
    back = ckpt.unpack(json.loads(json.dumps(data)), tensors)
    assert back["t"] == (1, 2.5, None) and back["s"] == "x"
    assert torch.equal(back["opt"]["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert back["opt"]["param_groups"][0]["betas"] == (0.9, 0.999)
