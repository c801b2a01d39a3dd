"""Episodic data for few-shot learning: N-way K-shot tasks drawn from a labelled data set.

``episodes = episodes(ways=5, shots=1, queries=5)`` in a train section turns a labelled set (a
built-in one such as ``digits``, or the user's own data path) into episodes: each picks ``ways``
classes, ``shots`` support samples and ``queries`` query samples of each, and relabels the
picked classes 0 .. ways-1 in the order they were drawn. Training episodes come from the
training classes, evaluation episodes from the held-out ones (disjoint; by default the first
70% of the classes train, the rest are held out: digits' 0-6 and 7-9).

How an episode feeds the model depends on its inputs (its *layout*):

- ``support_query``: a support input ``[W, S, ...]`` (laid out by class: sample (w, s) has label
  w) and a query input ``[Q, ...]`` (Q = W * queries, shuffled); the target holds the queries'
  labels ``[Q]``. Prototypical and Matching Networks.
- ``pairs``: two inputs of one type (a Siamese network): every (query, support sample) pair, the
  query on the first input; the target is 1 for a pair of one class, else 0. A query's class is
  the one whose support samples score highest on average.
- ``classifier``: one input, and class scores ``[N, C]`` with C >= ways: the support set and
  the queries are two batches of it. Only ``recipe = maml(...)`` learns from that (it adapts the
  weights on the support set, then scores the queries).

Every epoch reports ``query_accuracy``: the share of queries whose highest-scoring class is
their own. Compile-time checks (:func:`check`) need no PyTorch; drawing episodes
(:class:`EpisodeSource`) is seeded: the training episodes come from one generator whose state
each checkpoint saves, each evaluation draws its episodes from a generator seeded afresh, so
every epoch is evaluated on the same episodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from nndsl.errors import TrainError
from nndsl.ir.types import FLOAT_DTYPES, INT_DTYPES, SymDim, TensorType
from nndsl.train.choices import Choice, Picked, _show

CODE = "E1232"

EPISODES: dict[str, Choice] = {"episodes": Choice(
    "episodes", {"ways": 5, "shots": 1, "queries": 5, "per_epoch": 100, "eval": 100,
                 "test_ways": 0, "train_classes": (), "test_classes": ()},
    "N-way K-shot episodes: `ways` classes of `shots` support and `queries` query samples each",
    positional=("ways", "shots", "queries"))}

SUPPORT = "support."     # batch keys of a classifier's support set: "support.<name>"
TRAIN_SHARE = 0.7        # of the classes, when the section does not say which train

# the smallest class of each bundled set, so that episode sizes are checked at compile time
SMALLEST_CLASS = {"digits": 174, "iris": 50, "wine": 48, "breast_cancer": 212}
EPISODIC_SETS = ("digits", "iris", "wine", "breast_cancer", "blobs")


def _err(msg, span, hint=None, code=CODE):
    return TrainError(msg, span=span, code=code, hint=hint)


@dataclass
class Episodic:
    """A train section's resolved ``episodes`` entry and how episodes feed the model."""

    ways: int
    shots: int
    queries: int
    per_epoch: int
    eval: int
    test_ways: int
    train_classes: tuple | None     # None: the default split of the classes the data holds
    test_classes: tuple | None
    layout: str                     # support_query, pairs or classifier
    roles: dict                     # support/query, left/right or x -> model input name
    sample: str                     # the input whose type one sample has
    sample_type: TensorType
    target: str                     # the section's target
    target_type: TensorType
    scores: str                     # the output that scores the classes (or the pairs)
    span: object = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict:
        return {"ways": self.ways, "shots": self.shots, "queries": self.queries,
                "per_epoch": self.per_epoch, "eval": self.eval, "test_ways": self.test_ways,
                "train_classes": list(self.train_classes) if self.train_classes is not None
                else None, "test_classes": list(self.test_classes)
                if self.test_classes is not None else None, "layout": self.layout}


# ------------------------------------------------------------------ compile-time checks

def _types(d: dict) -> str:
    return ", ".join(f"{n}: {t}" for n, t in d.items())


def _static(d):
    return d if isinstance(d, int) else None


def _classes_arg(v, key, span) -> tuple | None:
    if v == ():
        return None
    if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in v):
        raise _err(f"`{key}` of episodes is a list of class labels (integers >= 0), got "
                   f"{_show(v)}", span)
    if len(set(v)) != len(v):
        raise _err(f"`{key}` of episodes names a class twice: {_show(v)}", span)
    return tuple(v)


