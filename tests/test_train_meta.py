"""Few-shot episodes, MAML and curriculum learning in the trainer.

Episodes are checked by drawing them from samples that carry their own index, so that every
support and query sample can be traced to its class; the zoo's metric learners (protonet,
matching_net, siamese) train from their own train sections at reduced size and score above
chance on classes they never trained on; MAML's meta-gradient is compared with a hand-written
second-order (and first-order) computation, and adaptation must beat the unadapted model; a
curriculum's epochs are the easiest samples by the score, in the pacing's numbers, and the order
shows in what the model learns."""

from __future__ import annotations

import math
import os
import signal
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nndsl.cli import main
from nndsl.train.curriculum import Curriculum
from nndsl.train.episodes import SUPPORT, EpisodeSource, Episodic
from nndsl.train.run import run_training

ROOT = Path(__file__).resolve().parents[1]
META = ROOT / "specs" / "meta"
CHANCE_3WAY = 1 / 3


def _episodic(layout, **kw):
    base = dict(ways=3, shots=2, queries=4, per_epoch=5, eval=5, test_ways=2,
                train_classes=None, test_classes=None, layout=layout,
                roles={"support_query": {"support": "s", "query": "q"},
                       "classifier": {"x": "x"}, "pairs": {"left": "a", "right": "b"}}[layout],
                sample="x", sample_type=None, target="label", target_type=SimpleNamespace(
                    dtype="f32" if layout == "pairs" else "i64", rank=1),
                scores="logits")
    base.update(kw)
    return Episodic(**base)


def _source(layout, n_classes=10, per_class=12, **kw):
    ep = _episodic(layout, **kw)
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    data = SimpleNamespace(arrays={"x": torch.arange(len(labels), dtype=torch.float32)[:, None],
                                   "label": labels})
    return EpisodeSource(ep, data, seed=3, where="the test set"), labels


def test_episodes_come_from_disjoint_classes_and_are_laid_out_by_class():
    src, labels = _source("support_query")
    assert src.train_classes == list(range(7)) and src.test_classes == [7, 8, 9]
    for split, pool, ways in (("train", set(range(7)), 3), ("test", {7, 8, 9}, 2)):
        gen = torch.Generator().manual_seed(11)
        for _ in range(20):
            b = src.batch(split, gen)
            sup, qry, lab = b["s"], b["q"], b["label"]
            assert sup.shape == (ways, 2, 1) and qry.shape == (ways * 4, 1)
            orig_sup = labels[sup.long().reshape(ways, 2)]      # the samples' true classes
            assert all(len(set(row.tolist())) == 1 for row in orig_sup)   # a row is one class
            classes = orig_sup[:, 0].tolist()
            assert len(set(classes)) == ways and set(classes) <= pool
            # a query's label is the row of its true class; no query is a support sample
            assert labels[qry.long().reshape(-1)].tolist() == [classes[k] for k in lab.tolist()]
            assert not set(qry.reshape(-1).tolist()) & set(sup.reshape(-1).tolist())
            assert sorted(lab.tolist()) == sorted(list(range(ways)) * 4)
    a = src.batch("train", torch.Generator().manual_seed(5))
    b = src.batch("train", torch.Generator().manual_seed(5))
    assert all(torch.equal(a[k], b[k]) for k in a)        # seeded


def test_classifier_and_pair_episodes():
    src, labels = _source("classifier", shots=3)
    b = src.batch("train", torch.Generator().manual_seed(1))
    sx, sy = b[SUPPORT + "x"].long().reshape(-1), b[SUPPORT + "label"]
    assert sy.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    true = labels[sx].reshape(3, 3)
    assert all(len(set(r.tolist())) == 1 for r in true)
    qcls = labels[b["x"].long().reshape(-1)]
    assert qcls.tolist() == [true[k, 0].item() for k in b["label"].tolist()]

    src, labels = _source("pairs", shots=2, queries=3)
    b = src.batch("train", torch.Generator().manual_seed(2))
    left, right = b["a"].long().reshape(-1), b["b"].long().reshape(-1)
    assert left.numel() == 3 * 3 * 3 * 2                    # every query against every shot
    assert torch.equal(b["label"], (labels[left] == labels[right]).float())
    # the query accuracy of pair scores: a query's class is the support class it scores highest
    perfect = {"logits": b["label"] * 5.0}
    assert src.query_accuracy(b, perfect) == 1.0
    assert src.query_accuracy(b, {"logits": -b["label"]}) == 0.0


