"""Loss functions and the loss expression of a train section.

``loss = 0.5 * mse(recon, image) + cross_entropy(logits, label, smoothing=0.1)`` is kept as the
parsed expression and interpreted here, never evaluated as Python. :func:`check_loss` checks it
against the model's types at compile time (each function has a type rule that names both shapes
when they do not fit); :func:`evaluate_loss` computes it on tensors during training.

The expression language: numbers, ``+ - * /``, unary ``-``, parentheses, and calls of the
functions in :data:`LOSSES`, whose tensor arguments are names of model outputs, model inputs or
declared targets and whose keyword arguments are constants.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Callable

from nndsl.errors import Span, TrainError
from nndsl.ir.types import FLOAT_DTYPES, INT_DTYPES, TensorType
from nndsl.syntax import ast

# the kind of task a (prediction, target) pair is, by the loss that relates them
MULTICLASS, BINARY_LOGITS, BINARY_PROBS, REGRESSION = "multiclass", "binary", "binary_probs", \
    "regression"


@dataclass(frozen=True)
class LossFn:
    name: str
    arity: int                     # tensor arguments
    kwargs: dict                   # keyword -> default
    rule: Callable                 # (fn, [(name, type)], kwargs) -> task kind or None; raises
    doc: str
    task: str | None = None


class _Mismatch(Exception):
    """A type rule's complaint; the checker turns it into a located error."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message, self.hint = message, hint


def _same_shape(a: TensorType, b: TensorType) -> bool:
    return len(a.shape) == len(b.shape) and all(x == y for x, y in zip(a.shape, b.shape))


def _is_float(t: TensorType) -> bool:
    return t.dtype in FLOAT_DTYPES


def _is_int(t: TensorType) -> bool:
    return t.dtype in INT_DTYPES


def _fmt(d):
    return str(d)


def _shape_str(shape) -> str:
    return "[" + ", ".join(_fmt(d) for d in shape) + "]"


def _elementwise(fn: LossFn, args, kw):
    (an, a), (bn, b) = args
    if not _is_float(a):
        raise _Mismatch(f"{fn.name} expects a floating-point prediction, but `{an}` is {a}")
    if b.dtype == "bool":
        raise _Mismatch(f"{fn.name} expects a numeric target, but `{bn}` is {b}")
    if not _same_shape(a, b):
        dtype = b.dtype if fn.task == REGRESSION or _is_float(b) else "f32"
        raise _Mismatch(f"{fn.name}({an}, {bn}) needs equal shapes, but `{an}` is {a} and `{bn}` "
                        f"is {b}", hint=f"compare `{an}` with a target of its shape, e.g. "
                        f"`target {bn}: {dtype}{_shape_str(a.shape)}`"
                        if len(a.shape) != len(b.shape) else None)
    return fn.task


def _float_pair(fn: LossFn, args, kw):
    (an, a), (bn, b) = args
    for n, t in args:
        if not _is_float(t):
            raise _Mismatch(f"{fn.name} expects floating-point tensors, but `{n}` is {t}")
    if not _same_shape(a, b):
        raise _Mismatch(f"{fn.name}({an}, {bn}) needs equal shapes, but `{an}` is {a} and `{bn}` "
                        f"is {b}")
    return fn.task


def _classes(fn: LossFn, args, kw):
    (an, a), (bn, b) = args
    if not _is_float(a) or a.rank < 2:
        raise _Mismatch(f"{fn.name} expects scores of shape [N, C, ...] (one per class), but "
                        f"`{an}` is {a}")
    index_shape = (a.shape[0],) + a.shape[2:]
    want = f"class indices i64{_shape_str(index_shape)}"
    if fn.name == "cross_entropy":
        want += f" or probabilities f32{_shape_str(a.shape)}"
    if _is_int(b) and _same_shape(TensorType(b.dtype, index_shape), b):
        return fn.task
    if _is_int(b) and a.rank >= 3 and _same_shape(TensorType(b.dtype, a.shape[:-1]), b):
        return fn.task     # classes last, as a language model's [N, T, V] scores
    if fn.name == "cross_entropy" and _is_float(b) and _same_shape(a, b):
        return fn.task
    hint = None
    if _is_int(b) and len(b.shape) == len(a.shape) and b.shape[-1] == 1:
        hint = f"declare `target {bn}: {b.dtype}{_shape_str(index_shape)}`"
    raise _Mismatch(f"{fn.name}({an}, {bn}): for `{an}`: {a} the target must be {want}, but "
                    f"`{bn}` is {b}", hint=hint)


