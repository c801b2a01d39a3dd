"""Resolving a `train` section (and command-line overrides) to a :class:`TrainConfig`.

This runs at compile time (``nndsl check`` reports a bad train section like any other mistake)
and needs no PyTorch: every name is checked against the tables of :mod:`losses`, :mod:`optim`,
:mod:`schedules`, :mod:`metrics`, :mod:`data` and :mod:`augment`, and the loss expression is
type-checked against the model's outputs, inputs and the declared targets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from nndsl.errors import Span, TrainError, span_line
from nndsl.ir.types import DTYPES, SymDim, TensorType
from nndsl.syntax import ast
from nndsl.train import augment as augment_mod
from nndsl.train import curriculum as curriculum_mod
from nndsl.train import data as data_mod
from nndsl.train import episodes as episodes_mod
from nndsl.train import losses, metrics, optim, recipes, schedules
from nndsl.train.scopes import in_scope, scope_names
from nndsl.train.choices import (REQUIRED, Choice, NotConstant, Picked, _show, literal, pick,
                                  suggest)

ENTRIES = {
    "recipe": "supervised (default), vae(...), gan(...), ddpm(...), distill(...), "
              "contrastive(...), maml(...)",
    "data": "a built-in data set (digits, iris, ...) or a path string",
    "episodes": "few-shot episodes from labelled data: episodes(ways=5, shots=1, queries=5)",
    "curriculum": "easy samples first: column(\"NAME\"), loss or teacher(\"t.nn\"), with "
                  "pacing, start and epochs",
    "loss": "an expression of loss functions over outputs, inputs and targets",
    "optimizer": "sgd, adam, adamw, adagrad, rmsprop, radam, lamb, lookahead(...), sam(...)",
    "schedule": "a learning-rate schedule: step, exponential, cosine, ...",
    "metrics": "a list of metrics: [accuracy, f1, ...]",
    "epochs": "passes over the training split",
    "batch": "samples per batch (per process)",
    "val_split": "fraction of the samples held out for validation",
    "test_split": "fraction of the samples held out for a final test",
    "seed": "seed of the initial weights, the splits, shuffling, dropout and augmentation",
    "clip_grad": "clip the gradient's global L2 norm to this value",
    "early_stopping": "stop after this many epochs without improvement of `monitor`",
    "monitor": "what picks the best checkpoint: val_loss (default), val_accuracy, ...",
    "l1": "L1 penalty: this times the sum of |w| over the trained weights",
    "augment": "input augmentation: [flip, crop(pad=2), noise(std=0.05)]",
    "init": "start from weights: \"path.safetensors\" or load(\"path\", only=[\"scope\"])",
    "freeze": "scopes whose parameters are not trained: [\"conv1\", \"stages.0\"]",
    "device": "auto, cpu or cuda",
    "amp": "automatic mixed precision (bf16 on CPU)",
    "compile": "torch.compile the model",
    "checkpoint": "gradient checkpointing per block: recompute each block's activations in "
                  "the backward pass",
    "accumulate": "batches whose gradients are summed before each optimizer step",
}

INIT: dict[str, Choice] = {"load": Choice("load", {"path": REQUIRED, "only": ()},
                                          "weights from a .safetensors file",
                                          positional=("path",))}

DEVICES = ("auto", "cpu", "cuda")


@dataclass
class TrainConfig:
    model: str
    file: str
    targets: dict                     # name -> TensorType
    loss: object                      # the loss expression (AST)
    loss_text: str
    loss_info: losses.LossInfo
    optimizer: Picked
    schedule: Picked | None = None
    metrics: list = field(default_factory=list)
    data: dict | None = None          # {"name": ..., "args": {...}} or {"path": ...}
    epochs: int = 10
    batch: int = 32
    val_split: float = 0.1
    test_split: float = 0.0
    seed: int = 0
    clip_grad: float | None = None
    early_stopping: int | None = None
    monitor: str = "val_loss"
    l1: float = 0.0
    augment: list = field(default_factory=list)
    init: dict | None = None          # {"path": ..., "only": [...] or None}
    freeze: list = field(default_factory=list)
    device: str = "auto"
    amp: bool = False
    compile: bool = False
    checkpoint: bool = False
    accumulate: int = 1
    params: dict = field(default_factory=dict)
    recipe: Picked | None = None
    episodes: episodes_mod.Episodic | None = None
    curriculum: curriculum_mod.Curriculum | None = None
    recipe_info: dict = field(default_factory=dict, repr=False)   # from recipes.check
    spans: dict = field(default_factory=dict, repr=False)   # entry -> Span, for later errors
    base: str = "."                   # folder that relative paths of the section start from

    @property
    def monitor_mode(self) -> str:
        key = self.monitor.split("_", 1)[1]
        if key == "loss":
            return "min"
        if key in EPISODE_KEYS:
            return "max"
        for m in self.metrics:
            if m.key == key:
                return m.mode
        return "min"

    def to_json(self) -> dict:
        return {
            "model": self.model, "spec": self.file, "params": _jsonable(self.params),
            "recipe": self.recipe.to_json() if self.recipe else {"name": "supervised"},
            "targets": {n: str(t) for n, t in self.targets.items()},
            "data": _jsonable(self.data), "loss": self.loss_text,
            "loss_terms": [{"fn": t.fn, "args": list(t.args), **({"kwargs": t.kwargs}
                            if t.kwargs else {}), **({"task": t.task} if t.task else {})}
                           for t in self.loss_info.terms],
            "optimizer": self.optimizer.to_json(),
            "schedule": self.schedule.to_json() if self.schedule else None,
            "metrics": [m.to_json() for m in self.metrics],
            "epochs": self.epochs, "batch": self.batch, "val_split": self.val_split,
            "test_split": self.test_split, "seed": self.seed, "clip_grad": self.clip_grad,
            "early_stopping": self.early_stopping, "monitor": self.monitor, "l1": self.l1,
            "augment": [a.to_json() for a in self.augment], "init": self.init,
            "freeze": list(self.freeze), "device": self.device, "amp": self.amp,
            "compile": self.compile, "checkpoint": self.checkpoint,
            "accumulate": self.accumulate,
            **({"episodes": self.episodes.to_json()} if self.episodes else {}),
            **({"curriculum": self.curriculum.to_json()} if self.curriculum else {}),
        }


# what every epoch of episodic training reports, besides the loss and the metrics
EPISODE_KEYS = ("query_accuracy", "query_accuracy_before")


def _jsonable(v):
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, Picked):
        return v.to_json()
    return v


def source_text(span: Span | None) -> str:
    """The source text under ``span`` (whitespace-collapsed), for the resolved configuration."""
    if span is None:
        return ""
    lines = []
    for ln in range(span.line, span.end_line + 1):
        text = span_line(span, ln) or ""
        start = span.col - 1 if ln == span.line else 0
        end = span.end_col - 1 if ln == span.end_line else len(text)
        lines.append(text[start:end].strip())
    return " ".join(x for x in lines if x)


def _err(msg, span, code="E1210", hint=None, notes=None):
    return TrainError(msg, span=span, code=code, hint=hint, notes=notes)


def _target_type(t: ast.TrainTarget, params: dict) -> TensorType:
    tt = t.type
    if tt.dtype not in DTYPES:
        raise _err(f"unknown dtype `{tt.dtype}`", tt.span, "E0217",
                   suggest(tt.dtype, DTYPES) + "dtypes: " + ", ".join(DTYPES))
    if tt.dims is None:
        raise _err(f"target `{t.name}` needs a shape", tt.span, "E1221",
                   hint=f"target {t.name}: {tt.dtype}[N]")
    dims = []
    for d in tt.dims:
        if isinstance(d, ast.Num) and isinstance(d.value, int) and d.value > 0:
            dims.append(d.value)
        elif isinstance(d, ast.Name) and isinstance(params.get(d.id), int) and \
                not isinstance(params.get(d.id), bool):
            dims.append(params[d.id])
        elif isinstance(d, ast.Name):
            dims.append(SymDim.symbol(d.id))
        else:
            raise _err("a target dim is a positive number, a model parameter or a symbol like "
                       "`N`", d.span, "E1221")
    if not dims or not isinstance(dims[0], SymDim):
        raise _err(f"the first dim of target `{t.name}` is the batch: a symbol like `N`",
                   tt.span, "E1221", hint=f"target {t.name}: {tt.dtype}[N"
                   + "".join(f", {x}" for x in dims[1:]) + "]")
    return TensorType(tt.dtype, tuple(dims))


def _constant(e, name):
    """The literal value of entry ``name`` (a located error if it is not a constant)."""
    try:
        return literal(e)
    except NotConstant:
        raise _err(f"`{name}` must be a constant", e.span) from None


MAX_COUNT = 2**31     # epochs, batch sizes: no run is larger
MAX_SEED = 2**63      # torch and NumPy generators take a 64-bit seed


def _int(e, name, low=1, allow_none=False, high=MAX_COUNT):
    v = _constant(e, name)
    if v is None and allow_none:
        return None
    if not isinstance(v, int) or isinstance(v, bool) or v < low:
        raise _err(f"`{name}` must be an integer >= {low}, got {_show(v)}", e.span)
    if v >= high:
        raise _err(f"`{name}` = {_show(v)} is out of range: it must be below {high:,}", e.span)
    return v


def _number(e, name, low=0.0, high=None, strict_low=False, allow_none=False):
    v = _constant(e, name)
    if v is None and allow_none:
        return None
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if ok:
        ok = (v > low if strict_low else v >= low) and (high is None or v < high)
    if not ok:
        rng = f"{'>' if strict_low else '>='} {low}" + (f" and < {high}" if high else "")
        raise _err(f"`{name}` must be a number {rng}, got {_show(v)}", e.span)
    return float(v)


def _bool(e, name):
    try:
        v = literal(e)
    except NotConstant:
        v = None
    if not isinstance(v, bool):
        raise _err(f"`{name}` must be true or false", e.span)
    return v


def _list(e):
    return e.items if isinstance(e, (ast.ListLit, ast.TupleLit)) else (e,)


def _data_value(e, base: str) -> dict:
    if isinstance(e, ast.Str):
        return {"path": e.value}
    p = pick(e, data_mod.DATASETS, "data set", "E1206")
    return {"name": p.name, "args": dict(p.args)} if p.args else {"name": p.name}


def data_from_cli(text: str) -> dict:
    """``--data NAME|PATH``: a built-in set's name, else a path."""
    if text in data_mod.DATASETS:
        return {"name": text}
    looks_like_path = data_mod.names_a_path(text) or Path(text).exists()
    if not looks_like_path:
        raise TrainError(f"unknown data set `{text}`", code="E1206",
                         hint=suggest(text, data_mod.DATASETS) + "built-in sets: "
                         + ", ".join(data_mod.DATASETS) + "; or give a path (.npz, .npy, .csv, "
                         "a folder of images)")
    return {"path": str(Path(text).resolve())}