def check(p: Picked, span, data_inputs: dict, outputs: dict, targets: dict, loss_info,
          random_inputs: dict, recipe: str) -> Episodic:
    """The ``episodes`` entry checked against the model's inputs, outputs and targets."""
    a = p.args
    for k, low in (("ways", 2), ("shots", 1), ("queries", 1), ("per_epoch", 1), ("eval", 0)):
        v = a[k]
        if v < low or v >= 2**31:
            raise _err(f"`{k}` of episodes must be an integer from {low} to {2**31 - 1:,}, "
                       f"got {_show(v)}", span, "for example episodes(ways=5, shots=1, "
                       "queries=5)")
    if a["test_ways"] != 0 and not 2 <= a["test_ways"] < 2**31:
        raise _err(f"`test_ways` of episodes must be 0 (as `ways`) or at least 2, got "
                   f"{_show(a['test_ways'])}", span)
    ways, test_ways = a["ways"], a["test_ways"] or a["ways"]
    train_c = _classes_arg(a["train_classes"], "train_classes", span)
    test_c = _classes_arg(a["test_classes"], "test_classes", span)
    if train_c is not None and test_c is not None and set(train_c) & set(test_c):
        both = sorted(set(train_c) & set(test_c))
        raise _err(f"the training and the held-out classes must be disjoint; both hold "
                   f"{', '.join(map(str, both))}", span,
                   "episodes evaluate on classes the model never trained on")
    if random_inputs:
        n = next(iter(random_inputs))
        raise _err(f"episodic training feeds every input from the episode, but `{n}` is a "
                   f"random input", span, "remove the `~` distribution from the input")
    if len(targets) != 1:
        raise _err(f"episodic data gives one target (the queries' labels), but the section "
                   f"declares {len(targets)}" + (f": {', '.join(targets)}" if targets else ""),
                   span, "declare e.g. `target label: i64[Q]`")
    (tname, ttype), = targets.items()
    floats = {n: t for n, t in data_inputs.items() if t.dtype in FLOAT_DTYPES}
    layout, roles = None, {}
    if len(data_inputs) == 2 and len(floats) == 2:
        (n1, t1), (n2, t2) = floats.items()
        if t2.rank == t1.rank + 1:
            (n1, t1), (n2, t2) = (n2, t2), (n1, t1)
        if t1.rank == t2.rank + 1 and tuple(t1.shape[2:]) == tuple(t2.shape[1:]):
            layout, roles = "support_query", {"support": n1, "query": n2}
        elif t1.dtype == t2.dtype and tuple(t1.shape) == tuple(t2.shape):
            layout, roles = "pairs", {"left": n1, "right": n2}
    elif len(data_inputs) == 1 and len(floats) == 1:
        layout, roles = "classifier", {"x": next(iter(floats))}
    if layout is None:
        raise _err("episodic data feeds a support set [W, S, ...] and queries [Q, ...], a pair "
                   "of samples, or one input (with recipe = maml); the model's inputs are "
                   + (_types(data_inputs) or "none"), span,
                   "declare e.g. `input support: f32[W, S, 1, 28, 28]` and "
                   "`input query: f32[Q, 1, 28, 28]`")
    if layout == "classifier" and recipe != "maml":
        raise _err(f"a model with one input learns from episodes only by adapting to each "
                   f"support set: its inputs are {_types(data_inputs)}", span,
                   "use `recipe = maml(...)`, or give the model a support and a query input")
    if layout != "classifier" and recipe == "maml":
        raise _err("the maml recipe adapts a classifier with one input on the support set, "
                   f"but this model takes {_types(data_inputs)}", span, "a Prototypical or "
                   "Matching Network trains without a recipe", code="E1233")
    if layout == "support_query":
        sup, qry = data_inputs[roles["support"]], data_inputs[roles["query"]]
        for w in {ways, test_ways}:
            if _static(sup.shape[0]) not in (None, w) or _static(qry.shape[0]) not in (
                    None, w * a["queries"]):
                raise _err(f"the episodes have {w} ways and {w * a['queries']} queries, but "
                           f"the inputs are {_types(data_inputs)}", span,
                           "make the first dims symbols: support: f32[W, S, ...], "
                           "query: f32[Q, ...]")
        if _static(sup.shape[1]) not in (None, a["shots"]):
            raise _err(f"the episodes have {a['shots']} shots, but the support input "
                       f"`{roles['support']}` is {sup}", span, "make its second dim a symbol")
        sample = roles["query"]
    else:
        sample = roles["left" if layout == "pairs" else "x"]
    stype = data_inputs[sample]
    if layout in ("support_query", "classifier"):
        if ttype.dtype not in INT_DTYPES or ttype.rank != 1:
            raise _err(f"the target `{tname}` holds the queries' labels, class indices "
                       f"[Q], but it is {ttype}", span, f"declare `target {tname}: i64[Q]`")
    elif ttype.rank not in (1, 2) or ttype.rank == 2 and ttype.shape[1] != 1:
        raise _err(f"the target `{tname}` holds 1 for a pair of one class and 0 otherwise, "
                   f"[N] or [N, 1], but it is {ttype}", span,
                   f"declare `target {tname}: f32[N, 1]`")
    scores = next((t.args[0] for t in loss_info.terms if len(t.args) == 2
                   and t.args[1] == tname and t.args[0] in outputs), None)
    if scores is None:
        raise _err(f"the loss compares no model output with the target `{tname}`", span,
                   "e.g. `loss = cross_entropy(logits, " + tname + ")`")
    st = outputs[scores]
    if layout == "support_query":
        if st.rank != 2 or any(_static(st.shape[1]) not in (None, w) for w in {ways, test_ways}):
            raise _err(f"`{scores}` scores each query's class among the episode's ways, "
                       f"[Q, W], but it is {st}", span)
    elif layout == "classifier":
        c = _static(st.shape[1]) if st.rank == 2 else None
        if st.rank != 2 or c is not None and c < max(ways, test_ways):
            raise _err(f"`{scores}` scores the classes of an episode, [N, C] with C >= "
                       f"{max(ways, test_ways)} (the ways), but it is {st}", span,
                       f"give the classifier {max(ways, test_ways)} outputs")
    elif st.rank not in (1, 2) or st.rank == 2 and st.shape[1] != 1:
        raise _err(f"`{scores}` scores each pair, [N] or [N, 1], but it is {st}", span)
    if any(t.fn in ("contractive", "info_nce") for t in loss_info.terms):
        raise _err("episodic training does not take the contractive or info_nce losses",
                   span)
    return Episodic(ways, a["shots"], a["queries"], a["per_epoch"], a["eval"], test_ways,
                    train_c, test_c, layout, roles, sample, stype, tname, ttype, scores, span)