def _pairwise(fn: LossFn, args, kw):
    (an, a), (bn, b) = args
    for n, t in args:
        if not _is_float(t) or t.rank != 2:
            raise _Mismatch(f"{fn.name} expects embeddings of shape [N, D], but `{n}` is {t}")
    if not _same_shape(a, b):
        raise _Mismatch(f"{fn.name}({an}, {bn}) pairs row i of `{an}` with row i of `{bn}`: "
                        f"they need equal shapes, but `{an}` is {a} and `{bn}` is {b}")
    return None


def _any_float(fn: LossFn, args, kw):
    (an, a), = args
    if not _is_float(a):
        raise _Mismatch(f"{fn.name} expects a floating-point tensor, but `{an}` is {a}")
    return None


def _jacobian_pair(fn: LossFn, args):
    (an, a), (bn, b) = args
    for n, t in args:
        if not _is_float(t):
            raise _Mismatch(f"{fn.name} expects floating-point tensors, but `{n}` is {t}")
    if a.rank < 1 or b.rank < 1 or a.shape[0] != b.shape[0]:
        raise _Mismatch(f"{fn.name}({an}, {bn}) needs per-sample tensors with the same batch "
                        f"dim, but `{an}` is {a} and `{bn}` is {b}")
    return None


LOSSES: dict[str, LossFn] = {f.name: f for f in [
    LossFn("mse", 2, {}, _elementwise, "mean squared error", REGRESSION),
    LossFn("mae", 2, {}, _elementwise, "mean absolute error (L1)", REGRESSION),
    LossFn("l1", 2, {}, _elementwise, "mean absolute error, as `mae`", REGRESSION),
    LossFn("huber", 2, {"delta": 1.0}, _elementwise, "Huber loss", REGRESSION),
    LossFn("smooth_l1", 2, {"beta": 1.0}, _elementwise, "smooth L1 loss", REGRESSION),
    LossFn("cross_entropy", 2, {"smoothing": 0.0}, _classes,
           "cross-entropy of logits [N, C, ...] against class indices or probabilities, with "
           "label smoothing", MULTICLASS),
    LossFn("nll", 2, {}, _classes, "negative log-likelihood of log-probabilities", MULTICLASS),
    LossFn("bce", 2, {"pos_weight": None}, _elementwise,
           "binary cross-entropy with logits", BINARY_LOGITS),
    LossFn("bce_probs", 2, {}, _elementwise, "binary cross-entropy of probabilities in (0, 1)",
           BINARY_PROBS),
    LossFn("kl_div", 2, {"log_target": False}, _float_pair,
           "KL(target || input) for log-probabilities `input`, summed over classes and averaged "
           "over the batch"),
    LossFn("info_nce", 2, {"temperature": 0.1, "symmetric": False}, _pairwise,
           "contrastive InfoNCE: row i of each argument is a positive pair, the other rows of "
           "the batch are negatives (cosine similarity / temperature)"),
    LossFn("kl_normal", 2, {}, _float_pair,
           "KL(N(mu, exp(logvar)) || N(0, 1)) of a VAE's posterior, summed over latent dims and "
           "averaged over the batch"),
    LossFn("contractive", 2, {}, lambda fn, args, kw: _jacobian_pair(fn, args),
           "the squared Frobenius norm of the Jacobian d code / d input, averaged over the "
           "batch: the contractive autoencoder's penalty (Rifai et al. 2011)"),
    LossFn("mean", 1, {}, _any_float, "the mean of a tensor (a loss the model computes itself)"),
    LossFn("mean_abs", 1, {}, _any_float,
           "the mean absolute value of a tensor: an L1 activity penalty (sparse codes)"),
]}


