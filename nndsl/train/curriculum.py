"""Curriculum learning: training samples ordered from easy to hard by a score, with a pacing
schedule saying how many of the easiest are used in each epoch.

``curriculum = NAME(...)`` in a train section names the score:

- ``column("difficulty")``: a column of the user's data (a ``.csv`` column or an ``.npz``
  array of one number per sample; it is not fed to the model);
- ``loss``: the model's own loss on each sample, recomputed at the start of every epoch with
  the current weights (self-paced learning);
- ``teacher("teacher.nn", weights="teacher.safetensors")``: the loss of a trained teacher (a
  spec under the spec's folder, with the student's inputs and the outputs the loss names),
  computed once before training.

A low score is easy. Every choice takes the pacing: ``pacing`` (``linear``, ``geometric`` or
``root``), ``start`` (the fraction of the training split the first epoch uses) and ``epochs``
(after how many epochs every sample is used; 0: half the run's epochs), and ``shuffle``
(true: the epoch's samples in a seeded random order; false: easiest first). At epoch e of E,
the fraction is ``start + (1 - start) e/E`` (linear), ``start^(1 - e/E)`` (geometric) or
``sqrt(start² + (1 - start²) e/E)`` (root), and 1 from epoch E on.

Compile-time checks (:func:`check`) need no PyTorch. A per-sample loss is the section's loss
on one sample at a time, from one forward pass of each batch in evaluation mode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from nndsl.errors import TrainError
from nndsl.train.choices import REQUIRED, Choice, _show, pick, suggest

PACINGS = ("linear", "geometric", "root")
_PACING = {"pacing": "linear", "start": 0.25, "epochs": 0, "shuffle": True}

CURRICULA: dict[str, Choice] = {c.name: c for c in [
    Choice("column", {"name": REQUIRED, **_PACING}, "a column of the data (one number per "
           "sample; low is easy)", positional=("name",)),
    Choice("loss", dict(_PACING), "the model's own loss on each sample, every epoch"),
    Choice("teacher", {"teacher": REQUIRED, "weights": "", "model": "", **_PACING},
           "the loss of a teacher spec on each sample", positional=("teacher",)),
]}


def _err(msg, span, hint=None):
    return TrainError(msg, span=span, code="E1234", hint=hint)


@dataclass
class Curriculum:
    score: str                   # column, loss or teacher
    pacing: str
    start: float
    epochs: int
    shuffle: bool
    column: str = ""
    teacher: str = ""
    weights: str = ""
    model: str = ""
    span: object = field(default=None, compare=False, repr=False)
    teacher_compiled: object = field(default=None, compare=False, repr=False)

    def fraction(self, epoch: int) -> float:
        """The share of the training split epoch ``epoch`` (from 0) uses."""
        t = min(1.0, epoch / self.epochs) if self.epochs else 1.0
        if self.pacing == "geometric":
            return self.start ** (1.0 - t)
        if self.pacing == "root":
            return math.sqrt(self.start ** 2 + (1 - self.start ** 2) * t)
        return self.start + (1.0 - self.start) * t

    def count(self, epoch: int, n: int) -> int:
        return n if self.fraction(epoch) >= 1 else max(1, min(n, math.ceil(
            self.fraction(epoch) * n - 1e-9)))

    def to_json(self) -> dict:
        out = {"score": self.score, "pacing": self.pacing, "start": self.start,
               "epochs": self.epochs, "shuffle": self.shuffle}
        if self.score == "column":
            out["column"] = self.column
        if self.score == "teacher":
            out.update(teacher=self.teacher, weights=self.weights, model=self.model)
        return out

    def describe(self) -> str:
        what = {"column": f"the column `{self.column}`", "loss": "the model's own loss",
                "teacher": f"the loss of the teacher {self.teacher}"}[self.score]
        return (f"curriculum: easy samples first by {what}; {self.pacing} pacing from "
                f"{self.start:.0%} of the training samples to all of them by epoch "
                f"{self.epochs + 1}")


def check(e, cfg, compiled, entries: dict, base: str) -> Curriculum:
    """The ``curriculum`` entry, checked against the rest of the section."""
    p = pick(e, CURRICULA, "curriculum score", "E1234")
    a, span = p.args, e.span
    if a["pacing"] not in PACINGS:
        raise _err(f"unknown pacing `{a['pacing']}`", span,
                   suggest(a["pacing"], PACINGS) + "pacings: " + ", ".join(PACINGS))
    if not 0 < a["start"] <= 1:
        raise _err(f"`start` of the curriculum is the share of the training samples the first "
                   f"epoch uses, a number > 0 and <= 1, got {_show(a['start'])}", span,
                   "for example start=0.25")
    if not 0 <= a["epochs"] < 2**31:
        raise _err(f"`epochs` of the curriculum is the epoch by which every sample is used, "
                   f"an integer >= 0 (0: half the run's epochs), got {_show(a['epochs'])}",
                   span)
    if "episodes" in entries:
        raise _err("a curriculum orders samples, and `episodes` draws tasks of classes: they "
                   "do not go together", span, "remove one of them")
    recipe = cfg.recipe.name if cfg.recipe is not None else "supervised"
    uses_loss = p.name in ("loss", "teacher")
    if uses_loss and cfg.loss is None:
        raise _err(f"a curriculum by {p.name} scores each sample with the section's loss, and "
                   f"the {recipe} recipe has none", span, "order the samples by a column of "
                   "the data: column(\"NAME\")")
    if uses_loss and any(t.fn in ("contractive", "info_nce") for t in cfg.loss_info.terms):
        raise _err(f"a curriculum by {p.name} needs a loss of each sample, and the loss's "
                   f"contractive or info_nce term compares samples or needs gradients", span,
                   "order the samples by a column of the data: column(\"NAME\")")
    cur = Curriculum(p.name, a["pacing"], float(a["start"]),
                     int(a["epochs"]) or max(1, cfg.epochs // 2), bool(a["shuffle"]), span=span)
    if p.name == "column":
        name = a["name"]
        cur.column = name
        taken = {**compiled.input_types, **compiled.output_types, **cfg.targets}
        if not name.isidentifier():
            raise _err(f"the column name {_show(name)} is not a name", span)
        if name in taken:
            raise _err(f"the score column `{name}` has the name of a model input, output or "
                       f"target", span, "give the score its own column")
        if cfg.data is not None and "name" in cfg.data:
            raise _err(f"unknown score `{name}`: the built-in set `{cfg.data['name']}` has no "
                       f"columns", span, "order by `loss` or `teacher(...)`, or train on your "
                       "own data (.csv or .npz) with a score column")
    elif p.name == "teacher":
        cur.teacher, cur.weights, cur.model = a["teacher"], a["weights"], a["model"]
        cur.teacher_compiled = _teacher(cur, compiled, cfg, Path(base), span)
    return cur


def _teacher(cur: Curriculum, compiled, cfg, base: Path, span):
    import nndsl
    from nndsl.errors import NndslError
    from nndsl.train.paths import spec_path
    path = spec_path(cur.teacher, base, span, "teacher spec", "E1225", suffixes=(".nn",),
                     under_base=True)
    try:
        t = nndsl.compile(path, model=cur.model or None, opt="O1")
    except NndslError as e:
        raise _err(f"the teacher {cur.teacher}: {e.message}", span, e.hint) from None
    fed = cfg.recipe_info["data_inputs"]
    for n, tt in fed.items():
        if n not in t.input_types or str(t.input_types[n]) != str(tt):
            raise _err(f"the teacher `{t.name}` must take the student's input `{n}`: {tt}",
                       span, "its inputs: " + ", ".join(f"{k}: {v}"
                                                        for k, v in t.input_types.items()))
    for term in cfg.loss_info.terms:
        for n in term.args:
            if n in compiled.output_types and (n not in t.output_types or str(
                    t.output_types[n]) != str(compiled.output_types[n])):
                raise _err(f"the loss reads the output `{n}`: {compiled.output_types[n]}, and "
                           f"the teacher `{t.name}` has no output of that name and type", span,
                           "name the outputs the same in both specs")
    return t


# ------------------------------------------------------------------ running

def extra_targets(cfg) -> dict:
    """What the data loader reads besides the section's targets: the score column."""
    cur = cfg.curriculum
    if cur is None or cur.score != "column":
        return {}
    if cfg.data is not None and "name" in cfg.data:
        raise _err(f"unknown score `{cur.column}`: the built-in set `{cfg.data['name']}` has "
                   f"no columns", cur.span, "order by `loss` or `teacher(...)`")
    from nndsl.ir.types import SymDim, TensorType
    return {cur.column: TensorType("f32", (SymDim.symbol("N"),))}