def split_classes(ep: Episodic, classes: list) -> tuple[list, list]:
    """(training classes, held-out classes) among ``classes`` (sorted labels the data holds)."""
    if ep.train_classes is None and ep.test_classes is None:
        k = min(len(classes) - 1, max(1, round(len(classes) * TRAIN_SHARE)))
        return classes[:k], classes[k:]
    train = list(ep.train_classes) if ep.train_classes is not None else \
        [c for c in classes if c not in set(ep.test_classes)]
    test = list(ep.test_classes) if ep.test_classes is not None else \
        [c for c in classes if c not in set(ep.train_classes)]
    return train, test


def _check_sizes(ep: Episodic, classes: list, train: list, test: list, smallest,
                 where: str) -> None:
    span = ep.span
    known = set(classes)
    for name, chosen in (("train_classes", ep.train_classes), ("test_classes", ep.test_classes)):
        missing = [c for c in chosen or () if c not in known]
        if missing:
            raise _err(f"`{name}` names class {missing[0]}, which {where} does not hold", span,
                       f"its classes: {_ranges(classes)}")
    for what, cls, w, key in (("training", train, ep.ways, "ways"),
                              ("held-out", test, ep.test_ways, "test_ways" if ep.test_ways !=
                               ep.ways else "ways")):
        if w > len(cls):
            raise _err(f"{w}-way episodes need {w} {what} classes, but {where} has "
                       f"{len(cls)} ({_ranges(cls) or 'none'})", span,
                       f"lower `{key}` to {len(cls)}" if len(cls) >= 2 else
                       "hold out other classes: train_classes=[...], test_classes=[...]")
    need = ep.shots + ep.queries
    small = smallest(train + test)
    if small is not None and need > small[1]:
        which = f"class {small[0]} of {where}" if small[0] is not None else \
            f"the smallest class of {where}"
        raise _err(f"an episode takes {ep.shots} + {ep.queries} samples of each class "
                   f"(shots + queries), but {which} has {small[1]}", span,
                   f"lower `shots` or `queries` to {small[1]} together at most")