@dataclass
class LossTerm:
    """One call of the loss expression, as checked."""

    fn: str
    args: tuple          # tensor names
    kwargs: dict
    task: str | None
    span: Span = field(compare=False, repr=False, default=None)


@dataclass
class LossInfo:
    terms: list          # LossTerm, in written order

    def primary(self):
        """The first (prediction, target) pair of a term that names a task, for metrics."""
        for t in self.terms:
            if t.task is not None and len(t.args) == 2:
                return t
        return None


def _kwarg_value(e, fn: LossFn, name: str):
    if isinstance(e, ast.Num):
        return e.value
    if isinstance(e, ast.UnaryOp) and e.op == "-" and isinstance(e.operand, ast.Num):
        return -e.operand.value
    if isinstance(e, ast.Const):
        return e.value
    if isinstance(e, ast.Str):
        return e.value
    raise TrainError(f"`{name}` of {fn.name} must be a constant", span=e.span, code="E1211")


def check_loss(expr, names: dict[str, tuple[str, TensorType]]) -> LossInfo:
    """Check a loss expression against ``names`` (name -> (role, type)); return its terms."""
    terms: list[LossTerm] = []
    _check(expr, names, terms)
    if not terms:
        raise TrainError("the loss has no loss function in it", span=expr.span, code="E1203",
                         hint="for example `loss = cross_entropy(logits, label)`")
    return LossInfo(terms)


def _check(e, names, terms) -> None:
    if isinstance(e, ast.Num):
        return
    if isinstance(e, ast.UnaryOp) and e.op == "-":
        _check(e.operand, names, terms)
        return
    if isinstance(e, ast.BinOp) and e.op in ("+", "-", "*", "/"):
        _check(e.left, names, terms)
        _check(e.right, names, terms)
        return
    if isinstance(e, ast.Call) and isinstance(e.func, ast.Name):
        terms.append(_check_call(e, names))
        return
    if isinstance(e, ast.Name):
        if e.id in names:
            raise TrainError(f"`{e.id}` is a tensor; a loss is built from loss functions of "
                             f"tensors", span=e.span, code="E1208",
                             hint=f"for example `mse({e.id}, target)` or `mean({e.id})`")
        _unknown_name(e.id, e.span, names)
    raise TrainError("a loss is numbers, `+ - * /` and loss functions", span=e.span,
                     code="E1208", hint="for example `0.5 * mse(a, t1) + bce(b, t2)`")


def _unknown_name(name: str, span: Span, names) -> None:
    outputs = [n for n, (r, _) in names.items() if r == "output"]
    targets = [n for n, (r, _) in names.items() if r == "target"]
    inputs = [n for n, (r, _) in names.items() if r == "input"]
    close = difflib.get_close_matches(name, list(names), n=1, cutoff=0.6)
    parts = [f"outputs: {', '.join(outputs)}"]
    parts.append(f"targets: {', '.join(targets)}" if targets else "no targets declared")
    if inputs:
        parts.append(f"inputs: {', '.join(inputs)}")
    hint = (f"did you mean `{close[0]}`? " if close else "") + "; ".join(parts)
    if not close and not targets:
        hint += f" (declare one with `target {name}: i64[N]`)"
    raise TrainError(f"unknown name `{name}` in the loss", span=span, code="E1208", hint=hint)