def resolve(compiled, section: ast.TrainDef | None, overrides: dict | None = None) -> TrainConfig:
    """The configuration for training ``compiled`` (a :class:`nndsl.api.Compiled`)."""
    o = dict(overrides or {})
    if section is None:
        section = _default_section(compiled, o.get("data"))
    params = dict(compiled.graph.meta.get("params", {}))
    file = section.span.file if section.span else compiled.file
    base = str(Path(file).parent) if not file.startswith("<") else "."
    outputs = compiled.output_types
    inputs = compiled.input_types
    targets: dict[str, TensorType] = {}
    tspans = {}
    for t in section.targets:
        if t.name in targets:
            raise _err(f"target `{t.name}` is declared twice", t.span, "E1212",
                       notes=[("first declared here", tspans[t.name])])
        clash = "output" if t.name in outputs else "input" if t.name in inputs else None
        if clash:
            raise _err(f"target `{t.name}` has the name of a model {clash}", t.span, "E1212",
                       hint="give the target another name")
        targets[t.name] = _target_type(t, params)
        tspans[t.name] = t.span
    names = {**{n: ("output", tt) for n, tt in outputs.items()},
             **{n: ("input", tt) for n, tt in inputs.items()},
             **{n: ("target", tt) for n, tt in targets.items()}}

    entries: dict[str, ast.TrainEntry] = {}
    for e in section.entries:
        if e.name not in ENTRIES:
            raise _err(f"unknown entry `{e.name}` in the train section", e.name_span, "E1201",
                       suggest(e.name, ENTRIES) + "entries: " + ", ".join(ENTRIES))
        if e.name in entries:
            raise _err(f"`{e.name}` is set twice", e.name_span, "E1212",
                       notes=[("first set here", entries[e.name].name_span)])
        entries[e.name] = e
    spans = {k: e.value.span for k, e in entries.items()}
    spans["section"] = section.name_span

    recipe = None
    if "recipe" in entries:
        recipe = pick(entries["recipe"].value, recipes.RECIPES, "recipe", "E1224")
        if recipe.name == "supervised":
            recipe = None
    own_loss = recipe is not None and recipe.name in recipes.OWN_LOSS
    if own_loss and "loss" in entries:
        raise _err(f"the {recipe.name} recipe defines its own loss", entries["loss"].name_span,
                   "E1224", hint="remove the `loss` entry")
    if own_loss and targets:
        raise _err(f"the {recipe.name} recipe trains without targets", section.targets[0].span,
                   "E1224", hint="remove the target declarations")
    if "loss" not in entries and not own_loss:
        raise _err(f"the train section of `{section.model}` has no loss", section.name_span,
                   "E1213", hint="add e.g. `loss = cross_entropy(logits, label)`; the model's "
                   "outputs: " + ", ".join(outputs))
    loss_e = entries["loss"].value if "loss" in entries else None
    info = losses.check_loss(loss_e, names) if loss_e is not None else losses.LossInfo([])
    recipe_info = recipes.check(recipe, compiled, entries["recipe"].value.span, Path(base)) \
        if recipe is not None else {"data_inputs": {n: t for n, t in inputs.items()
                                                     if n not in compiled.random_inputs}}

    episodes = None
    if "episodes" in entries:
        ee = entries["episodes"]
        if recipe is not None and recipe.name not in ("maml",):
            raise _err(f"the {recipe.name} recipe does not train on episodes", ee.name_span,
                       "E1232", hint="episodes train a few-shot model without a recipe, or "
                       "with recipe = maml(...)")
        for k in ("val_split", "test_split", "batch", "augment"):
            if k in entries:
                why = ("a batch is one episode (`accumulate` sums several)" if k == "batch"
                       else "augmentation does not apply to episodes yet" if k == "augment"
                       else "episodes hold out classes, not samples: evaluation draws its "
                            "episodes from `test_classes`")
                raise _err(f"`{k}` does not go with `episodes`: {why}",
                           entries[k].name_span, "E1232", hint=f"remove `{k}`",
                           notes=[("episodes set here", ee.name_span)])
        episodes = episodes_mod.check(
            pick(ee.value, episodes_mod.EPISODES, "episodic data", "E1232"), ee.value.span,
            recipe_info["data_inputs"], outputs, targets, info, compiled.random_inputs,
            recipe.name if recipe is not None else "supervised")
    elif recipe is not None and recipe.name == "maml":
        raise _err("the maml recipe adapts to each episode's support set, and the section has "
                   "no `episodes`", entries["recipe"].value.span, "E1233",
                   hint="add e.g. `episodes = episodes(ways=5, shots=1, queries=5)`")

    optimizer = pick(entries["optimizer"].value, optim.OPTIMIZERS, "optimizer", "E1202") \
        if "optimizer" in entries else Picked("adam", dict(
            {k: v for k, v in optim.OPTIMIZERS["adam"].kwargs.items()}))
    sched = None
    if "schedule" in entries and not (isinstance(entries["schedule"].value, ast.Const)
                                      and entries["schedule"].value.value is None):
        sched = pick(entries["schedule"].value, schedules.SCHEDULES, "schedule", "E1204")
    mets = metrics.resolve_metrics(entries["metrics"].value, names, info) \
        if "metrics" in entries else []

    loss_text = (source_text(loss_e.span) or _loss_text(loss_e)) if loss_e is not None else \
        f"{recipe.name}({recipe.args.get('loss', '')})".replace("()", "")
    cfg = TrainConfig(model=section.model, file=compiled.file, targets=targets, loss=loss_e,
                      loss_text=loss_text, loss_info=info, optimizer=optimizer, schedule=sched,
                      metrics=mets, spans=spans, base=base, recipe=recipe,
                      recipe_info=recipe_info, episodes=episodes)
    v = {k: e.value for k, e in entries.items()}
    if "data" in v:
        cfg.data = _data_value(v["data"], base)
    if "epochs" in v:
        cfg.epochs = _int(v["epochs"], "epochs")
    if "batch" in v:
        cfg.batch = _int(v["batch"], "batch")
    if "val_split" in v:
        cfg.val_split = _number(v["val_split"], "val_split", 0.0, 1.0)
    if "test_split" in v:
        cfg.test_split = _number(v["test_split"], "test_split", 0.0, 1.0)
    if episodes is not None:
        cfg.val_split = cfg.test_split = 0.0
        cfg.batch = 1
    if cfg.val_split + cfg.test_split >= 1:
        raise _err("val_split + test_split leave no training samples",
                   spans.get("test_split") or spans.get("val_split"))
    if "seed" in v:
        cfg.seed = _int(v["seed"], "seed", low=0, high=MAX_SEED)
    if "clip_grad" in v:
        cfg.clip_grad = _number(v["clip_grad"], "clip_grad", strict_low=True, allow_none=True)
    if "early_stopping" in v:
        cfg.early_stopping = _int(v["early_stopping"], "early_stopping", allow_none=True)
    if "l1" in v:
        cfg.l1 = _number(v["l1"], "l1")
    if "accumulate" in v:
        cfg.accumulate = _int(v["accumulate"], "accumulate")
    if "augment" in v:
        cfg.augment = [pick(a, augment_mod.AUGMENTS, "augmentation", "E1210")
                       for a in _list(v["augment"])]
        floats = [n for n, t in inputs.items() if t.dtype in ("f32", "f16", "bf16", "f64")]
        images = [n for n in floats if inputs[n].rank == 4]
        for a in cfg.augment:
            if not (images if a.name in ("flip", "crop") else floats):
                what = "image inputs [N, C, H, W]" if a.name in ("flip", "crop") \
                    else "floating-point inputs"
                raise _err(f"`{a.name}` applies to {what}, and the model has none", a.span,
                           hint="its inputs: " + ", ".join(f"{n}: {t}"
                                                           for n, t in inputs.items()))
    if "init" in v:
        cfg.init = _init_value(v["init"])
    if "freeze" in v:
        cfg.freeze = _freeze_value(v["freeze"], compiled)
    if "device" in v:
        cfg.device = _device_value(v["device"])
    if "amp" in v:
        cfg.amp = _bool(v["amp"], "amp")
    if "compile" in v:
        cfg.compile = _bool(v["compile"], "compile")
    if "checkpoint" in v:
        cfg.checkpoint = _bool(v["checkpoint"], "checkpoint")

    # command-line overrides
    if o.get("data") is not None:
        cfg.data = data_from_cli(o["data"]) if isinstance(o["data"], str) else o["data"]
        spans["data"] = None
    for k in ("epochs", "batch", "seed"):
        if o.get(k) is not None:
            val = o[k]
            high = MAX_SEED if k == "seed" else MAX_COUNT
            if not isinstance(val, int) or val < (0 if k == "seed" else 1) or val >= high:
                raise TrainError(f"--{k} must be an integer from {0 if k == 'seed' else 1} "
                                 f"to {high - 1:,}, got {val}", code="E1210")
            setattr(cfg, k, val)
    if o.get("lr") is not None:
        lr = o["lr"]
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) \
                or not lr > 0:
            raise TrainError(f"--lr must be a positive finite number, got {lr}", code="E1210",
                             hint="for example --lr 1e-3")
        cfg.optimizer = optim.with_lr(cfg.optimizer, o["lr"])
    if o.get("device") is not None:
        dev = o["device"]
        if not isinstance(dev, str) or dev.split(":")[0] not in DEVICES:
            raise TrainError(f"--device must be auto, cpu or cuda, got {dev!r}", code="E1210")
        cfg.device = dev
    for k in ("amp", "compile", "checkpoint"):
        if o.get(k):
            setattr(cfg, k, True)
    cfg.params = dict(o.get("params") or {})

    if "freeze" in v and recipe is not None and recipe.name == "maml":
        recipes.check_adapt_frozen(recipe, compiled, cfg.freeze, spans.get("recipe"))
    if "curriculum" in v:
        cfg.curriculum = curriculum_mod.check(v["curriculum"], cfg, compiled, entries, base)
    cfg.monitor = _monitor(v.get("monitor"), cfg)
    if episodes is not None:
        episodes_mod.check_data(episodes, cfg.data, recipe_info["data_inputs"],
                                spans.get("data"))
    elif cfg.data is not None and "name" in cfg.data:
        data_mod.check_builtin(cfg.data["name"], cfg.data.get("args", {}),
                               recipe_info["data_inputs"], targets,
                               info, {n: t for n, (_, t) in names.items()}, spans.get("data"))
    return cfg


