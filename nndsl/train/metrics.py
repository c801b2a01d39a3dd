"""Metrics, computed by scikit-learn and torchmetrics (not by hand).

``metrics = [accuracy, f1(average="micro")]`` applies each metric to the loss's first
(prediction, target) pair; ``accuracy(logits, label)`` names the pair. How predictions become
labels follows the loss that relates the pair: cross-entropy / NLL scores → argmax over the
class dim; ``bce`` logits → sigmoid > 0.5; ``bce_probs`` probabilities → > 0.5.

- classification: accuracy, precision, recall, f1 (``average`` = macro for several classes,
  binary for two), roc_auc (one-vs-rest for several classes): scikit-learn.
- regression: mse, rmse, mae, r2: scikit-learn.
- text (token scores [N, T, V] against token ids [N, T]): bleu, rouge (ROUGE-L F1): torchmetrics.
- ranking (scores [N, K] against relevance [N, K], one query per row): ndcg (scikit-learn),
  map and mrr (torchmetrics retrieval metrics, averaged over queries).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nndsl.errors import TrainError
from nndsl.ir.types import FLOAT_DTYPES
from nndsl.syntax import ast
from nndsl.train.choices import NotConstant, literal, suggest
from nndsl.train.losses import BINARY_LOGITS, BINARY_PROBS, MULTICLASS, REGRESSION

CLASSIFY = (MULTICLASS, BINARY_LOGITS, BINARY_PROBS)
AVERAGES = ("macro", "micro", "weighted", "binary")
TEXT, RANKING = "text", "ranking"


@dataclass(frozen=True)
class MetricDef:
    name: str
    tasks: tuple
    mode: str            # "max": higher is better; "min"
    kwargs: dict
    doc: str


METRICS: dict[str, MetricDef] = {m.name: m for m in [
    MetricDef("accuracy", CLASSIFY, "max", {}, "fraction of correct labels"),
    MetricDef("precision", CLASSIFY, "max", {"average": None}, "precision"),
    MetricDef("recall", CLASSIFY, "max", {"average": None}, "recall"),
    MetricDef("f1", CLASSIFY, "max", {"average": None}, "F1 score"),
    MetricDef("roc_auc", CLASSIFY, "max", {}, "area under the ROC curve"),
    MetricDef("mse", (REGRESSION, BINARY_PROBS), "min", {}, "mean squared error"),
    MetricDef("rmse", (REGRESSION, BINARY_PROBS), "min", {}, "root mean squared error"),
    MetricDef("mae", (REGRESSION, BINARY_PROBS), "min", {}, "mean absolute error"),
    MetricDef("r2", (REGRESSION,), "max", {}, "coefficient of determination"),
    MetricDef("bleu", (TEXT,), "max", {"n_gram": 4}, "BLEU of argmax token sequences"),
    MetricDef("rouge", (TEXT,), "max", {}, "ROUGE-L F1 of argmax token sequences"),
    MetricDef("ndcg", (RANKING,), "max", {"k": None}, "normalized discounted cumulative gain"),
    MetricDef("map", (RANKING,), "max", {}, "mean average precision"),
    MetricDef("mrr", (RANKING,), "max", {}, "mean reciprocal rank"),
]}


@dataclass
class MetricSpec:
    key: str            # the name in metrics.jsonl, after the train_/val_/test_ prefix
    name: str
    pred: str
    target: str
    task: str
    kwargs: dict

    @property
    def mode(self) -> str:
        return METRICS[self.name].mode

    def to_json(self) -> dict:
        return {"key": self.key, "name": self.name, "pred": self.pred, "target": self.target,
                "task": self.task, **({"kwargs": self.kwargs} if self.kwargs else {})}


def _task_from_types(pred, target) -> str | None:
    if pred.dtype not in FLOAT_DTYPES:
        return None
    if target.dtype in FLOAT_DTYPES:
        return REGRESSION if pred.shape == target.shape else None
    if pred.rank == target.rank + 1:
        return TEXT if pred.rank == 3 else MULTICLASS
    return None


def resolve_metrics(value, names: dict, loss_info, where: str = "metrics") -> list[MetricSpec]:
    """Read ``metrics = [...]`` against the model's names and the loss's pairs."""
    items = value.items if isinstance(value, (ast.ListLit, ast.TupleLit)) else (value,)
    primary = loss_info.primary() if loss_info is not None else None
    pair_tasks = {(t.args[0], t.args[1]): t.task for t in (loss_info.terms if loss_info else ())
                  if len(t.args) == 2 and t.task is not None}
    out: list[MetricSpec] = []
    for item in items:
        if isinstance(item, ast.Name):
            mname, args, span = item.id, (), item.span
        elif isinstance(item, ast.Call) and isinstance(item.func, ast.Name):
            mname, args, span = item.func.id, item.args, item.func.span
        else:
            raise TrainError("a metric is a name like `accuracy` or a call like "
                             "`f1(logits, label, average=\"micro\")`", span=item.span,
                             code="E1210")
        mdef = METRICS.get(mname)
        if mdef is None:
            raise TrainError(f"unknown metric `{mname}`", span=span, code="E1205",
                             hint=suggest(mname, METRICS) + "metrics: " + ", ".join(METRICS))
        pos = [a for a in args if a.name is None]
        kwargs = {}
        for a in args:
            if a.name is None:
                continue
            if a.name not in mdef.kwargs:
                raise TrainError(f"{mname} has no argument `{a.name}`", span=a.span,
                                 code="E1211", hint=suggest(a.name, mdef.kwargs) + (
                                     "its arguments: " + ", ".join(mdef.kwargs) if mdef.kwargs
                                     else f"{mname} takes no keyword arguments"))
            try:
                kwargs[a.name] = literal(a.value)
            except NotConstant:
                raise TrainError(f"`{a.name}` of {mname} must be a constant", span=a.span,
                                 code="E1211") from None
            v = kwargs[a.name]
            ok = {"average": v in AVERAGES, "n_gram": isinstance(v, int) and not
                  isinstance(v, bool) and 1 <= v <= 8,
                  "k": v is None or isinstance(v, int) and not isinstance(v, bool) and v >= 1
                  }[a.name]
            if not ok:
                want = {"average": "one of " + ", ".join(f'"{x}"' for x in AVERAGES),
                        "n_gram": "an integer from 1 to 8", "k": "a positive integer"}[a.name]
                raise TrainError(f"`{a.name}` of {mname} must be {want}", span=a.value.span,
                                 code="E1211")
        if pos:
            if len(pos) != 2 or not all(isinstance(a.value, ast.Name) for a in pos):
                raise TrainError(f"{mname} takes a prediction and a target, by name",
                                 span=item.span, code="E1211",
                                 hint=f"for example `{mname}(logits, label)`")
            pred, target = pos[0].value, pos[1].value
            for n in (pred, target):
                if n.id not in names:
                    raise TrainError(f"unknown name `{n.id}` in metric {mname}", span=n.span,
                                     code="E1208", hint=suggest(n.id, names) +
                                     "names: " + ", ".join(names))
            pt, tt = names[pred.id][1], names[target.id][1]
            task = pair_tasks.get((pred.id, target.id)) or _task_from_types(pt, tt)
            pair = (pred.id, target.id)
        else:
            if primary is None:
                raise TrainError(f"metric `{mname}` has no (prediction, target) pair: the loss "
                                 f"compares no output with a target", span=span, code="E1219",
                                 hint=f"name the pair: `{mname}(output, target)`")
            pair = primary.args
            pt, tt = names[pair[0]][1], names[pair[1]][1]
            task = primary.task
            if task == MULTICLASS and pt.rank == 3 and tt.rank == 2 and mdef.tasks == (TEXT,):
                task = TEXT
        if mdef.tasks == (RANKING,) and pt.dtype in FLOAT_DTYPES and pt.rank == 2 and \
                tuple(pt.shape) == tuple(tt.shape):
            task = RANKING
        if mdef.tasks == (TEXT,) and task == MULTICLASS and pt.rank == 3:
            task = TEXT
        if task not in mdef.tasks:
            what = {MULTICLASS: "a classification", BINARY_LOGITS: "a binary classification",
                    BINARY_PROBS: "a binary classification", REGRESSION: "a regression",
                    None: "an unknown"}.get(task, f"a {task}")
            raise TrainError(f"metric `{mname}` does not fit {what} task: `{pair[0]}` is {pt}, "
                             f"`{pair[1]}` is {tt}", span=span, code="E1219",
                             hint=f"{mname} is for {' or '.join(sorted(set(mdef.tasks)))} tasks")
        key = mname
        if any(m.key == key for m in out):
            key = f"{mname}_{pair[0]}"
        out.append(MetricSpec(key, mname, pair[0], pair[1], task, kwargs))
    return out


# ----------------------------------------------------------------- computing

def _class_scores(pred, target):
    """Scores as [K, C] and integer labels as [K], for a class dim at 1 or last."""
    import torch
    if target.is_floating_point() and target.shape == pred.shape:   # probabilities
        target = target.argmax(1)
    if pred.dim() > 2:
        if tuple(target.shape) == (pred.shape[0],) + tuple(pred.shape[2:]):
            pred = pred.movedim(1, -1)
        pred = pred.reshape(-1, pred.shape[-1])
    return pred, target.reshape(-1).to(torch.long)


def _labels(spec: MetricSpec, pred, target):
    """(true labels, predicted labels, scores for ROC AUC) as NumPy arrays."""
    import torch
    if spec.task == MULTICLASS:
        scores, y = _class_scores(pred, target)
        return y.numpy(), scores.argmax(1).numpy(), torch.softmax(scores.double(), 1).numpy()
    prob = torch.sigmoid(pred.double()) if spec.task == BINARY_LOGITS else pred.double()
    prob = prob.reshape(-1)
    y = (target.reshape(-1).double() > 0.5).long()
    return y.numpy(), (prob > 0.5).long().numpy(), prob.numpy()


def compute(spec: MetricSpec, pred, target) -> float:
    """The metric on whole-split tensors (CPU)."""
    import numpy as np
    import sklearn.metrics as skm
    pred, target = pred.detach().float().cpu(), target.detach().cpu()
    name, kw = spec.name, spec.kwargs
    if name in ("accuracy", "precision", "recall", "f1", "roc_auc"):
        y, yhat, scores = _labels(spec, pred, target)
        if name == "accuracy":
            return float(skm.accuracy_score(y, yhat))
        if name == "roc_auc":
            try:
                if spec.task == MULTICLASS:
                    return float(skm.roc_auc_score(y, scores, multi_class="ovr",
                                                   labels=list(range(scores.shape[1]))))
                return float(skm.roc_auc_score(y, scores))
            except ValueError:    # a class missing from this split: undefined
                return math.nan
        average = kw.get("average") or ("macro" if spec.task == MULTICLASS else "binary")
        fn = {"precision": skm.precision_score, "recall": skm.recall_score,
              "f1": skm.f1_score}[name]
        return float(fn(y, yhat, average=average, zero_division=0))
    if name in ("mse", "rmse", "mae", "r2"):
        p = pred.double().reshape(pred.shape[0], -1).numpy()
        t = target.double().reshape(target.shape[0], -1).numpy()
        if name == "mse":
            return float(skm.mean_squared_error(t, p))
        if name == "rmse":
            return float(skm.root_mean_squared_error(t, p))
        if name == "mae":
            return float(skm.mean_absolute_error(t, p))
        return float(skm.r2_score(t, p)) if len(t) > 1 else math.nan
    if name in ("bleu", "rouge"):
        from torchmetrics.functional.text import bleu_score, rouge_score
        ids = pred.argmax(-1) if tuple(target.shape) == tuple(pred.shape[:-1]) \
            else pred.argmax(1)
        hyp = [" ".join(str(int(i)) for i in row) for row in ids]
        ref = [" ".join(str(int(i)) for i in row) for row in target.long()]
        if name == "bleu":
            return float(bleu_score(hyp, [[r] for r in ref], n_gram=int(kw.get("n_gram", 4))))
        return float(rouge_score(hyp, ref, rouge_keys="rougeL")["rougeL_fmeasure"])
    if name == "ndcg":
        k = kw.get("k")
        return float(skm.ndcg_score(target.double().numpy(), pred.double().numpy(),
                                    k=None if k is None else int(k)))
    if name in ("map", "mrr"):
        from torchmetrics.functional.retrieval import (retrieval_average_precision,
                                                       retrieval_reciprocal_rank)
        fn = retrieval_average_precision if name == "map" else retrieval_reciprocal_rank
        vals = [float(fn(p, t > 0)) for p, t in zip(pred, target) if bool((t > 0).any())]
        return float(np.mean(vals)) if vals else math.nan
    raise KeyError(name)