def test_episode_sizes_are_checked_against_the_classes():
    with pytest.raises(Exception, match="4-way episodes need 4 held-out classes, but the "
                                        "test set has 3"):
        _source("support_query", test_ways=4)
    with pytest.raises(Exception, match=r"takes 2 \+ 11 samples of each class"):
        _source("support_query", queries=11)


def _history(r, key):
    return [h[key] for h in r.history]


def test_protonet_learns_classes_it_never_trained_on(tmp_path):
    r = run_training(META / "protonet.nn", params={"width": 16, "blocks": 3, "image": 8},
                     overrides={"epochs": 2}, out=tmp_path / "p", quiet=True)
    assert r.history[-1]["val_query_accuracy"] > CHANCE_3WAY + 0.25, r.history
    assert r.test["test_query_accuracy"] > CHANCE_3WAY + 0.25, r.test
    assert r.history[-1]["train_loss"] < r.history[0]["train_loss"]


def test_matching_net_and_siamese_train_from_their_specs(tmp_path):
    m = run_training(META / "matching_net.nn", params={"width": 16, "blocks": 3, "image": 8},
                     overrides={"epochs": 2}, out=tmp_path / "m", quiet=True)
    assert m.history[-1]["val_query_accuracy"] > CHANCE_3WAY + 0.15, m.history
    s = run_training(META / "siamese.nn", params={"image": 12, "widths": [8, 16],
                                                  "kernels": [3, 3], "hidden": 32},
                     overrides={"epochs": 2}, out=tmp_path / "s", quiet=True)
    assert s.history[-1]["val_query_accuracy"] > CHANCE_3WAY + 0.15, s.history


MAML_SPEC = """
model mlp(hidden: int = 32) {
    input x: f32[N, 64]
    output logits = x |> linear(hidden) as fc1 |> tanh |> linear(5) as head
}

train mlp {
    target label: i64[N]
    data = digits
    episodes = episodes(ways=5, shots=1, queries=5, per_epoch=60, eval=40, test_ways=3)
    recipe = maml(inner_steps=3, inner_lr=0.5%s)
    loss = cross_entropy(logits, label)
    optimizer = adam(lr=0.003)
    epochs = %d
}
"""


def _maml_spec(tmp_path, extra="", epochs=2, name="maml.nn") -> Path:
    p = tmp_path / name
    p.write_text(MAML_SPEC % (extra, epochs))
    return p


def test_maml_adaptation_beats_the_unadapted_model(tmp_path):
    r = run_training(_maml_spec(tmp_path), out=tmp_path / "run", quiet=True)
    last = r.history[-1]
    # the queries' labels are an episode's own numbering: without adapting, chance
    assert abs(last["val_query_accuracy_before"] - CHANCE_3WAY) < 0.1, last
    assert last["val_query_accuracy"] > last["val_query_accuracy_before"] + 0.2, last
    assert r.test["test_query_accuracy"] > CHANCE_3WAY + 0.2, r.test


def _hand_maml(params, batch, steps, lr, first_order):
    """MAML's query loss with torch.autograd, the MLP written out by hand."""
    def f(w, x):
        return torch.tanh(x @ w["fc1.weight"].T + w["fc1.bias"]) @ w["head.weight"].T + \
            w["head.bias"]
    fast = dict(params)
    sx, sy = batch[SUPPORT + "x"], batch[SUPPORT + "label"]
    for _ in range(steps):
        loss = F.cross_entropy(f(fast, sx), sy)
        grads = torch.autograd.grad(loss, list(fast.values()), create_graph=not first_order)
        fast = {k: v - lr * g for (k, v), g in zip(fast.items(), grads)}
    return F.cross_entropy(f(fast, batch["x"]), batch["label"])