def _loss_text(e) -> str:
    if isinstance(e, ast.Num):
        return repr(e.value)
    if isinstance(e, ast.Name):
        return e.id
    if isinstance(e, ast.BinOp):
        return f"{_loss_text(e.left)} {e.op} {_loss_text(e.right)}"
    if isinstance(e, ast.Call):
        return f"{_loss_text(e.func)}({', '.join(_loss_text(a.value) for a in e.args)})"
    return "?"


def _monitor(e, cfg: TrainConfig) -> str:
    split = "val" if cfg.val_split > 0 or cfg.episodes and cfg.episodes.eval else "train"
    generative = cfg.recipe is not None and cfg.recipe.name in recipes.GENERATIVE
    if e is None:
        if generative and cfg.recipe.name == "gan" and split == "val":
            return "val_mmd"     # a GAN's losses say little about its samples
        return f"{split}_loss"
    name = e.id if isinstance(e, ast.Name) else e.value if isinstance(e, ast.Str) else None
    keys = ["loss"] + [m.key for m in cfg.metrics]
    if cfg.episodes is not None:
        keys += [k for k in EPISODE_KEYS if k == "query_accuracy" or cfg.recipe is not None]
    allowed = [f"{s}_{k}" for s in ("val", "train") for k in keys]
    if generative:
        allowed.append("val_mmd")
    if name not in allowed:
        raise _err(f"cannot monitor `{name}`", e.span, "E1210",
                   suggest(str(name), allowed) + "choose one of: " + ", ".join(allowed))
    if name.startswith("val_") and split == "train":
        raise _err(f"cannot monitor `{name}` without a validation split", e.span, "E1210",
                   hint="set val_split, or monitor a train_ value")
    return name