def _check_call(e: ast.Call, names) -> LossTerm:
    fname = e.func.id
    fn = LOSSES.get(fname)
    if fn is None:
        close = difflib.get_close_matches(fname, list(LOSSES), n=1, cutoff=0.6)
        raise TrainError(f"unknown loss function `{fname}`", span=e.func.span, code="E1203",
                         hint=(f"did you mean `{close[0]}`? " if close else "")
                         + "loss functions: " + ", ".join(LOSSES))
    pos = [a for a in e.args if a.name is None]
    kws = [a for a in e.args if a.name is not None]
    if len(pos) != fn.arity:
        raise TrainError(f"{fname} takes {fn.arity} tensor argument{'s' * (fn.arity > 1)}, "
                         f"got {len(pos)}", span=e.span, code="E1211",
                         hint=f"{fname}({', '.join(['prediction', 'target'][:fn.arity])}"
                         + "".join(f", {k}={_show(v)}" for k, v in fn.kwargs.items()) + ")"
                         if fn.arity == 2 else f"{fname}(tensor)")
    args = []
    for a in pos:
        if not isinstance(a.value, ast.Name):
            raise TrainError(f"the arguments of {fname} are names of model outputs, inputs or "
                             f"targets", span=a.span, code="E1208")
        if a.value.id not in names:
            _unknown_name(a.value.id, a.value.span, names)
        args.append((a.value.id, names[a.value.id][1]))
    kwargs = {}
    for a in kws:
        if a.name not in fn.kwargs:
            close = difflib.get_close_matches(a.name, list(fn.kwargs), n=1, cutoff=0.6)
            raise TrainError(f"{fname} has no argument `{a.name}`", span=a.span, code="E1211",
                             hint=(f"did you mean `{close[0]}`? " if close else "") + (
                                 "its arguments: " + ", ".join(fn.kwargs) if fn.kwargs
                                 else f"{fname} takes no keyword arguments"))
        if a.name in kwargs:
            raise TrainError(f"`{a.name}` given twice", span=a.span, code="E1211")
        kwargs[a.name] = _kwarg_value(a.value, fn, a.name)
    _check_kwargs(fn, kwargs, e)
    try:
        task = fn.rule(fn, args, kwargs)
    except _Mismatch as m:
        roles = {n: names[n][0] for n, _ in args}
        notes = [(f"`{n}` is a model {roles[n]}" if roles[n] != "target"
                  else f"`{n}` is a declared target", None) for n, _ in args]
        raise TrainError(m.message, span=e.span, code="E1207", hint=m.hint,
                         notes=notes) from None
    return LossTerm(fname, tuple(n for n, _ in args), kwargs, task, e.span)


def _check_kwargs(fn: LossFn, kwargs: dict, e) -> None:
    for k, v in kwargs.items():
        if k in ("smoothing",) and not (isinstance(v, (int, float)) and 0 <= v < 1):
            raise TrainError(f"{fn.name}: `smoothing` must be in [0, 1), got {v!r}", span=e.span,
                             code="E1211")
        if k in ("temperature", "delta", "beta") and not (
                isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0):
            raise TrainError(f"{fn.name}: `{k}` must be a positive number, got {v!r}",
                             span=e.span, code="E1211")


def _show(v) -> str:
    return {True: "true", False: "false", None: "none"}.get(v, repr(v)) \
        if isinstance(v, (bool, type(None))) else repr(v)


# ---------------------------------------------------------------- evaluation on tensors