class CurriculumRun:
    """The loop's side of a curriculum: each epoch's samples, easy to hard."""

    def __init__(self, run, column_scores=None):
        self.run, self.cur = run, run.cfg.curriculum
        self.column = column_scores
        self.teacher = None
        self.saved = None          # (epoch, order) restored from a mid-epoch checkpoint
        self.current = None        # (epoch, order) of the epoch being trained
        self.fixed = None          # training indices sorted by a score that does not change

    def prepare(self) -> None:
        import torch
        run, cur = self.run, self.cur
        train = run.splits.train
        if cur.score == "column":
            self.fixed = self._sorted(train, self.column.double()[train])
        elif cur.score == "teacher":
            tc = cur.teacher_compiled
            model = tc.to_torch(seed=run.cfg.seed + 29).to(run.device).eval()
            if cur.weights:
                from nndsl.errors import NndslError
                from nndsl.train.paths import spec_path
                path = spec_path(cur.weights, run.cfg.base, cur.span, "the teacher's weights",
                                 "E1225", suffixes=(".safetensors",))
                try:
                    model.load_weights(path)
                except NndslError as e:
                    raise TrainError(f"the curriculum teacher's weights: {e.message}",
                                     code="E1225", span=cur.span, hint=e.hint) from None
            else:
                run.note(f"curriculum: the teacher `{tc.name}` has no `weights`: it scores "
                         f"with its random initial weights")
            with torch.no_grad():
                scores = self.losses(model, list(tc.output_names), train)
            self.fixed = self._sorted(train, scores)
        run.note(cur.describe())

    def _sorted(self, idx, scores):
        import torch
        order = torch.sort(scores, stable=True).indices
        return idx[order]

    def losses(self, model, output_names: list, idx):
        """The section's loss of each sample of ``idx`` (float64 [len(idx)])."""
        import torch

        from nndsl.train import data as data_mod
        from nndsl.train.losses import evaluate_loss
        run = self.run
        was = model.training
        model.eval()
        run.eval_gen.manual_seed(run.cfg.seed + 3)
        out = []
        try:
            with torch.no_grad():
                for _, batch in data_mod.batches(run.data, idx, 256):
                    batch = run._to_device(batch)
                    bs = next(iter(batch.values())).shape[0]
                    xs = run._inputs(batch, train=False)
                    outs = model(**xs)
                    outs = outs if isinstance(outs, tuple) else (outs,)
                    env = {**batch, **xs, **dict(zip(output_names, outs))}
                    for i in range(bs):
                        one = {k: v[i:i + 1] if v.dim() and v.shape[0] == bs else v
                               for k, v in env.items()}
                        loss, _ = evaluate_loss(run.cfg.loss, one)
                        out.append(float(loss))
        finally:
            model.train(was)
        return torch.tensor(out, dtype=torch.float64)

    def order(self, epoch: int):
        """This process's samples of ``epoch``: the easiest of the training split, shuffled
        by (seed, epoch) or easiest first, and dealt out to the processes."""
        import torch

        from nndsl.train import data as data_mod
        run, cur = self.run, self.cur
        if self.saved is not None and self.saved[0] == epoch:
            order = self.saved[1]
        else:
            train = run.splits.train
            k = cur.count(epoch, len(train))
            if k == len(train) and cur.shuffle:
                ranked = train
            elif self.fixed is not None:
                ranked = self.fixed
            else:
                ranked = self._sorted(train, self.losses(run.model, list(run.output_names),
                                                         train))
            order = ranked[:k]
            if cur.shuffle:
                order = data_mod.epoch_order(order, run.cfg.seed, epoch)
        self.saved = None
        self.current = (epoch, order)
        world = run.dist.world
        if world > 1:
            extra = (-len(order)) % world
            if extra:
                order = torch.cat([order, order[:extra]])
            order = order[run.dist.rank::world]
        return order

    def state_dict(self) -> dict | None:
        if self.current is None:
            return None
        return {"epoch": int(self.current[0]), "order": self.current[1].clone()}

    def load_state_dict(self, state: dict | None) -> None:
        if state:
            self.saved = (int(state["epoch"]), state["order"].long())