@pytest.mark.parametrize("first_order", [False, True])
def test_maml_meta_gradient_matches_a_hand_computation(tmp_path, first_order):
    got = []

    def probe(run, epoch, b):
        if got:
            return
        batch = run.episodes.batch("train", torch.Generator().manual_seed(9))
        params = dict(run.model.named_parameters())
        loss, _ = run.recipe.forward_loss(batch, {"x": batch["x"]}, True)
        mine = torch.autograd.grad(loss, list(params.values()))
        ref_loss = _hand_maml(params, batch, 3, 0.5, first_order)
        ref = torch.autograd.grad(ref_loss, list(params.values()))
        other = torch.autograd.grad(_hand_maml(params, batch, 3, 0.5, not first_order),
                                    list(params.values()))
        got.append((float(loss.detach()), float(ref_loss.detach()), mine, ref, other))
    extra = ", first_order=true" if first_order else ""
    run_training(_maml_spec(tmp_path, extra, epochs=1), out=tmp_path / "run", quiet=True,
                 hooks=[probe])
    loss, ref_loss, mine, ref, other = got[0]
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    scale = max(float(b.abs().max()) for b in ref) + 1e-12
    assert max(float((a - b).abs().max()) for a, b in zip(mine, ref)) <= 1e-4 * scale
    # the second-order term is not negligible here: the other variant is measurably different
    assert max(float((a - b).abs().max()) for a, b in zip(mine, other)) > 1e-2 * scale


def test_maml_run_resumes_exactly(tmp_path):
    spec = _maml_spec(tmp_path, epochs=2)

    def interrupt(run, epoch, b):
        if (epoch, b) == (1, 20):
            os.kill(os.getpid(), signal.SIGINT)
    a = run_training(spec, out=tmp_path / "a", quiet=True)
    b = run_training(spec, out=tmp_path / "b", quiet=True, hooks=[interrupt])
    assert b.interrupted
    b2 = run_training(spec, resume=tmp_path / "b", quiet=True)
    for key in ("train_loss", "val_query_accuracy", "train_query_accuracy_before"):
        assert _history(b2, key) == _history(a, key)


# ------------------------------------------------------------------ curriculum