def _init_value(e) -> dict:
    if isinstance(e, ast.Str):
        return {"path": e.value, "only": None}
    p = pick(e, INIT, "initialization", "E1210")
    only = p.args["only"]
    if isinstance(only, str):
        only = (only,)
    if not all(isinstance(s, str) for s in only):
        raise _err("`only` is a list of scope names", e.span)
    return {"path": p.args["path"], "only": list(only) or None}


def _freeze_value(e, compiled) -> list:
    items = _list(e)
    out = []
    scopes = scope_names(compiled)
    for it in items:
        if not isinstance(it, ast.Str):
            raise _err("`freeze` is a list of scope names in quotes, like [\"conv1\"]", it.span)
        if not any(in_scope(n, it.value) for n in scopes):
            top = sorted({s.split(".")[0] for s in scopes})
            raise _err(f"no parameters under scope `{it.value}`", it.span, "E1216",
                       suggest(it.value, scopes) + "scopes: " + ", ".join(top))
        out.append(it.value)
    return out


def _device_value(e) -> str:
    name = e.id if isinstance(e, ast.Name) else e.value if isinstance(e, ast.Str) else None
    if not isinstance(name, str) or name.split(":")[0] not in DEVICES:
        raise _err("`device` is auto, cpu or cuda", e.span)
    return name