def _ranges(cs) -> str:
    cs = list(cs)
    if len(cs) > 2 and cs == list(range(cs[0], cs[0] + len(cs))):
        return f"{cs[0]}-{cs[-1]}"
    return ", ".join(map(str, cs[:20])) + (", ..." if len(cs) > 20 else "")


def check_data(ep: Episodic, data: dict | None, data_inputs: dict, span_data) -> None:
    """Compile-time checks of a built-in set against the episodes (a path is checked when it
    is loaded)."""
    if data is None or "name" not in data:
        return
    from nndsl.train import data as data_mod
    name, args = data["name"], data.get("args", {})
    b = data_mod.BUILTINS[name]
    if name not in EPISODIC_SETS:
        raise _err(f"`{name}` is not a labelled set of classes episodes can be drawn from",
                   span_data or ep.span, "episodic sets: " + ", ".join(EPISODIC_SETS)
                   + ", or a path to your labelled data")
    n = SymDim.symbol("N")
    sample = TensorType(ep.sample_type.dtype, (n,) + tuple(ep.sample_type.shape[1:]))
    data_mod.check_builtin(name, args, {ep.sample: sample},
                           {"label": TensorType("i64", (n,))}, None, {}, span_data)
    k = int(args.get("classes", b.classes or 0))
    classes = list(range(k))
    if name == "blobs":
        size = int(args["n"]) // max(1, k)
    else:
        size = SMALLEST_CLASS[name]
    train, test = split_classes(ep, classes)
    _check_sizes(ep, classes, train, test, lambda cs: (None, size) if cs else None, f"`{name}`")


# ------------------------------------------------------------------ loading and drawing

def load(cfg, ep: Episodic, span, base, seed: int):
    """The labelled samples of ``cfg.data``: a :class:`~nndsl.train.data.Data` whose arrays
    are the sample input (``ep.sample``) and its class labels (``ep.target``)."""
    from pathlib import Path

    from nndsl.train import data as data_mod
    from nndsl.train.paths import spec_path
    n = SymDim.symbol("N")
    stype = TensorType(ep.sample_type.dtype, (n,) + tuple(ep.sample_type.shape[1:]))
    sname, lname = ep.sample, ep.target
    spec = cfg.data
    if "path" in spec:
        p = spec_path(spec["path"], Path(base), span, "data", "E1215", folder=True)
        spec = {"path": str(p.resolve())}
        if p.suffix.lower() == ".npz" and p.is_file():
            sname, lname = _npz_names(p, ep, span)
    if "name" in spec and spec["name"] not in EPISODIC_SETS:
        raise _err(f"`{spec['name']}` is not a labelled set of classes episodes can be drawn "
                   f"from", span, "episodic sets: " + ", ".join(EPISODIC_SETS))
    d = data_mod.load(spec, {sname: stype}, {lname: TensorType("i64", (n,))}, seed, span,
                      base=Path(base))
    d.arrays = {ep.sample: d.arrays[sname], ep.target: d.arrays[lname]}
    d.standardize = (ep.sample,) if d.standardize else ()
    d.locate = None
    return d


def _npz_names(p, ep: Episodic, span) -> tuple[str, str]:
    """The arrays of a user's .npz that hold the samples and their labels: named like the
    target (or ``label``, ``labels``, ``y``) and like a model input (or ``x``, ``images``,
    ``samples``, or the one other array)."""
    import numpy as np
    try:
        with np.load(p, allow_pickle=False) as z:
            files = list(z.files) if hasattr(z, "files") else []
    except Exception:
        return ep.sample, ep.target     # the loader says what is wrong with the file
    label = next((n for n in (ep.target, "label", "labels", "y") if n in files), None)
    if label is None:
        raise _err(f"{p} has no array of class labels", span,
                   f"name it `{ep.target}` (or label, labels, y); its arrays: "
                   + (", ".join(files[:20]) or "none"), code="E1215")
    rest = [f for f in files if f != label]
    sample = next((n for n in [*ep.roles.values(), "x", "images", "samples"] if n in rest),
                  rest[0] if len(rest) == 1 else None)
    if sample is None:
        raise _err(f"{p}: which array holds the samples?", span,
                   f"name it `{ep.sample}` (or x, images, samples); its arrays: "
                   + ", ".join(files[:20]), code="E1215")
    return sample, label