def _curriculum_data(tmp_path, n=200):
    """Two separable classes; class 0 is marked easy (difficulty 0), class 1 hard (1)."""
    rng = np.random.default_rng(0)
    label = np.repeat([0, 1], n // 2)
    x = (rng.normal(size=(n, 2)) + np.where(label[:, None] == 0, -3, 3)).astype(np.float32)
    perm = rng.permutation(n)
    np.savez(tmp_path / "d.npz", x=x[perm], label=label[perm].astype(np.int64),
             difficulty=label[perm].astype(np.float32) + rng.uniform(0, 0.5, n)
             .astype(np.float32))
    return label[perm]


CURRICULUM_SPEC = """
model clf() {
    input x: f32[N, 2]
    output logits = x |> linear(2) as fc
}

train clf {
    target label: i64[N]
    data = "d.npz"
    loss = cross_entropy(logits, label)
    metrics = [accuracy]
    optimizer = sgd(lr=0.5)
    batch = 16
    epochs = %d
    val_split = 0.2
    %s
}
"""


def test_curriculum_uses_the_easiest_samples_first_in_the_pacing(tmp_path):
    _curriculum_data(tmp_path)
    p = tmp_path / "c.nn"
    p.write_text(CURRICULUM_SPEC % (4, 'curriculum = column("difficulty", start=0.25, '
                                       'epochs=3, pacing="linear", shuffle=false)'))
    seen = {}

    def probe(run, epoch, b):
        if epoch not in seen:
            seen[epoch] = run.order.clone()
    r = run_training(p, out=tmp_path / "run", quiet=True, hooks=[probe])
    data = np.load(tmp_path / "d.npz")
    score = torch.from_numpy(data["difficulty"]).double()
    n_train = 160
    cur = Curriculum("column", "linear", 0.25, 3, False)
    train_idx = torch.sort(seen[3]).values              # the last epoch uses every sample
    assert len(train_idx) == n_train
    for e in range(4):
        k = cur.count(e, n_train)
        assert k == min(n_train, math.ceil((0.25 + 0.75 * e / 3) * n_train - 1e-9))
        assert len(seen[e]) == k and r.history[e]["curriculum_samples"] == k
        easiest = train_idx[torch.sort(score[train_idx], stable=True).indices[:k]]
        assert seen[e].tolist() == easiest.tolist()         # easiest first, unshuffled
    assert [len(seen[e]) for e in range(4)] == [40, 80, 120, 160]


def test_curriculum_order_shows_in_what_the_model_learns(tmp_path):
    """One epoch of the curriculum is plain SGD over the easiest samples, easiest first: the
    weights after it equal that training written out by hand, and differ from a plain epoch."""
    import nndsl
    from safetensors.torch import load_file
    _curriculum_data(tmp_path)
    p = tmp_path / "c.nn"
    p.write_text(CURRICULUM_SPEC % (1, 'curriculum = column("difficulty", start=0.4, '
                                       'epochs=4, shuffle=false)'))
    split = []
    run_training(p, out=tmp_path / "cur", quiet=True,
                 hooks=[lambda run, e, b: split or split.append(run.splits.train.clone())])
    p.write_text(CURRICULUM_SPEC % (1, ""))
    run_training(p, out=tmp_path / "plain", quiet=True)

    data = np.load(tmp_path / "d.npz")
    x, y = torch.from_numpy(data["x"]), torch.from_numpy(data["label"])
    train = split[0]
    easiest = train[torch.sort(torch.from_numpy(data["difficulty"])[train], stable=True)
                    .indices[:64]]                              # 40% of 160
    assert set(y[easiest].tolist()) == {0}                       # the easy class only
    w = {k: v.detach().clone().requires_grad_() for k, v in
         nndsl.compile(p).to_torch(seed=0).state_dict().items()}
    for i in range(0, 64, 16):
        idx = easiest[i:i + 16]
        loss = F.cross_entropy(x[idx] @ w["fc.weight"].T + w["fc.bias"], y[idx])
        grads = torch.autograd.grad(loss, list(w.values()))
        w = {k: (v - 0.5 * g).detach().requires_grad_() for (k, v), g in zip(w.items(), grads)}
    cur = load_file(tmp_path / "cur" / "checkpoints" / "last.safetensors")
    plain = load_file(tmp_path / "plain" / "checkpoints" / "last.safetensors")
    for k in w:
        assert torch.allclose(cur[k], w[k].detach(), rtol=1e-5, atol=1e-6), k
    assert float((plain["fc.weight"] - cur["fc.weight"]).abs().max()) > 0.1


def test_self_paced_and_teacher_curricula_score_each_sample_by_its_loss(tmp_path):
    _curriculum_data(tmp_path)
    (tmp_path / "teacher.nn").write_text("model clf() {\n    input x: f32[N, 2]\n"
                                          "    output logits = x |> linear(8) as a |> relu "
                                          "|> linear(2) as b\n}\n")
    p = tmp_path / "c.nn"
    for entry in ("curriculum = loss(start=0.5, epochs=2)",
                  'curriculum = teacher("teacher.nn", start=0.5, epochs=2)'):
        p.write_text(CURRICULUM_SPEC % (2, entry))
        checked = []

        def probe(run, epoch, b):
            if b or epoch:
                return
            cur = run.curriculum
            idx = run.splits.train
            x, y = run.data.arrays["x"][idx], run.data.arrays["label"][idx]
            model = run.model if cur.cur.score == "loss" else None
            if model is not None:       # the model's own loss now, per sample
                got = cur.losses(model, ["logits"], idx)
                with torch.no_grad():
                    want = F.cross_entropy(model(x=x), y, reduction="none").double()
                checked.append(float((got - want).abs().max()))
            else:                       # the teacher's order: sorted by its per-sample loss
                t = cur.cur.teacher_compiled.to_torch(seed=run.cfg.seed + 29).eval()
                with torch.no_grad():
                    want = F.cross_entropy(t(x=x), y, reduction="none").double()
                ranked = idx[torch.sort(want, stable=True).indices]
                checked.append(int((cur.fixed != ranked).sum()))
            assert len(run.order) == 80
        run_training(p, out=tmp_path / entry[13:20], quiet=True, hooks=[probe])
        assert checked and checked[0] <= 1e-6, (entry, checked)


def test_curriculum_run_resumes_exactly(tmp_path):
    _curriculum_data(tmp_path)
    p = tmp_path / "c.nn"
    p.write_text(CURRICULUM_SPEC % (3, "curriculum = loss(start=0.3, epochs=2)"))

    def interrupt(run, epoch, b):
        if (epoch, b) == (1, 2):
            os.kill(os.getpid(), signal.SIGINT)
    a = run_training(p, out=tmp_path / "a", quiet=True)
    b = run_training(p, out=tmp_path / "b", quiet=True, hooks=[interrupt])
    assert b.interrupted
    b2 = run_training(p, resume=tmp_path / "b", quiet=True)
    assert _history(b2, "train_loss") == _history(a, "train_loss")
    assert _history(b2, "curriculum_samples") == [48, 104, 160]


# ------------------------------------------------------------------ errors

PROTO_ENTRY = "episodes = episodes(ways=5, shots=1, queries=5, test_ways=3)"


@pytest.mark.parametrize("spec,old,new,code,message", [
    ("protonet", PROTO_ENTRY, "episodes = episodes(ways=8)", "E1232",
     "8-way episodes need 8 training classes, but `digits` has 7 (0-6)"),
    ("protonet", PROTO_ENTRY, "episodes = episodes(ways=3, shots=100, queries=100)", "E1232",
     "an episode takes 100 + 100 samples of each class"),
    ("protonet", PROTO_ENTRY, PROTO_ENTRY + "\n    batch = 16", "E1232",
     "`batch` does not go with `episodes`"),
    ("protonet", PROTO_ENTRY, "episodes = episodes(train_classes=[0, 1, 2], "
                              "test_classes=[2, 3, 4])", "E1232",
     "the training and the held-out classes must be disjoint; both hold 2"),
    ("protonet", PROTO_ENTRY, PROTO_ENTRY + "\n    recipe = maml", "E1233",
     "the maml recipe adapts a classifier with one input"),
    ("protonet", "data = digits", "data = diabetes", "E1232",
     "`diabetes` is not a labelled set of classes"),
    ("protonet", PROTO_ENTRY, PROTO_ENTRY + '\n    curriculum = column("d")', "E1234",
     "a curriculum orders samples, and `episodes` draws tasks"),
])
def test_episode_errors_are_located(tmp_path, capsys, spec, old, new, code, message):
    text = (META / f"{spec}.nn").read_text()
    assert old in text
    p = tmp_path / f"{spec}.nn"
    p.write_text(text.replace(old, new, 1))
    assert main(["check", str(p)]) == 1
    err = capsys.readouterr().err
    assert f"error[{code}]" in err and message in err and f"{p}:" in err, err


@pytest.mark.parametrize("entries,code,message", [
    ("recipe = maml(inner_steps=2)", "E1233", "the section has no `episodes`"),
    ("episodes = episodes(ways=3)", "E1232",
     "a model with one input learns from episodes only by adapting"),
    ("episodes = episodes(ways=3)\n    recipe = maml(inner_lr=-1)", "E1233",
     "`inner_lr` of maml must be a positive number"),
    ('episodes = episodes(ways=3)\n    recipe = maml(adapt=["hed"])', "E1233",
     "no trained parameters under scope `hed`"),
    ('curriculum = column("difficulty")', "E1234", "the built-in set `digits` has no columns"),
    ('curriculum = loss(pacing="fast")', "E1234", "unknown pacing `fast`"),
    ("curriculum = loss(start=0)", "E1234", "a number > 0 and <= 1"),
])
def test_maml_and_curriculum_errors_are_located(tmp_path, capsys, entries, code, message):
    p = tmp_path / "m.nn"
    p.write_text("model mlp() {\n    input x: f32[N, 64]\n    output logits = x |> linear(16) "
                 "as fc1 |> relu |> linear(5) as head\n}\n\ntrain mlp {\n    target label: "
                 "i64[N]\n    data = digits\n    loss = cross_entropy(logits, label)\n    "
                 + entries + "\n}\n")
    assert main(["check", str(p)]) == 1
    err = capsys.readouterr().err
    assert f"error[{code}]" in err and message in err and f"{p}:" in err, err