def _default_section(compiled, data) -> ast.TrainDef:
    """A train section for a spec that has none, from a built-in data set: classification
    with cross-entropy (or binary cross-entropy for one output), regression with MSE."""
    if data is None:
        raise TrainError(f"`{compiled.name}` has no train section and no --data was given",
                         code="E1220", hint="add `train " + compiled.name + " { ... }` to the "
                         "spec (docs/LANGUAGE.md, \"Training\"), or give --data NAME")
    d = data_from_cli(data) if isinstance(data, str) else data
    if "name" not in d or len(compiled.output_types) != 1:
        raise TrainError(f"`{compiled.name}` has no train section: write one to say what its "
                         f"loss and targets are", code="E1220",
                         hint="docs/LANGUAGE.md, \"Training\"")
    b = data_mod.BUILTINS[d["name"]]
    (out, ot), = compiled.output_types.items()
    classes = b.classes if d["name"] != "blobs" else 3
    n = ast.Name(None, "N")
    label = "label"

    def target(dtype, dims):
        return ast.TrainTarget(None, label, ast.TensorTypeExpr(None, dtype, dims))

    def call(fn, *args):
        return ast.Call(None, ast.Name(None, fn), tuple(ast.Arg(None, None, ast.Name(None, a))
                                                         for a in args))
    if classes is None:
        dims = (n,) + tuple(ast.Num(None, x) for x in ot.shape[1:])
        t, loss, mets = target("f32", dims), call("mse", out, label), ("mse", "r2")
    elif ot.rank == 2 and ot.shape[1] == 1 and classes == 2:
        t, loss, mets = target("f32", (n, ast.Num(None, 1))), call("bce", out, label), \
            ("accuracy", "roc_auc")
    else:
        t, loss, mets = target("i64", (n,)), call("cross_entropy", out, label), ("accuracy",)
    entries = (ast.TrainEntry(None, "loss", loss),
               ast.TrainEntry(None, "metrics", ast.ListLit(None, tuple(ast.Name(None, m)
                                                                        for m in mets))))
    return ast.TrainDef(None, compiled.name, (t,), entries)