def loss_value(fn: str, args: list, kwargs: dict):
    """One loss function on tensors (mean-reduced, a 0-dim tensor)."""
    import torch
    import torch.nn.functional as F
    spec = LOSSES[fn]
    kw = {**spec.kwargs, **kwargs}
    if fn in ("mse", "mae", "l1", "huber", "smooth_l1", "bce", "bce_probs"):
        a, b = args
        b = b.to(a.dtype)
        if fn == "mse":
            return F.mse_loss(a, b)
        if fn in ("mae", "l1"):
            return F.l1_loss(a, b)
        if fn == "huber":
            return F.huber_loss(a, b, delta=float(kw["delta"]))
        if fn == "smooth_l1":
            return F.smooth_l1_loss(a, b, beta=float(kw["beta"]))
        if fn == "bce":
            pw = kw["pos_weight"]
            pw = None if pw is None else torch.tensor(float(pw), dtype=a.dtype, device=a.device)
            return F.binary_cross_entropy_with_logits(a, b, pos_weight=pw)
        return F.binary_cross_entropy(a, b)
    if fn == "cross_entropy":
        a, b = _class_rows(*args)
        b = b.long() if not b.is_floating_point() else b.to(a.dtype)
        return F.cross_entropy(a, b, label_smoothing=float(kw["smoothing"]))
    if fn == "nll":
        a, b = _class_rows(*args)
        return F.nll_loss(a, b.long())
    if fn == "kl_div":
        a, b = args
        return F.kl_div(a, b.to(a.dtype), reduction="batchmean", log_target=bool(kw["log_target"]))
    if fn == "info_nce":
        a, b = args
        a = F.normalize(a, dim=-1)
        b = F.normalize(b, dim=-1)
        logits = a @ b.T / float(kw["temperature"])
        labels = torch.arange(a.shape[0], device=a.device)
        loss = F.cross_entropy(logits, labels)
        if kw["symmetric"]:
            loss = (loss + F.cross_entropy(logits.T, labels)) / 2
        return loss
    if fn == "kl_normal":
        mu, logvar = args
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())
        return kl.flatten(1).sum(1).mean() if kl.dim() > 1 else kl.sum() / max(1, kl.shape[0])
    if fn == "contractive":
        return _contractive(*args)
    if fn == "mean":
        return args[0].float().mean()
    if fn == "mean_abs":
        return args[0].float().abs().mean()
    raise KeyError(fn)


def _contractive(code, x):
    """Σ_j ‖∂code_j/∂x‖² per sample, averaged over the batch: one backward pass per code unit
    (samples are independent, so the gradient of the batch sum of unit j is each sample's
    row j of its Jacobian)."""
    import torch
    if not x.requires_grad:
        raise TrainError("contractive(code, input) needs the gradient with respect to a model "
                         "input: its second argument must be an input the code depends on",
                         code="E1207")
    flat = code.flatten(1)
    total = code.new_zeros((), dtype=torch.float32)
    for j in range(flat.shape[1]):
        g, = torch.autograd.grad(flat[:, j].sum(), x, create_graph=True, retain_graph=True)
        total = total + g.float().pow(2).sum()
    return total / max(1, code.shape[0])


def _class_rows(scores, target):
    """PyTorch wants the class dim at 1: scores [N, T, C] against indices [N, T] become rows,
    [N·T, C] against [N·T] (the same mean), as a hand-written language-model loss does. Moving
    the classes to dim 1 instead would give cross-entropy a strided view, which it handles
    several times slower (about 9 ms against 2 ms, forward and backward, for gpt_mini's
    4×128×4096 logits on 2 CPU cores). Other shapes are returned as they are."""
    if scores.dim() >= 3 and not target.is_floating_point() and \
            tuple(target.shape) != (scores.shape[0],) + tuple(scores.shape[2:]) and \
            tuple(target.shape) == tuple(scores.shape[:-1]):
        return scores.reshape(-1, scores.shape[-1]), target.reshape(-1)
    return scores, target


def evaluate_loss(expr, tensors: dict):
    """The loss expression's value on ``tensors`` (name -> tensor), and each term's value."""
    terms: list = []
    total = _eval(expr, tensors, terms)
    if not hasattr(total, "dim"):   # a constant-only expression cannot happen after checking
        raise TrainError("the loss does not depend on the model", code="E1208")
    return total, terms


def _eval(e, tensors, terms):
    if isinstance(e, ast.Num):
        return float(e.value)
    if isinstance(e, ast.UnaryOp):
        return -_eval(e.operand, tensors, terms)
    if isinstance(e, ast.BinOp):
        a = _eval(e.left, tensors, terms)
        b = _eval(e.right, tensors, terms)
        return {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
                "/": lambda: a / b}[e.op]()
    if isinstance(e, ast.Call):
        fn = e.func.id
        args = [tensors[a.value.id] for a in e.args if a.name is None]
        kwargs = {a.name: _kwarg_value(a.value, LOSSES[fn], a.name) for a in e.args
                  if a.name is not None}
        v = loss_value(fn, args, kwargs)
        terms.append(v)
        return v
    raise TrainError("unsupported loss expression", span=e.span, code="E1208")