class EpisodeSource:
    """Draws episodes from labelled samples: training episodes from ``gen`` (whose state the
    checkpoints keep), evaluation episodes from a generator seeded for each evaluation."""

    def __init__(self, ep: Episodic, data, seed: int, where: str):
        import torch
        self.ep = ep
        self.x = data.arrays[ep.sample]
        y = data.arrays[ep.target].reshape(-1).long()
        self.y = y
        classes = sorted(int(c) for c in torch.unique(y))
        self.by_class = {c: torch.nonzero(y == c).reshape(-1) for c in classes}
        self.train_classes, self.test_classes = split_classes(ep, classes)
        _check_sizes(ep, classes, self.train_classes, self.test_classes,
                     lambda cs: min(((c, len(self.by_class[c])) for c in cs if c in
                                     self.by_class), key=lambda t: t[1], default=None),
                     where)
        self.seed = int(seed)
        self.gen = torch.Generator().manual_seed(self.seed * 1_000_003 + 4)

    def describe(self) -> str:
        ep = self.ep
        return (f"episodes: {ep.ways}-way {ep.shots}-shot, {ep.queries} queries per class; "
                f"training classes {_ranges(self.train_classes)}, held-out classes "
                f"{_ranges(self.test_classes)}" + (f" ({ep.test_ways}-way)" if ep.test_ways
                                                    != ep.ways else ""))

    def train_samples(self):
        """Indices of the samples of the training classes (for standardization)."""
        import torch
        return torch.cat([self.by_class[c] for c in self.train_classes])

    def draw(self, split: str, gen):
        """One episode: the classes and the sample indices ``[W, shots + queries]``."""
        import torch
        ep = self.ep
        pool = self.train_classes if split == "train" else self.test_classes
        ways = ep.ways if split == "train" else ep.test_ways
        pick = torch.randperm(len(pool), generator=gen)[:ways]
        rows = []
        for k in pick.tolist():
            idx = self.by_class[pool[k]]
            rows.append(idx[torch.randperm(len(idx), generator=gen)[:ep.shots + ep.queries]])
        shuffle = torch.randperm(ways * ep.queries, generator=gen)
        return [pool[k] for k in pick.tolist()], torch.stack(rows), shuffle

    def batch(self, split: str, gen) -> dict:
        """The model's inputs and the target for one episode, laid out for the model."""
        import torch
        ep = self.ep
        _, idx, shuffle = self.draw(split, gen)
        w, s = idx.shape[0], ep.shots
        sup = idx[:, :s]                                            # [W, S]
        qry = idx[:, s:].reshape(-1)[shuffle]                       # [W * queries]
        qlab = torch.arange(w).repeat_interleave(ep.queries)[shuffle]
        x = self.x
        if ep.layout == "support_query":
            return {ep.roles["query"]: x[qry], ep.roles["support"]: x[sup],
                    ep.target: qlab}
        if ep.layout == "classifier":
            name = ep.roles["x"]
            return {name: x[qry], ep.target: qlab,
                    SUPPORT + name: x[sup.reshape(-1)],
                    SUPPORT + ep.target: torch.arange(w).repeat_interleave(s)}
        q = qry.numel()
        left = qry.repeat_interleave(w * s)                         # [Q * W * S]
        right = sup.reshape(-1).repeat(q)
        same = qlab.repeat_interleave(w * s) == torch.arange(w).repeat_interleave(s).repeat(q)
        tt = ep.target_type
        same = same.to(torch.float32 if tt.dtype in FLOAT_DTYPES else torch.long)
        return {ep.roles["left"]: x[left], ep.roles["right"]: x[right],
                ep.target: same.reshape(-1, 1) if tt.rank == 2 else same}

    def query_accuracy(self, batch: dict, env: dict) -> float:
        """The share of the episode's queries whose best-scoring class is their own."""
        import torch
        ep = self.ep
        scores = env[ep.scores].detach().float()
        if ep.layout == "pairs":
            same = batch[ep.target].reshape(-1)
            per_query = ep.queries * ep.shots
            w = math.isqrt(same.numel() // per_query)
            labels = same.reshape(-1, w, ep.shots)[:, :, 0].argmax(1)
            pred = scores.reshape(-1, w, ep.shots).mean(-1).argmax(1)
        else:
            labels = batch[ep.target]
            w = int(labels.max()) + 1
            pred = scores[:, :w].argmax(-1)
        return float((pred.cpu() == labels.cpu()).float().mean()) if labels.numel() else \
            float(torch.nan)
